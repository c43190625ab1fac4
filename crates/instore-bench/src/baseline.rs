//! The raw SQLite baselines: plain rusqlite doing the writes a workload's commands amount to,
//! with the provider's durability (WAL, `synchronous=FULL` by default), and nothing else — no
//! owners, leases, lock checks, encoding or savepoints.
//!
//! SQLite has one writer, so "N handles" are N tokio tasks submitting requests to one dedicated
//! writer thread that owns the only connection. Two modes:
//!
//! - [`RawMode::PerTxn`] (`raw-txn`): every request is its own `BEGIN IMMEDIATE … COMMIT`.
//! - [`RawMode::Batch`] (`raw-batch`): the writer takes the first waiting request and then
//!   whatever else is already queued, up to the bound (64 by default), runs them all inside one
//!   `BEGIN IMMEDIATE … COMMIT` (group commit by hand: one fsync for the batch), then answers
//!   each caller.
//!
//! A request's latency is measured by its caller, from submit to the answer sent after commit.

use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension};
use tokio::sync::{mpsc, oneshot};

use crate::Synchronous;

/// How the writer groups requests into transactions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawMode {
    /// One transaction per request.
    PerTxn,
    /// Up to this many queued requests per transaction.
    Batch(usize),
}

/// A 16-byte id (instance, key or owner), stored as a blob like the provider's UUIDs.
pub type Id = [u8; 16];

/// One request to the writer.
#[derive(Debug, Clone)]
pub enum RawOp {
    /// `INSERT … ON CONFLICT(id) DO UPDATE SET data = …`: the write a save amounts to.
    Upsert {
        /// The instance.
        id: Id,
        /// Its new data.
        data: Arc<[u8]>,
    },
    /// Read the row's data and set its lock owner (inserting an empty row if missing): a load.
    Acquire {
        /// The instance.
        id: Id,
    },
    /// Look the key up, then [`RawOp::Acquire`] its instance: a load by key.
    AcquireByKey {
        /// The key.
        key: Id,
    },
    /// Clear the lock owner: an unlock.
    Unlock {
        /// The instance.
        id: Id,
    },
    /// Setup, not measured: insert these `(instance, key)` rows with `data`, in one transaction.
    Seed {
        /// Instances and their keys.
        rows: Vec<(Id, Id)>,
        /// The data of each.
        data: Arc<[u8]>,
    },
}

/// What the writer answers.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawReply {
    /// The instance a by-key acquire found.
    pub id: Option<Id>,
}

struct Request {
    op: RawOp,
    done: oneshot::Sender<Result<RawReply, String>>,
}

/// A client of the writer thread; cheap to clone.
#[derive(Debug, Clone)]
pub struct RawClient {
    tx: mpsc::UnboundedSender<Request>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request").field("op", &self.op).finish()
    }
}

impl RawClient {
    /// Submits a request and waits for the writer's answer (after its transaction committed).
    pub async fn submit(&self, op: RawOp) -> Result<RawReply, String> {
        let (done, answer) = oneshot::channel();
        self.tx
            .send(Request { op, done })
            .map_err(|_| "the raw writer thread has stopped".to_owned())?;
        answer
            .await
            .map_err(|_| "the raw writer thread dropped a request".to_owned())?
    }
}

/// The raw store: the writer thread and its connection.
#[derive(Debug)]
pub struct RawStore {
    client: Option<RawClient>,
    thread: Option<JoinHandle<()>>,
}

