//! The workloads. Each runs one subject — a provider behind the public `InstanceStore` API, a
//! raw SQLite or PostgreSQL baseline, or a floor — on fresh storage and returns one [`Sample`].

mod by_key;
pub mod control;
mod cycle;
pub mod query;
#[cfg(feature = "postgres")]
mod query_pg;
mod save;
pub mod takeover;
mod timers;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use instore::{bag, CreateOwner, InstanceStore, OwnerId, PropertyBag, StoreSettings};

use crate::baseline::{RawMode, RawStore};
use crate::driver::{Budget, Sample};
use crate::providers::{Place, ProviderKind};
use crate::Synchronous;
use takeover::TakeoverSettings;

/// Timeout given to every command: generous, so a slow disk shows as latency, not as errors.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// A workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Workload {
    /// N handles, each bound once to its own instance, saving 4 KiB states without unlocking.
    Save,
    /// Load → Save → Save(unlock) per operation, each on a fresh handle.
    Cycle,
    /// LoadByKey of existing instances, then Save(unlock).
    ByKey,
    /// Lateness of due timers seen through `wait_for_events` + `TryLoadRunnable`.
    Timers,
    /// Time for host B to load the N instances of host A after A is killed.
    Takeover,
    /// Enqueue Suspend then Resume commands; a management service executes them.
    Control,
    /// One read of the `query` workload on a store of a million instances.
    Query(query::QueryOp),
}

impl Workload {
    /// Every workload measured through the common loop (fresh storage per run), in report
    /// order. `query` (its kept store, its own loop) is apart.
    pub const ALL: [Workload; 6] = [
        Workload::Save,
        Workload::Cycle,
        Workload::ByKey,
        Workload::Timers,
        Workload::Takeover,
        Workload::Control,
    ];

    /// Its name in the CLI and the table.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Save => "save",
            Workload::Cycle => "cycle",
            Workload::ByKey => "by-key",
            Workload::Timers => "timers",
            Workload::Takeover => "takeover",
            Workload::Control => "control",
            Workload::Query(_) => "query",
        }
    }

    /// The label of the row: the workload, and for `query` the read.
    pub fn label(self) -> String {
        match self {
            Workload::Query(op) => format!("query: {}", op.name()),
            w => w.name().to_owned(),
        }
    }

    /// Whether it reports in a table of its own (`control`, `query`).
    pub fn has_own_table(self) -> bool {
        matches!(self, Workload::Control | Workload::Query(_))
    }

    /// The reference subjects it runs besides `providers`: the raw SQLite baselines with memory
    /// or SQLite, `raw-pg` with PostgreSQL (for `save`), the tokio timer floor for `timers`.
    pub fn baselines(self, batch: usize, providers: &[ProviderKind]) -> Vec<Subject> {
        let sqlite_side = providers
            .iter()
            .any(|p| matches!(p, ProviderKind::Memory | ProviderKind::Sqlite));
        let postgres = providers.contains(&ProviderKind::Postgres);
        let mut subjects = Vec::new();
        match self {
            Workload::Timers => subjects.push(Subject::TimerFloor),
            Workload::Takeover => {}
            Workload::Control | Workload::Query(_) => {
                if providers.contains(&ProviderKind::Sqlite) {
                    subjects.push(Subject::RawSqlite);
                }
                if postgres {
                    subjects.push(Subject::RawPg);
                }
            }
            Workload::Save | Workload::Cycle | Workload::ByKey => {
                if sqlite_side {
                    subjects.push(Subject::Raw(RawMode::PerTxn));
                    subjects.push(Subject::Raw(RawMode::Batch(batch)));
                }
                if postgres && self == Workload::Save {
                    subjects.push(Subject::RawPg);
                }
            }
        }
        subjects
    }

    /// Whether the provider's PostgreSQL pool is sized to the handle count (the throughput
    /// workloads: "N handles on an N-connection pool"); otherwise it has the default 16.
    fn pool_is_handles(self) -> bool {
        matches!(self, Workload::Save | Workload::Cycle | Workload::ByKey)
    }
}

/// Connections in the PostgreSQL provider's pool when it is not the handle count (the
/// provider's default).
pub const DEFAULT_PG_POOL: usize = 16;

