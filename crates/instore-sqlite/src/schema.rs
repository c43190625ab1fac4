//! The database file: recognising it, creating it, and its embedded, versioned, checksummed
//! migrations.
//!
//! An instore database carries `PRAGMA application_id = 0x696e7374` ("inst") and a
//! `instore_schema` table with one row per applied migration (version, checksum). Opening
//! inspects the file read-only first, so a file that is not an instore database, or was written
//! by a newer instore, is refused without a single byte changed.

use std::path::Path;

use instore::{StorageError, StorageErrorKind, StoreError};
use rusqlite::{Connection, OpenFlags};

use crate::error_map::OrStorage;

/// `PRAGMA application_id` of instore databases: "inst".
pub(crate) const APPLICATION_ID: i32 = 0x696e_7374;

/// The migrations, in order. Never edit one that has shipped: add a new one.
pub(crate) const MIGRATIONS: &[(u32, &str)] = &[
    (1, include_str!("migrations/0001_initial.sql")),
    (2, include_str!("migrations/0002_query_and_control.sql")),
];

/// The newest schema this build knows.
pub(crate) fn current_version() -> u32 {
    MIGRATIONS.last().map_or(0, |(v, _)| *v)
}

/// A stable checksum of a migration's text (FNV-1a, 64 bits), recorded when it is applied.
pub(crate) fn checksum(sql: &str) -> String {
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

/// What an existing file is.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Found {
    /// Missing or empty: a new database can be created.
    Empty,
    /// An instore database at this schema version.
    Instore { version: u32 },
}

/// Looks at the file without changing it.
pub(crate) fn inspect(path: &Path) -> Result<Found, StoreError> {
    let shown = path.display();
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Found::Empty),
        Err(e) => {
            return Err(schema_error(format!(
                "cannot read {shown}: {e}; check the path and its permissions"
            )))
        }
        Ok(m) if m.is_dir() => {
            return Err(schema_error(format!(
                "{shown} is a directory; point the store at a file such as {shown}/instore.db"
            )))
        }
        Ok(m) if m.len() == 0 => return Ok(Found::Empty),
        Ok(_) => {}
    }
    let not_instore = |why: &str| {
        schema_error(format!(
            "{shown} is not an instore database ({why}); nothing in it was changed. \
             Point the store at another file, or move this one away"
        ))
    };
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .or_storage()?;
    let app_id: i32 = match conn.query_row("pragma application_id", [], |r| r.get(0)) {
        Ok(id) => id,
        Err(_) => return Err(not_instore("it is not a SQLite database")),
    };
    let tables: i64 = conn
        .query_row(
            "select count(*) from sqlite_master where type = 'table'",
            [],
            |r| r.get(0),
        )
        .map_err(|_| not_instore("it is not a SQLite database"))?;
    if app_id == 0 && tables == 0 {
        return Ok(Found::Empty);
    }
    if app_id != APPLICATION_ID {
        return Err(not_instore(
            "it is a SQLite database of another application",
        ));
    }
    let applied: Vec<(u32, String)> = {
        let mut stmt = conn
            .prepare("select version, checksum from instore_schema order by version")
            .map_err(|_| not_instore("it has no instore_schema table"))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, u32>(0)?, r.get::<_, String>(1)?)))
            .or_storage()?;
        rows.collect::<Result<_, _>>().or_storage()?
    };
    let version = applied.last().map_or(0, |(v, _)| *v);
    if version > current_version() {
        return Err(schema_error(format!(
            "{shown} was written by a newer instore (schema version {version}; this build knows up to {}); \
             nothing in it was changed. Upgrade instore to open it",
            current_version()
        )));
    }
    for (v, sum) in &applied {
        let known = MIGRATIONS.iter().find(|(mv, _)| mv == v);
        if known.map(|(_, sql)| checksum(sql)) != Some(sum.clone()) {
            return Err(schema_error(format!(
                "{shown}: migration {v} does not match this build's (checksum {sum}); the file was written by a \
                 different instore build. Nothing was changed"
            )));
        }
    }
    Ok(Found::Instore { version })
}

/// Applies the migrations after `from` in one transaction.
pub(crate) fn migrate(conn: &mut Connection, from: u32, now_micros: i64) -> Result<(), StoreError> {
    let tx = conn.transaction().or_storage()?;
    if from == 0 {
        tx.execute_batch(&format!(
            "pragma application_id = {APPLICATION_ID};
             create table instore_schema (version integer primary key, checksum text not null, applied_at integer not null);"
        ))
        .or_storage()?;
    }
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > from) {
        tx.execute_batch(sql).or_storage()?;
        tx.execute(
            "insert into instore_schema (version, checksum, applied_at) values (?1, ?2, ?3)",
            rusqlite::params![version, checksum(sql), now_micros],
        )
        .or_storage()?;
    }
    tx.commit().or_storage()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_are_stable() {
        assert_eq!(
            checksum("create table x (a);"),
            checksum("create table x (a);")
        );
        assert_ne!(
            checksum("create table x (a);"),
            checksum("create table x (b);")
        );
    }
}
