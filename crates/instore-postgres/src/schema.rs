//! The store's schema: creating it, recognising it, and its embedded, versioned, checksummed
//! migrations (tables and the server-side functions every command calls).
//!
//! A store lives in one PostgreSQL schema (default `instore`), so several stores can share a
//! database. The schema holds an `instore_schema` table with one row per applied migration
//! (version, checksum). Opening takes a transaction-scoped advisory lock first, so hosts starting
//! together create or migrate the schema exactly once.

use instore::{StorageError, StorageErrorKind, StoreError};
use tokio_postgres::Client;

use crate::error_map;

/// The migrations, in order. Never edit one that has shipped: add a new one.
const MIGRATIONS: &[(i32, &str)] = &[
    (1, include_str!("migrations/0001_initial.sql")),
    (2, include_str!("migrations/0002_query_control.sql")),
];

/// The newest schema this build knows.
pub(crate) fn current_version() -> i32 {
    MIGRATIONS.last().map_or(0, |(v, _)| *v)
}

/// A stable checksum of a migration's text (FNV-1a, 64 bits) — of the template, so it does not
/// depend on the schema's name.
fn checksum(sql: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in sql.as_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

fn schema_error(message: String) -> StoreError {
    StoreError::Storage(StorageError::new(StorageErrorKind::Schema, message))
}

/// A schema name: lower-case ASCII letters, digits and `_`, starting with a letter, at most 40
/// characters (it also names the notification channel, which PostgreSQL limits to 63 bytes).
pub(crate) fn check_name(name: &str) -> Result<(), StoreError> {
    let ok = !name.is_empty()
        && name.len() <= 40
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(StoreError::invalid(format!(
            "schema name {name:?}: use 1 to 40 lower-case letters, digits or _, starting with a letter (e.g. ?schema=orders)"
        )))
    }
}

/// The notification channel of the store in `schema`.
pub(crate) fn channel(schema: &str) -> String {
    format!("instore_{schema}")
}

/// A migration's text for `schema`.
fn render(sql: &str, schema: &str) -> String {
    sql.replace("{{s}}", &format!("\"{schema}\""))
        .replace("{{channel}}", &format!("'{}'", channel(schema)))
}

/// What the schema holds now.
#[derive(Debug, PartialEq, Eq)]
enum Found {
    Missing,
    Instore(Vec<(i32, String)>),
    Foreign,
}

async fn inspect(
    client: &impl tokio_postgres::GenericClient,
    schema: &str,
) -> Result<Found, tokio_postgres::Error> {
    let exists = client
        .query_one(
            "select exists (select 1 from pg_namespace where nspname = $1), \
                    to_regclass(quote_ident($1) || '.instore_schema') is not null",
            &[&schema],
        )
        .await?;
    let (schema_exists, table_exists): (bool, bool) = (exists.get(0), exists.get(1));
    if !schema_exists {
        return Ok(Found::Missing);
    }
    if !table_exists {
        let objects: i64 = client
            .query_one(
                "select count(*) from pg_class c join pg_namespace n on n.oid = c.relnamespace \
                 where n.nspname = $1",
                &[&schema],
            )
            .await?
            .get(0);
        return Ok(if objects == 0 {
            Found::Missing
        } else {
            Found::Foreign
        });
    }
    let rows = client
        .query(
            &format!("select version, checksum from \"{schema}\".instore_schema order by version"),
            &[],
        )
        .await?;
    Ok(Found::Instore(
        rows.iter().map(|r| (r.get(0), r.get(1))).collect(),
    ))
}

