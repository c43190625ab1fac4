//! # instore-sqlite — the durable, embedded default store
//!
//! A [`instore::PersistenceProvider`] over one SQLite file: WAL, `synchronous=FULL` by default,
//! one writer thread doing group commit (many saves share one fsync), a small pool of read
//! connections, embedded versioned migrations. SQLite is only ever called on the writer thread or
//! on tokio's blocking threads, never on the async executor.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), instore::StoreError> {
//! use std::time::Duration;
//! use instore::{bag, CreateOwner, InstanceId, Load, Save};
//!
//! let dir = tempfile::tempdir().expect("a temp dir");
//! let url = format!("sqlite://{}", dir.path().join("orders.db").display());
//! let store = instore_sqlite::open_store(&url, Default::default()).await?;
//! let owner = store.create_handle();
//! store.execute(&owner, CreateOwner::default(), Duration::from_secs(5)).await?;
//! let handle = store.create_handle_for(owner.owner(), Some(InstanceId::new()));
//! store.execute(&handle, Save::data(bag([("orders:total", 99i64)])).and_unlock(), Duration::from_secs(5)).await?;
//! # Ok(())
//! # }
//! ```

mod control;
mod error_map;
mod promoted;
mod queries;
mod query;
mod readers;
#[cfg(test)]
mod scale_tests;
mod schema;
mod tx;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use instore::encoding::encode;
use instore::{
    Activatable, InstanceId, InstanceSnapshot, InstanceStore, LeaseState, LoadRequest, NewOwner,
    OwnerId, OwnerInfo, PersistenceProvider, RunnableRequest, SaveRequest, SharedClock, StoreError,
    StoreSettings, SystemClock, Timestamp, WakeUps,
};
use rusqlite::Connection;
use tokio::sync::watch;

use crate::error_map::OrStorage;
use crate::readers::Readers;
use crate::tx::Tx;
use crate::writer::Writer;

/// SQLite's `synchronous` setting: how hard a commit waits for the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Synchronous {
    /// No fsync: fast, and an acknowledged save may be lost in a power cut.
    Off,
    /// fsync at checkpoints only (WAL): an acknowledged save may be lost in a power cut.
    Normal,
    /// fsync on every commit: acknowledged saves survive crashes and power cuts (the default).
    #[default]
    Full,
    /// As `Full`, and the directory too.
    Extra,
}

impl Synchronous {
    fn pragma(self) -> &'static str {
        match self {
            Synchronous::Off => "off",
            Synchronous::Normal => "normal",
            Synchronous::Full => "full",
            Synchronous::Extra => "extra",
        }
    }
}

/// Settings of the SQLite provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqliteOptions {
    /// Durability of commits (default `Full`).
    pub synchronous: Synchronous,
    /// Most commands committed together by the writer (default 256).
    pub max_batch: usize,
    /// Read connections kept open (default 4).
    pub readers: usize,
    /// Apply pending migrations to an existing database with an older schema (default false:
    /// opening it fails and says to migrate). New files are always created at the newest schema.
    pub migrate: bool,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            synchronous: Synchronous::Full,
            max_batch: 256,
            readers: 4,
            migrate: false,
        }
    }
}

/// The SQLite provider.
#[derive(Debug)]
pub struct SqliteProvider {
    path: PathBuf,
    clock: SharedClock,
    writer: Writer,
    readers: Arc<Readers>,
    wake: watch::Sender<u64>,
}

impl SqliteProvider {
    /// Opens (or creates) the database at `path` with default options, on the system clock.
    pub async fn open(path: impl AsRef<Path>) -> Result<Arc<Self>, StoreError> {
        Self::open_with(path, SqliteOptions::default(), Arc::new(SystemClock)).await
    }

