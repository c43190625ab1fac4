//! The multi-host test: [`HOSTS`] host processes share one PostgreSQL store and a workload of
//! instances, while the driver SIGKILLs hosts at random and starts replacements. At the end: no
//! acknowledged save is lost, no two owners ever held a live lock on one instance at the same
//! `lock_version`, and every instance completed exactly once.
//!
//! **The workload.** The parent creates [`INITIAL_INSTANCES`] instances (and [`ADDED_PER_KILL`]
//! more after each kill, so work keeps arriving while hosts die), each with the data
//! `{step: 0}`, the key of step 0 and a timer due now, through an owner of host type [`HOST_TYPE`],
//! and unlocks them: they are runnable. An instance is worked on in steps: a host that locks it
//! (`TryLoadRunnable` when woken by `wait_for_events`, or now and then `LoadByKey` with the key of
//! an instance it saw earlier) reads step `s` from the data and saves step `s + 1` — the data
//! `{step, version, owner}` naming the lock it was saved under, the key of that step, and a timer
//! 100–300 ms ahead — and unlocks (sometimes it saves two steps under one lock). Step
//! [`LAST_STEP`] is saved with `complete`. Which step comes next is always read from the store,
//! never remembered, so a save lost by the store shows up as a step done twice.
//!
//! **The hosts.** Each host is this test binary run again (`multi_host_child`, ignored in normal
//! runs) with [`WORKERS`] tasks doing the above on the server's clock, with a 2 s lease, so a
//! killed host's locks pass to the others within seconds. Each appends to its own log file, one
//! unbuffered `write` per line (the page cache keeps what was written when the process is
//! killed): `acquire <instance> <owner> <lock_version> <step loaded> <version that wrote it>
//! <how>` after every load that locked an instance, `ack <instance> <step> <owner>
//! <lock_version>` after every save that returned `Ok`, `complete …` after the completing one,
//! and `error`/`unexpected` lines for commands that failed (locked, lost lock, lost owner, … are
//! expected in a fight over instances between dying hosts; anything else fails the test).
//!
//! **The driver** ([`multi_host`]) keeps [`HOSTS`] hosts running, SIGKILLs a random one every
//! 300–1200 ms and starts a replacement (a new process, a new owner) until it has killed
//! [`KILLS`] (`INSTORE_MULTI_HOST_KILLS` overrides it for longer local runs), then waits until
//! the database says every instance is completed, kills the rest, and checks the logs against
//! the rows read directly from the database. Order across processes comes from the data, never
//! from clocks: the stored step only grows, so an acquisition that loaded a later step happened
//! later, and the lock version only grows with time.
//!
//! 1. *No acknowledged save lost*: no step of an instance is acknowledged twice; acknowledged
//!    steps grow with the lock version; every acquisition at a newer lock version than an
//!    acknowledged save loaded that step or a later one, and an acquisition that loaded an
//!    acknowledged step loaded the data of that save; the stored data is the last step.
//! 2. *Lock fencing*: every acquisition and acknowledgement at one `(instance, lock_version)`
//!    names the same owner; an acquisition that loaded a later step than another has a lock
//!    version at least as high (a new owner has a higher one); every acquisition that loaded step
//!    `s` came no later (by lock version) than the acknowledged save of step `s + 1`.
//! 3. *Completed exactly once*: every instance is stored completed, unlocked, with the keys of all
//!    its steps completed; at most one host acknowledged its completion, and no acquisition ever
//!    loaded it completed.
//!
//! Nothing is timed: the checks hold whatever the scheduling; only an overall deadline for the
//! workload to finish fails the run (with the rows still incomplete and who holds them).
#![cfg(unix)]

mod support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use instore::encoding::decode;
use instore::{
    bag, CreateOwner, Encoding, InstanceId, InstanceStore, InstanceValue, InstanceView, KeyId,
    LoadByKey, NewKey, OwnerId, PropertyBag, Save, StoreError, StoreEvent, StoreSettings, Value,
};
use instore_postgres::{PgClock, PgOptions, PgProvider};
use rand::Rng;

use support::{fresh_schema, server_url, store_url, SchemaGuard};

