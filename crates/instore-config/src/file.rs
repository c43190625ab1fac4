//! Reading `instore.toml`: the raw shape of the file (unknown keys rejected), humane durations
//! and sizes, and errors that name the file, the line, the key, what is wrong and what to do.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use instore::{CompletionAction, LockRetry, StoreSettings};
use instore_postgres::PgOptions;
use instore_sqlite::{SqliteOptions, Synchronous};
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use toml::Spanned;

use crate::{ConfigError, StoreConfig};

/// The whole file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    default: Option<Spanned<String>>,
    #[serde(default)]
    stores: BTreeMap<String, Spanned<RawStore>>,
    server: Option<crate::server::RawServer>,
}

/// One `[stores.NAME]` table. Every key but `url` is optional (defaults: `StoreSettings`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    url: Spanned<String>,
    lease: Option<Spanned<Humane>>,
    renew_every: Option<Spanned<Humane>>,
    detection_poll: Option<Spanned<Humane>>,
    auto_recover_owner: Option<Spanned<bool>>,
    lock_retry: Option<Spanned<Retry>>,
    completion: Option<Spanned<Completion>>,
    max_payload_bytes: Option<Spanned<Size>>,
    compress_above_bytes: Option<Spanned<Size>>,
    zstd_level: Option<Spanned<i32>>,
    suspension_extension: Option<Spanned<bool>>,
    promotions: Option<Spanned<Vec<String>>>,
    retention: Option<Spanned<Retention>>,
    queue_lock_time: Option<Spanned<Humane>>,
    queue_max_attempts: Option<Spanned<u32>>,
    queue_batch_size: Option<Spanned<usize>>,
    sqlite: Option<Spanned<RawSqlite>>,
    postgres: Option<Spanned<RawPostgres>>,
}

/// `[stores.NAME.sqlite]`: the SQLite provider's options.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSqlite {
    synchronous: Option<Spanned<Sync>>,
    readers: Option<Spanned<usize>>,
    max_batch: Option<Spanned<usize>>,
}

/// `[stores.NAME.postgres]`: the PostgreSQL provider's options (the URL's `?schema=` and
/// `?pool_size=` win over these).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPostgres {
    schema: Option<Spanned<String>>,
    pool_size: Option<Spanned<usize>>,
    connect_timeout: Option<Spanned<Humane>>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum Completion {
    Keep,
    DeleteAll,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum Retry {
    None,
    Basic,
    Aggressive,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum Sync {
    Off,
    Normal,
    Full,
    Extra,
}

/// A duration written with a unit (`"60s"`, `"5m"`, `"1h 30m"`, `"7d"`), read by humantime.
#[derive(Clone, Copy)]
struct Humane(Duration);

/// `"never"` or a duration.
#[derive(Clone, Copy)]
struct Retention(Option<Duration>);

/// A byte count: an integer, or a string with a unit (`"16MiB"`, `"4 KiB"`, `"10MB"`).
#[derive(Clone, Copy)]
struct Size(usize);

const DURATION_HINT: &str = "write it as a string with a unit, like \"60s\", \"5m\" or \"1h 30m\"";

fn parse_duration<E: de::Error>(v: &str) -> Result<Duration, E> {
    humantime::parse_duration(v.trim())
        .map_err(|e| E::custom(format!("\"{v}\" is not a duration ({e}); {DURATION_HINT}")))
}

struct DurationVisitor;

impl Visitor<'_> for DurationVisitor {
    type Value = Duration;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration with a unit, like \"60s\"")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
        parse_duration(v)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
        Err(E::custom(format!(
            "{v} has no unit; write it as a string with a unit: \"{v}s\" for seconds, or like \"5m\" or \"1h 30m\""
        )))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
        self.visit_i64(i64::try_from(v).unwrap_or(i64::MAX))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Duration, E> {
        Err(E::custom(format!("{v} has no unit; {DURATION_HINT}")))
    }
}

impl<'de> Deserialize<'de> for Humane {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(DurationVisitor).map(Humane)
    }
}

