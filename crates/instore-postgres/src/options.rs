//! Settings of the PostgreSQL provider, and reading them from a `postgres://` URL.

use std::str::FromStr;
use std::time::Duration;

use instore::StoreError;
use tokio_postgres::config::Host;
use tokio_postgres::Config;

use crate::schema::check_name;

/// Settings of the PostgreSQL provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgOptions {
    /// The schema holding the store (default `instore`); several stores can share a database.
    pub schema: String,
    /// Connections in the pool (default 16).
    pub pool_size: usize,
    /// Apply pending migrations to an existing store with an older schema (default false:
    /// opening it fails and says to migrate). A missing schema is always created.
    pub migrate: bool,
    /// How long to wait for a connection (default 10 s).
    pub connect_timeout: Duration,
}

impl Default for PgOptions {
    fn default() -> Self {
        Self {
            schema: "instore".to_owned(),
            pool_size: 16,
            migrate: false,
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// Splits a `postgres://` URL into the driver's configuration and the provider's options
/// (`?schema=NAME&pool_size=N&migrate=true`), starting from `base`.
pub(crate) fn parse_url(url: &str, base: PgOptions) -> Result<(Config, PgOptions), StoreError> {
    let bad = |what: String| {
        StoreError::invalid(format!(
            "{what} in store URL {url:?}; expected postgres://USER@HOST:PORT/DATABASE?schema=NAME"
        ))
    };
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(bad("not a postgres:// URL".to_owned()));
    }
    let mut options = base;
    let (head, query) = match url.split_once('?') {
        Some((head, query)) => (head, query),
        None => (url, ""),
    };
    let mut passed = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        match name {
            "schema" => {
                check_name(value)?;
                options.schema = value.to_owned();
            }
            "pool_size" => {
                options.pool_size = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=1000).contains(n))
                    .ok_or_else(|| {
                        bad(format!(
                            "pool_size={value:?} is not a number from 1 to 1000"
                        ))
                    })?;
            }
            "migrate" => {
                options.migrate = match value {
                    "true" | "1" | "yes" => true,
                    "false" | "0" | "no" => false,
                    other => return Err(bad(format!("migrate={other:?} is not true or false"))),
                }
            }
            _ => passed.push(pair),
        }
    }
    let driver_url = if passed.is_empty() {
        head.to_owned()
    } else {
        format!("{head}?{}", passed.join("&"))
    };
    let mut config = Config::from_str(&driver_url).map_err(|e| bad(format!("{e}")))?;
    if config.get_hosts().is_empty() {
        config.host("localhost");
    }
    if config.get_user().is_none() {
        config.user("postgres");
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(options.connect_timeout);
    }
    if config.get_application_name().is_none() {
        config.application_name(format!("instore/{}", options.schema));
    }
    Ok((config, options))
}

/// How errors name the server: `HOST:PORT/DATABASE as USER`.
pub(crate) fn describe_server(config: &Config) -> String {
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "localhost".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "{host}:{port}/{} as {}",
        config.get_dbname().unwrap_or("(default database)"),
        config.get_user().unwrap_or("postgres")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_parameters_are_taken_out_and_the_rest_reach_the_driver() {
        let (config, options) = parse_url(
            "postgres://alice@db.example:6543/orders?schema=shop&pool_size=4&migrate=true&connect_timeout=3",
            PgOptions::default(),
        )
        .unwrap();
        assert_eq!(options.schema, "shop");
        assert_eq!(options.pool_size, 4);
        assert!(options.migrate);
        assert_eq!(config.get_connect_timeout(), Some(&Duration::from_secs(3)));
        assert_eq!(describe_server(&config), "db.example:6543/orders as alice");
    }

    #[test]
    fn bad_urls_say_what_is_wrong() {
        for (url, says) in [
            ("mysql://x/y", "not a postgres:// URL"),
            ("postgres://x/y?schema=Bad-Name", "schema name"),
            ("postgres://x/y?pool_size=0", "pool_size"),
            ("postgres://x/y?migrate=maybe", "migrate"),
            ("postgres://x/y?nonsense=1", "nonsense"),
        ] {
            let e = parse_url(url, PgOptions::default())
                .unwrap_err()
                .to_string();
            assert!(e.contains(says), "{url}: {e}");
        }
    }
}