/// What a workload runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    /// A provider, through `InstanceStore`.
    Provider(ProviderKind),
    /// A raw rusqlite baseline.
    Raw(RawMode),
    /// The raw tokio-postgres baseline.
    RawPg,
    /// The raw rusqlite baseline of `control` and `query` (reads, or a raw queue).
    RawSqlite,
    /// For `timers`: plain tokio sleeps until each due time (the timer floor of this machine).
    TimerFloor,
}

impl Subject {
    /// Its name in the table.
    pub fn name(self) -> &'static str {
        match self {
            Subject::Provider(p) => p.name(),
            Subject::Raw(RawMode::PerTxn) => "raw-txn",
            Subject::Raw(RawMode::Batch(_)) => "raw-batch",
            Subject::RawPg => "raw-pg",
            Subject::RawSqlite => "raw-sqlite",
            Subject::TimerFloor => "tokio-sleep",
        }
    }

    /// Whether ratios are taken against it.
    pub fn is_baseline(self) -> bool {
        !matches!(self, Subject::Provider(_))
    }
}

/// Settings of one run of one subject.
#[derive(Debug, Clone)]
pub struct RunCtx {
    /// Directory for database files.
    pub dir: PathBuf,
    /// Durability of the provider and the raw baselines.
    pub sync: Synchronous,
    /// How long to measure.
    pub budget: Budget,
    /// Size of the state saved (bytes of one `Bytes` value).
    pub payload_bytes: usize,
    /// Instances created for `by-key`.
    pub keys: usize,
    /// Timers for `timers`.
    pub timers: usize,
    /// Over how long the timers fall due.
    pub timer_spread: Duration,
    /// Keep database files after the run.
    pub keep: bool,
    /// A unique tag for this run's files.
    pub tag: String,
    /// The PostgreSQL server (`postgres://USER@HOST:PORT/DATABASE`).
    pub pg_url: String,
    /// The `takeover` workload's settings.
    pub takeover: TakeoverSettings,
    /// The `control` workload's settings.
    pub control: control::ControlSettings,
}

impl RunCtx {
    /// A database path for this run (any leftover from an earlier run is removed).
    fn db_path(&self, subject: Subject) -> PathBuf {
        let path = self.dir.join(format!("{}-{}.db", self.tag, subject.name()));
        remove_db(&path);
        path
    }

    fn done_with(&self, path: &Path) {
        if !self.keep {
            remove_db(path);
        }
    }
}

/// Removes a SQLite database file and its companions.
pub fn remove_db(path: &Path) {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(p));
    }
}

/// Runs `workload` with `handles` concurrent workers (host loops for `timers` and `takeover`)
/// on `subject`.
pub async fn run(
    workload: Workload,
    subject: Subject,
    handles: usize,
    ctx: &RunCtx,
) -> Result<Sample, String> {
    let db = ctx.db_path(subject);
    let result = match subject {
        Subject::Provider(kind) => {
            let pool = if workload.pool_is_handles() {
                handles
            } else {
                DEFAULT_PG_POOL
            };
            let place = Place::fresh(kind, &db, ctx.sync, &ctx.pg_url, pool);
            let result = on_provider(workload, kind, &place, handles, ctx).await;
            let destroyed = place.destroy().await;
            result.and_then(|sample| destroyed.map(|()| sample))
        }
        Subject::Raw(mode) => {
            let raw = RawStore::open(&db, mode, ctx.sync)?;
            let result = match workload {
                Workload::Save => save::raw(&raw, handles, ctx).await,
                Workload::Cycle => cycle::raw(&raw, handles, ctx).await,
                Workload::ByKey => by_key::raw(&raw, handles, ctx).await,
                Workload::Timers | Workload::Takeover | Workload::Control | Workload::Query(_) => {
                    Err(format!("{} has no raw baseline", workload.name()))
                }
            };
            raw.close().await;
            result
        }
        Subject::RawSqlite => match workload {
            Workload::Control => control::raw_sqlite(&db, ctx.sync, ctx).await,
            _ => Err(format!("{} has no raw-sqlite run here", workload.name())),
        },
        Subject::RawPg => raw_pg(workload, handles, ctx).await,
        Subject::TimerFloor => timers::floor(ctx).await,
    };
    ctx.done_with(&db);
    result.map_err(|e| format!("{} on {}: {e}", workload.name(), subject.name()))
}