    /// Opens (or creates) the database at `path`. A file that is not an instore database, or was
    /// written by a newer schema, is refused unchanged.
    pub async fn open_with(
        path: impl AsRef<Path>,
        options: SqliteOptions,
        clock: SharedClock,
    ) -> Result<Arc<Self>, StoreError> {
        let path = path.as_ref().to_path_buf();
        let now = clock.now();
        let opened = {
            let path = path.clone();
            let options = options.clone();
            tokio::task::spawn_blocking(move || open_writer_connection(&path, &options, now))
                .await
                .map_err(|e| {
                    StoreError::Storage(
                        instore::StorageError::unavailable("opening sqlite failed").with_source(e),
                    )
                })??
        };
        let wake = watch::Sender::new(0);
        let writer = Writer::start(opened, options.max_batch, wake.clone())?;
        Ok(Arc::new(SqliteProvider {
            readers: Readers::new(path.clone(), options.readers),
            path,
            clock,
            writer,
            wake,
        }))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Damages an instance's stored data so that it no longer decodes (for tests of corrupt-row
    /// handling). Returns false if there is no such instance.
    pub async fn corrupt_instance_data(&self, instance: InstanceId) -> Result<bool, StoreError> {
        self.writer
            .call(move |conn| Ok((queries::damage_data(conn, instance)? > 0, false)))
            .await
    }

    fn tx_now(&self) -> (SharedClock, Timestamp) {
        (self.clock.clone(), self.clock.now())
    }
}

/// Opens the write connection: inspects the file read-only, refuses what is not ours, creates or
/// migrates the schema, then sets the pragmas.
fn open_writer_connection(
    path: &Path,
    options: &SqliteOptions,
    now: Timestamp,
) -> Result<Connection, StoreError> {
    let found = schema::inspect(path)?;
    let mut conn = Connection::open(path).or_storage()?;
    conn.busy_timeout(Duration::from_secs(5)).or_storage()?;
    conn.pragma_update(None, "journal_mode", "wal")
        .or_storage()?;
    conn.pragma_update(None, "synchronous", options.synchronous.pragma())
        .or_storage()?;
    match found {
        schema::Found::Empty => schema::migrate(&mut conn, 0, now.as_micros())?,
        schema::Found::Instore { version } if version < schema::current_version() => {
            if !options.migrate {
                return Err(StoreError::Storage(instore::StorageError::new(
                    instore::StorageErrorKind::Schema,
                    format!(
                        "{} has schema version {version}; this build needs {}. Run `instore store migrate` (or open \
                         with SqliteOptions {{ migrate: true }}) to upgrade it",
                        path.display(),
                        schema::current_version()
                    ),
                )));
            }
            schema::migrate(&mut conn, version, now.as_micros())?;
        }
        schema::Found::Instore { .. } => {}
    }
    Ok(conn)
}

/// Opens a store by URL: `sqlite://PATH` (a relative or absolute path; `sqlite://` alone means
/// `instore.db` in the working directory).
pub async fn open_store(url: &str, settings: StoreSettings) -> Result<InstanceStore, StoreError> {
    let Some(rest) = url.strip_prefix("sqlite://") else {
        return Err(StoreError::invalid(format!(
            "'{url}' is not a sqlite URL; use sqlite://PATH, e.g. sqlite://instore.db"
        )));
    };
    let path = if rest.is_empty() { "instore.db" } else { rest };
    let provider = SqliteProvider::open(path).await?;
    InstanceStore::builder(provider).settings(settings).build()
}

#[async_trait::async_trait]
impl PersistenceProvider for SqliteProvider {
    fn clock(&self) -> SharedClock {
        self.clock.clone()
    }

    fn wake_ups(&self) -> WakeUps {
        self.wake.subscribe()
    }

    async fn create_owner(&self, owner: NewOwner) -> Result<OwnerInfo, StoreError> {
        let (clock, _) = self.tx_now();
        self.writer
            .call(move |conn| {
                let now = clock.now();
                queries::clean_up_owners(conn, now)?;
                let info = owner.register(now);
                queries::insert_owner(conn, &info)?;
                Ok((info, false))
            })
            .await
    }

