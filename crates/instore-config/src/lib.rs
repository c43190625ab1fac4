//! # instore-config — the one configuration every instore tool opens stores through
//!
//! SPEC §13: stores are named in a TOML file, `instore.toml` in the working directory (or the
//! file a tool is given with `--config`), each with its URL and options. Without a file there is
//! one store, `default`, at `$INSTORE_URL`, else the SQLite file `instore.db` in the working
//! directory. [`open`] turns a [`StoreConfig`] into the three provider sides of the store
//! ([`instore::Providers`]) and an [`instore::InstanceStore`] over them, whatever the URL's kind.
//!
//! ```toml
//! default = "main"                 # optional: else the only store, else the one named "default"
//!
//! [stores.main]
//! url = "sqlite://instore.db"      # memory:, sqlite://PATH (relative to this file), postgres://…
//! lease = "60s"
//! renew_every = "30s"
//! detection_poll = "5s"
//! completion = "keep"              # or "delete_all"
//! lock_retry = "none"              # or "basic", "aggressive"
//! max_payload_bytes = "16MiB"
//! promotions = ["orders:total"]
//! retention = "7d"                 # or "never"
//! queue_lock_time = "65s"
//! queue_max_attempts = 5
//! queue_batch_size = 10
//!
//! [stores.main.sqlite]
//! synchronous = "full"             # off, normal, full, extra
//!
//! [server]                         # instore serve
//! listen = "127.0.0.1:8080"
//! [[server.tokens]]                # none: no auth, loopback addresses only
//! token_env = "INSTORE_ADMIN_TOKEN"  # or token = "..." (at least 16 characters)
//! role = "admin"                   # or "reader": queries only
//! ```
//!
//! Opening a configured store:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), instore_config::ConfigError> {
//! use instore::{InstanceFilter, PageRequest};
//!
//! let config = instore_config::Config::from_toml(
//!     "[stores.scratch]\nurl = \"memory:\"\nretention = \"1d\"\n",
//!     "instore.toml".as_ref(),
//! )?;
//! let store = config.store(None)?; // the only store is the default
//! assert_eq!(store.name, "scratch");
//! let opened = instore_config::open(store).await?;
//! let page = opened.providers.query.query(&InstanceFilter::all(), &PageRequest::default()).await;
//! # let _ = page;
//! # Ok(())
//! # }
//! ```
//!
//! The [`json`] module holds the JSON shapes tools share (the CLI's `--json`, the HTTP API), and
//! [`instant`] the spellings of instants they accept.

mod file;
pub mod instant;
pub mod json;
mod open;
mod schema;
mod server;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use instore::{StoreError, StoreSettings};
use instore_postgres::PgOptions;
use instore_sqlite::SqliteOptions;

pub use open::{open, open_migrating, OpenedStore};
pub use schema::{drop_store, init, migrate, SchemaOutcome, SchemaReport};
pub use server::{ServerConfig, ServerRole, ServerToken, TokenSecret, MIN_TOKEN_LEN};

/// The file tools look for in the working directory when given no `--config`.
pub const CONFIG_FILE: &str = "instore.toml";
/// The environment variable naming the store's URL when there is no configuration file.
pub const URL_ENV: &str = "INSTORE_URL";
/// The URL of the store when there is neither a file nor `$INSTORE_URL`.
pub const DEFAULT_URL: &str = "sqlite://instore.db";
/// The name of the store when there is no file, and the default store of a file with several
/// stores and no `default` key.
pub const DEFAULT_STORE: &str = "default";

