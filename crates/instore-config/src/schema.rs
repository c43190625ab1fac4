//! A store's schema: create it (`instore store init`), upgrade it (`migrate`), remove it (`drop`).
//!
//! The providers create a missing schema and apply migrations when they open (with `migrate`
//! allowed), so `init` and `migrate` are openings; `drop` removes what a provider created: the
//! PostgreSQL schema ([`instore_postgres::PgProvider::drop_store`]) or the SQLite file with its
//! WAL and shared-memory files, after the provider has recognised it as an instore database.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::open::{connect_postgres, store_error, Provider};
use crate::{ConfigError, StoreConfig, StoreKind};

/// What a schema operation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaReport {
    /// The store's name.
    pub store: String,
    /// Its URL.
    pub url: String,
    /// What happened.
    pub outcome: SchemaOutcome,
}

/// The outcome of [`init`], [`migrate`] or [`drop_store`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SchemaOutcome {
    /// The storage was missing and was created at the newest schema.
    Created,
    /// The storage exists at the newest schema this build knows (migrated, if asked to).
    Current,
    /// The storage is ready at the newest schema (created if it was missing; the provider does
    /// not say which).
    Ready,
    /// A memory store: nothing to create, migrate or drop.
    InMemory,
    /// The storage and everything in it were removed.
    Dropped,
    /// There was nothing to drop.
    Missing,
}

impl SchemaOutcome {
    /// Its name in JSON output.
    pub fn name(self) -> &'static str {
        match self {
            SchemaOutcome::Created => "created",
            SchemaOutcome::Current => "current",
            SchemaOutcome::Ready => "ready",
            SchemaOutcome::InMemory => "in_memory",
            SchemaOutcome::Dropped => "dropped",
            SchemaOutcome::Missing => "missing",
        }
    }
}

impl fmt::Display for SchemaOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SchemaOutcome::Created => "created at the newest schema",
            SchemaOutcome::Current => "at the newest schema",
            SchemaOutcome::Ready => "ready at the newest schema",
            SchemaOutcome::InMemory => "a memory store: nothing is stored outside the process",
            SchemaOutcome::Dropped => "dropped, with everything in it",
            SchemaOutcome::Missing => "nothing to drop: it does not exist",
        })
    }
}

/// Creates the store's storage at the newest schema if it is missing. An existing store with an
/// older schema is refused with a message saying to migrate; a foreign file is refused unchanged.
pub async fn init(config: &StoreConfig) -> Result<SchemaReport, ConfigError> {
    prepare(config, false).await
}

/// Creates the store's storage if missing, or applies the migrations it lacks.
pub async fn migrate(config: &StoreConfig) -> Result<SchemaReport, ConfigError> {
    prepare(config, true).await
}

async fn prepare(config: &StoreConfig, migrate: bool) -> Result<SchemaReport, ConfigError> {
    let outcome = match config.kind() {
        StoreKind::Memory => SchemaOutcome::InMemory,
        StoreKind::Sqlite { path } => {
            let existed = exists(&path);
            drop(Provider::connect(config, migrate).await?);
            if existed {
                SchemaOutcome::Current
            } else {
                SchemaOutcome::Created
            }
        }
        StoreKind::Postgres => {
            drop(Provider::connect(config, migrate).await?);
            SchemaOutcome::Ready
        }
    };
    Ok(report(config, outcome))
}

/// Removes the store's storage and everything in it. A SQLite file is first opened (and so
/// recognised as an instore database: any other file is refused unchanged), then deleted with
/// its `-wal` and `-shm` files. Hosts still using the store lose it.
pub async fn drop_store(config: &StoreConfig) -> Result<SchemaReport, ConfigError> {
    let outcome = match config.kind() {
        StoreKind::Memory => SchemaOutcome::InMemory,
        StoreKind::Sqlite { path } => {
            if !exists(&path) {
                SchemaOutcome::Missing
            } else {
                // Opening proves it is ours; dropping the provider closes the file.
                drop(Provider::connect(config, true).await?);
                for file in sqlite_files(&path) {
                    match std::fs::remove_file(&file) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => {
                            return Err(store_error(
                                config,
                                instore::StoreError::Storage(
                                    instore::StorageError::unavailable(format!(
                                        "cannot remove {}",
                                        file.display()
                                    ))
                                    .with_source(e),
                                ),
                            ))
                        }
                    }
                }
                SchemaOutcome::Dropped
            }
        }
        StoreKind::Postgres => {
            connect_postgres(config, true)
                .await?
                .drop_store()
                .await
                .map_err(|source| store_error(config, source))?;
            SchemaOutcome::Dropped
        }
    };
    Ok(report(config, outcome))
}

fn exists(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.len() > 0)
}

/// The database file and SQLite's companions.
fn sqlite_files(path: &Path) -> Vec<PathBuf> {
    let mut files = vec![path.to_path_buf()];
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        files.push(PathBuf::from(name));
    }
    files
}

fn report(config: &StoreConfig, outcome: SchemaOutcome) -> SchemaReport {
    SchemaReport {
        store: config.name.clone(),
        url: config.url.clone(),
        outcome,
    }
}
