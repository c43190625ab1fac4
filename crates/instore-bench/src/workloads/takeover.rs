//! `takeover`: how long after a host dies do its instances run elsewhere?
//!
//! Host A — one store with one owner of host type `bench-takeover` and a short lease (2 s by
//! default, renewed every second by its runtime) — loads N instances (100 by default), saves a
//! state into each and keeps their locks. After running alongside host B for a while (below), it
//! is asked to renew its lease once more — so at the kill right after, almost the whole lease is
//! left: the worst case — and is killed:
//!
//! - `--takeover-crash process` (default for SQLite and PostgreSQL): A runs in a child process
//!   (this binary, re-executed with hidden arguments) on its own provider instance, and the
//!   harness SIGKILLs it. Nothing of A runs after that: no `DeleteOwner`, no unlock, its
//!   connections just drop.
//! - `--takeover-crash in-process` (always for memory, whose store cannot be shared with another
//!   process): A is a store in this process on its own provider instance (the one shared
//!   in-memory provider for memory); the kill is `InstanceStore::shutdown`, which stops its
//!   lease renewals and background work without deleting its owner (a crash, to other hosts).
//!   Its handles are kept until the end, so nothing unlocks.
//!
//! Host B — another store on its own provider instance, an owner of the same host type, default
//! detection (no tuning), `--takeover-loops` host loops each doing `wait_for_events` →
//! `TryLoadRunnable` until it finds nothing — is waiting before the kill. A and B run side by
//! side for B's fallback poll (5 s) + 0.5 s before the kill: B's detector only learns that A
//! holds locks by looking (taking a lock wakes nobody), and a host that has been up alongside
//! another for a while has looked; without this the takeover waits for B's next fallback poll
//! (up to 5 s) whenever A took its first lock less than 5 s before it died. Measured: the time from
//! the kill to B having loaded each of the N instances (`p50`/`p99`/`max`; `max` is the
//! takeover time), and, against A's lease end as stored, how long after it B loaded the first
//! and the last instance. B keeps what it loaded locked until the end.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use instore::{
    Command, CreateOwner, InstanceHandle, InstanceId, InstanceStore, Load, OwnerId, Save,
    StoreSettings, Timestamp,
};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::task::JoinSet;

use super::{cmd_err, payload_bag, payload_bytes, RunCtx, COMMAND_TIMEOUT};
use crate::driver::{new_histogram, record, Sample};
use crate::providers::{Place, ProviderKind};

/// The host type of A and B.
pub const HOST_TYPE: &str = "bench-takeover";
/// Concurrent loaders in host A.
const LOADERS: usize = 16;
/// Connections in each host's pool.
pub const POOL: usize = 16;
/// How long after the lease the harness waits for B before giving up.
const GRACE: Duration = Duration::from_secs(30);
/// How long host A may take to get ready.
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// How host A dies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Crash {
    /// A child process, SIGKILLed (SQLite and PostgreSQL).
    Process,
    /// A store in this process whose background work stops (`shutdown`, no `DeleteOwner`).
    InProcess,
}

/// The settings of the `takeover` workload.
#[derive(Debug, Clone, Copy)]
pub struct TakeoverSettings {
    /// Instances host A holds.
    pub instances: usize,
    /// Host A's lease.
    pub lease: Duration,
    /// How host A dies.
    pub crash: Crash,
}

/// The store settings of both hosts: the lease, renewed every half lease (at least 1 s).
pub fn store_settings(lease: Duration) -> Result<StoreSettings, String> {
    let settings = StoreSettings {
        lease,
        renew_every: (lease / 2).max(Duration::from_secs(1)),
        ..StoreSettings::default()
    };
    settings
        .validate()
        .map_err(|e| format!("--takeover-lease {lease:?}: {e} (use more than 1 s)"))?;
    Ok(settings)
}

