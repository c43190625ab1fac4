//! What every verb works with: the configuration, the chosen store, the output mode.

use instore_config::{Config, OpenedStore, StoreConfig, StoreKind};

use crate::cli::Cli;
use crate::failure::Failure;

#[derive(Debug)]
pub struct Context {
    pub config: Config,
    /// `--store`, if given.
    pub store_name: Option<String>,
    /// `--json`.
    pub json: bool,
}

impl Context {
    /// Loads the configuration the global options name.
    pub fn load(cli: &Cli) -> Result<Context, Failure> {
        Ok(Context {
            config: Config::load(cli.config.as_deref())?,
            store_name: cli.store.clone(),
            json: cli.json,
        })
    }

    /// The chosen store's configuration.
    pub fn store_config(&self) -> Result<&StoreConfig, Failure> {
        Ok(self.config.store(self.store_name.as_deref())?)
    }

    /// Opens the chosen store. A SQLite store whose file does not exist is not created here
    /// (a mistyped directory would otherwise grow an empty store): `instore store init` does.
    pub async fn open(&self) -> Result<OpenedStore, Failure> {
        let store = self.existing_store()?;
        Ok(instore_config::open(store).await?)
    }

    /// Opens the chosen store as [`Context::open`] does, first applying pending schema
    /// migrations (long-running services: `serve`).
    pub async fn open_migrating(&self) -> Result<OpenedStore, Failure> {
        let store = self.existing_store()?;
        Ok(instore_config::open_migrating(store).await?)
    }

    /// Opens the chosen store as [`Context::open_migrating`] does, creating it if it does not
    /// exist (`serve --demo`: the README's first command works in a fresh checkout).
    pub async fn open_creating(&self) -> Result<OpenedStore, Failure> {
        Ok(instore_config::open_migrating(self.store_config()?).await?)
    }

    /// The chosen store's configuration, refusing a SQLite store whose file is missing.
    fn existing_store(&self) -> Result<&StoreConfig, Failure> {
        let store = self.store_config()?;
        if let StoreKind::Sqlite { path } = store.kind() {
            if !path.exists() {
                return Err(Failure::runtime(format!(
                    "store '{}' ({}) does not exist; create it with `instore store init`, or choose \
                     another store with --store or --config",
                    store.name, store.url
                )));
            }
        }
        Ok(store)
    }
}
