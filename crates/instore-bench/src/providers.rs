//! The providers a workload runs on, each behind a fresh [`InstanceStore`]. The SQLite provider
//! is reached through [`open_sqlite`] only and the PostgreSQL provider through [`open_postgres`]
//! and [`drop_postgres`] only, so wiring them (or stubbing them) happens in one place each.
//!
//! A run's storage is a [`Place`]: a fresh SQLite file, a fresh PostgreSQL schema
//! (`bench_<random>`, dropped at the end), or one shared in-memory provider. A place can be
//! opened more than once — two hosts on one store, as `takeover` needs.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use instore::{
    InstanceStore, MemoryProvider, PersistenceProvider, Providers, SharedClock, StoreSettings,
    SystemClock,
};

use crate::Synchronous;

/// A provider under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ProviderKind {
    /// `instore::MemoryProvider` (not durable).
    Memory,
    /// `instore_sqlite::SqliteProvider`.
    Sqlite,
    /// `instore_postgres::PgProvider`.
    Postgres,
}

impl ProviderKind {
    /// Its name in the CLI and the table.
    pub fn name(self) -> &'static str {
        match self {
            ProviderKind::Memory => "memory",
            ProviderKind::Sqlite => "sqlite",
            ProviderKind::Postgres => "postgres",
        }
    }

    /// Whether this build can run it.
    pub fn available(self) -> bool {
        match self {
            ProviderKind::Memory => true,
            ProviderKind::Sqlite => SQLITE_LINKED,
            ProviderKind::Postgres => POSTGRES_LINKED,
        }
    }
}

/// Whether the SQLite provider is linked into this build (feature `sqlite`).
pub const SQLITE_LINKED: bool = cfg!(feature = "sqlite");

/// Whether the PostgreSQL provider and the `raw-pg` baseline are linked into this build
/// (feature `postgres`).
pub const POSTGRES_LINKED: bool = cfg!(feature = "postgres");

/// A fresh name for a run's PostgreSQL schema: `<prefix>_` and 16 random hex digits.
pub fn fresh_schema(prefix: &str) -> String {
    format!("{prefix}_{:016x}", rand::random::<u64>())
}

/// A server URL fit to print: the password, if any, replaced by `***`.
pub fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rsplit_once('@') {
        Some((userinfo, host)) if userinfo.contains(':') => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}{}", &rest[authority_end..])
        }
        _ => url.to_owned(),
    }
}

/// Where one run's store lives.
#[derive(Debug, Clone)]
pub enum Place {
    /// One in-memory provider, shared by every store opened on it.
    Memory(Arc<MemoryProvider>),
    /// A SQLite database file (it must not exist yet when first opened).
    Sqlite {
        /// The file.
        path: PathBuf,
        /// Its durability.
        sync: Synchronous,
    },
    /// A schema of its own on a PostgreSQL server.
    Postgres {
        /// The server (`postgres://USER@HOST:PORT/DATABASE`, without `schema=`).
        url: String,
        /// The schema (created by the first open).
        schema: String,
        /// Connections in each provider's pool.
        pool_size: usize,
    },
}

impl Place {
    /// A fresh place for `kind`: `db` is the file for SQLite; PostgreSQL gets a new schema on
    /// the server at `pg_url` and a pool of `pool_size` connections.
    pub fn fresh(
        kind: ProviderKind,
        db: &Path,
        sync: Synchronous,
        pg_url: &str,
        pool_size: usize,
    ) -> Self {
        match kind {
            ProviderKind::Memory => {
                Place::Memory(MemoryProvider::with_clock(Arc::new(SystemClock)))
            }
            ProviderKind::Sqlite => Place::Sqlite {
                path: db.to_owned(),
                sync,
            },
            ProviderKind::Postgres => Place::Postgres {
                url: pg_url.to_owned(),
                schema: fresh_schema("bench"),
                pool_size: pool_size.max(1),
            },
        }
    }