/// Host A's work before the kill: registers its owner, loads and saves `n` instances holding
/// their locks. Returns the owner and the handles (drop them only after
/// the store stopped, or they unlock).
async fn host_a(
    store: &InstanceStore,
    n: usize,
    payload: usize,
    lease: Duration,
) -> Result<(OwnerId, Vec<InstanceHandle>), String> {
    let handle = store.create_handle();
    let create = CreateOwner {
        lease: Some(lease),
        ..CreateOwner::host_type(HOST_TYPE)
    };
    let owner = store
        .execute(&handle, create, COMMAND_TIMEOUT)
        .await
        .map_err(cmd_err("CreateOwner"))?
        .owner
        .ok_or("CreateOwner answered without an owner")?;
    let data = payload_bag(&payload_bytes(payload));
    let mut loaders = JoinSet::new();
    for t in 0..LOADERS.min(n.max(1)) {
        let (store, data) = (store.clone(), data.clone());
        let count = n / LOADERS.min(n.max(1)) + usize::from(t < n % LOADERS.min(n.max(1)));
        loaders.spawn(async move {
            let mut handles = Vec::with_capacity(count);
            for _ in 0..count {
                let handle = store.create_handle_for(Some(owner), Some(InstanceId::new()));
                let load = Load {
                    accept_uninitialized: true,
                    ..Load::default()
                };
                store
                    .execute(&handle, load, COMMAND_TIMEOUT)
                    .await
                    .map_err(cmd_err("Load"))?;
                store
                    .execute(&handle, Save::data(data.clone()), COMMAND_TIMEOUT)
                    .await
                    .map_err(cmd_err("Save"))?;
                handles.push(handle);
            }
            Ok::<_, String>(handles)
        });
    }
    let mut handles = Vec::with_capacity(n);
    while let Some(loaded) = loaders.join_next().await {
        handles.extend(loaded.map_err(|e| format!("loader task: {e}"))??);
    }
    Ok((owner, handles))
}

/// Host A as a child process: gets ready, says `ready <owner>` on stdout, then renews its lease
/// when asked, until it is killed. If the harness goes away first (stdin closes) it exits at
/// once, deleting nothing.
pub async fn child(place: Place, settings: TakeoverSettings, payload: usize) -> Result<(), String> {
    let store = place.store(store_settings(settings.lease)?).await?;
    let (owner, _handles) = host_a(&store, settings.instances, payload, settings.lease).await?;
    let mut stdout = tokio::io::stdout();
    stdout
        .write_all(format!("ready {owner}\n").as_bytes())
        .await
        .and(stdout.flush().await)
        .map_err(|e| format!("writing to the harness: {e}"))?;
    // `renew` → renew the lease and say `renewed`; end of input (the harness is gone) → exit.
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if line == "renew" {
            store.renew_leases().await;
            stdout
                .write_all(b"renewed\n")
                .await
                .and(stdout.flush().await)
                .map_err(|e| format!("writing to the harness: {e}"))?;
        }
    }
    std::process::exit(0);
}

/// What B's loops loaded: per instance, when (monotonic, and on the store's clock).
type Loaded = HashMap<InstanceId, (Instant, Timestamp)>;

/// One host loop of B: waits for events, loads runnable instances until none is left, until
/// every instance is loaded or `give_up`. Returns its handles (they hold the locks).
async fn b_loop(
    store: InstanceStore,
    owner: OwnerId,
    loaded: Arc<Mutex<Loaded>>,
    want: usize,
    give_up: Arc<Mutex<Option<Instant>>>,
) -> Result<Vec<InstanceHandle>, String> {
    let waiter = store.create_handle_for(Some(owner), None);
    let mut held = Vec::new();
    loop {
        if lock(&loaded).len() >= want || lock(&give_up).is_some_and(|t| Instant::now() >= t) {
            return Ok(held);
        }
        let events = store
            .wait_for_events(&waiter, Duration::from_millis(250))
            .await
            .map_err(cmd_err("wait_for_events"))?;
        if events.is_empty() {
            continue;
        }
        loop {
            let handle = store.create_handle_for(Some(owner), None);
            let view = store
                .execute(&handle, Command::TryLoadRunnable, COMMAND_TIMEOUT)
                .await
                .map_err(cmd_err("TryLoadRunnable"))?;
            let (at, stamp) = (Instant::now(), store.clock().now());
            let Some(instance) = view.instance else {
                break;
            };
            lock(&loaded).entry(instance).or_insert((at, stamp));
            held.push(handle);
        }
    }
}

/// Host A in a child process: the process and what it says.
struct ChildA {
    child: tokio::process::Child,
    stdout: Lines<BufReader<tokio::process::ChildStdout>>,
}

/// Host A, however it runs.
enum HostA {
    Child(Box<ChildA>),
    InProcess {
        store: InstanceStore,
        handles: Vec<InstanceHandle>,
    },
}