/// Brings the schema to the current version (creating it if missing), or says why it cannot.
/// `migrate` allows upgrading an existing older schema; a new one is always created.
pub(crate) async fn prepare(
    client: &mut Client,
    schema: &str,
    migrate: bool,
    server: &str,
) -> Result<(), StoreError> {
    let fail = |e: tokio_postgres::Error| {
        let hint = if e.code() == Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE) {
            "; grant the user CREATE on the database (or have its owner run `instore store init`)"
        } else {
            ""
        };
        StoreError::Storage(StorageError::new(
            if error_map::is_transient(&e) {
                StorageErrorKind::Unavailable
            } else {
                StorageErrorKind::Other
            },
            format!(
                "cannot prepare schema {schema:?} on PostgreSQL at {server}: {}{hint}",
                error_map::describe(&e)
            ),
        ))
    };
    // Fast path: already current, no lock needed.
    if let Found::Instore(applied) = inspect(client, schema).await.map_err(fail)? {
        if verify(&applied, schema, server)? == current_version() {
            return Ok(());
        }
    }
    let tx = client.transaction().await.map_err(fail)?;
    tx.execute(
        "select pg_advisory_xact_lock(hashtext('instore schema ' || $1))",
        &[&schema],
    )
    .await
    .map_err(fail)?;
    let applied = match inspect(&tx, schema).await.map_err(fail)? {
        Found::Foreign => {
            return Err(schema_error(format!(
                "schema {schema:?} on {server} holds tables that are not an instore store; nothing \
                 in it was changed. Pick another schema with ?schema=NAME in the URL"
            )))
        }
        Found::Missing => {
            tx.batch_execute(&format!(
                "create schema if not exists \"{schema}\"; \
                 create table \"{schema}\".instore_schema (version int primary key, \
                 checksum text not null, applied_at timestamptz not null default now())"
            ))
            .await
            .map_err(fail)?;
            Vec::new()
        }
        Found::Instore(applied) => {
            let version = verify(&applied, schema, server)?;
            if version > 0 && version < current_version() && !migrate {
                return Err(schema_error(format!(
                    "schema {schema:?} on {server} is at version {version}, this build needs {}; \
                     run `instore store migrate` (or open with ?migrate=true)",
                    current_version()
                )));
            }
            applied
        }
    };
    for (version, sql) in MIGRATIONS {
        if applied.iter().any(|(v, _)| v == version) {
            continue;
        }
        tx.batch_execute(&render(sql, schema)).await.map_err(fail)?;
        tx.execute(
            &format!("insert into \"{schema}\".instore_schema (version, checksum) values ($1, $2)"),
            &[version, &checksum(sql)],
        )
        .await
        .map_err(fail)?;
    }
    tx.commit().await.map_err(fail)
}

/// Checks the applied migrations against this build's; returns the schema's version.
fn verify(applied: &[(i32, String)], schema: &str, server: &str) -> Result<i32, StoreError> {
    let mut version = 0;
    for (v, sum) in applied {
        match MIGRATIONS.iter().find(|(known, _)| known == v) {
            None => {
                return Err(schema_error(format!(
                    "schema {schema:?} on {server} is at version {v}, newer than this build knows \
                     ({}); upgrade instore",
                    current_version()
                )))
            }
            Some((_, sql)) if checksum(sql) != *sum => {
                return Err(schema_error(format!(
                    "schema {schema:?} on {server}: migration {v} was applied from a different \
                     text (checksum {sum}, this build has {}); the schema was changed by hand or \
                     by another build",
                    checksum(sql)
                )))
            }
            Some(_) => version = version.max(*v),
        }
    }
    Ok(version)
}

/// Drops the store's schema and everything in it.
pub(crate) async fn drop_schema(client: &Client, schema: &str) -> Result<(), StoreError> {
    client
        .batch_execute(&format!("drop schema if exists \"{schema}\" cascade"))
        .await
        .map_err(error_map::map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_are_plain_identifiers() {
        for good in ["instore", "orders_2", "a"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "Orders", "1x", "a-b", "a\"b", &"x".repeat(41)] {
            let e = check_name(bad).unwrap_err().to_string();
            assert!(e.contains("schema name"), "{e}");
        }
    }

    #[test]
    fn rendering_names_the_schema_and_its_channel() {
        let sql = render(
            "create table {{s}}.t (); select pg_notify({{channel}}, '')",
            "abc",
        );
        assert_eq!(
            sql,
            "create table \"abc\".t (); select pg_notify('instore_abc', '')"
        );
    }
}
