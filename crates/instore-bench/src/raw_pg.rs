//! The raw PostgreSQL baseline, `raw-pg`: plain tokio-postgres doing what the provider's `save`
//! function does for a save on a held lock, on the same server, at the same connection count,
//! with the same durability (the server's defaults: `synchronous_commit=on`), in a schema of
//! its own (`rawpg_<random>`, dropped at the end) — and nothing else: no encoding, checksum,
//! metadata, keys, answer snapshot or plpgsql.
//!
//! Its tables are shaped like the provider's (`owners`, the narrow `instances` scheduling row,
//! `instance_data` with the blob apart). One save is **one statement, one round trip**, prepared
//! once per connection, in its own implicit transaction (autocommit): in one snapshot it checks
//! the owner's lease and that the row is still locked by the owner at the held version, updates
//! the scheduling row, and updates the data blob — see [`SAVE`]. Zero rows back means the lock
//! or the lease was lost, an error (it never happens here).
//!
//! Each of the N workers owns one connection (the provider's N handles share a pool of N).

use std::sync::Arc;

use instore::Uuid;
use tokio::task::JoinHandle;
use tokio_postgres::{Client, NoTls, Statement};

use crate::driver::{drive, Sample, Worker};
use crate::providers::{fresh_schema, redacted};
use crate::workloads::{payload_bytes, RunCtx};

/// The tables, shaped like the provider's (`{s}` = the schema, quoted).
const SCHEMA: &str = "
create table {s}.owners (
    id uuid primary key,
    host_type text,
    lease_expires_at bigint not null
);
create table {s}.instances (
    id uuid primary key,
    state smallint not null,
    lock_owner uuid,
    last_lock_owner uuid,
    lock_version bigint not null,
    status smallint not null,
    timer bigint,
    ready_at bigint,
    suspended boolean not null default false,
    host_type text,
    bookmarks text[] not null default '{}',
    created_at bigint not null,
    updated_at bigint not null
);
create index instances_ready on {s}.instances (host_type, ready_at)
    where lock_owner is null and ready_at is not null;
create index instances_locked on {s}.instances (lock_owner) where lock_owner is not null;
create table {s}.instance_data (
    id uuid primary key,
    data bytea not null,
    data_encoding smallint not null,
    data_len bigint not null
);
";

/// The server clock in µs, as the provider's `now_us` reads it.
const NOW: &str = "(extract(epoch from clock_timestamp()) * 1000000)::bigint";

/// One save on a held lock: `$1` instance, `$2` owner, `$3` held lock version, `$4` the blob.
/// The lease and lock checks gate the scheduling-row update; the blob update joins on its result.
const SAVE: &str = "
with now as (select {now} as t),
held as (
    update {s}.instances i set updated_at = now.t, state = 2, status = 2, timer = null,
                               bookmarks = '{}'
    from now
    where i.id = $1 and i.lock_owner = $2 and i.lock_version = $3
      and exists (select 1 from {s}.owners o where o.id = $2 and o.lease_expires_at > now.t)
    returning i.id
)
update {s}.instance_data d set data = $4::bytea, data_encoding = 1, data_len = length($4::bytea)
from held where d.id = held.id
returning d.id";

/// The raw store: its schema on the server.
#[derive(Debug)]
pub struct RawPg {
    url: String,
    schema: String,
    owner: Uuid,
    admin: Client,
    admin_driver: JoinHandle<()>,
}

/// The server's message for a database error (the driver's own text is just "db error").
pub(crate) fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!(
            "{} ({}): {}",
            db.message(),
            db.code().code(),
            db.detail().unwrap_or("")
        ),
        None => e.to_string(),
    }
}

pub(crate) async fn connect(url: &str) -> Result<(Client, JoinHandle<()>), String> {
    let mut config: tokio_postgres::Config = url
        .parse()
        .map_err(|e| format!("--pg-url {}: {e}", redacted(url)))?;
    if config.get_application_name().is_none() {
        config.application_name("instore-bench/raw-pg");
    }
    let (client, connection) = config
        .connect(NoTls)
        .await
        .map_err(|e| format!("connecting to {}: {}", redacted(url), describe(&e)))?;
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok((client, driver))
}