/// Host processes running at any time.
const HOSTS: usize = 4;
/// SIGKILLs per run; `INSTORE_MULTI_HOST_KILLS` overrides it for longer local runs.
const KILLS: usize = 12;
const KILLS_ENV: &str = "INSTORE_MULTI_HOST_KILLS";
/// The bar: a run that killed fewer hosts proves too little.
const MIN_KILLS: usize = 10;
/// Instances created before the first host starts.
const INITIAL_INSTANCES: usize = 60;
/// Instances created after each kill.
const ADDED_PER_KILL: usize = 6;
/// The step saved with `complete`.
const LAST_STEP: i64 = 16;
/// Concurrent worker tasks in each host.
const WORKERS: usize = 3;
/// The host type of every owner.
const HOST_TYPE: &str = "work";
/// Short leases: a killed host's locks pass to the others soon.
const LEASE: Duration = Duration::from_secs(2);
/// The shortest the settings allow (renewals also run at half the lease).
const RENEW_EVERY: Duration = Duration::from_secs(1);
const DETECTION_POLL: Duration = Duration::from_millis(200);
/// Timeout of one command: generous, a machine busy with four hosts is slow.
const TIMEOUT: Duration = Duration::from_secs(20);
/// Between two kills (ms, uniformly random).
const KILL_EVERY_MS: std::ops::RangeInclusive<u64> = 300..=1200;
/// A step's timer is due this long after its save (ms).
const TIMER_MS: std::ops::RangeInclusive<u64> = 100..=300;
/// "Work" between loading and saving (ms): kills land while locks are held.
const WORK_MS: std::ops::RangeInclusive<u64> = 10..=60;
/// One lock in this many is taken by key instead of by `TryLoadRunnable`.
const BY_KEY_ONE_IN: u32 = 6;
/// `LoadByKey` picks among (at least) this many steps the host saw last.
const RECENT: usize = 64;
/// One lock in this many saves two steps before unlocking.
const TWO_STEPS_ONE_IN: u32 = 4;
/// How long an idle worker waits for `HasRunnableWorkflow` before looking again.
const IDLE_WAIT: Duration = Duration::from_millis(500);
/// After an error, before trying again.
const PAUSE: Duration = Duration::from_millis(50);
/// How long the workload may take after the kills (the kills themselves take at most
/// `KILL_EVERY_MS.end()` each); past it the run fails.
const FINISH_WITHIN: Duration = Duration::from_secs(100);
/// Hosts stop by themselves this long after the parent's deadline, should the parent vanish.
const CHILD_GRACE: Duration = Duration::from_secs(20);

/// The child's test name and its environment.
const CHILD: &str = "multi_host_child";
const URL_ENV: &str = "INSTORE_MULTI_HOST_URL";
const LOG_ENV: &str = "INSTORE_MULTI_HOST_LOG";
const STOP_AT_ENV: &str = "INSTORE_MULTI_HOST_STOP_AT";

/// Names in an instance's data.
const STEP: &str = "mh:step";
const VERSION: &str = "mh:version";
const OWNER: &str = "mh:owner";

/// The key an instance gets with step `step`.
fn key_of(instance: InstanceId, step: i64) -> KeyId {
    KeyId::derive(instance.as_uuid(), &format!("step-{step}"))
}

/// The data of step `step`, saved under `owner`'s lock at `version`.
fn step_data(step: i64, owner: OwnerId, version: u64) -> PropertyBag {
    bag([
        (STEP, InstanceValue::new(step)),
        (VERSION, InstanceValue::new(version as i64)),
        (OWNER, InstanceValue::new(owner.to_string())),
    ])
}