/// Starts host A and waits until it is ready; returns it and its owner.
async fn start_a(
    kind: ProviderKind,
    place: &Place,
    crash: Crash,
    ctx: &RunCtx,
) -> Result<(HostA, OwnerId), String> {
    let t = ctx.takeover;
    let child_place = match (crash, place) {
        (Crash::Process, Place::Sqlite { path, .. }) => Some(path.display().to_string()),
        (Crash::Process, Place::Postgres { schema, .. }) => Some(schema.clone()),
        _ => None,
    };
    let Some(child_place) = child_place else {
        let store = place.store(store_settings(t.lease)?).await?;
        let (owner, handles) = host_a(&store, t.instances, ctx.payload_bytes, t.lease).await?;
        return Ok((HostA::InProcess { store, handles }, owner));
    };
    let exe = std::env::current_exe().map_err(|e| format!("finding this executable: {e}"))?;
    let mut child = tokio::process::Command::new(exe)
        .args([
            "--takeover-child",
            kind.name(),
            "--takeover-place",
            &child_place,
        ])
        .args(["--takeover-instances", &t.instances.to_string()])
        .args(["--takeover-lease", &t.lease.as_secs_f64().to_string()])
        .args(["--payload-bytes", &ctx.payload_bytes.to_string()])
        .args(["--synchronous", ctx.sync.arg()])
        .args(["--pg-url", &ctx.pg_url])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("starting host A: {e}"))?;
    let mut stdout = BufReader::new(child.stdout.take().ok_or("host A has no stdout")?).lines();
    let line = tokio::time::timeout(READY_TIMEOUT, stdout.next_line())
        .await
        .map_err(|_| format!("host A was not ready within {READY_TIMEOUT:?}"))?
        .map_err(|e| format!("reading host A: {e}"))?
        .ok_or("host A exited before it was ready")?;
    let owner = line
        .strip_prefix("ready ")
        .and_then(|o| o.parse::<OwnerId>().ok())
        .ok_or_else(|| format!("host A said {line:?}, not `ready <owner>`"))?;
    Ok((HostA::Child(Box::new(ChildA { child, stdout })), owner))
}

impl HostA {
    /// Renews A's lease now (so at the kill right after it almost the whole lease is left).
    async fn renew(&mut self) -> Result<(), String> {
        match self {
            HostA::Child(a) => {
                let ChildA { child, stdout } = &mut **a;
                let stdin = child.stdin.as_mut().ok_or("host A has no stdin")?;
                stdin
                    .write_all(b"renew\n")
                    .await
                    .and(stdin.flush().await)
                    .map_err(|e| format!("asking host A to renew: {e}"))?;
                let line = tokio::time::timeout(READY_TIMEOUT, stdout.next_line())
                    .await
                    .map_err(|_| "host A did not renew".to_owned())?
                    .map_err(|e| format!("reading host A: {e}"))?;
                if line.as_deref() != Some("renewed") {
                    return Err(format!("host A said {line:?}, not `renewed`"));
                }
            }
            HostA::InProcess { store, .. } => store.renew_leases().await,
        }
        Ok(())
    }

    /// The crash.
    async fn kill(&mut self) -> Result<(), String> {
        match self {
            HostA::Child(a) => {
                let child = &mut a.child;
                child
                    .start_kill()
                    .map_err(|e| format!("killing host A: {e}"))?;
                child
                    .wait()
                    .await
                    .map_err(|e| format!("reaping host A: {e}"))?;
            }
            HostA::InProcess { store, .. } => store.shutdown().await,
        }
        Ok(())
    }
}

/// How long A and B run side by side before the kill: B's fallback poll and half a second, so
/// B's detector has looked at least once while A held its instances.
fn settle(b: &InstanceStore) -> Duration {
    b.settings().detection_poll + Duration::from_millis(500)
}

/// A's lease end as stored (the later of two reads: a renewal in flight at the kill may land
/// just after it).
async fn lease_end(store: &InstanceStore, owner: OwnerId) -> Result<Option<Timestamp>, String> {
    let owners = store
        .provider()
        .owners()
        .await
        .map_err(|e| format!("listing owners: {e}"))?;
    Ok(owners
        .iter()
        .find(|o| o.id == owner)
        .map(|o| o.lease_expires_at))
}

