//! Opening a configured store: the URL's scheme picks the provider; the store's settings and the
//! provider's options come from its [`StoreConfig`].

use std::sync::Arc;

use instore::{InstanceStore, MemoryProvider, Providers, StoreError, StoreSettings, SystemClock};
use instore_postgres::{PgClock, PgProvider};
use instore_sqlite::SqliteProvider;

use crate::{ConfigError, StoreConfig, StoreKind};

/// An open store: the three provider sides over its storage and a runtime on top.
#[derive(Debug, Clone)]
pub struct OpenedStore {
    /// The store's name in the configuration.
    pub name: String,
    /// Its URL.
    pub url: String,
    /// The settings the runtime runs with.
    pub settings: StoreSettings,
    /// Persistence, query and control over the same storage.
    pub providers: Providers,
    /// The runtime over `providers.persistence`, for hosts and the management service.
    pub store: InstanceStore,
}

/// Opens the store: creates its storage if missing; an existing one with an older schema is
/// refused with a message saying to migrate. Must be called inside a tokio runtime.
pub async fn open(config: &StoreConfig) -> Result<OpenedStore, ConfigError> {
    open_with(config, false).await
}

/// Opens the store, first applying any pending schema migrations (`instore store migrate`).
pub async fn open_migrating(config: &StoreConfig) -> Result<OpenedStore, ConfigError> {
    open_with(config, true).await
}

async fn open_with(config: &StoreConfig, migrate: bool) -> Result<OpenedStore, ConfigError> {
    let provider = Provider::connect(config, migrate).await?;
    let providers = provider.providers();
    let store = InstanceStore::builder(providers.persistence.clone())
        .settings(config.settings.clone())
        .build()
        .map_err(|source| store_error(config, source))?;
    Ok(OpenedStore {
        name: config.name.clone(),
        url: config.url.clone(),
        settings: config.settings.clone(),
        providers,
        store,
    })
}

pub(crate) fn store_error(config: &StoreConfig, source: StoreError) -> ConfigError {
    ConfigError::Store {
        store: config.name.clone(),
        url: config.url.clone(),
        source,
    }
}

/// The concrete provider behind a URL (schema work needs more than the three traits).
#[derive(Debug)]
pub(crate) enum Provider {
    Memory(Arc<MemoryProvider>),
    Sqlite(Arc<SqliteProvider>),
    Postgres(Arc<PgProvider>),
}

/// Connects to a `postgres://` store.
pub(crate) async fn connect_postgres(
    config: &StoreConfig,
    migrate: bool,
) -> Result<Arc<PgProvider>, ConfigError> {
    let options = instore_postgres::PgOptions {
        migrate,
        ..config.postgres.clone()
    };
    PgProvider::open_with(&config.url, options, PgClock::Server)
        .await
        .map_err(|source| store_error(config, source))
}

impl Provider {
    /// Connects to the store's storage, migrating an older schema if `migrate`.
    pub(crate) async fn connect(config: &StoreConfig, migrate: bool) -> Result<Self, ConfigError> {
        let opened = match config.kind() {
            StoreKind::Memory => Ok(Provider::Memory(MemoryProvider::new())),
            StoreKind::Sqlite { path } => {
                let options = instore_sqlite::SqliteOptions {
                    migrate,
                    ..config.sqlite.clone()
                };
                SqliteProvider::open_with(&path, options, Arc::new(SystemClock))
                    .await
                    .map(Provider::Sqlite)
            }
            StoreKind::Postgres => {
                return connect_postgres(config, migrate)
                    .await
                    .map(Provider::Postgres)
            }
        };
        opened.map_err(|source| store_error(config, source))
    }

    pub(crate) fn providers(&self) -> Providers {
        match self {
            Provider::Memory(p) => Providers::of(p.clone()),
            Provider::Sqlite(p) => Providers::of(p.clone()),
            Provider::Postgres(p) => Providers::of(p.clone()),
        }
    }
}
