//! The acceptance test of the host runtime (SPEC §11 "a crash of one host leaves no instance
//! stuck"), on a SQLite file store and on PostgreSQL: two hosts of one host type in separate
//! processes; the first is SIGKILLed while it holds instances mid-step and others wait on
//! timers; the second completes every instance, each exactly once.
//!
//! **The hosts** are this test binary run again (`takeover_child`, ignored in normal runs), on
//! the store's URL, with a 2 s lease. The workflow: the first step sleeps on a durable timer
//! (staggered per instance); the step after it is the *completion step*: it appends
//! `ran <instance> <pid> <lock_version>` to the process's log (one unbuffered write) and
//! completes the instance, associating in that same save the key
//! `done/<instance>/<pid>/<lock_version>`. In the first host that step hangs after logging (so
//! the host is killed holding the lock); in the second it completes at once.
//!
//! **The proof.** A completion step's durable effect is its key: it exists (completed with the
//! instance) if and only if that step's save committed. After the kill, the parent waits until
//! every instance has a durable completion key among its `ran` lines, then checks:
//! every instance the first host started has exactly one `ran` line whose key is durable
//! (completed exactly once, none missed); the second host ran each completion step at most
//! once; and the killed host's runs left no durable effect.
#![cfg(unix)]
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use instore::{
    bag, CreateOwner, InstanceId, InstanceStore, KeyId, LoadByKey, StoreError, StoreSettings, Uuid,
};
use instore_host::{Context, Fault, Host, Start, Step, Workflow};
use tokio_util::sync::CancellationToken;

const HOST_TYPE: &str = "takeover";
const INSTANCES: usize = 8;
const T: Duration = Duration::from_secs(10);
const NAMESPACE: Uuid = Uuid::from_u128(0x7a6e_0e7e_0000_4000_8000_0000_0000_0001);

fn done_key(instance: &str, pid: &str, lock_version: &str) -> KeyId {
    KeyId::derive(NAMESPACE, &format!("done/{instance}/{pid}/{lock_version}"))
}

fn settings() -> StoreSettings {
    StoreSettings {
        lease: Duration::from_secs(2),
        renew_every: Duration::from_secs(1),
        detection_poll: Duration::from_millis(200),
        suspension_extension: true,
        ..StoreSettings::default()
    }
}

async fn open(url: &str) -> InstanceStore {
    if url.starts_with("sqlite://") {
        instore_sqlite::open_store(url, settings()).await.unwrap()
    } else {
        instore_postgres::open_store(url, settings()).await.unwrap()
    }
}

fn append(log: &Path, line: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    f.write_all(format!("{line}\n").as_bytes()).unwrap();
}

struct Takeover {
    log: PathBuf,
    hang: bool,
}

#[async_trait::async_trait]
impl Workflow for Takeover {
    async fn step(&self, cx: &mut Context) -> Result<Step, Fault> {
        if cx.is_start() {
            let n = cx.get_i64("n").unwrap_or(0) as u64;
            return Ok(Step::sleep(Duration::from_millis(400 + 250 * n)));
        }
        let (instance, pid, version) = (
            cx.instance().to_string(),
            std::process::id().to_string(),
            cx.lock_version().to_string(),
        );
        append(&self.log, &format!("ran {instance} {pid} {version}"));
        if self.hang {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        cx.associate_key(done_key(&instance, &pid, &version));
        cx.set("completed_by", pid);
        Ok(Step::done())
    }
}

/// A host process (run by [`run_takeover`]): `INSTORE_TAKEOVER_URL`, `_LOG`, `_ROLE`
/// (`first` starts the instances and hangs in completion steps, `second` only runs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a child process of the takeover test"]
async fn takeover_child() {
    let url = std::env::var("INSTORE_TAKEOVER_URL").unwrap();
    let log = PathBuf::from(std::env::var("INSTORE_TAKEOVER_LOG").unwrap());
    let first = std::env::var("INSTORE_TAKEOVER_ROLE").unwrap() == "first";
    let store = open(&url).await;
    let host = Host::builder(store)
        .host_type(
            HOST_TYPE,
            Takeover {
                log: log.clone(),
                hang: first,
            },
        )
        .build()
        .await
        .unwrap();
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(host.clone().run(shutdown.clone()));
    if first {
        for n in 0..INSTANCES {
            let start = Start::with_data(bag([("n", n as i64)]));
            let id = host.start(HOST_TYPE, start).await.unwrap();
            append(&log, &format!("started {id}"));
        }
    }
    // Killed by the parent long before this.
    tokio::time::sleep(Duration::from_secs(90)).await;
    shutdown.cancel();
    let _ = run.await;
}

fn spawn_child(url: &str, log: &Path, role: &str) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "takeover_child", "--ignored", "--nocapture"])
        .env("INSTORE_TAKEOVER_URL", url)
        .env("INSTORE_TAKEOVER_LOG", log)
        .env("INSTORE_TAKEOVER_ROLE", role)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

/// Kills a child when dropped (a failing test leaves no host running).
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn lines(log: &Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|l| l.split(' ').map(str::to_owned).collect())
        .collect()
}