    /// A provider on this place: a new instance each call (the shared one for memory).
    pub async fn provider(&self) -> Result<Arc<dyn PersistenceProvider>, String> {
        match self {
            Place::Memory(p) => Ok(p.clone()),
            Place::Sqlite { path, sync } => open_sqlite(path, *sync, Arc::new(SystemClock)).await,
            Place::Postgres {
                url,
                schema,
                pool_size,
            } => open_postgres(url, schema, *pool_size).await,
        }
    }

    /// All three sides (persistence, query, control) of a new provider on this place (the
    /// shared one for memory). `clock`: the provider's clock instead of the system's (SQLite) or
    /// the server's (PostgreSQL: pinned to it); memory keeps the clock it was made with.
    /// `migrate`: bring an existing store of an older schema up to date.
    pub async fn providers(
        &self,
        clock: Option<SharedClock>,
        migrate: bool,
    ) -> Result<Providers, String> {
        match self {
            Place::Memory(p) => Ok(Providers::of(p.clone())),
            Place::Sqlite { path, sync } => {
                open_sqlite_providers(
                    path,
                    *sync,
                    clock.unwrap_or_else(|| Arc::new(SystemClock)),
                    migrate,
                )
                .await
            }
            Place::Postgres {
                url,
                schema,
                pool_size,
            } => open_postgres_providers(url, schema, *pool_size, clock, migrate).await,
        }
    }

    /// A store with `settings` over a new provider on this place.
    pub async fn store(&self, settings: StoreSettings) -> Result<InstanceStore, String> {
        let provider = self.provider().await?;
        InstanceStore::builder(provider)
            .machine("instore-bench")
            .settings(settings)
            .build()
            .map_err(|e| format!("building the store: {e}"))
    }

    /// Removes what the place holds on a server (the PostgreSQL schema); files are the caller's.
    pub async fn destroy(&self) -> Result<(), String> {
        match self {
            Place::Memory(_) | Place::Sqlite { .. } => Ok(()),
            Place::Postgres { url, schema, .. } => drop_postgres(url, schema).await,
        }
    }
}

/// Opens the SQLite provider with the given durability.
#[cfg(feature = "sqlite")]
pub async fn open_sqlite(
    path: &Path,
    sync: Synchronous,
    clock: SharedClock,
) -> Result<Arc<dyn PersistenceProvider>, String> {
    Ok(open_sqlite_providers(path, sync, clock, false)
        .await?
        .persistence)
}

/// Opens the SQLite provider with the given durability, all three sides of it.
#[cfg(feature = "sqlite")]
pub async fn open_sqlite_providers(
    path: &Path,
    sync: Synchronous,
    clock: SharedClock,
    migrate: bool,
) -> Result<Providers, String> {
    use instore_sqlite::{SqliteOptions, SqliteProvider};
    let options = SqliteOptions {
        synchronous: match sync {
            Synchronous::Full => instore_sqlite::Synchronous::Full,
            Synchronous::Normal => instore_sqlite::Synchronous::Normal,
        },
        migrate,
        ..SqliteOptions::default()
    };
    let provider = SqliteProvider::open_with(path, options, clock)
        .await
        .map_err(|e| format!("opening sqlite provider at {}: {e}", path.display()))?;
    Ok(Providers::of(provider))
}

/// Stand-in while the build does not link the SQLite provider.
#[cfg(not(feature = "sqlite"))]
pub async fn open_sqlite(
    path: &Path,
    sync: Synchronous,
    clock: SharedClock,
) -> Result<Arc<dyn PersistenceProvider>, String> {
    let _ = (path, sync, clock);
    Err(NO_SQLITE.to_owned())
}

/// Stand-in while the build does not link the SQLite provider.
#[cfg(not(feature = "sqlite"))]
pub async fn open_sqlite_providers(
    path: &Path,
    sync: Synchronous,
    clock: SharedClock,
    migrate: bool,
) -> Result<Providers, String> {
    let _ = (path, sync, clock, migrate);
    Err(NO_SQLITE.to_owned())
}

#[cfg(not(feature = "sqlite"))]
const NO_SQLITE: &str = "this instore-bench was built without the SQLite provider; \
                         build it with `--features sqlite`";

