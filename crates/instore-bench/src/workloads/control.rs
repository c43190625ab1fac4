//! `control`: the control queue end to end. `--control-commands` / 2 instances exist (saved and
//! released by a host, not measured); operators enqueue `Suspend` for each of them, and as soon
//! as an instance's `Suspend` has been executed, `Resume` for it — `--control-commands`
//! (10,000) commands in all — while a [`ManagementService`] (default settings: batches of 10,
//! 64 in flight, each command a `Load` and a `Save` at the store level, then `complete`) drains
//! the queue. Measured: commands per second from the first enqueue to the last command
//! executed, and each command's latency from the start of its enqueue call to the moment the
//! service's `complete` for it returned (seen through a wrapper around the control provider).
//!
//! Enqueuers: `--control-enqueuers` (16) tasks, all at once (`--control-rate 0`, default: the
//! `Suspend`s are all queued at the start, so the latency is mostly time spent waiting in the
//! queue) or paced at `--control-rate` `Suspend`s per second.
//!
//! Baselines — a raw queue on the same storage, one row per command, consumed in batches of 10
//! with the equivalent update (suspended flag and reason, change time) and the delete in one
//! transaction:
//! - `raw-sqlite`: one connection on one thread (SQLite has one writer), alternating between
//!   committing the waiting enqueues (up to 64 per transaction) and one batch of 10;
//! - `raw-pg`: 16 connections enqueueing (one `insert` each, autocommit), 4 consumers each
//!   running one statement per batch: `delete … where position in (select … order by position
//!   limit 10 for update skip locked) returning …` feeding the `update`.

use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use instore::{
    CommandFailure, ControlCommand, ControlProvider, ErrorLogEntry, InstanceFilter, InstanceId,
    InstanceStatus, InstanceStore, QueueEntry, QueueSettings, QueuedCommand, Save, StoreError,
    Uuid,
};
use instore_management::ManagementService;
use rusqlite::{params, Connection};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{cmd_err, create_owner, RunCtx, COMMAND_TIMEOUT};
use crate::baseline::apply_pragmas;
use crate::driver::{new_histogram, record, Sample};
use crate::providers::Place;
use crate::Synchronous;

/// The target on SQLite: commands executed per second, end to end.
pub const SQLITE_TARGET: f64 = 2_000.0;

/// The workload's settings.
#[derive(Debug, Clone, Copy)]
pub struct ControlSettings {
    /// Commands in all (half `Suspend`, half `Resume`).
    pub commands: usize,
    /// Concurrent enqueuers.
    pub enqueuers: usize,
    /// `Suspend`s enqueued per second; `None`: all at once.
    pub rate: Option<f64>,
    /// Give up after this long.
    pub timeout: Duration,
}

impl ControlSettings {
    fn instances(&self) -> usize {
        (self.commands / 2).max(1)
    }
}

/// What a finished command reports: its instance, or why the consumer failed.
type Done = Result<Uuid, String>;

/// Enqueues a command for the workload.
pub trait Enqueuer: Clone + Send + Sync + 'static {
    /// Enqueues `Suspend` (`suspend`) or `Resume` for `id`; returns once it is stored.
    fn enqueue(&self, id: Uuid, suspend: bool) -> impl Future<Output = Result<(), String>> + Send;
}

fn command(suspend: bool) -> ControlCommand {
    if suspend {
        ControlCommand::Suspend {
            reason: "bench".to_owned(),
        }
    } else {
        ControlCommand::Resume
    }
}

