//! The read pool: a few read-only connections used on tokio's blocking threads, for reads that
//! take no lock (runnable detection, owners). WAL lets them read while the writer writes.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use instore::{StorageError, StoreError};
use rusqlite::{Connection, OpenFlags};

use crate::error_map::OrStorage;

#[derive(Debug)]
pub(crate) struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    keep: usize,
}

impl Readers {
    pub(crate) fn new(path: PathBuf, keep: usize) -> Arc<Readers> {
        Arc::new(Readers {
            path,
            idle: Mutex::new(Vec::new()),
            keep: keep.max(1),
        })
    }

    fn take(&self) -> Result<Connection, StoreError> {
        if let Some(conn) = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop() {
            return Ok(conn);
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&self.path, flags).or_storage()?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .or_storage()?;
        // Queries build their statements from filters: keep more of them parsed.
        conn.set_prepared_statement_cache_capacity(64);
        Ok(conn)
    }

    fn put(&self, conn: Connection) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < self.keep {
            idle.push(conn);
        }
    }

    /// Runs `f` on a read connection, on a blocking thread.
    pub(crate) async fn read<T, F>(self: &Arc<Self>, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let conn = this.take()?;
            let result = f(&conn);
            this.put(conn);
            result
        })
        .await
        .map_err(|e| {
            StoreError::Storage(
                StorageError::unavailable("a sqlite read task failed").with_source(e),
            )
        })?
    }
}
