//! The writer thread: group commit (DESIGN "Providers", SQLite).
//!
//! One thread owns the write connection. It takes every job waiting in its channel (up to a
//! bound), runs each inside its own SAVEPOINT within one `BEGIN IMMEDIATE` transaction — a failing
//! command rolls back only its savepoint — commits once (one fsync for the batch) and then answers
//! every caller. SQLite is only ever called on this thread or on the read pool's blocking
//! threads, never on the async executor.
//!
//! Cancel safety: a job whose caller has gone away before it runs is skipped (no effect). Once it
//! runs, it commits with its batch whether or not anyone is still waiting for the answer.

use std::sync::mpsc;

use instore::{StorageError, StoreError};
use rusqlite::Connection;
use tokio::sync::{oneshot, watch};

/// Called after the batch's commit: `None` if it committed, else why it did not.
type Reply = Box<dyn FnOnce(Option<&str>) + Send>;

struct Ran {
    ok: bool,
    wake: bool,
    reply: Reply,
}

/// `None` if the caller had gone and the job did nothing.
type Job = Box<dyn FnOnce(&Connection) -> Option<Ran> + Send>;

/// A handle on the writer thread. Dropping it lets the thread finish its queue, close the file
/// and exit — and waits for that, so the file is closed when the provider is gone.
#[derive(Debug)]
pub(crate) struct Writer {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Writer {
    fn drop(&mut self) {
        drop(self.jobs.take());
        if let Some(thread) = self.thread.take() {
            // Never join ourselves (the last provider handle dropped by a job on this thread).
            if thread.thread().id() != std::thread::current().id() {
                let _ = thread.join();
            }
        }
    }
}

impl Writer {
    /// Starts the thread over `conn`. `wake` is bumped after a commit in which some job said
    /// something may have become runnable.
    pub(crate) fn start(
        conn: Connection,
        max_batch: usize,
        wake: watch::Sender<u64>,
    ) -> Result<Writer, StoreError> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("instore-sqlite-writer".into())
            .spawn(move || run(conn, queue, max_batch.max(1), wake))
            .map_err(|e| {
                StoreError::Storage(
                    StorageError::unavailable("cannot start the sqlite writer thread")
                        .with_source(e),
                )
            })?;
        Ok(Writer {
            jobs: Some(jobs),
            thread: Some(thread),
        })
    }

    /// Runs `f` in its own savepoint of the next batch and answers after the batch commits.
    /// `f` returns its result and whether something may have become runnable.
    pub(crate) async fn call<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<(T, bool), StoreError> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel::<Result<T, StoreError>>();
        let job: Job = Box::new(move |conn| {
            if tx.is_closed() {
                return None;
            }
            let result = f(conn);
            let (ok, wake) = match &result {
                Ok((_, wake)) => (true, *wake),
                Err(_) => (false, false),
            };
            let reply: Reply = Box::new(move |failed| {
                let answer = match failed {
                    Some(why) => Err(StoreError::Storage(StorageError::unavailable(format!(
                        "sqlite commit failed: {why}"
                    )))),
                    None => result.map(|(t, _)| t),
                };
                let _ = tx.send(answer);
            });
            Some(Ran { ok, wake, reply })
        });
        let gone = || {
            StoreError::Storage(StorageError::unavailable(
                "the sqlite writer thread has stopped",
            ))
        };
        let jobs = self.jobs.as_ref().ok_or_else(gone)?;
        jobs.send(job).map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }
}

fn run(conn: Connection, queue: mpsc::Receiver<Job>, max_batch: usize, wake: watch::Sender<u64>) {
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        while batch.len() < max_batch {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        if let Err(e) = conn.execute_batch("begin immediate") {
            // The jobs are dropped unrun: their callers hear that the writer could not write.
            tracing::error!(error = %e, "sqlite writer cannot begin a transaction");
            continue;
        }
        let mut ran = Vec::with_capacity(batch.len());
        for job in batch {
            if let Err(e) = statement(&conn, "savepoint command") {
                tracing::error!(error = %e, "sqlite writer cannot open a savepoint");
                continue;
            }
            let Some(done) = job(&conn) else {
                let _ = statement(&conn, "release command");
                continue;
            };
            let closed = if done.ok {
                statement(&conn, "release command")
            } else {
                statement(&conn, "rollback to command")
                    .and_then(|()| statement(&conn, "release command"))
            };
            if let Err(e) = closed {
                tracing::error!(error = %e, "sqlite writer cannot close a savepoint");
            }
            ran.push(done);
        }
        let committed = conn.execute_batch("commit");
        let failed = committed.as_ref().err().map(|e| e.to_string());
        if failed.is_some() {
            let _ = conn.execute_batch("rollback");
        }
        let woke = failed.is_none() && ran.iter().any(|r| r.wake);
        for done in ran {
            (done.reply)(failed.as_deref());
        }
        if woke {
            wake.send_modify(|n| *n = n.wrapping_add(1));
        }
    }
}

/// Runs a statement from the connection's cache: the savepoint statements run twice per
/// command, on the one thread every write waits for, so they are parsed once.
fn statement(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}