/// Feeds the `Suspend`s, re-enqueues each executed one as `Resume`, and measures.
async fn drive_queue<E: Enqueuer>(
    ids: Vec<Uuid>,
    enqueuer: E,
    mut done: mpsc::UnboundedReceiver<Done>,
    settings: &ControlSettings,
) -> Result<Sample, String> {
    let total = ids.len() * 2;
    let started: Arc<Mutex<HashMap<Uuid, (Instant, bool)>>> =
        Arc::new(Mutex::new(HashMap::with_capacity(ids.len())));
    let enqueue_hist = Arc::new(Mutex::new(new_histogram()));
    let (jobs, jobs_rx) = mpsc::unbounded_channel::<(Uuid, bool)>();
    let jobs_rx = Arc::new(tokio::sync::Mutex::new(jobs_rx));
    let t0 = Instant::now();
    let mut enqueuers = JoinSet::new();
    for _ in 0..settings.enqueuers.max(1) {
        let (jobs_rx, started, enqueuer, enqueue_hist) = (
            jobs_rx.clone(),
            started.clone(),
            enqueuer.clone(),
            enqueue_hist.clone(),
        );
        enqueuers.spawn(async move {
            loop {
                let job = jobs_rx.lock().await.recv().await;
                let Some((id, suspend)) = job else {
                    return Ok::<(), String>(());
                };
                let t = Instant::now();
                started
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(id, (t, suspend));
                enqueuer.enqueue(id, suspend).await?;
                record(
                    &mut enqueue_hist.lock().unwrap_or_else(|p| p.into_inner()),
                    t.elapsed(),
                );
            }
        });
    }
    let feeder = {
        let jobs = jobs.clone();
        let rate = settings.rate;
        tokio::spawn(async move {
            match rate {
                None => {
                    for id in ids {
                        let _ = jobs.send((id, true));
                    }
                }
                Some(rate) => {
                    let every = Duration::from_secs_f64(1.0 / rate.max(0.001));
                    let start = tokio::time::Instant::now();
                    for (n, id) in ids.into_iter().enumerate() {
                        tokio::time::sleep_until(start + every.mul_f64(n as f64)).await;
                        let _ = jobs.send((id, true));
                    }
                }
            }
        })
    };
    let deadline = tokio::time::Instant::now() + settings.timeout;
    let mut hist = new_histogram();
    let mut seen = 0usize;
    let mut last = t0;
    let outcome = loop {
        if seen == total {
            break Ok(());
        }
        tokio::select! {
            got = done.recv() => {
                let id = match got {
                    Some(Ok(id)) => id,
                    Some(Err(e)) => break Err(e),
                    None => break Err("the consumer stopped reporting".to_owned()),
                };
                let now = Instant::now();
                let entry = started.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
                let Some((start, suspend)) = entry else {
                    continue; // not one of ours (never happens), or reported twice
                };
                record(&mut hist, now - start);
                seen += 1;
                last = now;
                if suspend {
                    let _ = jobs.send((id, false));
                }
            }
            Some(ended) = enqueuers.join_next(), if !enqueuers.is_empty() => {
                match ended {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => break Err(format!("enqueue: {e}")),
                    Err(e) => break Err(format!("an enqueuer failed: {e}")),
                }
            }
            () = tokio::time::sleep_until(deadline) => {
                break Err(format!(
                    "timed out after {:?}: {seen} of {total} commands executed",
                    settings.timeout
                ));
            }
        }
    };
    drop(jobs);
    feeder.abort();
    enqueuers.abort_all();
    while enqueuers.join_next().await.is_some() {}
    outcome?;
    let enqueue_hist = enqueue_hist
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let q = |h: &Histogram<u64>, p: f64| i64::try_from(h.value_at_quantile(p)).unwrap_or(i64::MAX);
    Ok(Sample {
        ops: total as u64,
        elapsed: Some(last - t0),
        extras: vec![
            ("enqueue p50", q(&enqueue_hist, 0.5)),
            ("enqueue p99", q(&enqueue_hist, 0.99)),
        ],
        hist,
        note: None,
    })
}

/// The control provider the service uses, reporting each command it completes, and timing its
/// reads and completions.
#[derive(Debug)]
struct Observed {
    inner: Arc<dyn ControlProvider>,
    done: mpsc::UnboundedSender<Done>,
    calls: Mutex<Calls>,
}