impl RawPg {
    /// Creates a fresh schema with its tables and one owner whose lease lasts the run.
    pub async fn open(url: &str) -> Result<Self, String> {
        let (admin, admin_driver) = connect(url).await?;
        let schema = fresh_schema("rawpg");
        let quoted = format!("\"{schema}\"");
        let ddl = format!("create schema {quoted};{}", SCHEMA.replace("{s}", &quoted));
        admin
            .batch_execute(&ddl)
            .await
            .map_err(|e| format!("creating schema {schema}: {}", describe(&e)))?;
        let owner = Uuid::new_v4();
        admin
            .execute(
                &format!(
                    "insert into {quoted}.owners (id, host_type, lease_expires_at) \
                     values ($1, 'bench-save', {NOW} + 3600000000)"
                ),
                &[&owner],
            )
            .await
            .map_err(|e| format!("inserting the owner: {}", describe(&e)))?;
        Ok(Self {
            url: url.to_owned(),
            schema,
            owner,
            admin,
            admin_driver,
        })
    }

    /// Inserts `n` instances locked by the owner (version 1) with `data`, in one transaction.
    async fn seed(&self, n: usize, data: &[u8]) -> Result<Vec<Uuid>, String> {
        let ids: Vec<Uuid> = (0..n).map(|_| Uuid::new_v4()).collect();
        let s = format!("\"{}\"", self.schema);
        self.admin
            .execute(
                &format!(
                    "with ids as (select unnest($1::uuid[]) as id),
                     i as (insert into {s}.instances (id, state, lock_owner, last_lock_owner,
                               lock_version, status, host_type, created_at, updated_at)
                           select id, 2, $2::uuid, $2::uuid, 1, 2, 'bench-save', {NOW}, {NOW}
                           from ids)
                     insert into {s}.instance_data (id, data, data_encoding, data_len)
                     select id, $3::bytea, 1, length($3::bytea) from ids"
                ),
                &[&ids, &self.owner, &data],
            )
            .await
            .map_err(|e| format!("seeding {n} instances: {}", describe(&e)))?;
        Ok(ids)
    }

    /// Drops the schema.
    pub async fn close(self) -> Result<(), String> {
        let result = self
            .admin
            .batch_execute(&format!(
                "drop schema if exists \"{}\" cascade",
                self.schema
            ))
            .await
            .map_err(|e| format!("dropping schema {}: {e}", self.schema));
        drop(self.admin);
        let _ = self.admin_driver.await;
        result
    }
}

struct SaveWorker {
    client: Client,
    _driver: Dropping,
    save: Statement,
    id: Uuid,
    owner: Uuid,
    data: Arc<[u8]>,
}

/// Stops a connection's driver task when its worker goes.
pub(crate) struct Dropping(pub(crate) JoinHandle<()>);

impl Drop for Dropping {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Worker for SaveWorker {
    async fn op(&mut self) -> Result<(), String> {
        let held: i64 = 1;
        let rows = self
            .client
            .query(&self.save, &[&self.id, &self.owner, &held, &&self.data[..]])
            .await
            .map_err(|e| format!("raw save: {}", describe(&e)))?;
        if rows.len() != 1 {
            return Err(format!(
                "raw save of {} changed {} rows: the lock or the lease was lost",
                self.id,
                rows.len()
            ));
        }
        Ok(())
    }
}

/// `save` on `raw-pg`: `handles` connections, each saving its own instance.
pub async fn save(raw: &RawPg, handles: usize, ctx: &RunCtx) -> Result<Sample, String> {
    let first = payload_bytes(ctx.payload_bytes);
    let ids = raw.seed(handles, &first).await?;
    let sql = SAVE
        .replace("{now}", NOW)
        .replace("{s}", &format!("\"{}\"", raw.schema));
    let mut workers = Vec::with_capacity(handles);
    for id in ids {
        let (client, driver) = connect(&raw.url).await?;
        let save = client
            .prepare(&sql)
            .await
            .map_err(|e| format!("preparing the raw save: {}", describe(&e)))?;
        workers.push(SaveWorker {
            client,
            _driver: Dropping(driver),
            save,
            id,
            owner: raw.owner,
            data: payload_bytes(ctx.payload_bytes),
        });
    }
    drive(workers, ctx.budget).await
}