/// How long opening a PostgreSQL store may wait for a connection.
#[cfg(feature = "postgres")]
const PG_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Opens the PostgreSQL provider on `schema` (created if missing) with a pool of `pool_size`
/// connections, on the server's clock (as in production).
#[cfg(feature = "postgres")]
pub async fn open_postgres(
    url: &str,
    schema: &str,
    pool_size: usize,
) -> Result<Arc<dyn PersistenceProvider>, String> {
    Ok(open_postgres_providers(url, schema, pool_size, None, false)
        .await?
        .persistence)
}

/// Opens the PostgreSQL provider on `schema` (created if missing), all three sides of it: on
/// the server's clock, or pinned to `clock` (every call sends its instant).
#[cfg(feature = "postgres")]
pub async fn open_postgres_providers(
    url: &str,
    schema: &str,
    pool_size: usize,
    clock: Option<SharedClock>,
    migrate: bool,
) -> Result<Providers, String> {
    use instore_postgres::{PgClock, PgOptions, PgProvider};
    let options = PgOptions {
        schema: schema.to_owned(),
        pool_size,
        connect_timeout: PG_CONNECT_TIMEOUT,
        migrate,
    };
    let clock = clock.map_or(PgClock::Server, PgClock::Pinned);
    let provider = PgProvider::open_with(url, options, clock)
        .await
        .map_err(|e| {
            format!(
                "opening postgres provider at {} (schema {schema}): {e}",
                redacted(url)
            )
        })?;
    Ok(Providers::of(provider))
}

/// Drops a store's schema (`PgProvider::drop_store`, through a provider of one connection).
#[cfg(feature = "postgres")]
pub async fn drop_postgres(url: &str, schema: &str) -> Result<(), String> {
    use instore_postgres::{PgClock, PgOptions, PgProvider};
    let options = PgOptions {
        schema: schema.to_owned(),
        pool_size: 1,
        connect_timeout: PG_CONNECT_TIMEOUT,
        ..PgOptions::default()
    };
    let provider = PgProvider::open_with(url, options, PgClock::Server)
        .await
        .map_err(|e| {
            format!(
                "opening schema {schema} at {} to drop it: {e}",
                redacted(url)
            )
        })?;
    provider
        .drop_store()
        .await
        .map_err(|e| format!("dropping schema {schema} at {}: {e}", redacted(url)))
}

/// Stand-in while the build does not link the PostgreSQL provider.
#[cfg(not(feature = "postgres"))]
pub async fn open_postgres(
    url: &str,
    schema: &str,
    pool_size: usize,
) -> Result<Arc<dyn PersistenceProvider>, String> {
    let _ = (url, schema, pool_size, Duration::ZERO);
    Err(NO_POSTGRES.to_owned())
}

/// Stand-in while the build does not link the PostgreSQL provider.
#[cfg(not(feature = "postgres"))]
pub async fn open_postgres_providers(
    url: &str,
    schema: &str,
    pool_size: usize,
    clock: Option<SharedClock>,
    migrate: bool,
) -> Result<Providers, String> {
    let _ = (url, schema, pool_size, clock, migrate);
    Err(NO_POSTGRES.to_owned())
}

/// Stand-in while the build does not link the PostgreSQL provider.
#[cfg(not(feature = "postgres"))]
pub async fn drop_postgres(url: &str, schema: &str) -> Result<(), String> {
    let _ = (url, schema);
    Err(NO_POSTGRES.to_owned())
}

#[cfg(not(feature = "postgres"))]
const NO_POSTGRES: &str = "this instore-bench was built without the PostgreSQL provider; \
                           build it with `--features postgres`";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printed_urls_hide_the_password() {
        assert_eq!(
            redacted("postgres://bob:s3cret@db:5432/test?x=1"),
            "postgres://bob:***@db:5432/test?x=1"
        );
        let plain = "postgres://postgres@127.0.0.1:5432/test";
        assert_eq!(redacted(plain), plain);
    }

    #[test]
    fn fresh_schemas_are_new_plain_lower_case_names() {
        let a = fresh_schema("bench");
        let b = fresh_schema("bench");
        assert_ne!(a, b);
        assert!(a.len() <= 40 && a.starts_with("bench_"), "{a}");
        assert!(a
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'));
    }
}