/// What the service asked of the queue.
#[derive(Debug)]
struct Calls {
    reads: u64,
    read: u64,
    read_time: Histogram<u64>,
    complete_time: Histogram<u64>,
}

impl Default for Calls {
    fn default() -> Self {
        Self {
            reads: 0,
            read: 0,
            read_time: new_histogram(),
            complete_time: new_histogram(),
        }
    }
}

impl Observed {
    fn calls(&self) -> std::sync::MutexGuard<'_, Calls> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait::async_trait]
impl ControlProvider for Observed {
    async fn enqueue(
        &self,
        instance: InstanceId,
        command: ControlCommand,
    ) -> Result<(), StoreError> {
        self.inner.enqueue(instance, command).await
    }

    async fn delete(&self, instance: InstanceId) -> Result<(), StoreError> {
        self.inner.delete(instance).await
    }

    async fn read_batch(
        &self,
        settings: &QueueSettings,
        machine: &str,
    ) -> Result<Vec<QueuedCommand>, StoreError> {
        let t = Instant::now();
        let batch = self.inner.read_batch(settings, machine).await?;
        let mut calls = self.calls();
        record(&mut calls.read_time, t.elapsed());
        if !batch.is_empty() {
            calls.reads += 1;
            calls.read += batch.len() as u64;
        }
        Ok(batch)
    }

    async fn complete(&self, instance: InstanceId, lock: Uuid) -> Result<(), StoreError> {
        let t = Instant::now();
        self.inner.complete(instance, lock).await?;
        record(&mut self.calls().complete_time, t.elapsed());
        let _ = self.done.send(Ok(instance.as_uuid()));
        Ok(())
    }

    async fn abandon(
        &self,
        instance: InstanceId,
        lock: Uuid,
        failure: CommandFailure,
        settings: &QueueSettings,
    ) -> Result<(), StoreError> {
        self.inner.abandon(instance, lock, failure, settings).await
    }

    async fn queued(&self, after: Option<u64>, max: usize) -> Result<Vec<QueueEntry>, StoreError> {
        self.inner.queued(after, max).await
    }

    async fn error_log(&self, max: usize) -> Result<Vec<ErrorLogEntry>, StoreError> {
        self.inner.error_log(max).await
    }
}

#[derive(Clone)]
struct ProviderEnqueuer {
    control: Arc<dyn ControlProvider>,
    nudge: instore_management::Nudge,
}

impl Enqueuer for ProviderEnqueuer {
    async fn enqueue(&self, id: Uuid, suspend: bool) -> Result<(), String> {
        self.control
            .enqueue(InstanceId::from_uuid(id), command(suspend))
            .await
            .map_err(|e| format!("enqueue {}: {e}", command(suspend).name()))?;
        self.nudge.nudge();
        Ok(())
    }
}

/// Creates `n` instances, saved with a small state and released (16 creators).
async fn create_instances(store: &InstanceStore, n: usize) -> Result<Vec<Uuid>, String> {
    let owner = create_owner(store, "bench-control").await?;
    let ids: Arc<Vec<Uuid>> = Arc::new((0..n).map(|_| Uuid::new_v4()).collect());
    let next = Arc::new(AtomicUsize::new(0));
    let mut creators = JoinSet::new();
    for _ in 0..16.min(n) {
        let (store, ids, next) = (store.clone(), ids.clone(), next.clone());
        creators.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(id) = ids.get(i) else {
                    return Ok::<(), String>(());
                };
                let handle = store.create_handle_for(Some(owner), Some(InstanceId::from_uuid(*id)));
                let save =
                    Save::data(instore::bag([("step", 1i64), ("amount", 420i64)])).and_unlock();
                store
                    .execute(&handle, save, COMMAND_TIMEOUT)
                    .await
                    .map_err(cmd_err("Save (setup)"))?;
            }
        });
    }
    while let Some(r) = creators.join_next().await {
        r.map_err(|e| format!("creator failed: {e}"))??;
    }
    // A clean stop of the host: its owner goes, its instances stay released.
    let handle = store.create_handle_for(Some(owner), None);
    store
        .execute(&handle, instore::Command::DeleteOwner, COMMAND_TIMEOUT)
        .await
        .map_err(cmd_err("DeleteOwner"))?;
    Ok(Arc::try_unwrap(ids).unwrap_or_else(|a| (*a).clone()))
}

