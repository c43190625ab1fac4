//! The workloads. Each runs one subject — a provider behind the public `InstanceStore` API, a
//! raw SQLite baseline, or a floor — on fresh storage and returns one [`Sample`].

mod by_key;
mod cycle;
mod save;
mod timers;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use instore::{bag, CreateOwner, InstanceStore, OwnerId, PropertyBag};

use crate::baseline::{RawMode, RawStore};
use crate::driver::{Budget, Sample};
use crate::providers::{open_store, ProviderKind};
use crate::Synchronous;

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
}

impl Workload {
    /// Every workload, in report order.
    pub const ALL: [Workload; 4] = [
        Workload::Save,
        Workload::Cycle,
        Workload::ByKey,
        Workload::Timers,
    ];

    /// Its name in the CLI and the table.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Save => "save",
            Workload::Cycle => "cycle",
            Workload::ByKey => "by-key",
            Workload::Timers => "timers",
        }
    }

    /// The reference subjects it runs besides the providers.
    pub fn baselines(self, batch: usize) -> Vec<Subject> {
        match self {
            Workload::Timers => vec![Subject::TimerFloor],
            _ => vec![
                Subject::Raw(RawMode::PerTxn),
                Subject::Raw(RawMode::Batch(batch)),
            ],
        }
    }
}

/// What a workload runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    /// A provider, through `InstanceStore`.
    Provider(ProviderKind),
    /// A raw rusqlite baseline.
    Raw(RawMode),
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

fn remove_db(path: &Path) {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(p));
    }
}

/// Runs `workload` with `handles` concurrent workers (host loops for `timers`) on `subject`.
pub async fn run(
    workload: Workload,
    subject: Subject,
    handles: usize,
    ctx: &RunCtx,
) -> Result<Sample, String> {
    let db = ctx.db_path(subject);
    let result = match subject {
        Subject::Provider(kind) => {
            let store = open_store(kind, &db, ctx.sync).await?;
            let result = match workload {
                Workload::Save => save::provider(&store, handles, ctx).await,
                Workload::Cycle => cycle::provider(&store, handles, ctx).await,
                Workload::ByKey => by_key::provider(&store, handles, ctx).await,
                Workload::Timers => timers::provider(&store, handles, ctx).await,
            };
            store.shutdown().await;
            drop(store);
            result
        }
        Subject::Raw(mode) => {
            let raw = RawStore::open(&db, mode, ctx.sync)?;
            let result = match workload {
                Workload::Save => save::raw(&raw, handles, ctx).await,
                Workload::Cycle => cycle::raw(&raw, handles, ctx).await,
                Workload::ByKey => by_key::raw(&raw, handles, ctx).await,
                Workload::Timers => Err("timers has no raw baseline".to_owned()),
            };
            raw.close().await;
            result
        }
        Subject::TimerFloor => timers::floor(ctx).await,
    };
    ctx.done_with(&db);
    result.map_err(|e| format!("{} on {}: {e}", workload.name(), subject.name()))
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