/// What went wrong reading the configuration or opening a store. Each variant says what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The configuration file says something wrong at `line`. Fix that key as `problem` says.
    #[error("{}:{line}:{column}: {key}: {problem}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The dotted key (`stores.main.lease`).
        key: String,
        /// What is wrong and what to do.
        problem: String,
    },
    /// The configuration file cannot be read. Check the path given with `--config`.
    #[error("cannot read the configuration file {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// `$INSTORE_URL` is not a store URL. Fix or unset it.
    #[error("${URL_ENV}: {problem}")]
    Env {
        /// What is wrong and what to do.
        problem: String,
    },
    /// No store has this name. Use one of `known`.
    #[error("no store named '{name}' in {origin}; known stores: {}", known.join(", "))]
    UnknownStore {
        /// The name asked for.
        name: String,
        /// The stores the configuration names.
        known: Vec<String>,
        /// Where the configuration came from.
        origin: Origin,
    },
    /// Several stores and no default. Name one (`--store`), or set `default`.
    #[error("{origin} names several stores ({}) and no default; pass --store NAME, or add default = \"NAME\" at the top of the file", known.join(", "))]
    NoDefault {
        /// The stores the configuration names.
        known: Vec<String>,
        /// Where the configuration came from.
        origin: Origin,
    },
    /// The store did not open (or its schema could not be changed); the source says why.
    #[error("store '{store}' ({url})")]
    Store {
        /// The store's name.
        store: String,
        /// Its URL.
        url: String,
        /// What the provider answered.
        #[source]
        source: StoreError,
    },
}

impl ConfigError {
    /// Whether the error is in what the user wrote (the file, `$INSTORE_URL`, a store name) —
    /// a usage error — rather than a failure of the store itself.
    pub fn is_usage(&self) -> bool {
        !matches!(self, ConfigError::Store { .. })
    }
}

/// Where a [`Config`] came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A configuration file.
    File(PathBuf),
    /// `$INSTORE_URL`, without a file.
    Env,
    /// Neither: the built-in default store.
    BuiltIn,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File(p) => write!(f, "{}", p.display()),
            Origin::Env => write!(f, "${URL_ENV} (no {CONFIG_FILE})"),
            Origin::BuiltIn => write!(f, "the built-in default (no {CONFIG_FILE}, no ${URL_ENV})"),
        }
    }
}

/// The kind of storage a URL names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreKind {
    /// `memory:` — process memory, gone when the process ends.
    Memory,
    /// `sqlite://PATH`.
    Sqlite {
        /// The database file.
        path: PathBuf,
    },
    /// `postgres://…` or `postgresql://…`.
    Postgres,
}

impl StoreKind {
    /// The kind of a URL that [`resolve_url`] accepted (anything else counts as memory).
    pub fn of(url: &str) -> StoreKind {
        if let Some(rest) = url.strip_prefix("sqlite://") {
            let path = if rest.is_empty() { "instore.db" } else { rest };
            StoreKind::Sqlite {
                path: PathBuf::from(path),
            }
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            StoreKind::Postgres
        } else {
            StoreKind::Memory
        }
    }
}

/// Checks a store URL and, for SQLite, makes a relative path relative to `base` (the
/// configuration file's directory; `None`: the working directory, left relative).
pub fn resolve_url(url: &str, base: Option<&Path>) -> Result<String, String> {
    let url = url.trim();
    let scheme = url.split_once(':').map(|(s, _)| s).unwrap_or_default();
    match scheme {
        "memory" => Ok(url.to_owned()),
        "postgres" | "postgresql" if url.contains("://") => Ok(url.to_owned()),
        "sqlite" => {
            let Some(rest) = url.strip_prefix("sqlite://") else {
                return Err(format!(
                    "'{url}' is not a SQLite URL; write sqlite://PATH, like sqlite://instore.db"
                ));
            };
            let path = Path::new(if rest.is_empty() { "instore.db" } else { rest });
            Ok(match base {
                Some(base) if path.is_relative() => {
                    format!("sqlite://{}", base.join(path).display())
                }
                _ => format!("sqlite://{}", path.display()),
            })
        }
        _ => Err(format!(
            "'{url}' is not a store URL; use memory:, sqlite://PATH or postgres://USER@HOST/DATABASE"
        )),
    }
}