/// `control` on a provider.
pub async fn provider(place: &Place, ctx: &RunCtx) -> Result<Sample, String> {
    let settings = ctx.control;
    let providers = place.providers(None, false).await?;
    let host = InstanceStore::builder(providers.persistence.clone())
        .machine("bench-host")
        .build()
        .map_err(|e| format!("building the host store: {e}"))?;
    let ids = create_instances(&host, settings.instances()).await;
    host.shutdown().await;
    let ids = ids?;

    let service_store = InstanceStore::builder(providers.persistence.clone())
        .machine("bench-management")
        .build()
        .map_err(|e| format!("building the service's store: {e}"))?;
    let (done, done_rx) = mpsc::unbounded_channel();
    let observed = Arc::new(Observed {
        inner: providers.control.clone(),
        done,
        calls: Mutex::new(Calls::default()),
    });
    let service = ManagementService::builder(service_store.clone(), observed.clone())
        .build()
        .map_err(|e| format!("building the management service: {e}"))?;
    let nudge = service.nudge();
    let stats = service.stats();
    let stop = CancellationToken::new();
    let running = tokio::spawn(service.run(stop.clone()));
    let enqueuer = ProviderEnqueuer {
        control: providers.control.clone(),
        nudge,
    };
    let result = drive_queue(ids, enqueuer, done_rx, &settings).await;
    stop.cancel();
    let _ = running.await;
    service_store.shutdown().await;
    let mut sample = result?;
    let still_suspended = providers
        .query
        .count(&InstanceFilter {
            status: vec![InstanceStatus::Suspended],
            ..InstanceFilter::default()
        })
        .await
        .map_err(|e| format!("count after the run: {e}"))?;
    let s = stats.snapshot();
    {
        let calls = observed.calls();
        let q =
            |h: &Histogram<u64>, p: f64| i64::try_from(h.value_at_quantile(p)).unwrap_or(i64::MAX);
        sample
            .extras
            .push(("read_batch p50", q(&calls.read_time, 0.5)));
        sample
            .extras
            .push(("complete p50", q(&calls.complete_time, 0.5)));
        // Commands per non-empty read (a count in thousandths: see `report::fmt_extra`).
        if let Some(per_read) = (calls.read * 1000).checked_div(calls.reads) {
            sample
                .extras
                .push(("commands per read‰", i64::try_from(per_read).unwrap_or(0)));
        }
    }
    let mut notes = Vec::new();
    if s.failed > 0 || s.lock_lost > 0 {
        notes.push(format!(
            "{} failed executions (retried), {} lock lost",
            s.failed, s.lock_lost
        ));
    }
    if still_suspended > 0 {
        notes.push(format!(
            "{still_suspended} instances still suspended at the end"
        ));
    }
    sample.note = (!notes.is_empty()).then(|| notes.join("; "));
    Ok(sample)
}

// ---------------------------------------------------------------------------------------------
// raw-sqlite

struct EnqueueRequest {
    id: Uuid,
    suspend: bool,
    answer: tokio::sync::oneshot::Sender<Result<(), String>>,
}

#[derive(Clone)]
struct SqliteEnqueuer {
    tx: mpsc::UnboundedSender<EnqueueRequest>,
}

impl Enqueuer for SqliteEnqueuer {
    async fn enqueue(&self, id: Uuid, suspend: bool) -> Result<(), String> {
        let (answer, reply) = tokio::sync::oneshot::channel();
        self.tx
            .send(EnqueueRequest {
                id,
                suspend,
                answer,
            })
            .map_err(|_| "the raw queue thread stopped".to_owned())?;
        reply
            .await
            .map_err(|_| "the raw queue thread dropped a request".to_owned())?
    }
}

