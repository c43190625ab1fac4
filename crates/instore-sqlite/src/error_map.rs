//! rusqlite errors become [`StorageError`]s here, and only here: no driver type leaves the crate.

use instore::{StorageError, StorageErrorKind, StoreError};
use rusqlite::ErrorCode;

/// Maps a driver error: busy/locked/IO-ish conditions are transient, the rest are not.
pub(crate) fn storage(e: rusqlite::Error) -> StoreError {
    let kind = match &e {
        rusqlite::Error::SqliteFailure(f, _) => match f.code {
            ErrorCode::DatabaseBusy
            | ErrorCode::DatabaseLocked
            | ErrorCode::SystemIoFailure
            | ErrorCode::DiskFull => StorageErrorKind::Unavailable,
            ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt => StorageErrorKind::Corrupt,
            _ => StorageErrorKind::Other,
        },
        _ => StorageErrorKind::Other,
    };
    StoreError::Storage(StorageError::new(kind, "sqlite").with_source(e))
}

/// Extension to map `rusqlite::Result` with `?`.
pub(crate) trait OrStorage<T> {
    fn or_storage(self) -> Result<T, StoreError>;
}

impl<T> OrStorage<T> for rusqlite::Result<T> {
    fn or_storage(self) -> Result<T, StoreError> {
        self.map_err(storage)
    }
}