fn int(data: &PropertyBag, name: &str) -> Option<i64> {
    match data.get(name).map(|v| &v.value) {
        Some(Value::Int(n)) => Some(*n),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// The host (child process).
// ---------------------------------------------------------------------------------------------

/// The host's log: one `write` per whole line, no buffer, so a kill loses nothing written.
#[derive(Clone)]
struct Log(Arc<Mutex<File>>);

impl Log {
    fn open(path: &Path) -> Log {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap_or_else(|e| panic!("open the log {}: {e}", path.display()));
        Log(Arc::new(Mutex::new(file)))
    }

    fn line(&self, text: &str) {
        let line = format!("{text}\n");
        let mut file = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if file.write_all(line.as_bytes()).is_err() {
            std::process::exit(5);
        }
    }

    fn fail(&self, why: &str) -> ! {
        self.line(&format!("unexpected {why}"));
        std::process::exit(3);
    }
}

/// Notes a failed command: expected ones (a fight over instances between dying hosts) as
/// `error`, anything else as `unexpected`, which fails the test.
fn note(log: &Log, during: &str, e: &StoreError) {
    let expected = matches!(
        e,
        StoreError::InstanceLocked { .. }
            | StoreError::LockLost { .. }
            | StoreError::OwnerLost { .. }
            | StoreError::HandleConflict { .. }
            | StoreError::InstanceComplete { .. }
            | StoreError::InstanceKeyComplete { .. }
            | StoreError::Timeout
    ) || e.is_transient();
    if expected {
        let detail = match e {
            StoreError::Storage(s) => format!(" {s}"),
            _ => String::new(),
        };
        log.line(&format!("error {during} {}{detail}", e.code()));
    } else {
        log.line(&format!("unexpected {during}: {e} ({e:?})"));
    }
}

fn one_in(n: u32) -> bool {
    rand::thread_rng().gen_ratio(1, n)
}

fn random_ms(range: std::ops::RangeInclusive<u64>) -> Duration {
    Duration::from_millis(rand::thread_rng().gen_range(range))
}

/// Steps of instances this host has seen lately (recent ones are still being worked on, and so
/// fought over): where `LoadByKey` looks for keys.
type Seen = Arc<Mutex<Vec<(InstanceId, i64)>>>;

fn saw(seen: &Seen, instance: InstanceId, step: i64) {
    let mut seen = seen.lock().unwrap_or_else(PoisonError::into_inner);
    seen.push((instance, step));
    if seen.len() > 2 * RECENT {
        seen.drain(..RECENT);
    }
}

/// Run by [`multi_host`] in each host process; does nothing when run by hand without its
/// environment.
#[test]
#[ignore = "a host process of multi_host, which starts it"]
fn multi_host_child() {
    let (Some(url), Some(log), Some(stop_at)) = (
        std::env::var_os(URL_ENV),
        std::env::var_os(LOG_ENV),
        std::env::var(STOP_AT_ENV).ok(),
    ) else {
        return;
    };
    let url = url.into_string().expect("a UTF-8 store URL");
    let stop_at = UNIX_EPOCH + Duration::from_secs(stop_at.parse().expect("a stop time"));
    let log = Log::open(Path::new(&log));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    rt.block_on(host_main(&url, log, stop_at));
}

async fn host_main(url: &str, log: Log, stop_at: SystemTime) {
    log.line(&format!("start {}", std::process::id()));
    let options = PgOptions {
        pool_size: 4,
        ..PgOptions::default()
    };
    let provider = PgProvider::open_with(url, options, PgClock::Server)
        .await
        .unwrap_or_else(|e| log.fail(&format!("open the store: {e}")));
    let settings = StoreSettings {
        lease: LEASE,
        renew_every: RENEW_EVERY,
        detection_poll: DETECTION_POLL,
        ..StoreSettings::default()
    };
    let store = InstanceStore::builder(provider)
        .settings(settings)
        .build()
        .unwrap_or_else(|e| log.fail(&format!("build the store: {e}")));
    let mut events = store.subscribe();
    let owner_handle = store.create_handle();
    let view = store
        .execute(&owner_handle, CreateOwner::host_type(HOST_TYPE), TIMEOUT)
        .await
        .unwrap_or_else(|e| log.fail(&format!("create the owner: {e}")));
    log.line(&format!(
        "owner {}",
        view.owner.map_or("none".to_owned(), |o| o.to_string())
    ));
    let events_log = log.clone();
    tokio::spawn(async move {
        use tokio::sync::broadcast::error::RecvError;
        loop {
            match events.recv().await {
                Ok(StoreEvent::OwnerLost { owner }) => events_log.line(&format!("lost {owner}")),
                Ok(StoreEvent::OwnerRecovered { lost, replacement }) => {
                    events_log.line(&format!("recovered {lost} {replacement}"))
                }
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return,
            }
        }
    });
    let seen: Seen = Arc::default();
    for _ in 0..WORKERS {
        tokio::spawn(worker(store.clone(), log.clone(), seen.clone()));
    }
    let left = stop_at
        .duration_since(SystemTime::now())
        .unwrap_or(Duration::ZERO);
    tokio::time::sleep(left).await;
    log.fail("the host was never killed: it outlived the test's deadline");
}

/// Locks instances one after another (runnable ones, now and then one by key) and steps them.
async fn worker(store: InstanceStore, log: Log, seen: Seen) {
    loop {
        if one_in(BY_KEY_ONE_IN) {
            let picked = {
                let seen = seen.lock().unwrap_or_else(PoisonError::into_inner);
                (!seen.is_empty()).then(|| seen[rand::thread_rng().gen_range(0..seen.len())])
            };
            if let Some((instance, step)) = picked {
                by_key(&store, &log, &seen, instance, step).await;
            }
        }
        // The store's default owner: the one created at start, or its replacement once lost.
        let handle = store.create_handle();
        match store
            .execute(&handle, instore::Command::TryLoadRunnable, TIMEOUT)
            .await
        {
            Ok(view) if view.instance.is_some() => {
                run_steps(&store, &log, &seen, handle, view, "runnable").await;
            }
            // Nothing runnable: wait until the detector says something is.
            Ok(_) => {
                if let Err(e) = store.wait_for_events(&handle, IDLE_WAIT).await {
                    note(&log, "wait_for_events", &e);
                    tokio::time::sleep(PAUSE).await;
                }
            }
            Err(e) => {
                note(&log, "try_load_runnable", &e);
                tokio::time::sleep(PAUSE).await;
            }
        }
    }
}

async fn by_key(store: &InstanceStore, log: &Log, seen: &Seen, instance: InstanceId, step: i64) {
    let handle = store.create_handle();
    match store
        .execute(&handle, LoadByKey::new(key_of(instance, step)), TIMEOUT)
        .await
    {
        Ok(view) if view.instance == Some(instance) => {
            run_steps(store, log, seen, handle, view, "by_key").await;
        }
        Ok(view) => log.line(&format!(
            "unexpected load_by_key of step {step} of {instance} loaded {:?}",
            view.instance
        )),
        Err(e) => note(log, "load_by_key", &e),
    }
}

/// Steps the instance `handle` has just locked: logs the acquisition, saves one step (sometimes
/// two) and unlocks, logging each save that returned `Ok`.
async fn run_steps(
    store: &InstanceStore,
    log: &Log,
    seen: &Seen,
    handle: instore::InstanceHandle,
    view: InstanceView,
    how: &str,
) {
    let (Some(instance), Some(owner), Some(version)) =
        (view.instance, view.owner, view.lock_version)
    else {
        log.line(&format!("unexpected {how} load without a lock: {view:?}"));
        return;
    };
    let (Some(loaded), Some(writer)) = (int(&view.data, STEP), int(&view.data, VERSION)) else {
        log.line(&format!(
            "unexpected {how} load of {instance} without a step: {:?}",
            view.data
        ));
        return;
    };
    log.line(&format!(
        "acquire {instance} {owner} {version} {loaded} {writer} {how}"
    ));
    saw(seen, instance, loaded);
    let steps = if one_in(TWO_STEPS_ONE_IN) { 2 } else { 1 };
    for n in 1..=steps {
        let step = loaded + n;
        tokio::time::sleep(random_ms(WORK_MS)).await;
        let mut save = Save::data(step_data(step, owner, version));
        save.keys_to_associate = vec![NewKey::from(key_of(instance, step))];
        let done = step == LAST_STEP;
        let release = done || n == steps;
        let save = if done {
            save.and_complete()
        } else {
            let save = save.with_timer(store.clock().now().plus(random_ms(TIMER_MS)));
            if release {
                save.and_unlock()
            } else {
                save
            }
        };
        if let Err(e) = store.execute(&handle, save, TIMEOUT).await {
            note(log, "save", &e);
            return;
        }
        log.line(&format!("ack {instance} {step} {owner} {version}"));
        if done {
            log.line(&format!("complete {instance} {owner} {version}"));
        }
        saw(seen, instance, step);
        if release {
            return;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The driver (parent).
// ---------------------------------------------------------------------------------------------

struct Host {
    serial: usize,
    child: Child,
    log: PathBuf,
    out: PathBuf,
}

/// The running hosts; kills every one of them when dropped (the test failed half-way).
struct Hosts {
    live: Vec<Host>,
    /// Every host's log, killed or not.
    logs: Vec<(usize, PathBuf)>,
    dir: PathBuf,
    url: String,
    stop_at: u64,
}

impl Hosts {
    fn start(&mut self) {
        let serial = self.logs.len() + 1;
        let log = self.dir.join(format!("host-{serial}.log"));
        let out = self.dir.join(format!("host-{serial}.out"));
        let out_file = File::create(&out).expect("the host's output file");
        let err_file = out_file.try_clone().expect("the host's output file");
        let exe = std::env::current_exe().expect("the test binary");
        let child = Command::new(exe)
            .args([
                CHILD,
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(URL_ENV, &self.url)
            .env(LOG_ENV, &log)
            .env(STOP_AT_ENV, self.stop_at.to_string())
            .stdin(Stdio::null())
            .stdout(out_file)
            .stderr(err_file)
            .spawn()
            .expect("start a host");
        self.logs.push((serial, log.clone()));
        self.live.push(Host {
            serial,
            child,
            log,
            out,
        });
    }

    /// Fails the test if a host ended by itself (it only ends by being killed).
    fn check_alive(&mut self) {
        for host in &mut self.live {
            if let Some(status) = host.child.try_wait().expect("poll a host") {
                panic!(
                    "host {} exited by itself ({status})\n{}",
                    host.serial,
                    describe_host(host)
                );
            }
        }
    }

    /// SIGKILLs host `i` (`Child::kill` is SIGKILL on Unix).
    fn kill(&mut self, i: usize) {
        let mut host = self.live.swap_remove(i);
        if let Some(status) = host.child.try_wait().expect("poll a host") {
            panic!(
                "host {} exited before its kill ({status})\n{}",
                host.serial,
                describe_host(&host)
            );
        }
        host.child.kill().expect("SIGKILL a host");
        let status = host.child.wait().expect("reap a host");
        assert_eq!(
            status.signal(),
            Some(9),
            "host {} was not ended by SIGKILL: {status}",
            host.serial
        );
    }

    fn kill_all(&mut self) {
        while !self.live.is_empty() {
            self.kill(0);
        }
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for host in &mut self.live {
            let _ = host.child.kill();
            let _ = host.child.wait();
        }
    }
}

/// The tail of a host's output and log, for failure messages.
fn describe_host(host: &Host) -> String {
    let tail = |path: &Path| {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    };
    format!(
        "output:\n{}\nlog tail:\n{}",
        tail(&host.out),
        tail(&host.log)
    )
}

/// Removes the logs when the test passed; keeps them (and says where) when it failed.
struct DirGuard(PathBuf);

impl Drop for DirGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "multi_host: the hosts' logs are kept in {}",
                self.0.display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Creates `n` runnable instances at step 0 (each locked by `owner` at lock version 1, then
/// unlocked with a timer due now).
async fn create_instances(store: &InstanceStore, owner: OwnerId, n: usize) -> Vec<InstanceId> {
    let mut created = Vec::with_capacity(n);
    for _ in 0..n {
        let instance = InstanceId::new();
        let handle = store.create_handle_for(Some(owner), Some(instance));
        let mut save = Save::data(step_data(0, owner, 1))
            .with_timer(store.clock().now())
            .and_unlock();
        save.keys_to_associate = vec![NewKey::from(key_of(instance, 0))];
        store
            .execute(&handle, save, TIMEOUT)
            .await
            .expect("create an instance");
        created.push(instance);
    }
    created
}

/// A connection of the driver's own, reading rows directly.
struct Db {
    client: tokio_postgres::Client,
    schema: String,
}

impl Db {
    async fn connect(schema: &str) -> Db {
        let (client, connection) = tokio_postgres::connect(&server_url(), tokio_postgres::NoTls)
            .await
            .expect("connect to the test server");
        tokio::spawn(connection);
        Db {
            client,
            schema: schema.to_owned(),
        }
    }

    async fn incomplete(&self) -> i64 {
        self.client
            .query_one(
                &format!(
                    "select count(*) from \"{}\".instances where state <> 3",
                    self.schema
                ),
                &[],
            )
            .await
            .expect("count incomplete instances")
            .get(0)
    }

    /// The incomplete instances and the owners holding them, for the deadline's message.
    async fn describe_incomplete(&self) -> String {
        let s = &self.schema;
        let rows = self
            .client
            .query(
                &format!(
                    "select i.id::text, i.state, i.lock_owner::text, i.lock_version, \
                     i.timer - now_us.t, i.ready_at - now_us.t, \
                     o.lease_expires_at - now_us.t, i.updated_at - now_us.t, \
                     i.locked_since - now_us.t \
                     from \"{s}\".instances i \
                     left join \"{s}\".owners o on o.id = i.lock_owner, \
                     (select (extract(epoch from clock_timestamp()) * 1000000)::bigint as t) now_us \
                     where i.state <> 3 order by i.id limit 30"
                ),
                &[],
            )
            .await
            .expect("read the incomplete instances");
        rows.iter()
            .map(|r| {
                format!(
                    "  {} state {} lock_owner {:?} (lease ends in {:?} µs, locked since {:?} µs) \
                     lock_version {} timer in {:?} µs ready_at in {:?} µs, saved {:?} µs",
                    r.get::<_, String>(0),
                    r.get::<_, i16>(1),
                    r.get::<_, Option<String>>(2),
                    r.get::<_, Option<i64>>(6),
                    r.get::<_, Option<i64>>(8),
                    r.get::<_, i64>(3),
                    r.get::<_, Option<i64>>(4),
                    r.get::<_, Option<i64>>(5),
                    r.get::<_, i64>(7),
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    async fn stored(&self) -> HashMap<InstanceId, Stored> {
        let s = &self.schema;
        let rows = self
            .client
            .query(
                &format!(
                    "select i.id, i.state, i.lock_owner, i.lock_version, d.data, d.data_encoding \
                     from \"{s}\".instances i join \"{s}\".instance_data d on d.id = i.id"
                ),
                &[],
            )
            .await
            .expect("read the instances");
        let mut stored: HashMap<InstanceId, Stored> = rows
            .iter()
            .map(|r| {
                let id = InstanceId::from_uuid(r.get(0));
                let data = Encoding::from_code(r.get(5))
                    .and_then(|encoding| decode(encoding, r.get::<_, &[u8]>(4)))
                    .map_err(|e| e.to_string());
                let row = Stored {
                    state: r.get(1),
                    lock_owner: r.get::<_, Option<instore::Uuid>>(2).map(OwnerId::from_uuid),
                    lock_version: r.get(3),
                    data,
                    keys: BTreeMap::new(),
                };
                (id, row)
            })
            .collect();
        let keys = self
            .client
            .query(
                &format!("select id, instance, state from \"{s}\".keys"),
                &[],
            )
            .await
            .expect("read the keys");
        for r in keys {
            let instance = InstanceId::from_uuid(r.get(1));
            let key = KeyId::from_uuid(r.get(0));
            match stored.get_mut(&instance) {
                Some(row) => {
                    row.keys.insert(key, r.get(2));
                }
                None => panic!("key {key} names instance {instance}, which has no row"),
            }
        }
        stored
    }
}

/// An instance as stored at the end.
struct Stored {
    state: i16,
    lock_owner: Option<OwnerId>,
    lock_version: i64,
    data: Result<PropertyBag, String>,
    keys: BTreeMap<KeyId, i16>,
}

// ---------------------------------------------------------------------------------------------
// The records and the checks.
// ---------------------------------------------------------------------------------------------

/// A load that locked an instance.
#[derive(Debug, Clone)]
struct Acquire {
    instance: InstanceId,
    owner: OwnerId,
    version: u64,
    /// The step in the data it loaded.
    loaded: i64,
    /// The lock version that step was saved under.
    writer: u64,
    /// Locked by `LoadByKey` (else by `TryLoadRunnable`).
    by_key: bool,
    host: usize,
}

/// A save that returned `Ok`.
#[derive(Debug, Clone)]
struct Ack {
    instance: InstanceId,
    step: i64,
    owner: OwnerId,
    version: u64,
    host: usize,
}

#[derive(Debug, Default)]
struct Records {
    acquires: Vec<Acquire>,
    acks: Vec<Ack>,
    /// `complete` lines: instance, owner, version, host.
    completes: Vec<(InstanceId, OwnerId, u64, usize)>,
    errors: BTreeMap<String, usize>,
    unexpected: Vec<String>,
    owners: usize,
    lost: usize,
    recovered: usize,
}

fn field<T: std::str::FromStr>(line: &str, part: Option<&str>) -> T {
    part.and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("malformed log line {line:?}"))
}

/// Reads one host's log. A line cut short by the kill has no newline; it is left out.
fn read_log(host: usize, path: &Path, records: &mut Records) {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("read the log {}: {e}", path.display()));
    let complete_lines = match text.rfind('\n') {
        Some(end) => &text[..end],
        None => "",
    };
    for line in complete_lines.lines() {
        let mut parts = line.split(' ');
        match parts.next() {
            Some("acquire") => records.acquires.push(Acquire {
                instance: field(line, parts.next()),
                owner: field(line, parts.next()),
                version: field(line, parts.next()),
                loaded: field(line, parts.next()),
                writer: field(line, parts.next()),
                by_key: parts.next() == Some("by_key"),
                host,
            }),
            Some("ack") => records.acks.push(Ack {
                instance: field(line, parts.next()),
                step: field(line, parts.next()),
                owner: field(line, parts.next()),
                version: field(line, parts.next()),
                host,
            }),
            Some("complete") => records.completes.push((
                field(line, parts.next()),
                field(line, parts.next()),
                field(line, parts.next()),
                host,
            )),
            Some("error") => {
                let during: String = field(line, parts.next());
                let code: String = field(line, parts.next());
                *records
                    .errors
                    .entry(format!("{during}: {code}"))
                    .or_default() += 1;
            }
            Some("unexpected") => records.unexpected.push(format!("host {host}: {line}")),
            Some("owner") => records.owners += 1,
            Some("lost") => records.lost += 1,
            Some("recovered") => records.recovered += 1,
            Some("start") => {}
            _ => panic!("unknown line in {}: {line:?}", path.display()),
        }
    }
}

/// What the checks found, by the three properties.
#[derive(Debug, Default)]
struct Verdict {
    lost_saves: Vec<String>,
    fencing: Vec<String>,
    completion: Vec<String>,
    /// The lock passed from one owner to another (distinct versions beyond the first).
    lock_passes: usize,
    /// Acquisitions of a step another owner had locked before and not saved (it was killed or
    /// lost its lease mid-step).
    takeovers: usize,
}

/// Checks every instance's records against its stored row.
fn verify(
    created: &[InstanceId],
    records: &Records,
    stored: &HashMap<InstanceId, Stored>,
) -> Verdict {
    let mut v = Verdict::default();
    let mut acquires: HashMap<InstanceId, Vec<&Acquire>> = HashMap::new();
    for a in &records.acquires {
        acquires.entry(a.instance).or_default().push(a);
    }
    let mut acks: HashMap<InstanceId, Vec<&Ack>> = HashMap::new();
    for a in &records.acks {
        acks.entry(a.instance).or_default().push(a);
    }
    let mut completes: HashMap<InstanceId, Vec<(OwnerId, u64, usize)>> = HashMap::new();
    for (instance, owner, version, host) in &records.completes {
        completes
            .entry(*instance)
            .or_default()
            .push((*owner, *version, *host));
    }
    let known: HashSet<InstanceId> = created.iter().copied().collect();
    for id in stored.keys().filter(|id| !known.contains(id)) {
        v.completion.push(format!(
            "instance {id} is stored, but the test never created it"
        ));
    }
    for id in acquires
        .keys()
        .chain(acks.keys())
        .filter(|id| !known.contains(id))
    {
        v.completion.push(format!(
            "instance {id} is in the logs, but the test never created it"
        ));
    }

    for &instance in created {
        let mut acq: Vec<&Acquire> = acquires.get(&instance).cloned().unwrap_or_default();
        let ack: Vec<&Ack> = acks.get(&instance).cloned().unwrap_or_default();
        let row = stored.get(&instance);

        // 1. No acknowledged save lost.
        let mut by_step: BTreeMap<i64, &Ack> = BTreeMap::new();
        for a in &ack {
            if let Some(first) = by_step.insert(a.step, a) {
                v.lost_saves.push(format!(
                    "{instance}: step {} acknowledged twice (owner {} at version {} on host {}, \
                     owner {} at version {} on host {})",
                    a.step, first.owner, first.version, first.host, a.owner, a.version, a.host
                ));
            }
        }
        let mut highest: Option<&Ack> = None;
        for a in by_step.values() {
            if let Some(h) = highest.filter(|h| a.version < h.version) {
                v.lost_saves.push(format!(
                    "{instance}: step {} acknowledged at version {}, after step {} at version {}",
                    a.step, a.version, h.step, h.version
                ));
            }
            highest = Some(a);
        }
        for a in &ack {
            for b in acq
                .iter()
                .filter(|b| b.version > a.version && b.loaded < a.step)
            {
                v.lost_saves.push(format!(
                    "{instance}: LOST — step {} was acknowledged at version {}, but the \
                     acquisition at version {} (host {}) loaded step {}",
                    a.step, a.version, b.version, b.host, b.loaded
                ));
            }
        }
        for b in &acq {
            if b.writer > b.version {
                v.lost_saves.push(format!(
                    "{instance}: the acquisition at version {} loaded data saved at version {}",
                    b.version, b.writer
                ));
            }
            if let Some(a) = by_step.get(&b.loaded).filter(|a| a.version != b.writer) {
                v.lost_saves.push(format!(
                    "{instance}: step {} was acknowledged at version {}, but the acquisition at \
                     version {} (host {}) loaded a step {} saved at version {}",
                    a.step, a.version, b.version, b.host, b.loaded, b.writer
                ));
            }
        }
        match row.map(|r| &r.data) {
            None => v.lost_saves.push(format!("{instance}: LOST — no row")),
            Some(Err(e)) => v
                .lost_saves
                .push(format!("{instance}: the data does not decode: {e}")),
            Some(Ok(data)) => {
                let step = int(data, STEP);
                if step != Some(LAST_STEP) {
                    v.lost_saves.push(format!(
                        "{instance}: the stored data is step {step:?}, not the last step {LAST_STEP}"
                    ));
                }
                if let Some(a) = by_step.values().next_back() {
                    if step.is_some_and(|s| s < a.step) {
                        v.lost_saves.push(format!(
                            "{instance}: LOST — step {} was acknowledged, step {step:?} is stored",
                            a.step
                        ));
                    }
                }
                let writer = int(data, VERSION);
                if let Some(a) = by_step.get(&LAST_STEP) {
                    if writer != Some(a.version as i64) {
                        v.lost_saves.push(format!(
                            "{instance}: the last step was acknowledged at version {}, the stored \
                             data was saved at version {writer:?}",
                            a.version
                        ));
                    }
                }
            }
        }

        // 2. Lock fencing.
        let mut holder: BTreeMap<u64, (OwnerId, &'static str, usize)> = BTreeMap::new();
        let held = acq
            .iter()
            .map(|a| (a.version, a.owner, "acquired", a.host))
            .chain(ack.iter().map(|a| (a.version, a.owner, "saved", a.host)));
        for (version, owner, what, host) in held {
            match holder.get(&version) {
                Some((other, other_what, other_host)) if *other != owner => {
                    v.fencing.push(format!(
                        "{instance}: two owners at lock version {version}: {other} {other_what} \
                         it (host {other_host}), {owner} {what} it (host {host})"
                    ));
                }
                Some(_) => {}
                None => {
                    holder.insert(version, (owner, what, host));
                }
            }
        }
        v.lock_passes += holder.len().saturating_sub(1);
        // By the step loaded (a later step was loaded later): versions never go back.
        acq.sort_by_key(|a| (a.loaded, a.version));
        let mut before: Option<&Acquire> = None;
        let mut i = 0;
        while i < acq.len() {
            let j = i + acq[i..]
                .iter()
                .take_while(|a| a.loaded == acq[i].loaded)
                .count();
            for b in &acq[i..j] {
                if let Some(a) = before.filter(|a| b.version < a.version) {
                    v.fencing.push(format!(
                        "{instance}: the acquisition at version {} (owner {}, host {}) loaded \
                         step {}, a later step than the one at version {} (owner {}, host {}) \
                         loaded ({}) — a stale lock",
                        b.version, b.owner, b.host, b.loaded, a.version, a.owner, a.host, a.loaded
                    ));
                }
            }
            // Acquisitions of the same step by an earlier lock died before saving.
            v.takeovers += acq[i..j]
                .iter()
                .filter(|b| acq[i..j].iter().any(|a| a.version < b.version))
                .count();
            let top = acq[i..j].iter().max_by_key(|a| a.version).copied();
            if before.map_or(true, |b| top.is_some_and(|t| t.version > b.version)) {
                before = top;
            }
            i = j;
        }
        for a in by_step.values() {
            for b in acq
                .iter()
                .filter(|b| b.loaded + 1 == a.step && b.version > a.version)
            {
                v.fencing.push(format!(
                    "{instance}: step {} was saved at version {} (owner {}), yet an acquisition \
                     of step {} had version {} (owner {}, host {})",
                    a.step, a.version, a.owner, b.loaded, b.version, b.owner, b.host
                ));
            }
        }

        // 3. Completed exactly once.
        if let Some(row) = row {
            if row.state != 3 {
                v.completion.push(format!(
                    "{instance}: stored in state {}, not completed",
                    row.state
                ));
            }
            if let Some(owner) = row.lock_owner {
                v.completion.push(format!(
                    "{instance}: still locked by {owner} at version {}",
                    row.lock_version
                ));
            }
            let expected: BTreeMap<KeyId, i16> =
                (0..=LAST_STEP).map(|s| (key_of(instance, s), 2)).collect();
            if row.keys != expected {
                v.completion.push(format!(
                    "{instance}: {} keys stored ({} completed), expected the {} keys of its \
                     steps, all completed",
                    row.keys.len(),
                    row.keys.values().filter(|s| **s == 2).count(),
                    expected.len()
                ));
            }
        }
        let done = completes.get(&instance).map_or(&[][..], Vec::as_slice);
        if done.len() > 1 {
            v.completion.push(format!(
                "{instance}: completed {} times: {done:?}",
                done.len()
            ));
        }
        for (owner, version, host) in done {
            match by_step.get(&LAST_STEP) {
                Some(a) if a.owner == *owner && a.version == *version => {}
                _ => v.completion.push(format!(
                    "{instance}: completed by {owner} at version {version} (host {host}) \
                     without acknowledging the last step under that lock"
                )),
            }
        }
        for b in acq.iter().filter(|b| b.loaded >= LAST_STEP) {
            v.completion.push(format!(
                "{instance}: loaded completed (step {}) at version {} by {} (host {})",
                b.loaded, b.version, b.owner, b.host
            ));
        }
        for a in ack
            .iter()
            .filter(|a| a.step > LAST_STEP || (a.step < 1 && a.host != 0))
        {
            v.completion.push(format!(
                "{instance}: step {} acknowledged (host {}), outside 1..={LAST_STEP}",
                a.step, a.host
            ));
        }
    }
    v
}

fn report(what: &str, problems: &[String]) -> String {
    if problems.is_empty() {
        return String::new();
    }
    let shown: Vec<&str> = problems.iter().take(20).map(String::as_str).collect();
    format!(
        "\n{what}: {} problem(s):\n  {}",
        problems.len(),
        shown.join("\n  ")
    )
}

#[test]
fn multi_host() {
    let kills: usize = std::env::var(KILLS_ENV)
        .ok()
        .and_then(|k| k.parse().ok())
        .unwrap_or(KILLS);
    assert!(
        kills >= MIN_KILLS,
        "{KILLS_ENV}={kills}: the test needs at least {MIN_KILLS} kills"
    );
    let started = Instant::now();
    let schema = fresh_schema();
    let _schema_guard = SchemaGuard(schema.clone());
    let url = store_url(&schema);
    let dir = std::env::temp_dir().join(format!("instore-multi-host-{schema}"));
    std::fs::create_dir_all(&dir).expect("a directory for the hosts' logs");
    let _dir_guard = DirGuard(dir.clone());

    let kill_phase =
        Duration::from_millis(*KILL_EVERY_MS.end()) * u32::try_from(kills).unwrap_or(u32::MAX);
    let deadline = started + kill_phase + FINISH_WITHIN;
    let stop_at = SystemTime::now() + kill_phase + FINISH_WITHIN + CHILD_GRACE;

    // Background renewals of the driver's own owner run on this runtime's threads while the
    // driver sleeps between kills.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let (store, owner, db) = rt.block_on(async {
        let options = PgOptions {
            pool_size: 2,
            ..PgOptions::default()
        };
        let provider = PgProvider::open_with(&url, options, PgClock::Server)
            .await
            .expect("create the store");
        let store = InstanceStore::builder(provider)
            .build()
            .expect("a store over it");
        let handle = store.create_handle();
        let view = store
            .execute(&handle, CreateOwner::host_type(HOST_TYPE), TIMEOUT)
            .await
            .expect("the driver's owner");
        let owner = view.owner.expect("an owner id");
        (store, owner, Db::connect(&schema).await)
    });
    let mut created = rt.block_on(create_instances(&store, owner, INITIAL_INSTANCES));

    let mut hosts = Hosts {
        live: Vec::new(),
        logs: Vec::new(),
        dir: dir.clone(),
        url,
        stop_at: stop_at
            .duration_since(UNIX_EPOCH)
            .expect("a time after 1970")
            .as_secs(),
    };
    for _ in 0..HOSTS {
        hosts.start();
    }

    let mut rng = rand::thread_rng();
    let mut killed = 0;
    while killed < kills {
        std::thread::sleep(Duration::from_millis(rng.gen_range(KILL_EVERY_MS)));
        hosts.check_alive();
        let victim = rng.gen_range(0..hosts.live.len());
        hosts.kill(victim);
        killed += 1;
        hosts.start();
        created.extend(rt.block_on(create_instances(&store, owner, ADDED_PER_KILL)));
    }
    let kills_done = started.elapsed();
    rt.block_on(async {
        // A clean stop: the driver's owner holds nothing, and no host waits for its lease.
        let handle = store.create_handle_for(Some(owner), None);
        store
            .execute(&handle, instore::Command::DeleteOwner, TIMEOUT)
            .await
            .expect("delete the driver's owner");
        store.shutdown().await;
    });

    loop {
        let left = rt.block_on(db.incomplete());
        if left == 0 {
            break;
        }
        if Instant::now() > deadline {
            let rows = rt.block_on(db.describe_incomplete());
            panic!(
                "the workload did not finish: {left} of {} instances are incomplete {:.1?} after \
                 the start ({killed} kills done after {kills_done:.1?}); the first of them:\n{rows}",
                created.len(),
                started.elapsed()
            );
        }
        hosts.check_alive();
        std::thread::sleep(Duration::from_millis(200));
    }
    let finished = started.elapsed();
    hosts.kill_all();

    let mut records = Records::default();
    for (serial, log) in &hosts.logs {
        read_log(*serial, log, &mut records);
    }
    // The driver created each instance: step 0, under its lock at version 1.
    for &instance in &created {
        records.acks.push(Ack {
            instance,
            step: 0,
            owner,
            version: 1,
            host: 0,
        });
    }
    let stored = rt.block_on(db.stored());
    let verdict = verify(&created, &records, &stored);
    assert!(
        records.unexpected.is_empty(),
        "hosts saw unexpected errors:\n{}",
        records.unexpected.join("\n")
    );
    let problems = [
        report("1. acknowledged saves lost", &verdict.lost_saves),
        report("2. lock fencing", &verdict.fencing),
        report("3. completed exactly once", &verdict.completion),
    ]
    .concat();
    assert!(problems.is_empty(), "multi-host checks failed:{problems}");
    assert!(killed >= MIN_KILLS, "only {killed} kills");

    let acked = records.acks.len() - created.len();
    println!(
        "multi-host: {} instances x {LAST_STEP} steps on {HOSTS} hosts ({} processes, {} owners \
         registered, {} lost and {} recovered); {killed} SIGKILLs in {kills_done:.1?}, all \
         completed after {finished:.1?}; {acked} saves acknowledged, {} acquisitions ({} by key), \
         {} lock passes between owners, {} takeovers of a step a dead holder had locked, {} \
         completions acknowledged (the others committed unacknowledged); expected errors: {:?}. \
         No acknowledged save lost, one owner per lock version, every instance completed once.",
        created.len(),
        hosts.logs.len(),
        records.owners + records.recovered,
        records.lost,
        records.recovered,
        records.acquires.len(),
        records.acquires.iter().filter(|a| a.by_key).count(),
        verdict.lock_passes,
        verdict.takeovers,
        records.completes.len(),
        records.errors,
    );
}