impl<'de> Deserialize<'de> for Retention {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Retention;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("\"never\" or a duration with a unit, like \"7d\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Retention, E> {
                if v.trim().eq_ignore_ascii_case("never") {
                    return Ok(Retention(None));
                }
                humantime::parse_duration(v.trim())
                    .map(|d| Retention(Some(d)))
                    .map_err(|e| {
                        E::custom(format!(
                            "\"{v}\" is not a duration ({e}); write \"never\" to keep completed \
                             instances, or a duration like \"7d\" or \"12h\""
                        ))
                    })
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Retention, E> {
                DurationVisitor.visit_i64(v).map(|d| Retention(Some(d)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Retention, E> {
                DurationVisitor.visit_u64(v).map(|d| Retention(Some(d)))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Size;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a byte count, like 1048576 or \"16MiB\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Size, E> {
                usize::try_from(v).map(Size).map_err(|_| {
                    E::custom(format!("{v} is not a byte count; write a positive number"))
                })
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Size, E> {
                self.visit_i64(i64::try_from(v).unwrap_or(-1))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Size, E> {
                parse_size(v).map(Size).ok_or_else(|| {
                    E::custom(format!(
                        "\"{v}\" is not a size; write a number of bytes, or one with a unit \
                         (B, KB, KiB, MB, MiB, GB, GiB), like \"16MiB\""
                    ))
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// `"16MiB"`, `"4 KiB"`, `"10MB"`, `"512"`.
fn parse_size(text: &str) -> Option<usize> {
    let s = text.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: usize = digits.parse().ok()?;
    let factor: usize = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1000,
        "kib" => 1 << 10,
        "mb" => 1_000_000,
        "mib" => 1 << 20,
        "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(factor)
}

/// Where the text came from, for messages and for resolving relative SQLite paths.
pub(crate) struct Source<'a> {
    pub(crate) path: &'a Path,
    pub(crate) text: &'a str,
}

impl Source<'_> {
    /// An error at `span`, naming `key`.
    pub(crate) fn error(
        &self,
        span: Range<usize>,
        key: impl Into<String>,
        problem: impl Into<String>,
    ) -> ConfigError {
        let (line, column) = line_column(self.text, span.start);
        ConfigError::File {
            path: self.path.to_path_buf(),
            line,
            column,
            key: key.into(),
            problem: problem.into(),
        }
    }

    /// 1-based line and column of a byte offset.
    pub(crate) fn line_column(&self, offset: usize) -> (usize, usize) {
        line_column(self.text, offset)
    }

    /// A parse or type error from the `toml` crate, with the key found from its span.
    fn toml_error(&self, e: &toml::de::Error) -> ConfigError {
        let span = e.span().unwrap_or(0..0);
        let key = key_at(self.text, span.start);
        let message = e.message().trim_end().trim_end_matches('.').to_owned();
        let problem = match hint(&message) {
            Some(h) => format!("{message}; {h}"),
            None => message,
        };
        self.error(span, key, problem)
    }

    /// The directory relative SQLite paths are resolved against (`None`: the file is in the
    /// working directory, so they stay as written).
    fn base_dir(&self) -> Option<&Path> {
        self.path.parent().filter(|p| !p.as_os_str().is_empty())
    }
}

/// What to do about the `toml` crate's usual complaints.
fn hint(message: &str) -> Option<&'static str> {
    if message.starts_with("unknown field") {
        Some("remove the key or correct its spelling")
    } else if message.starts_with("unknown variant") {
        Some("use one of the values listed")
    } else if message.starts_with("missing field") {
        Some("add it")
    } else if message.starts_with("invalid type") {
        Some("change the value to the expected type")
    } else {
        None
    }
}

/// 1-based line and column of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// The dotted key at a byte offset: the table header above it plus the key on its line (or the
/// header itself when the offset is on a header line).
fn key_at(text: &str, offset: usize) -> String {
    let offset = offset.min(text.len());
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[offset..].find('\n').map_or(text.len(), |i| offset + i);
    let line = text[line_start..line_end].trim();
    let header = |l: &str| -> Option<String> {
        let l = l.trim();
        l.starts_with('[')
            .then(|| l.trim_matches(|c| c == '[' || c == ']').trim().to_owned())
    };
    if let Some(h) = header(line) {
        return h;
    }
    let table = text[..line_start].lines().rev().find_map(header);
    let key = line
        .split_once('=')
        .map(|(k, _)| k.trim().trim_matches('"').to_owned())
        .filter(|k| !k.is_empty());
    match (table, key) {
        (Some(t), Some(k)) => format!("{t}.{k}"),
        (None, Some(k)) => k,
        (Some(t), None) => t,
        (None, None) => "(top level)".to_owned(),
    }
}

/// What a parsed file holds: its stores and the default store's name (if it can be told).
pub(crate) struct Parsed {
    pub(crate) default: Option<String>,
    pub(crate) stores: BTreeMap<String, StoreConfig>,
    pub(crate) server: crate::ServerConfig,
}

/// Parses and checks a whole file.
pub(crate) fn parse(source: &Source<'_>) -> Result<Parsed, ConfigError> {
    let raw: RawFile = toml::from_str(source.text).map_err(|e| source.toml_error(&e))?;
    if raw.stores.is_empty() {
        return Err(source.error(
            0..0,
            "stores",
            "the file defines no store; add one, like [stores.main] with url = \"sqlite://instore.db\"",
        ));
    }
    let mut stores = BTreeMap::new();
    for (name, table) in raw.stores {
        let span = table.span();
        let store = build_store(source, &name, span, table.into_inner())?;
        stores.insert(name, store);
    }
    let names = || stores.keys().cloned().collect::<Vec<_>>().join(", ");
    let default = match raw.default {
        Some(d) if stores.contains_key(d.get_ref()) => Some(d.into_inner()),
        Some(d) => {
            return Err(source.error(
                d.span(),
                "default",
                format!(
                    "names store '{}', which the file does not define; name one of: {}",
                    d.get_ref(),
                    names()
                ),
            ))
        }
        None if stores.len() == 1 => stores.keys().next().cloned(),
        None if stores.contains_key(crate::DEFAULT_STORE) => Some(crate::DEFAULT_STORE.to_owned()),
        None => None,
    };
    let server = match raw.server {
        Some(server) => crate::server::build(source, server)?,
        None => crate::ServerConfig::default(),
    };
    Ok(Parsed {
        default,
        stores,
        server,
    })
}

fn build_store(
    source: &Source<'_>,
    name: &str,
    table_span: Range<usize>,
    raw: RawStore,
) -> Result<StoreConfig, ConfigError> {
    let key = |field: &str| format!("stores.{name}.{field}");
    let url = crate::resolve_url(raw.url.get_ref(), source.base_dir())
        .map_err(|problem| source.error(raw.url.span(), key("url"), problem))?;

    let d = StoreSettings::default();
    let dur = |v: &Option<Spanned<Humane>>, default: Duration| {
        v.as_ref().map_or(default, |s| s.get_ref().0)
    };
    let settings = StoreSettings {
        lease: dur(&raw.lease, d.lease),
        renew_every: dur(&raw.renew_every, d.renew_every),
        detection_poll: dur(&raw.detection_poll, d.detection_poll),
        auto_recover_owner: raw
            .auto_recover_owner
            .as_ref()
            .map_or(d.auto_recover_owner, |s| *s.get_ref()),
        lock_retry: raw
            .lock_retry
            .as_ref()
            .map_or(d.lock_retry, |s| match s.get_ref() {
                Retry::None => LockRetry::NoRetry,
                Retry::Basic => LockRetry::BasicRetry,
                Retry::Aggressive => LockRetry::AggressiveRetry,
            }),
        completion: raw
            .completion
            .as_ref()
            .map_or(d.completion, |s| match s.get_ref() {
                Completion::Keep => CompletionAction::Keep,
                Completion::DeleteAll => CompletionAction::DeleteAll,
            }),
        max_payload_bytes: raw
            .max_payload_bytes
            .as_ref()
            .map_or(d.max_payload_bytes, |s| s.get_ref().0),
        encoding: instore::EncodingSettings {
            compress_above_bytes: raw
                .compress_above_bytes
                .as_ref()
                .map_or(d.encoding.compress_above_bytes, |s| s.get_ref().0),
            zstd_level: raw
                .zstd_level
                .as_ref()
                .map_or(d.encoding.zstd_level, |s| *s.get_ref()),
        },
        suspension_extension: raw
            .suspension_extension
            .as_ref()
            .map_or(d.suspension_extension, |s| *s.get_ref()),
        promotions: raw
            .promotions
            .as_ref()
            .map_or(d.promotions.clone(), |s| s.get_ref().clone()),
        retention: raw
            .retention
            .as_ref()
            .map_or(d.retention, |s| s.get_ref().0),
        queue: instore::QueueSettings {
            lock_time: dur(&raw.queue_lock_time, d.queue.lock_time),
            max_attempts: raw
                .queue_max_attempts
                .as_ref()
                .map_or(d.queue.max_attempts, |s| *s.get_ref()),
            batch_size: raw
                .queue_batch_size
                .as_ref()
                .map_or(d.queue.batch_size, |s| *s.get_ref()),
        },
    };
    if let Some(level) = &raw.zstd_level {
        if !(1..=22).contains(level.get_ref()) {
            return Err(source.error(
                level.span(),
                key("zstd_level"),
                format!(
                    "{} is out of range; zstd levels go from 1 (fast) to 22 (small)",
                    level.get_ref()
                ),
            ));
        }
    }
    if let Err(e) = settings.validate() {
        // The core's message names the setting in quotes ('renew_every'); point at the first
        // named key the file sets, else at the store's table.
        let message = e.to_string();
        let message = message
            .strip_prefix("invalid: ")
            .unwrap_or(&message)
            .to_owned();
        let named = message
            .split('\'')
            .skip(1)
            .step_by(2)
            .find_map(|k| raw.span_of(k).map(|s| (k.to_owned(), s)));
        let (field, span) = named.unwrap_or_else(|| (String::new(), table_span.clone()));
        let key = if field.is_empty() {
            format!("stores.{name}")
        } else {
            key(&field)
        };
        return Err(source.error(span, key, message));
    }

    let kind = crate::StoreKind::of(&url);
    let mut sqlite = SqliteOptions::default();
    if let Some(table) = &raw.sqlite {
        if !matches!(kind, crate::StoreKind::Sqlite { .. }) {
            return Err(source.error(
                table.span(),
                key("sqlite"),
                format!("SQLite options, but the store's URL is {url}; remove the table or point url at sqlite://PATH"),
            ));
        }
        let t = table.get_ref();
        if let Some(s) = &t.synchronous {
            sqlite.synchronous = match s.get_ref() {
                Sync::Off => Synchronous::Off,
                Sync::Normal => Synchronous::Normal,
                Sync::Full => Synchronous::Full,
                Sync::Extra => Synchronous::Extra,
            };
        }
        for (field, value, target) in [
            ("readers", &t.readers, &mut sqlite.readers),
            ("max_batch", &t.max_batch, &mut sqlite.max_batch),
        ] {
            if let Some(v) = value {
                if !(1..=10_000).contains(v.get_ref()) {
                    return Err(source.error(
                        v.span(),
                        key(&format!("sqlite.{field}")),
                        format!("{} is out of range; use 1 to 10000", v.get_ref()),
                    ));
                }
                *target = *v.get_ref();
            }
        }
    }
    let mut postgres = PgOptions::default();
    if let Some(table) = &raw.postgres {
        if kind != crate::StoreKind::Postgres {
            return Err(source.error(
                table.span(),
                key("postgres"),
                format!("PostgreSQL options, but the store's URL is {url}; remove the table or point url at postgres://…"),
            ));
        }
        let t = table.get_ref();
        if let Some(s) = &t.schema {
            if s.get_ref().is_empty() {
                return Err(source.error(
                    s.span(),
                    key("postgres.schema"),
                    "is empty; name a schema, like \"instore\"",
                ));
            }
            postgres.schema = s.get_ref().clone();
        }
        if let Some(p) = &t.pool_size {
            if !(1..=1000).contains(p.get_ref()) {
                return Err(source.error(
                    p.span(),
                    key("postgres.pool_size"),
                    format!("{} is out of range; use 1 to 1000 connections", p.get_ref()),
                ));
            }
            postgres.pool_size = *p.get_ref();
        }
        if let Some(c) = &t.connect_timeout {
            postgres.connect_timeout = c.get_ref().0;
        }
    }
    Ok(StoreConfig {
        name: name.to_owned(),
        url,
        settings,
        sqlite,
        postgres,
    })
}

impl RawStore {
    /// Where the file sets `key` (a `StoreSettings` name), if it does.
    fn span_of(&self, key: &str) -> Option<Range<usize>> {
        fn s<T>(v: &Option<Spanned<T>>) -> Option<Range<usize>> {
            v.as_ref().map(Spanned::span)
        }
        match key {
            "url" => Some(self.url.span()),
            "lease" => s(&self.lease),
            "renew_every" => s(&self.renew_every),
            "detection_poll" => s(&self.detection_poll),
            "max_payload_bytes" => s(&self.max_payload_bytes),
            "promotions" => s(&self.promotions),
            "retention" => s(&self.retention),
            "queue_lock_time" => s(&self.queue_lock_time),
            "queue_max_attempts" => s(&self.queue_max_attempts),
            "queue_batch_size" => s(&self.queue_batch_size),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_units() {
        assert_eq!(parse_size("16MiB"), Some(16 << 20));
        assert_eq!(parse_size("4 KiB"), Some(4096));
        assert_eq!(parse_size("10MB"), Some(10_000_000));
        assert_eq!(parse_size("512"), Some(512));
        assert_eq!(parse_size("12 parsecs"), None);
        assert_eq!(parse_size("MiB"), None);
    }

    #[test]
    fn keys_are_found_from_offsets() {
        let text = "default = \"a\"\n[stores.a]\nurl = \"memory:\"\nlease = 5\n";
        assert_eq!(key_at(text, 3), "default");
        assert_eq!(key_at(text, text.find("[stores").unwrap() + 2), "stores.a");
        assert_eq!(key_at(text, text.find("5").unwrap()), "stores.a.lease");
        assert_eq!(line_column(text, text.find("5").unwrap()), (4, 9));
    }
}