/// One named store: its URL, the runtime's settings and the provider's options.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreConfig {
    /// Its name in the configuration.
    pub name: String,
    /// Its URL (a SQLite path from a file is made relative to the file's directory).
    pub url: String,
    /// The runtime's settings (leases, retries, encoding, promotions, retention, queue).
    pub settings: StoreSettings,
    /// SQLite options (`[stores.NAME.sqlite]`), used by `sqlite://` stores.
    pub sqlite: SqliteOptions,
    /// PostgreSQL options (`[stores.NAME.postgres]`; the URL's parameters win), used by
    /// `postgres://` stores.
    pub postgres: PgOptions,
}

impl StoreConfig {
    /// A store with default settings and options.
    pub fn new(name: impl Into<String>, url: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            url: url.into(),
            settings: StoreSettings::default(),
            sqlite: SqliteOptions::default(),
            postgres: PgOptions::default(),
        }
    }

    /// The kind of storage its URL names.
    pub fn kind(&self) -> StoreKind {
        StoreKind::of(&self.url)
    }
}

/// The stores a tool can open (SPEC §13).
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    origin: Origin,
    default: Option<String>,
    stores: BTreeMap<String, StoreConfig>,
    server: ServerConfig,
}

impl Config {
    /// Loads the configuration: the file at `path` if given (it must exist), else
    /// `instore.toml` in the working directory if there is one, else one store named
    /// `default` at `$INSTORE_URL` or [`DEFAULT_URL`].
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let path = match path {
            Some(p) => p.to_path_buf(),
            None if Path::new(CONFIG_FILE).is_file() => PathBuf::from(CONFIG_FILE),
            None => return Config::without_file(std::env::var(URL_ENV).ok().as_deref()),
        };
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        Config::from_toml(&text, &path)
    }

    /// Parses a configuration file's text; `path` is named in errors, and relative SQLite paths
    /// are resolved against its directory.
    pub fn from_toml(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let parsed = file::parse(&file::Source { path, text })?;
        Ok(Config {
            origin: Origin::File(path.to_path_buf()),
            default: parsed.default,
            stores: parsed.stores,
            server: parsed.server,
        })
    }

    /// The configuration without a file: one store named `default` at `url` (the value of
    /// `$INSTORE_URL`; blank or `None`: [`DEFAULT_URL`]), with default settings.
    pub fn without_file(url: Option<&str>) -> Result<Config, ConfigError> {
        let (origin, url) = match url.map(str::trim).filter(|u| !u.is_empty()) {
            Some(u) => (
                Origin::Env,
                resolve_url(u, None).map_err(|problem| ConfigError::Env { problem })?,
            ),
            None => (Origin::BuiltIn, DEFAULT_URL.to_owned()),
        };
        let store = StoreConfig::new(DEFAULT_STORE, url);
        Ok(Config {
            origin,
            default: Some(DEFAULT_STORE.to_owned()),
            stores: BTreeMap::from([(DEFAULT_STORE.to_owned(), store)]),
            server: ServerConfig::default(),
        })
    }

    /// The store named `name`, or the default store.
    pub fn store(&self, name: Option<&str>) -> Result<&StoreConfig, ConfigError> {
        let known = || self.stores.keys().cloned().collect::<Vec<_>>();
        let name = match (name, &self.default) {
            (Some(n), _) => n,
            (None, Some(d)) => d.as_str(),
            (None, None) => {
                return Err(ConfigError::NoDefault {
                    known: known(),
                    origin: self.origin.clone(),
                })
            }
        };
        self.stores
            .get(name)
            .ok_or_else(|| ConfigError::UnknownStore {
                name: name.to_owned(),
                known: known(),
                origin: self.origin.clone(),
            })
    }

    /// Every store, by name.
    pub fn stores(&self) -> impl Iterator<Item = &StoreConfig> {
        self.stores.values()
    }

    /// The default store's name, if the configuration has one.
    pub fn default_name(&self) -> Option<&str> {
        self.default.as_deref()
    }

    /// The `[server]` table: where `instore serve` listens and the tokens it accepts.
    pub fn server(&self) -> &ServerConfig {
        &self.server
    }

    /// Where the configuration came from.
    pub fn origin(&self) -> &Origin {
        &self.origin
    }
}