/// One takeover run on `kind` at `place`, with `loops` host loops in B.
pub async fn provider(
    kind: ProviderKind,
    place: &Place,
    loops: usize,
    ctx: &RunCtx,
) -> Result<Sample, String> {
    let t = ctx.takeover;
    let settings = store_settings(t.lease)?;
    let crash = match kind {
        ProviderKind::Memory => Crash::InProcess,
        _ => t.crash,
    };
    // B first: on PostgreSQL it creates the schema.
    let b = place.store(settings).await?;
    let handle = b.create_handle();
    let b_owner = b
        .execute(&handle, CreateOwner::host_type(HOST_TYPE), COMMAND_TIMEOUT)
        .await
        .map_err(cmd_err("CreateOwner"))?
        .owner
        .ok_or("CreateOwner answered without an owner")?;
    let result = measure(kind, place, loops, ctx, crash, &b, b_owner).await;
    b.shutdown().await;
    drop(handle);
    result
}

async fn measure(
    kind: ProviderKind,
    place: &Place,
    loops: usize,
    ctx: &RunCtx,
    crash: Crash,
    b: &InstanceStore,
    b_owner: OwnerId,
) -> Result<Sample, String> {
    let t = ctx.takeover;
    let want = t.instances;
    let loaded = Arc::new(Mutex::new(Loaded::new()));
    let give_up = Arc::new(Mutex::new(None));
    let mut b_loops = JoinSet::new();
    for _ in 0..loops.max(1) {
        b_loops.spawn(b_loop(
            b.clone(),
            b_owner,
            loaded.clone(),
            want,
            give_up.clone(),
        ));
    }

    let (mut a, a_owner) = start_a(kind, place, crash, ctx).await?;
    // Steady state: B's detector learns of A's locks by its own looks (A's locking sends it no
    // wake-up), so let it run alongside A for longer than its fallback poll first.
    tokio::time::sleep(settle(b)).await;
    a.renew().await?;
    if !lock(&loaded).is_empty() {
        return Err("host B loaded an instance while host A was alive".to_owned());
    }
    let killed_at = Instant::now();
    let killed_stamp = b.clock().now();
    a.kill().await?;
    *lock(&give_up) = Some(killed_at + t.lease + GRACE);
    let first_read = lease_end(b, a_owner).await?;

    let mut held = Vec::new();
    let mut first_error = None;
    while let Some(r) = b_loops.join_next().await {
        match r
            .map_err(|e| format!("host loop task: {e}"))
            .and_then(|r| r)
        {
            Ok(h) => held.extend(h),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    let second_read = lease_end(b, a_owner).await?;
    // Dropping B's handles unlocks in the background; harmless now, B stops in the caller.
    drop(held);
    if let HostA::InProcess { store, handles } = a {
        drop(handles);
        drop(store);
    }
    if let Some(e) = first_error {
        return Err(e);
    }

    let loaded = lock(&loaded).clone();
    let mut hist = new_histogram();
    for (at, _) in loaded.values() {
        record(&mut hist, at.saturating_duration_since(killed_at));
    }
    let lease_end = first_read.max(second_read);
    let stamps = loaded.values().map(|(_, s)| *s);
    let (first, last) = (stamps.clone().min(), stamps.max());
    let micros = |a: Timestamp, b: Timestamp| a.as_micros() - b.as_micros();
    let mut extras = vec![(
        "lease",
        i64::try_from(t.lease.as_micros()).unwrap_or(i64::MAX),
    )];
    if let Some(end) = lease_end {
        extras.push(("lease left at kill", micros(end, killed_stamp)));
        if let (Some(first), Some(last)) = (first, last) {
            extras.push(("first loaded after lease end", micros(first, end)));
            extras.push(("all loaded after lease end", micros(last, end)));
        }
    }
    let how = match crash {
        Crash::Process => "host A SIGKILLed (child process)",
        Crash::InProcess => "host A stopped in-process (shutdown, no DeleteOwner)",
    };
    let mut note = format!(
        "time from kill to load; {how}; {}/{want} taken over",
        loaded.len()
    );
    if loaded.len() < want {
        note.push_str(&format!(" — GAVE UP {GRACE:?} after the lease"));
    }
    Ok(Sample {
        ops: hist.len(),
        elapsed: None,
        hist,
        note: Some(note),
        extras,
    })
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lease_is_renewed_every_half_lease_and_must_exceed_a_second() {
        let s = store_settings(Duration::from_secs(2)).expect("a 2 s lease is valid");
        assert_eq!(s.renew_every, Duration::from_secs(1));
        let s = store_settings(Duration::from_secs(10)).expect("a 10 s lease is valid");
        assert_eq!(s.renew_every, Duration::from_secs(5));
        let e = store_settings(Duration::from_secs(1)).unwrap_err();
        assert!(e.contains("--takeover-lease"), "{e}");
    }
}