const RAW_SQLITE_SCHEMA: &str = "
CREATE TABLE instances (
    id                BLOB PRIMARY KEY NOT NULL,
    state             INTEGER NOT NULL,
    suspended         INTEGER NOT NULL DEFAULT 0,
    suspension_reason TEXT,
    updated_at        INTEGER NOT NULL,
    data              BLOB NOT NULL
);
CREATE TABLE queue (
    position    INTEGER PRIMARY KEY,
    instance    BLOB NOT NULL UNIQUE,
    command     INTEGER NOT NULL,
    reason      TEXT,
    enqueued_at INTEGER NOT NULL
);
";

fn now_us() -> i64 {
    instore::Clock::now(&instore::SystemClock).as_micros()
}

/// `control` on `raw-sqlite`, in the file `db`.
pub async fn raw_sqlite(db: &Path, sync: Synchronous, ctx: &RunCtx) -> Result<Sample, String> {
    let settings = ctx.control;
    let conn = Connection::open(db).map_err(|e| format!("opening {}: {e}", db.display()))?;
    apply_pragmas(&conn, sync).map_err(|e| format!("pragmas: {e}"))?;
    conn.execute_batch(RAW_SQLITE_SCHEMA)
        .map_err(|e| format!("schema: {e}"))?;
    let ids: Vec<Uuid> = (0..settings.instances()).map(|_| Uuid::new_v4()).collect();
    {
        let tx = conn
            .unchecked_transaction()
            .map_err(|e| format!("seed: {e}"))?;
        let mut insert = tx
            .prepare(
                "INSERT INTO instances (id, state, updated_at, data) VALUES (?1, 2, ?2, x'0102030405060708')",
            )
            .map_err(|e| format!("seed: {e}"))?;
        for id in &ids {
            insert
                .execute(params![&id.as_bytes()[..], now_us()])
                .map_err(|e| format!("seed: {e}"))?;
        }
        drop(insert);
        tx.commit().map_err(|e| format!("seed: {e}"))?;
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let (done, done_rx) = mpsc::unbounded_channel();
    let thread = std::thread::Builder::new()
        .name("raw-queue".into())
        .spawn(move || raw_queue_thread(&conn, rx, &done))
        .map_err(|e| format!("starting the raw queue thread: {e}"))?;
    let result = drive_queue(ids, SqliteEnqueuer { tx }, done_rx, &settings).await;
    // Every enqueuer is gone now: the thread ends.
    let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    result
}

fn raw_queue_thread(
    conn: &Connection,
    mut rx: mpsc::UnboundedReceiver<EnqueueRequest>,
    done: &mpsc::UnboundedSender<Done>,
) {
    let mut queued = false;
    let mut batch: Vec<EnqueueRequest> = Vec::with_capacity(64);
    loop {
        if !queued {
            match rx.blocking_recv() {
                Some(r) => batch.push(r),
                None => return,
            }
        }
        while batch.len() < 64 {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        if !batch.is_empty() {
            let outcome = raw_enqueue(conn, &batch).map_err(|e| format!("raw enqueue: {e}"));
            if outcome.is_ok() {
                queued = true;
            }
            for r in batch.drain(..) {
                let _ = r.answer.send(outcome.clone());
            }
        }
        if queued {
            match raw_consume(conn) {
                Ok(ids) => {
                    queued = ids.len() == 10;
                    for id in ids {
                        let _ = done.send(Ok(id));
                    }
                }
                Err(e) => {
                    let _ = conn.execute_batch("ROLLBACK");
                    let _ = done.send(Err(format!("raw consume: {e}")));
                    return;
                }
            }
        }
    }
}

fn raw_enqueue(conn: &Connection, batch: &[EnqueueRequest]) -> rusqlite::Result<()> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let result = (|| {
        let mut insert = conn.prepare_cached(
            "INSERT INTO queue (instance, command, reason, enqueued_at) VALUES (?1, ?2, ?3, ?4)",
        )?;
        for r in batch {
            let c = command(r.suspend);
            insert.execute(params![
                &r.id.as_bytes()[..],
                c.code(),
                c.reason(),
                now_us()
            ])?;
        }
        Ok(())
    })();
    match result {
        Ok(()) => conn.execute_batch("COMMIT"),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

/// One batch: the 10 oldest commands, their updates, their deletes, one transaction.
fn raw_consume(conn: &Connection) -> rusqlite::Result<Vec<Uuid>> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let rows: Vec<(i64, Vec<u8>, i64, Option<String>)> = conn
        .prepare_cached(
            "SELECT position, instance, command, reason FROM queue ORDER BY position LIMIT 10",
        )?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<Result<_, _>>()?;
    let mut ids = Vec::with_capacity(rows.len());
    {
        let mut update = conn.prepare_cached(
            "UPDATE instances SET suspended = ?2, suspension_reason = ?3, updated_at = ?4 WHERE id = ?1",
        )?;
        let mut delete = conn.prepare_cached("DELETE FROM queue WHERE position = ?1")?;
        for (position, instance, code, reason) in &rows {
            let suspend = *code == 1;
            update.execute(params![
                instance,
                suspend,
                if suspend { reason.as_deref() } else { None },
                now_us()
            ])?;
            delete.execute([position])?;
            ids.push(Uuid::from_slice(instance).unwrap_or_default());
        }
    }
    conn.execute_batch("COMMIT")?;
    Ok(ids)
}

// ---------------------------------------------------------------------------------------------
// raw-pg

/// `control` on `raw-pg`.
#[cfg(feature = "postgres")]
pub async fn raw_pg(ctx: &RunCtx) -> Result<Sample, String> {
    pg::run(ctx).await
}

#[cfg(not(feature = "postgres"))]
pub async fn raw_pg(ctx: &RunCtx) -> Result<Sample, String> {
    let _ = ctx;
    Err("this instore-bench was built without PostgreSQL".to_owned())
}

#[cfg(feature = "postgres")]
mod pg {
    use super::*;
    use crate::providers::fresh_schema;
    use crate::raw_pg::{connect, describe, Dropping};
    use tokio::sync::Notify;
    use tokio_postgres::{Client, Statement};

    /// Connections enqueueing, and consumers.
    const PRODUCERS: usize = 16;
    const CONSUMERS: usize = 4;

    const NOW: &str = "(extract(epoch from clock_timestamp()) * 1000000)::bigint";

    #[derive(Clone)]
    struct PgEnqueuer {
        clients: Arc<Vec<tokio::sync::Mutex<(Client, Statement, Dropping)>>>,
        next: Arc<AtomicUsize>,
        wake: Arc<Notify>,
    }

    impl Enqueuer for PgEnqueuer {
        async fn enqueue(&self, id: Uuid, suspend: bool) -> Result<(), String> {
            let n = self.next.fetch_add(1, Ordering::Relaxed) % self.clients.len();
            let c = command(suspend);
            {
                let guard = self.clients[n].lock().await;
                let (client, insert, _) = &*guard;
                client
                    .execute(insert, &[&id, &c.code(), &c.reason()])
                    .await
                    .map_err(|e| format!("raw enqueue: {}", describe(&e)))?;
            }
            self.wake.notify_one();
            Ok(())
        }
    }

    pub async fn run(ctx: &RunCtx) -> Result<Sample, String> {
        let settings = ctx.control;
        let url = &ctx.pg_url;
        let (admin, admin_driver) = connect(url).await?;
        let _admin_driver = Dropping(admin_driver);
        let schema = fresh_schema("rawq");
        let s = format!("\"{schema}\"");
        admin
            .batch_execute(&format!(
                "create schema {s};
                 create table {s}.instances (
                     id uuid primary key,
                     state smallint not null,
                     suspended boolean not null default false,
                     suspension_reason text,
                     updated_at bigint not null,
                     data bytea not null
                 );
                 create table {s}.queue (
                     position bigserial primary key,
                     instance uuid not null unique,
                     command smallint not null,
                     reason text,
                     enqueued_at bigint not null
                 );"
            ))
            .await
            .map_err(|e| format!("creating schema {schema}: {}", describe(&e)))?;
        let result = run_in(&admin, url, &s, settings).await;
        let dropped = admin
            .batch_execute(&format!("drop schema if exists {s} cascade"))
            .await
            .map_err(|e| format!("dropping {schema}: {}", describe(&e)));
        let sample = result?;
        dropped?;
        Ok(sample)
    }

    async fn run_in(
        admin: &Client,
        url: &str,
        s: &str,
        settings: ControlSettings,
    ) -> Result<Sample, String> {
        let ids: Vec<Uuid> = (0..settings.instances()).map(|_| Uuid::new_v4()).collect();
        admin
            .execute(
                &format!(
                    "insert into {s}.instances (id, state, updated_at, data)
                     select id, 2, {NOW}, '\\x0102030405060708'::bytea from unnest($1::uuid[]) id"
                ),
                &[&ids],
            )
            .await
            .map_err(|e| format!("seeding: {}", describe(&e)))?;
        let mut clients = Vec::new();
        for _ in 0..PRODUCERS {
            let (client, driver) = connect(url).await?;
            let insert = client
                .prepare(&format!(
                    "insert into {s}.queue (instance, command, reason, enqueued_at) \
                     values ($1, $2, $3, {NOW})"
                ))
                .await
                .map_err(|e| format!("preparing the enqueue: {}", describe(&e)))?;
            clients.push(tokio::sync::Mutex::new((client, insert, Dropping(driver))));
        }
        let wake = Arc::new(Notify::new());
        let stop = CancellationToken::new();
        let (done, done_rx) = mpsc::unbounded_channel();
        let mut consumers = JoinSet::new();
        for _ in 0..CONSUMERS {
            let (client, driver) = connect(url).await?;
            let consume = client
                .prepare(&format!(
                    "with b as (
                         delete from {s}.queue where position in (
                             select position from {s}.queue order by position
                             limit 10 for update skip locked)
                         returning instance, command, reason)
                     update {s}.instances i
                        set suspended = (b.command = 1),
                            suspension_reason = case when b.command = 1 then b.reason end,
                            updated_at = {NOW}
                     from b where i.id = b.instance
                     returning i.id"
                ))
                .await
                .map_err(|e| format!("preparing the consumer: {}", describe(&e)))?;
            let (wake, stop, done) = (wake.clone(), stop.clone(), done.clone());
            consumers.spawn(async move {
                let _driver = Dropping(driver);
                while !stop.is_cancelled() {
                    let rows = match client.query(&consume, &[]).await {
                        Ok(rows) => rows,
                        Err(e) => {
                            let _ = done.send(Err(format!("raw consume: {}", describe(&e))));
                            return;
                        }
                    };
                    for row in &rows {
                        let _ = done.send(Ok(row.get::<_, Uuid>(0)));
                    }
                    if rows.len() < 10 {
                        tokio::select! {
                            () = wake.notified() => {}
                            () = tokio::time::sleep(Duration::from_millis(5)) => {}
                            () = stop.cancelled() => {}
                        }
                    }
                }
            });
        }
        drop(done);
        let enqueuer = PgEnqueuer {
            clients: Arc::new(clients),
            next: Arc::new(AtomicUsize::new(0)),
            wake,
        };
        let result = drive_queue(ids, enqueuer, done_rx, &settings).await;
        stop.cancel();
        while consumers.join_next().await.is_some() {}
        result
    }
}