    async fn renew_lease(&self, owner: OwnerId, lease: Duration) -> Result<LeaseState, StoreError> {
        let (clock, _) = self.tx_now();
        self.writer
            .call(move |conn| {
                let now = clock.now();
                let state = match queries::lease_of(conn, owner)? {
                    None => LeaseState::Missing,
                    Some(t) if t <= now => LeaseState::Expired,
                    Some(_) => {
                        let expires_at = now.plus(lease);
                        queries::set_lease(conn, owner, expires_at)?;
                        LeaseState::Renewed { expires_at }
                    }
                };
                Ok((state, false))
            })
            .await
    }

    async fn delete_owner(&self, owner: OwnerId) -> Result<(), StoreError> {
        let (clock, _) = self.tx_now();
        self.writer
            .call(move |conn| {
                let now = clock.now();
                if let Some(lease) = queries::lease_of(conn, owner)? {
                    queries::set_lease(conn, owner, lease.min(now))?;
                }
                let held = queries::holds_locks(conn, owner)?;
                queries::clean_up_owners(conn, now)?;
                Ok(((), held))
            })
            .await
    }

    async fn load(
        &self,
        owner: OwnerId,
        request: LoadRequest,
    ) -> Result<InstanceSnapshot, StoreError> {
        let (clock, _) = self.tx_now();
        self.writer
            .call(move |conn| {
                Ok((
                    Tx {
                        conn,
                        now: clock.now(),
                    }
                    .load(owner, &request)?,
                    false,
                ))
            })
            .await
    }

    async fn save(
        &self,
        owner: OwnerId,
        request: SaveRequest,
    ) -> Result<InstanceSnapshot, StoreError> {
        let (clock, _) = self.tx_now();
        // Encoding (and compressing) the data is the heavy part of a save: do it here, on the
        // caller's task, so the single writer thread only writes.
        let encoded = request
            .save
            .data
            .as_ref()
            .map(|d| encode(d, &request.rules.encoding));
        self.writer
            .call(move |conn| {
                Tx {
                    conn,
                    now: clock.now(),
                }
                .save(owner, &request, encoded)
            })
            .await
    }

    async fn unlock(&self, owner: OwnerId, instance: InstanceId) -> Result<(), StoreError> {
        let (clock, _) = self.tx_now();
        self.writer
            .call(move |conn| {
                Ok((
                    (),
                    Tx {
                        conn,
                        now: clock.now(),
                    }
                    .unlock(owner, instance)?,
                ))
            })
            .await
    }

    async fn try_load_runnable(
        &self,
        owner: OwnerId,
        request: RunnableRequest,
    ) -> Result<Option<InstanceSnapshot>, StoreError> {
        let (clock, _) = self.tx_now();
        self.writer
            .call(move |conn| {
                let tx = Tx {
                    conn,
                    now: clock.now(),
                };
                Ok((
                    tx.try_load_runnable(owner, &request.host_type, request.guards, &request.skip)?,
                    false,
                ))
            })
            .await
    }

    async fn next_runnable(&self, host_type: &str) -> Result<Option<Timestamp>, StoreError> {
        let host_type = host_type.to_owned();
        self.readers
            .read(move |conn| queries::next_runnable(conn, &host_type))
            .await
    }

    async fn activatable(&self) -> Result<Vec<Activatable>, StoreError> {
        let now = self.clock.now();
        let counts = self
            .readers
            .read(move |conn| queries::activatable(conn, now))
            .await?;
        Ok(counts
            .into_iter()
            .map(|(host_type, runnable_count)| Activatable {
                host_type,
                runnable_count,
            })
            .collect())
    }

    async fn owners(&self) -> Result<Vec<OwnerInfo>, StoreError> {
        self.readers.read(queries::list_owners).await
    }
}