/// The connection settings, as the SQLite provider sets them (`instore-sqlite`'s
/// `open_writer_connection`: busy timeout 5 s, WAL, `synchronous`); keep the two in step.
pub fn apply_pragmas(conn: &Connection, sync: Synchronous) -> rusqlite::Result<()> {
    let sync = match sync {
        Synchronous::Full => "full",
        Synchronous::Normal => "normal",
    };
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "wal")?;
    conn.pragma_update(None, "synchronous", sync)?;
    Ok(())
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS instances (
    id            BLOB PRIMARY KEY NOT NULL,
    state         INTEGER NOT NULL,
    data          BLOB NOT NULL,
    data_encoding INTEGER NOT NULL,
    lock_owner    BLOB,
    lock_version  INTEGER NOT NULL,
    timer         INTEGER,
    updated_at    INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS keys (
    key         BLOB PRIMARY KEY NOT NULL,
    instance_id BLOB NOT NULL,
    state       INTEGER NOT NULL
);
";

const UPSERT: &str = "
INSERT INTO instances (id, state, data, data_encoding, lock_owner, lock_version, updated_at)
VALUES (?1, 1, ?2, 1, ?3, 1, ?4)
ON CONFLICT (id) DO UPDATE SET state = 1, data = excluded.data, updated_at = excluded.updated_at";

const INSERT_LOCKED: &str = "
INSERT INTO instances (id, state, data, data_encoding, lock_owner, lock_version, updated_at)
VALUES (?1, 0, x'', 1, ?2, 1, ?3)";

impl RawStore {
    /// Opens (creating) the database at `path` and starts the writer thread.
    pub fn open(path: &Path, mode: RawMode, sync: Synchronous) -> Result<Self, String> {
        let conn =
            Connection::open(path).map_err(|e| format!("opening {}: {e}", path.display()))?;
        apply_pragmas(&conn, sync).map_err(|e| format!("pragmas: {e}"))?;
        let journal: String = conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .map_err(|e| format!("reading journal_mode: {e}"))?;
        if !journal.eq_ignore_ascii_case("wal") {
            return Err(format!("journal_mode is {journal}; WAL was refused"));
        }
        conn.execute_batch(SCHEMA)
            .map_err(|e| format!("schema: {e}"))?;
        let owner: Id = rand::random();
        let max_batch = match mode {
            RawMode::PerTxn => 1,
            RawMode::Batch(n) => n.max(1),
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let thread = std::thread::Builder::new()
            .name("raw-writer".into())
            .spawn(move || writer(conn, owner, max_batch, rx))
            .map_err(|e| format!("starting the writer thread: {e}"))?;
        Ok(Self {
            client: Some(RawClient { tx }),
            thread: Some(thread),
        })
    }

    /// A client to submit requests with.
    pub fn client(&self) -> RawClient {
        self.client
            .clone()
            .expect("the client is only taken by close")
    }

    /// Stops the writer once every client is gone, and waits for it.
    pub async fn close(mut self) {
        self.client = None;
        if let Some(thread) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

fn writer(conn: Connection, owner: Id, max_batch: usize, mut rx: mpsc::UnboundedReceiver<Request>) {
    let mut batch: Vec<Request> = Vec::with_capacity(max_batch);
    let mut answers = Vec::with_capacity(max_batch);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let outcome = conn.execute_batch("BEGIN IMMEDIATE").and_then(|()| {
            for request in &batch {
                answers.push(apply(&conn, &owner, &request.op).map_err(|e| e.to_string()));
            }
            conn.execute_batch("COMMIT")
        });
        if let Err(e) = outcome {
            let _ = conn.execute_batch("ROLLBACK");
            let message = format!("transaction failed: {e}");
            answers.clear();
            answers.extend(batch.iter().map(|_| Err(message.clone())));
        }
        for (request, answer) in batch.drain(..).zip(answers.drain(..)) {
            let _ = request.done.send(answer);
        }
    }
}

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

fn apply(conn: &Connection, owner: &Id, op: &RawOp) -> rusqlite::Result<RawReply> {
    let now = now_micros();
    match op {
        RawOp::Upsert { id, data } => {
            conn.prepare_cached(UPSERT)?
                .execute(params![&id[..], &data[..], &owner[..], now])?;
            Ok(RawReply::default())
        }
        RawOp::Acquire { id } => {
            acquire(conn, owner, id, now)?;
            Ok(RawReply { id: Some(*id) })
        }
        RawOp::AcquireByKey { key } => {
            let found: Option<Vec<u8>> = conn
                .prepare_cached("SELECT instance_id FROM keys WHERE key = ?1")?
                .query_row([&key[..]], |r| r.get(0))
                .optional()?;
            let id: Id = found
                .and_then(|v| v.try_into().ok())
                .ok_or(rusqlite::Error::QueryReturnedNoRows)?;
            acquire(conn, owner, &id, now)?;
            Ok(RawReply { id: Some(id) })
        }
        RawOp::Unlock { id } => {
            conn.prepare_cached(
                "UPDATE instances SET lock_owner = NULL, updated_at = ?3
                 WHERE id = ?1 AND lock_owner = ?2",
            )?
            .execute(params![&id[..], &owner[..], now])?;
            Ok(RawReply::default())
        }
        RawOp::Seed { rows, data } => {
            let mut instance = conn.prepare_cached(
                "INSERT INTO instances (id, state, data, data_encoding, lock_version, updated_at)
                 VALUES (?1, 1, ?2, 1, 1, ?3)",
            )?;
            let mut key = conn
                .prepare_cached("INSERT INTO keys (key, instance_id, state) VALUES (?1, ?2, 0)")?;
            for (id, k) in rows {
                instance.execute(params![&id[..], &data[..], now])?;
                key.execute(params![&k[..], &id[..]])?;
            }
            Ok(RawReply::default())
        }
    }
}

/// Reads the row (its data blob comes back to the caller, as a load returns it) and takes the
/// lock; a missing row is created empty and locked.
fn acquire(conn: &Connection, owner: &Id, id: &Id, now: i64) -> rusqlite::Result<()> {
    let data: Option<Vec<u8>> = conn
        .prepare_cached("SELECT data FROM instances WHERE id = ?1")?
        .query_row([&id[..]], |r| r.get(0))
        .optional()?;
    match data {
        Some(data) => {
            std::hint::black_box(data);
            conn.prepare_cached(
                "UPDATE instances SET lock_owner = ?2, updated_at = ?3 WHERE id = ?1",
            )?
            .execute(params![&id[..], &owner[..], now])?;
        }
        None => {
            conn.prepare_cached(INSERT_LOCKED)?
                .execute(params![&id[..], &owner[..], now])?;
        }
    }
    Ok(())
}