async fn on_provider(
    workload: Workload,
    kind: ProviderKind,
    place: &Place,
    handles: usize,
    ctx: &RunCtx,
) -> Result<Sample, String> {
    if workload == Workload::Takeover {
        return takeover::provider(kind, place, handles, ctx).await;
    }
    if workload == Workload::Control {
        return control::provider(place, ctx).await;
    }
    let store = place.store(StoreSettings::default()).await?;
    let result = match workload {
        Workload::Save => save::provider(&store, handles, ctx).await,
        Workload::Cycle => cycle::provider(&store, handles, ctx).await,
        Workload::ByKey => by_key::provider(&store, handles, ctx).await,
        Workload::Timers => timers::provider(&store, handles, ctx).await,
        Workload::Takeover | Workload::Control => Err("it opens its own stores".to_owned()),
        Workload::Query(_) => Err("query runs in its own loop".to_owned()),
    };
    store.shutdown().await;
    drop(store);
    result
}

#[cfg(feature = "postgres")]
async fn raw_pg(workload: Workload, handles: usize, ctx: &RunCtx) -> Result<Sample, String> {
    use crate::raw_pg::{self, RawPg};
    if workload == Workload::Control {
        return control::raw_pg(ctx).await;
    }
    let raw = RawPg::open(&ctx.pg_url).await?;
    let result = match workload {
        Workload::Save => raw_pg::save(&raw, handles, ctx).await,
        _ => Err(format!("{} has no raw-pg baseline", workload.name())),
    };
    let closed = raw.close().await;
    result.and_then(|sample| closed.map(|()| sample))
}

#[cfg(not(feature = "postgres"))]
async fn raw_pg(workload: Workload, handles: usize, ctx: &RunCtx) -> Result<Sample, String> {
    let _ = (workload, handles, ctx);
    Err(
        "this instore-bench was built without PostgreSQL; build it with `--features postgres`"
            .to_owned(),
    )
}

/// A 4 KiB-ish state: one `Bytes` value of `bytes` random (incompressible) bytes.
pub fn payload_bytes(bytes: usize) -> Arc<[u8]> {
    let mut v = vec![0u8; bytes];
    rand::Rng::fill(&mut rand::thread_rng(), &mut v[..]);
    v.into()
}

/// The instance data saved by the provider workloads: the payload as one value.
pub fn payload_bag(bytes: &[u8]) -> PropertyBag {
    bag([("state", bytes.to_vec())])
}

/// Registers an owner (of `host_type`) on the store; it becomes the store's default owner.
pub async fn create_owner(store: &InstanceStore, host_type: &str) -> Result<OwnerId, String> {
    let handle = store.create_handle();
    let view = store
        .execute(&handle, CreateOwner::host_type(host_type), COMMAND_TIMEOUT)
        .await
        .map_err(|e| format!("CreateOwner: {e}"))?;
    view.owner
        .ok_or_else(|| "CreateOwner answered without an owner".to_owned())
}

/// Maps a store error to the harness's error text, naming the command.
pub fn cmd_err(command: &'static str) -> impl Fn(instore::StoreError) -> String {
    move |e| format!("{command}: {e}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn baselines_follow_the_storage_of_the_providers() {
        let names = |w: Workload, p: &[ProviderKind]| -> Vec<&'static str> {
            w.baselines(64, p).into_iter().map(Subject::name).collect()
        };
        use ProviderKind::{Memory, Postgres, Sqlite};
        assert_eq!(names(Workload::Save, &[Sqlite]), ["raw-txn", "raw-batch"]);
        assert_eq!(names(Workload::Save, &[Postgres]), ["raw-pg"]);
        assert_eq!(
            names(Workload::Save, &[Memory, Postgres]),
            ["raw-txn", "raw-batch", "raw-pg"]
        );
        assert!(names(Workload::Cycle, &[Postgres]).is_empty());
        assert_eq!(names(Workload::Timers, &[Postgres]), ["tokio-sleep"]);
        assert!(names(Workload::Takeover, &[Memory, Sqlite, Postgres]).is_empty());
    }

    #[test]
    fn only_throughput_workloads_size_the_pool_to_the_handles() {
        assert!(Workload::Save.pool_is_handles());
        assert!(!Workload::Timers.pool_is_handles());
        assert!(!Workload::Takeover.pool_is_handles());
    }
}