/// `(instance, pid, lock_version)` of every `ran` line.
fn runs(log: &Path) -> Vec<(String, String, String)> {
    lines(log)
        .into_iter()
        .filter(|l| l.len() == 4 && l[0] == "ran")
        .map(|l| (l[1].clone(), l[2].clone(), l[3].clone()))
        .collect()
}

/// Whether the completion key of a run is durable (completed with its instance).
async fn durable(store: &InstanceStore, owner: instore::OwnerId, key: KeyId) -> bool {
    let handle = store.create_handle_for(Some(owner), None);
    match store.execute(&handle, LoadByKey::new(key), T).await {
        Err(StoreError::InstanceKeyComplete { .. }) => true,
        Err(StoreError::InstanceKeyNotReady { .. }) => false,
        other => panic!("a completion key is either completed or absent: {other:?}"),
    }
}

async fn wait_until(what: &str, deadline: Instant, mut check: impl FnMut() -> bool) {
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn run_takeover(url: &str, dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(50);
    let (log_a, log_b) = (dir.join("first.log"), dir.join("second.log"));
    let mut first = Killed(spawn_child(url, &log_a, "first"));
    wait_until("the first host holds instances mid-step", deadline, || {
        let started = lines(&log_a).iter().filter(|l| l[0] == "started").count();
        let exited = first.0.try_wait().ok().flatten();
        assert!(exited.is_none(), "the first host exited: {exited:?}");
        started == INSTANCES && runs(&log_a).len() >= 2
    })
    .await;
    first.0.kill().unwrap(); // SIGKILL
    first.0.wait().unwrap();
    let started: BTreeSet<String> = lines(&log_a)
        .into_iter()
        .filter(|l| l[0] == "started")
        .map(|l| l[1].clone())
        .collect();
    let killed_runs = runs(&log_a);
    assert!(
        killed_runs.len() < INSTANCES,
        "some instances still wait on their timers at the kill: {killed_runs:?}"
    );
    let _second = Killed(spawn_child(url, &log_b, "second"));

    let store = open(url).await;
    let checker = store.create_handle_for(None, None);
    let owner = store
        .execute(&checker, CreateOwner::default(), T)
        .await
        .unwrap()
        .owner
        .unwrap();
    let mut durable_runs: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    loop {
        durable_runs.clear();
        for (instance, pid, version) in runs(&log_a).into_iter().chain(runs(&log_b)) {
            if durable(&store, owner, done_key(&instance, &pid, &version)).await {
                durable_runs
                    .entry(instance)
                    .or_default()
                    .push((pid, version));
            }
        }
        if durable_runs.len() == INSTANCES {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not every instance completed: {} of {INSTANCES}: {durable_runs:?}",
            durable_runs.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // None missed, none completed twice.
    assert_eq!(
        durable_runs.keys().cloned().collect::<BTreeSet<_>>(),
        started
    );
    for (instance, runs) in &durable_runs {
        assert_eq!(
            runs.len(),
            1,
            "{instance} completed more than once: {runs:?}"
        );
    }
    // The killed host's runs never became durable; the survivor ran each step at most once.
    let pid_a = first.0.id().to_string();
    assert!(durable_runs
        .values()
        .flatten()
        .all(|(pid, _)| *pid != pid_a));
    let mut by_instance: BTreeMap<String, usize> = BTreeMap::new();
    for (instance, _, _) in runs(&log_b) {
        *by_instance.entry(instance).or_default() += 1;
    }
    assert!(by_instance.values().all(|n| *n == 1), "{by_instance:?}");
    // The instances the killed host held were taken over at a newer lock version.
    for (instance, _, version) in &killed_runs {
        let (_, v) = &durable_runs[instance][0];
        assert!(v.parse::<u64>().unwrap() > version.parse::<u64>().unwrap());
    }
    // Each instance is completed: a load by id answers so.
    let any = started
        .iter()
        .next()
        .unwrap()
        .parse::<InstanceId>()
        .unwrap();
    let handle = store.create_handle_for(Some(owner), Some(any));
    assert!(matches!(
        store.execute(&handle, instore::Load::default(), T).await,
        Err(StoreError::InstanceComplete { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_hosts_instances_are_completed_exactly_once_by_another_host_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("store.db").display());
    run_takeover(&url, dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_hosts_instances_are_completed_exactly_once_by_another_host_on_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let server = std::env::var("INSTORE_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let schema = format!("t_{}", &Uuid::new_v4().simple().to_string()[..20]);
    let sep = if server.contains('?') { '&' } else { '?' };
    let url = format!("{server}{sep}schema={schema}");
    // Create the schema before the hosts race to.
    let provider = instore_postgres::PgProvider::open(&url).await.unwrap();
    let outcome = tokio::spawn({
        let url = url.clone();
        let dir = dir.path().to_owned();
        async move { run_takeover(&url, &dir).await }
    })
    .await;
    provider.drop_store().await.unwrap();
    drop(Arc::clone(&provider));
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}
