//! The providers a workload runs on, each behind a fresh [`InstanceStore`]. The SQLite provider
//! is reached through [`open_sqlite`] only, so wiring it (or stubbing it) happens in one place.

use std::path::Path;
use std::sync::Arc;

use instore::{InstanceStore, MemoryProvider, PersistenceProvider, SharedClock, SystemClock};

use crate::Synchronous;

/// A provider under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ProviderKind {
    /// `instore::MemoryProvider` (not durable).
    Memory,
    /// `instore_sqlite::SqliteProvider`.
    Sqlite,
}

impl ProviderKind {
    /// Its name in the CLI and the table.
    pub fn name(self) -> &'static str {
        match self {
            ProviderKind::Memory => "memory",
            ProviderKind::Sqlite => "sqlite",
        }
    }

    /// Whether this build can run it.
    pub fn available(self) -> bool {
        match self {
            ProviderKind::Memory => true,
            ProviderKind::Sqlite => SQLITE_LINKED,
        }
    }
}

/// Whether the SQLite provider is linked into this build (feature `sqlite`).
pub const SQLITE_LINKED: bool = cfg!(feature = "sqlite");

/// A store with default settings over a fresh provider on the system clock. `db` is the file
/// for durable providers (it must not exist yet).
pub async fn open_store(
    kind: ProviderKind,
    db: &Path,
    sync: Synchronous,
) -> Result<InstanceStore, String> {
    let clock: SharedClock = Arc::new(SystemClock);
    let provider: Arc<dyn PersistenceProvider> = match kind {
        ProviderKind::Memory => MemoryProvider::with_clock(clock),
        ProviderKind::Sqlite => open_sqlite(db, sync, clock).await?,
    };
    InstanceStore::builder(provider)
        .machine("instore-bench")
        .build()
        .map_err(|e| format!("building the store: {e}"))
}

/// Opens the SQLite provider with the given durability.
#[cfg(feature = "sqlite")]
pub async fn open_sqlite(
    path: &Path,
    sync: Synchronous,
    clock: SharedClock,
) -> Result<Arc<dyn PersistenceProvider>, String> {
    use instore_sqlite::{SqliteOptions, SqliteProvider};
    let options = SqliteOptions {
        synchronous: match sync {
            Synchronous::Full => instore_sqlite::Synchronous::Full,
            Synchronous::Normal => instore_sqlite::Synchronous::Normal,
        },
        ..SqliteOptions::default()
    };
    let provider = SqliteProvider::open_with(path, options, clock)
        .await
        .map_err(|e| format!("opening sqlite provider at {}: {e}", path.display()))?;
    Ok(provider)
}

/// Stand-in while the build does not link the SQLite provider.
#[cfg(not(feature = "sqlite"))]
pub async fn open_sqlite(
    path: &Path,
    sync: Synchronous,
    clock: SharedClock,
) -> Result<Arc<dyn PersistenceProvider>, String> {
    let _ = (path, sync, clock);
    Err("this instore-bench was built without the SQLite provider; \
         build it with `--features sqlite`"
        .to_owned())
}
