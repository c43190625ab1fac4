//! `query`: reads at scale. A store holding `--query-instances` (1,000,000) instances of a
//! realistic mix, filled once through the public API and kept between runs, is read by the
//! provider's [`QueryProvider`] — filtered pages, the next page by cursor, a count, group
//! counts — and by the same reads written directly in SQL on the same storage (`raw-sqlite`,
//! `raw-pg`: the ids of the page in the index order, `count(*)`, `group by`), one read at a time,
//! each measured over many iterations after a warm-up.
//!
//! **The mix** ([`plan_of`], recipe version [`MIX`]): half completed (mostly `Closed`, some
//! `Terminated`, `Faulted`, `Canceled`), 30% idle (half with a timer weeks ahead, some waiting
//! on a bookmark), 9% executing (unlocked: runnable), 8% suspended with an exception (four
//! exception names), 3% suspended by an operator; five host types of unequal weight, four
//! machines, a key on 40% of them, the promoted data value `customer` (20,000 customers), one
//! metadata entry. Creation times are spread over `--query-days` (30) days: the fill runs in one
//! phase per day, each on a clock set back to that day (the provider's clock; on PostgreSQL the
//! provider is pinned to it for the fill), so within a day the instances are seconds apart.
//!
//! **Keeping the store**: SQLite in `<data-dir>/query-<n>.db` (with `query-<n>.db.json`
//! describing the fill), PostgreSQL in the schema `bench_query_<n>` (the description in the
//! schema's comment). Both are reused when the description matches and the store holds exactly
//! `n` instances; `--refill` forces a new fill. Memory is filled on every run of the harness.
//! After a PostgreSQL fill the harness runs `vacuum (analyze)` on the store's tables (what
//! autovacuum would get to on its own), so plans and visibility are settled.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use instore::{
    bag, BoxFuture, Clock, CreateOwner, Cursor, ExceptionInfo, ExecutionStatus, GroupBy,
    InstanceFilter, InstanceId, InstanceStatus, InstanceStore, KeyId, MemoryProvider,
    MetadataChange, OwnerId, PageRequest, Providers, QueryProvider, Save, StoreSettings,
    SuspendChange, SystemClock, Timestamp, Value,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

use super::{cmd_err, Subject, Workload, COMMAND_TIMEOUT, DEFAULT_PG_POOL};
use crate::driver::{new_histogram, record, Sample};
use crate::providers::{Place, ProviderKind};
use crate::report::Row;
use crate::Synchronous;

/// Version of the fill recipe: a kept store filled by another recipe is filled again.
pub const MIX: u32 = 1;

/// The host types of the mix and their weights (percent).
const HOST_TYPES: [(&str, u32); 5] = [
    ("orders", 35),
    ("billing", 25),
    ("shipping", 20),
    ("reports", 12),
    ("onboarding", 8),
];

/// The host type the host-type page filters on.
pub const PAGE_HOST_TYPE: &str = "billing";

/// The machines the instances are written from.
const MACHINES: [&str; 4] = ["worker-1", "worker-2", "worker-3", "worker-4"];

/// Exception names of the suspended-with-exception instances, with weights.
const EXCEPTIONS: [(&str, u32); 4] = [
    ("TimeoutError", 40),
    ("PaymentDeclined", 30),
    ("HttpError", 20),
    ("NullReference", 10),
];

/// Distinct values of the promoted `customer`.
const CUSTOMERS: u64 = 20_000;

/// The promoted data value.
pub const PROMOTED: &str = "customer";

/// One read of the workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum QueryOp {
    /// First page of `status=Suspended`, 50 items.
    PageSuspended,
    /// The next page of `status=Suspended` by the previous page's cursor, walking on.
    NextPageSuspended,
    /// First page of `condition=Idle`, 50 items.
    PageIdle,
    /// First page of `host_type=billing`, 50 items.
    PageHostType,
    /// First page of `customer=<one of 20,000>` (a promoted value), 50 items.
    PagePromoted,
    /// `count(status=Suspended)`.
    CountSuspended,
    /// `group_count(all, Status)`.
    GroupStatus,
    /// `group_count(all, Condition)`.
    GroupCondition,
}

/// Page size of the page reads.
pub const PAGE: usize = 50;

/// The p99 target of a filtered page.
pub const PAGE_TARGET: Duration = Duration::from_millis(20);
/// The p99 target of a group count by status.
pub const GROUP_TARGET: Duration = Duration::from_millis(100);

impl QueryOp {
    /// Every read, in report order.
    pub const ALL: [QueryOp; 8] = [
        QueryOp::PageSuspended,
        QueryOp::NextPageSuspended,
        QueryOp::PageIdle,
        QueryOp::PageHostType,
        QueryOp::PagePromoted,
        QueryOp::CountSuspended,
        QueryOp::GroupStatus,
        QueryOp::GroupCondition,
    ];

    /// Its name in the table.
    pub fn name(self) -> &'static str {
        match self {
            QueryOp::PageSuspended => "page status=Suspended",
            QueryOp::NextPageSuspended => "next page (cursor) status=Suspended",
            QueryOp::PageIdle => "page condition=Idle",
            QueryOp::PageHostType => "page host_type=billing",
            QueryOp::PagePromoted => "page customer=<promoted>",
            QueryOp::CountSuspended => "count status=Suspended",
            QueryOp::GroupStatus => "group_count by status",
            QueryOp::GroupCondition => "group_count by condition",
        }
    }

    /// Its short name (JSON, CLI).
    pub fn key(self) -> &'static str {
        match self {
            QueryOp::PageSuspended => "page-suspended",
            QueryOp::NextPageSuspended => "next-page-suspended",
            QueryOp::PageIdle => "page-idle",
            QueryOp::PageHostType => "page-host-type",
            QueryOp::PagePromoted => "page-promoted",
            QueryOp::CountSuspended => "count-suspended",
            QueryOp::GroupStatus => "group-status",
            QueryOp::GroupCondition => "group-condition",
        }
    }

    /// The p99 it must stay within on SQLite and PostgreSQL, if it has a target.
    pub fn target(self) -> Option<Duration> {
        match self {
            QueryOp::PageSuspended
            | QueryOp::NextPageSuspended
            | QueryOp::PageIdle
            | QueryOp::PageHostType
            | QueryOp::PagePromoted => Some(PAGE_TARGET),
            QueryOp::GroupStatus => Some(GROUP_TARGET),
            QueryOp::CountSuspended | QueryOp::GroupCondition => None,
        }
    }

    fn filter(self, customer: u64) -> InstanceFilter {
        match self {
            QueryOp::PageSuspended | QueryOp::NextPageSuspended | QueryOp::CountSuspended => {
                InstanceFilter {
                    status: vec![InstanceStatus::Suspended],
                    ..InstanceFilter::default()
                }
            }
            QueryOp::PageIdle => InstanceFilter {
                condition: vec![instore::Condition::Idle],
                ..InstanceFilter::default()
            },
            QueryOp::PageHostType => InstanceFilter {
                host_type: Some(PAGE_HOST_TYPE.to_owned()),
                ..InstanceFilter::default()
            },
            QueryOp::PagePromoted => InstanceFilter {
                promoted: vec![(PROMOTED.to_owned(), customer_name(customer))],
                ..InstanceFilter::default()
            },
            QueryOp::GroupStatus | QueryOp::GroupCondition => InstanceFilter::all(),
        }
    }
}

pub(crate) fn customer_name(n: u64) -> String {
    format!("cust-{:05}", n % CUSTOMERS)
}

/// The customer the promoted page asks for at iteration `i` (the same sequence for every
/// subject): spread over all of them.
pub(crate) fn customer_at(i: u64) -> u64 {
    i.wrapping_mul(7919) % CUSTOMERS
}

/// The workload's settings.
#[derive(Debug, Clone)]
pub struct QuerySettings {
    /// Instances in the store.
    pub instances: usize,
    /// Measured iterations of each read per run.
    pub iterations: usize,
    /// Unmeasured iterations before them.
    pub warmup: usize,
    /// Concurrent handles filling the store.
    pub fill_handles: usize,
    /// Days the creation times are spread over.
    pub days: u32,
    /// Where the SQLite store is kept.
    pub data_dir: PathBuf,
    /// Fill again even if a kept store matches.
    pub refill: bool,
    /// SQLite durability during the fill.
    pub sync: Synchronous,
    /// The PostgreSQL server.
    pub pg_url: String,
    /// Runs (medians are taken over them).
    pub runs: usize,
    /// Run the raw baselines.
    pub baselines: bool,
}

/// `1000000` → `1m`, `10000` → `10k`, else the number.
pub fn size_tag(n: usize) -> String {
    if n >= 1_000_000 && n % 1_000_000 == 0 {
        format!("{}m", n / 1_000_000)
    } else if n >= 1_000 && n % 1_000 == 0 {
        format!("{}k", n / 1_000)
    } else {
        n.to_string()
    }
}

/// The PostgreSQL schema of a kept store of `n` instances.
pub fn pg_schema(n: usize) -> String {
    format!("bench_query_{}", size_tag(n))
}

/// The SQLite file of a kept store of `n` instances.
pub fn sqlite_file(dir: &Path, n: usize) -> PathBuf {
    dir.join(format!("query-{}.db", size_tag(n)))
}

/// The system clock moved by an adjustable offset: the fill's clock, set back to each day.
#[derive(Debug, Default)]
pub struct ShiftedClock {
    offset_us: AtomicI64,
}

impl ShiftedClock {
    /// Sets the offset from the system clock.
    pub fn set_offset(&self, by: i64) {
        self.offset_us.store(by, Ordering::SeqCst);
    }
}

impl Clock for ShiftedClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_micros(
            SystemClock.now().as_micros() + self.offset_us.load(Ordering::SeqCst),
        )
    }

    fn sleep_until(&self, deadline: Timestamp) -> BoxFuture<()> {
        let wait = deadline.since(self.now());
        Box::pin(tokio::time::sleep(wait))
    }
}

/// What one instance of the mix is.
#[derive(Debug, Clone)]
struct InstancePlan {
    host_type: usize,
    machine: usize,
    save: Save,
}

fn weighted<T: Copy>(rng: &mut StdRng, items: &[(T, u32)]) -> T {
    let total: u32 = items.iter().map(|(_, w)| w).sum();
    let mut roll = rng.gen_range(0..total);
    for (item, w) in items {
        if roll < *w {
            return *item;
        }
        roll -= w;
    }
    items[items.len() - 1].0
}

/// The instance number `i` of the mix: deterministic in `i`.
fn plan_of(i: u64, now: Timestamp) -> InstancePlan {
    let mut rng = StdRng::seed_from_u64(0x9e37_79b9_7f4a_7c15 ^ i);
    let host_type = {
        let idx: Vec<(usize, u32)> = HOST_TYPES
            .iter()
            .enumerate()
            .map(|(n, (_, w))| (n, *w))
            .collect();
        weighted(&mut rng, &idx)
    };
    let machine = rng.gen_range(0..MACHINES.len());
    let customer = rng.gen_range(0..CUSTOMERS);
    let data = bag([
        (PROMOTED, Value::from(customer_name(customer))),
        ("amount", Value::Int(rng.gen_range(1..100_000))),
        ("step", Value::Int(rng.gen_range(0..12))),
        (
            "note",
            Value::from(format!(
                "order {i} for {} via {}",
                customer_name(customer),
                HOST_TYPES[host_type].0
            )),
        ),
    ]);
    let mut save = Save::data(data);
    save.metadata_changes.push((
        "bench:region".into(),
        MetadataChange::Set(Value::from(["eu", "us", "ap"][rng.gen_range(0..3)]).into()),
    ));
    if rng.gen_range(0..100) < 40 {
        save.keys_to_associate.push(KeyId::new().into());
    }
    let day = Duration::from_secs(86_400);
    let roll = rng.gen_range(0..1000);
    match roll {
        // 50% completed.
        0..=499 => {
            save.status = weighted(
                &mut rng,
                &[
                    (ExecutionStatus::Closed, 90),
                    (ExecutionStatus::Terminated, 4),
                    (ExecutionStatus::Faulted, 3),
                    (ExecutionStatus::Canceled, 3),
                ],
            );
            save = save.and_complete();
        }
        // 30% idle: half with a timer weeks ahead, a fifth on a bookmark.
        500..=799 => {
            save.status = ExecutionStatus::Idle;
            match rng.gen_range(0..10) {
                0..=4 => save.timer = Some(now.plus(day * rng.gen_range(20..60))),
                5..=6 => save.bookmarks = vec!["approval".to_owned()],
                _ => {}
            }
            save.unlock = true;
        }
        // 9% executing, unlocked (runnable: their host went away mid-run).
        800..=889 => {
            save.status = ExecutionStatus::Executing;
            save.unlock = true;
        }
        // 8% suspended with an exception.
        890..=969 => {
            let name = weighted(&mut rng, &EXCEPTIONS);
            save.status = ExecutionStatus::Idle;
            save.suspend = SuspendChange::Suspend {
                reason: "suspended by the host after an unhandled exception".into(),
                exception: Some(ExceptionInfo {
                    name: name.to_owned(),
                    message: format!("{name} in step {}", rng.gen_range(0..12)),
                }),
            };
            save.unlock = true;
        }
        // 3% suspended by an operator.
        _ => {
            save.status = ExecutionStatus::Idle;
            save.suspend = SuspendChange::Suspend {
                reason: "operator hold".into(),
                exception: None,
            };
            save.unlock = true;
        }
    }
    InstancePlan {
        host_type,
        machine,
        save,
    }
}

/// The store settings of the fill (and of every store on the kept data): `customer` promoted.
pub fn store_settings() -> StoreSettings {
    StoreSettings {
        promotions: vec![PROMOTED.to_owned()],
        ..StoreSettings::default()
    }
}

/// What a kept store says about its fill.
fn description(settings: &QuerySettings) -> serde_json::Value {
    json!({
        "mix": MIX,
        "instances": settings.instances,
        "days": settings.days,
    })
}

/// Fills `providers` with the mix (`clock` is the providers' clock, moved day by day).
async fn fill(
    providers: &Providers,
    clock: &Arc<ShiftedClock>,
    settings: &QuerySettings,
    label: &str,
) -> Result<Duration, String> {
    let t0 = Instant::now();
    let n = settings.instances;
    let days = settings.days.max(1) as usize;
    let done = Arc::new(AtomicUsize::new(0));
    let progress = {
        let done = done.clone();
        let label = label.to_owned();
        tokio::spawn(async move {
            let mut last = (Instant::now(), 0usize);
            loop {
                tokio::time::sleep(Duration::from_secs(15)).await;
                let now = (Instant::now(), done.load(Ordering::Relaxed));
                let rate = (now.1 - last.1) as f64 / (now.0 - last.0).as_secs_f64();
                eprintln!(
                    "  {label}: {} of {n} instances ({rate:.0}/s, {:.0} s)",
                    now.1,
                    t0.elapsed().as_secs_f64()
                );
                last = now;
            }
        })
    };
    let result = async {
        for day in 0..days {
            let back = i64::try_from(days - day).unwrap_or(0) * 86_400_000_000;
            clock.set_offset(-back);
            let from = n * day / days;
            let to = n * (day + 1) / days;
            fill_day(providers, settings, from..to, done.clone()).await?;
        }
        Ok::<(), String>(())
    }
    .await;
    progress.abort();
    clock.set_offset(0);
    result.map(|()| t0.elapsed())
}

/// One day of the fill: instances `range` (by number) from four machines.
async fn fill_day(
    providers: &Providers,
    settings: &QuerySettings,
    range: std::ops::Range<usize>,
    done: Arc<AtomicUsize>,
) -> Result<(), String> {
    let mut stores = Vec::new();
    let mut owners: Vec<Vec<OwnerId>> = Vec::new();
    for machine in MACHINES {
        let store = InstanceStore::builder(providers.persistence.clone())
            .machine(machine)
            .settings(store_settings())
            .build()
            .map_err(|e| format!("building the fill store: {e}"))?;
        let mut of_machine = Vec::new();
        for (host_type, _) in HOST_TYPES {
            let handle = store.create_handle_for(None, None);
            let view = store
                .execute(&handle, CreateOwner::host_type(host_type), COMMAND_TIMEOUT)
                .await
                .map_err(cmd_err("CreateOwner"))?;
            of_machine.push(view.owner.ok_or("CreateOwner answered without an owner")?);
        }
        stores.push(store);
        owners.push(of_machine);
    }
    let stores = Arc::new(stores);
    let owners = Arc::new(owners);
    let next = Arc::new(AtomicUsize::new(range.start));
    let mut tasks = Vec::new();
    for _ in 0..settings.fill_handles.max(1) {
        let (stores, owners, next, done, end) = (
            stores.clone(),
            owners.clone(),
            next.clone(),
            done.clone(),
            range.end,
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= end {
                    return Ok::<(), String>(());
                }
                let store0 = &stores[0];
                let plan = plan_of(i as u64, store0.clock().now());
                let store = &stores[plan.machine];
                let owner = owners[plan.machine][plan.host_type];
                let handle = store.create_handle_for(Some(owner), Some(InstanceId::new()));
                store
                    .execute(&handle, plan.save, COMMAND_TIMEOUT)
                    .await
                    .map_err(cmd_err("Save (fill)"))?;
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let mut first_error = None;
    for t in tasks {
        match t.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(e) => {
                first_error.get_or_insert(format!("fill task failed: {e}"));
            }
        }
    }
    // A clean stop of the day's hosts: their owners go, the instances stay unlocked.
    for (store, of_machine) in stores.iter().zip(owners.iter()) {
        for owner in of_machine {
            let handle = store.create_handle_for(Some(*owner), None);
            let _ = store
                .execute(&handle, instore::Command::DeleteOwner, COMMAND_TIMEOUT)
                .await;
        }
        store.shutdown().await;
    }
    first_error.map_or(Ok(()), Err)
}

/// A store ready to be read: the provider's query side, and how to read it raw.
struct Prepared {
    kind: ProviderKind,
    query: Arc<dyn QueryProvider>,
    /// Keeps the memory provider (and its stores' data) alive.
    _providers: Providers,
    raw: Option<RawTarget>,
    note: String,
}

enum RawTarget {
    Sqlite(PathBuf),
    #[cfg(feature = "postgres")]
    Postgres {
        url: String,
        schema: String,
    },
}

/// Fills (or finds) the store of `kind`.
async fn prepare(kind: ProviderKind, settings: &QuerySettings) -> Result<Prepared, String> {
    let label = format!("query on {}", kind.name());
    let want = description(settings);
    match kind {
        ProviderKind::Memory => {
            let clock = Arc::new(ShiftedClock::default());
            let provider = MemoryProvider::with_clock(clock.clone());
            let providers = Providers::of(provider);
            eprintln!("{label}: filling {} instances…", settings.instances);
            let took = fill(&providers, &clock, settings, &label).await?;
            Ok(Prepared {
                kind,
                query: providers.query.clone(),
                _providers: providers,
                raw: None,
                note: format!(
                    "filled in {:.0} s ({:.0} instances/s)",
                    took.as_secs_f64(),
                    settings.instances as f64 / took.as_secs_f64()
                ),
            })
        }
        ProviderKind::Sqlite => {
            std::fs::create_dir_all(&settings.data_dir)
                .map_err(|e| format!("creating {}: {e}", settings.data_dir.display()))?;
            let path = sqlite_file(&settings.data_dir, settings.instances);
            let sidecar = PathBuf::from(format!("{}.json", path.display()));
            let kept = std::fs::read_to_string(&sidecar)
                .ok()
                .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok());
            let described = kept.as_ref().is_some_and(|k| {
                ["mix", "instances", "days"]
                    .iter()
                    .all(|f| k.get(f) == want.get(f))
            });
            // The provider's schema may have changed since the fill (a migration edited in
            // place): compare the kept file's schema with a new empty store's.
            let same_schema = described
                && path.exists()
                && sqlite_schema(&path)? == fresh_sqlite_schema(&settings.data_dir).await?;
            let matches = !settings.refill
                && same_schema
                && sqlite_count(&path).ok() == Some(settings.instances as i64);
            if described && !same_schema {
                eprintln!("{label}: the kept store's schema is not the provider's any more; filling again");
            }
            let note = if matches {
                let kept = kept.unwrap_or_default();
                eprintln!("{label}: reusing {}", path.display());
                format!(
                    "kept store {} (filled in {} s)",
                    path.display(),
                    kept.get("filled_in_s")
                        .map_or("?".into(), |v| v.to_string())
                )
            } else {
                super::remove_db(&path);
                let _ = std::fs::remove_file(&sidecar);
                let clock = Arc::new(ShiftedClock::default());
                let place = Place::Sqlite {
                    path: path.clone(),
                    sync: settings.sync,
                };
                let providers = place.providers(Some(clock.clone()), true).await?;
                eprintln!(
                    "{label}: filling {} with {} instances…",
                    path.display(),
                    settings.instances
                );
                let took = fill(&providers, &clock, settings, &label).await?;
                drop(providers);
                let mut desc = want.clone();
                desc["filled_in_s"] = json!(took.as_secs_f64().round());
                std::fs::write(&sidecar, desc.to_string())
                    .map_err(|e| format!("writing {}: {e}", sidecar.display()))?;
                format!(
                    "filled {} in {:.0} s ({:.0} instances/s)",
                    path.display(),
                    took.as_secs_f64(),
                    settings.instances as f64 / took.as_secs_f64()
                )
            };
            // A bulk fill leaves a WAL of about a gigabyte behind: fold it into the file, so
            // the reads measure the database, not the WAL index.
            checkpoint(&path)?;
            let place = Place::Sqlite {
                path: path.clone(),
                sync: settings.sync,
            };
            let providers = place.providers(None, true).await?;
            Ok(Prepared {
                kind,
                query: providers.query.clone(),
                _providers: providers,
                raw: Some(RawTarget::Sqlite(path)),
                note,
            })
        }
        ProviderKind::Postgres => prepare_postgres(settings, want, label).await,
    }
}

#[cfg(feature = "postgres")]
async fn prepare_postgres(
    settings: &QuerySettings,
    want: serde_json::Value,
    label: String,
) -> Result<Prepared, String> {
    let schema = pg_schema(settings.instances);
    let (client, _driver) = crate::raw_pg::connect(&settings.pg_url).await?;
    let kept: Option<serde_json::Value> = client
        .query_opt(
            "select obj_description(oid, 'pg_namespace') from pg_namespace where nspname = $1",
            &[&schema],
        )
        .await
        .map_err(|e| format!("reading schema {schema}: {}", crate::raw_pg::describe(&e)))?
        .and_then(|row| row.get::<_, Option<String>>(0))
        .and_then(|s| serde_json::from_str(&s).ok());
    let described = kept.as_ref().is_some_and(|k| {
        ["mix", "instances", "days"]
            .iter()
            .all(|f| k.get(f) == want.get(f))
    });
    // The provider's schema may have changed since the fill (a migration edited in place):
    // compare the kept schema with a new empty store's.
    let same_schema = described && {
        let probe = crate::providers::fresh_schema("bench_probe");
        let place = Place::Postgres {
            url: settings.pg_url.clone(),
            schema: probe.clone(),
            pool_size: 1,
        };
        drop(place.providers(None, false).await?);
        let fresh = pg_schema_text(&client, &probe).await;
        let _ = place.destroy().await;
        let kept = pg_schema_text(&client, &schema).await?;
        let same = fresh? == kept;
        if !same {
            eprintln!("{label}: the kept schema is not the provider's any more; filling again");
        }
        same
    };
    let count = if same_schema {
        client
            .query_one(&format!("select count(*) from \"{schema}\".instances"), &[])
            .await
            .ok()
            .map(|r| r.get::<_, i64>(0))
    } else {
        None
    };
    let place = Place::Postgres {
        url: settings.pg_url.clone(),
        schema: schema.clone(),
        pool_size: DEFAULT_PG_POOL,
    };
    let note = if !settings.refill && count == Some(settings.instances as i64) {
        eprintln!("{label}: reusing schema {schema}");
        format!(
            "kept schema {schema} (filled in {} s)",
            kept.and_then(|k| k.get("filled_in_s").cloned())
                .map_or("?".into(), |v| v.to_string())
        )
    } else {
        client
            .batch_execute(&format!("drop schema if exists \"{schema}\" cascade"))
            .await
            .map_err(|e| format!("dropping {schema}: {}", crate::raw_pg::describe(&e)))?;
        let clock = Arc::new(ShiftedClock::default());
        let providers = place.providers(Some(clock.clone()), true).await?;
        eprintln!(
            "{label}: filling schema {schema} with {} instances…",
            settings.instances
        );
        let took = fill(&providers, &clock, settings, &label).await?;
        drop(providers);
        eprintln!("{label}: vacuum (analyze)…");
        let t = Instant::now();
        for table in ["instances", "instance_data", "keys", "promoted", "owners"] {
            client
                .batch_execute(&format!("vacuum (analyze) \"{schema}\".{table}"))
                .await
                .map_err(|e| format!("vacuum {table}: {}", crate::raw_pg::describe(&e)))?;
        }
        let vacuumed = t.elapsed();
        let mut desc = want.clone();
        desc["filled_in_s"] = json!(took.as_secs_f64().round());
        client
            .batch_execute(&format!(
                "comment on schema \"{schema}\" is '{}'",
                desc.to_string().replace('\'', "''")
            ))
            .await
            .map_err(|e| format!("describing {schema}: {}", crate::raw_pg::describe(&e)))?;
        format!(
            "filled schema {schema} in {:.0} s ({:.0} instances/s), vacuum analyze {:.0} s",
            took.as_secs_f64(),
            settings.instances as f64 / took.as_secs_f64(),
            vacuumed.as_secs_f64()
        )
    };
    let providers = place.providers(None, true).await?;
    Ok(Prepared {
        kind: ProviderKind::Postgres,
        query: providers.query.clone(),
        _providers: providers,
        raw: Some(RawTarget::Postgres {
            url: settings.pg_url.clone(),
            schema,
        }),
        note,
    })
}

/// The shape of a PostgreSQL store: columns, indexes, triggers, function bodies (the schema's
/// name taken out).
#[cfg(feature = "postgres")]
async fn pg_schema_text(client: &tokio_postgres::Client, schema: &str) -> Result<String, String> {
    let row = client
        .query_one(
            "select coalesce(string_agg(x, E'\\n' order by x), '') from (
                 select 'c ' || table_name || '.' || column_name || ' ' || data_type
                        || coalesce(' ' || generation_expression, '') as x
                 from information_schema.columns where table_schema = $1
                 union all
                 select 'i ' || indexname || ' ' || replace(indexdef, $1, 'S')
                 from pg_indexes where schemaname = $1
                 union all
                 select 't ' || c.relname || ' ' || t.tgname
                 from pg_trigger t join pg_class c on c.oid = t.tgrelid
                 join pg_namespace n on n.oid = c.relnamespace
                 where n.nspname = $1 and not t.tgisinternal
                 union all
                 select 'f ' || p.proname || ' ' || md5(replace(p.prosrc, $1, 'S'))
                 from pg_proc p join pg_namespace n on n.oid = p.pronamespace
                 where n.nspname = $1
             ) s",
            &[&schema],
        )
        .await
        .map_err(|e| {
            format!(
                "reading the shape of {schema}: {}",
                crate::raw_pg::describe(&e)
            )
        })?;
    Ok(row.get(0))
}

#[cfg(not(feature = "postgres"))]
async fn prepare_postgres(
    settings: &QuerySettings,
    want: serde_json::Value,
    label: String,
) -> Result<Prepared, String> {
    let _ = (settings, want, label);
    Err("this instore-bench was built without PostgreSQL".to_owned())
}

/// `wal_checkpoint(TRUNCATE)` of a SQLite store nobody else has open.
fn checkpoint(path: &Path) -> Result<(), String> {
    let conn =
        rusqlite::Connection::open(path).map_err(|e| format!("opening {}: {e}", path.display()))?;
    conn.busy_timeout(Duration::from_secs(30))
        .map_err(|e| e.to_string())?;
    conn.query_row("pragma wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .map_err(|e| format!("checkpointing {}: {e}", path.display()))
}

/// The schema of a SQLite store: every table, index and trigger as created.
fn sqlite_schema(path: &Path) -> Result<String, String> {
    let conn = rusqlite::Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| format!("opening {}: {e}", path.display()))?;
    let mut stmt = conn
        .prepare(
            "select type || ' ' || name || ' ' || coalesce(sql, '') from sqlite_master \
             where name not like 'sqlite_%' order by type, name",
        )
        .map_err(|e| format!("reading the schema of {}: {e}", path.display()))?;
    let lines = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("reading the schema of {}: {e}", path.display()))?;
    Ok(lines.join("\n"))
}

/// The schema of a new, empty store of the SQLite provider as built.
async fn fresh_sqlite_schema(dir: &Path) -> Result<String, String> {
    let path = dir.join(format!("schema-probe-{:016x}.db", rand::random::<u64>()));
    let place = Place::Sqlite {
        path: path.clone(),
        sync: Synchronous::Normal,
    };
    let providers = place.providers(None, false).await;
    drop(providers);
    let schema = sqlite_schema(&path);
    super::remove_db(&path);
    schema
}

fn sqlite_count(path: &Path) -> Result<i64, String> {
    if !path.exists() {
        return Err("missing".into());
    }
    let conn = rusqlite::Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| e.to_string())?;
    conn.query_row("select count(*) from instances", [], |r| r.get(0))
        .map_err(|e| e.to_string())
}

/// What a subject answers for a read: the page's ids (for the agreement check), or the counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Answer {
    Ids(Vec<[u8; 16]>),
    Counts(BTreeMap<String, u64>),
}

/// One reader of one store: the provider or a raw baseline.
enum Reader {
    Provider {
        query: Arc<dyn QueryProvider>,
        cursor: Option<Cursor>,
    },
    Sqlite {
        conn: rusqlite::Connection,
        cursor: Option<(i64, Vec<u8>)>,
    },
    #[cfg(feature = "postgres")]
    Postgres(super::query_pg::PgReader),
}

impl Reader {
    /// Whatever `op` needs before it is measured: for the next page, a cursor (the first page
    /// read, unmeasured, when there is none or the walk reached the end).
    async fn prepare(&mut self, op: QueryOp) -> Result<(), String> {
        if op != QueryOp::NextPageSuspended {
            return Ok(());
        }
        let missing = match self {
            Reader::Provider { cursor, .. } => cursor.is_none(),
            Reader::Sqlite { cursor, .. } => cursor.is_none(),
            #[cfg(feature = "postgres")]
            Reader::Postgres(r) => r.cursor.is_none(),
        };
        if missing {
            self.read(QueryOp::PageSuspended, 0).await?;
        }
        Ok(())
    }

    /// One read (`i`: the iteration, choosing the customer of the promoted page).
    async fn read(&mut self, op: QueryOp, i: u64) -> Result<Answer, String> {
        match self {
            Reader::Provider { query, cursor } => provider_read(query, cursor, op, i).await,
            Reader::Sqlite { conn, cursor } => {
                tokio::task::block_in_place(|| sqlite_read(conn, cursor, op, i))
            }
            #[cfg(feature = "postgres")]
            Reader::Postgres(r) => r.read(op, i).await,
        }
    }
}

fn err(what: &'static str) -> impl Fn(instore::StoreError) -> String {
    move |e| format!("{what}: {e}")
}

async fn provider_read(
    query: &Arc<dyn QueryProvider>,
    cursor: &mut Option<Cursor>,
    op: QueryOp,
    i: u64,
) -> Result<Answer, String> {
    let filter = op.filter(customer_at(i));
    match op {
        QueryOp::PageSuspended
        | QueryOp::NextPageSuspended
        | QueryOp::PageIdle
        | QueryOp::PageHostType
        | QueryOp::PagePromoted => {
            let request = PageRequest {
                max: PAGE,
                cursor: if op == QueryOp::NextPageSuspended {
                    *cursor
                } else {
                    None
                },
            };
            let page = query.query(&filter, &request).await.map_err(err("query"))?;
            if matches!(op, QueryOp::PageSuspended | QueryOp::NextPageSuspended) {
                *cursor = page.next;
            }
            Ok(Answer::Ids(
                page.items
                    .iter()
                    .map(|info| *info.id.as_uuid().as_bytes())
                    .collect(),
            ))
        }
        QueryOp::CountSuspended => {
            let n = query.count(&filter).await.map_err(err("count"))?;
            Ok(Answer::Counts(BTreeMap::from([("count".to_owned(), n)])))
        }
        QueryOp::GroupStatus | QueryOp::GroupCondition => {
            let by = if op == QueryOp::GroupStatus {
                GroupBy::Status
            } else {
                GroupBy::Condition
            };
            let groups = query
                .group_count(&filter, by)
                .await
                .map_err(err("group_count"))?;
            Ok(Answer::Counts(
                groups
                    .into_iter()
                    .map(|g| (g.key.unwrap_or_default(), g.count))
                    .collect(),
            ))
        }
    }
}

/// Condition codes (`instore::Condition::code`) → names, and the status each belongs to.
fn condition_name(code: i64) -> (&'static str, &'static str) {
    instore::Condition::ALL
        .into_iter()
        .find(|c| i64::from(c.code()) == code)
        .map_or(("?", "?"), |c| (c.name(), c.status().name()))
}

/// Folds `(condition code, count)` rows into the answer of a group count.
pub(crate) fn fold_groups(rows: Vec<(i64, i64)>, by_status: bool) -> Answer {
    let mut out: BTreeMap<String, u64> = BTreeMap::new();
    for (code, n) in rows {
        let (condition, status) = condition_name(code);
        let key = if by_status { status } else { condition };
        *out.entry(key.to_owned()).or_default() += u64::try_from(n).unwrap_or(0);
    }
    Answer::Counts(out)
}

/// The raw SQLite statements (on the provider's schema: the generated `condition` column and
/// its indexes `instances_condition (condition, created_at, id)` and `instances_host_type
/// (host_type, condition, created_at, id)`).
mod sqlite_sql {
    /// One keyset branch over `instances_condition`; `{c}` a condition code, `{after}` the
    /// cursor clause or nothing.
    pub fn branch(where_: &str, after: &str) -> String {
        format!(
            "select created_at, id from (select created_at, id from instances where {where_}{after} \
             order by created_at desc, id desc limit 51)"
        )
    }

    /// The union of branches, merged in the query order.
    pub fn merged(branches: &[String]) -> String {
        format!(
            "{} order by created_at desc, id desc limit 51",
            branches.join(" union all ")
        )
    }
}

fn sqlite_read(
    conn: &rusqlite::Connection,
    cursor: &mut Option<(i64, Vec<u8>)>,
    op: QueryOp,
    i: u64,
) -> Result<Answer, String> {
    use sqlite_sql::{branch, merged};
    let e = |e: rusqlite::Error| format!("raw sqlite {}: {e}", op.key());
    let page =
        |sql: &str, params: &[&dyn rusqlite::ToSql]| -> Result<Vec<(i64, Vec<u8>)>, String> {
            let mut stmt = conn.prepare_cached(sql).map_err(e)?;
            let rows = stmt
                .query_map(params, |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(e)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(e)?;
            Ok(rows)
        };
    let ids = |rows: &[(i64, Vec<u8>)]| {
        Answer::Ids(
            rows.iter()
                .take(PAGE)
                .map(|(_, id)| id.as_slice().try_into().unwrap_or([0; 16]))
                .collect(),
        )
    };
    match op {
        QueryOp::PageSuspended | QueryOp::NextPageSuspended => {
            let rows = match (op, cursor.as_ref()) {
                (QueryOp::NextPageSuspended, Some((at, id))) => {
                    let after = " and (created_at, id) < (?1, ?2)";
                    let sql = merged(&[
                        branch("condition = 3", after),
                        branch("condition = 4", after),
                    ]);
                    page(&sql, &[at, id])?
                }
                _ => {
                    let sql = merged(&[branch("condition = 3", ""), branch("condition = 4", "")]);
                    page(&sql, &[])?
                }
            };
            *cursor = (rows.len() > PAGE).then(|| rows[PAGE - 1].clone());
            Ok(ids(&rows))
        }
        QueryOp::PageIdle => {
            let rows = page(
                "select created_at, id from instances where condition = 2 \
                 order by created_at desc, id desc limit 51",
                &[],
            )?;
            Ok(ids(&rows))
        }
        QueryOp::PageHostType => {
            let branches: Vec<String> = (1..=8)
                .map(|c| branch(&format!("host_type = ?1 and condition = {c}"), ""))
                .collect();
            let rows = page(&merged(&branches), &[&PAGE_HOST_TYPE])?;
            Ok(ids(&rows))
        }
        QueryOp::PagePromoted => {
            let rows = page(
                "select i.created_at, i.id from promoted p join instances i on i.id = p.instance \
                 where p.name = ?1 and p.text = ?2 order by i.created_at desc, i.id desc limit 51",
                &[&PROMOTED, &customer_name(customer_at(i))],
            )?;
            Ok(ids(&rows))
        }
        QueryOp::CountSuspended => {
            let n: i64 = conn
                .prepare_cached("select count(*) from instances where condition in (3, 4)")
                .map_err(e)?
                .query_row([], |r| r.get(0))
                .map_err(e)?;
            Ok(Answer::Counts(BTreeMap::from([(
                "count".to_owned(),
                u64::try_from(n).unwrap_or(0),
            )])))
        }
        QueryOp::GroupStatus | QueryOp::GroupCondition => {
            let rows = conn
                .prepare_cached("select condition, count(*) from instances group by condition")
                .map_err(e)?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(e)?
                .collect::<Result<Vec<(i64, i64)>, _>>()
                .map_err(e)?;
            Ok(fold_groups(rows, op == QueryOp::GroupStatus))
        }
    }
}

impl Prepared {
    fn subjects(&self, baselines: bool) -> Vec<Subject> {
        let mut out = vec![Subject::Provider(self.kind)];
        if baselines {
            match &self.raw {
                Some(RawTarget::Sqlite(_)) => out.push(Subject::RawSqlite),
                #[cfg(feature = "postgres")]
                Some(RawTarget::Postgres { .. }) => out.push(Subject::RawPg),
                None => {}
            }
        }
        out
    }

    async fn reader(&self, subject: Subject) -> Result<Reader, String> {
        match (subject, &self.raw) {
            (Subject::Provider(_), _) => Ok(Reader::Provider {
                query: self.query.clone(),
                cursor: None,
            }),
            (Subject::RawSqlite, Some(RawTarget::Sqlite(path))) => {
                let conn = rusqlite::Connection::open_with_flags(
                    path,
                    rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
                        | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .map_err(|e| format!("opening {} read-only: {e}", path.display()))?;
                conn.busy_timeout(Duration::from_secs(5))
                    .map_err(|e| e.to_string())?;
                Ok(Reader::Sqlite { conn, cursor: None })
            }
            #[cfg(feature = "postgres")]
            (Subject::RawPg, Some(RawTarget::Postgres { url, schema })) => Ok(Reader::Postgres(
                super::query_pg::PgReader::open(url, schema).await?,
            )),
            _ => Err(format!(
                "{} has no reader on {}",
                subject.name(),
                self.kind.name()
            )),
        }
    }
}

/// Runs `op` `settings.warmup` times unmeasured, then `settings.iterations` times measured.
async fn measure(
    reader: &mut Reader,
    op: QueryOp,
    settings: &QuerySettings,
    first_iteration: &mut u64,
) -> Result<Sample, String> {
    let mut hist = new_histogram();
    let mut busy = Duration::ZERO;
    for n in 0..(settings.warmup + settings.iterations) {
        let i = *first_iteration;
        *first_iteration += 1;
        reader.prepare(op).await?;
        let t = Instant::now();
        let answer = reader.read(op, i).await?;
        let took = t.elapsed();
        std::hint::black_box(answer);
        if n >= settings.warmup {
            record(&mut hist, took);
            busy += took;
        }
    }
    Ok(Sample {
        ops: settings.iterations as u64,
        elapsed: Some(busy),
        hist,
        note: None,
        extras: Vec::new(),
    })
}

/// Checks that the provider and the raw SQL answer alike (first pages, the count, the groups),
/// so the raw reads are the same reads. Differences are returned as notes.
async fn agreement(provider: &mut Reader, raw: &mut Reader) -> Result<Vec<String>, String> {
    let mut notes = Vec::new();
    for op in QueryOp::ALL {
        if op == QueryOp::NextPageSuspended {
            continue;
        }
        let a = provider.read(op, 0).await?;
        let b = raw.read(op, 0).await?;
        if a != b {
            let show = |x: &Answer| match x {
                Answer::Ids(v) => format!("{} ids", v.len()),
                Answer::Counts(c) => format!("{c:?}"),
            };
            notes.push(format!(
                "{}: provider and raw disagree ({} vs {})",
                op.key(),
                show(&a),
                show(&b)
            ));
        }
    }
    Ok(notes)
}

/// The workload's results: rows (one per read × subject), and what was found on the way.
pub struct QueryResults {
    /// One row per read × subject, every run's sample in it.
    pub rows: Vec<Row>,
    /// Per provider: how its store was prepared.
    pub notes: Vec<String>,
}

/// Runs the workload on `kinds`.
pub async fn run_all(
    kinds: &[ProviderKind],
    settings: &QuerySettings,
) -> Result<QueryResults, String> {
    let mut prepared = Vec::new();
    let mut notes = Vec::new();
    for &kind in kinds {
        let p = prepare(kind, settings).await?;
        notes.push(format!("{}: {}", kind.name(), p.note));
        prepared.push(p);
    }
    // Readers, and the agreement check.
    let mut readers: Vec<(Subject, Reader)> = Vec::new();
    for p in &prepared {
        let subjects = p.subjects(settings.baselines);
        let mut mine = Vec::new();
        for s in subjects {
            mine.push((s, p.reader(s).await?));
        }
        if mine.len() == 2 {
            let (left, right) = mine.split_at_mut(1);
            for note in agreement(&mut left[0].1, &mut right[0].1).await? {
                eprintln!("query on {}: {note}", p.kind.name());
                notes.push(format!("{}: {note}", p.kind.name()));
            }
        }
        readers.extend(mine);
    }
    let mut rows: Vec<Row> = Vec::new();
    for op in QueryOp::ALL {
        for (subject, _) in &readers {
            rows.push(Row {
                workload: Workload::Query(op),
                subject: *subject,
                handles: 1,
                samples: Vec::new(),
            });
        }
    }
    let subjects = readers.len();
    let mut iteration = vec![0u64; subjects];
    for run in 1..=settings.runs {
        for (o, op) in QueryOp::ALL.into_iter().enumerate() {
            for (r, (subject, reader)) in readers.iter_mut().enumerate() {
                eprint!(
                    "query {} on {}, run {run}/{}… ",
                    op.name(),
                    subject.name(),
                    settings.runs
                );
                let sample = measure(reader, op, settings, &mut iteration[r]).await?;
                eprintln!(
                    "p50 {}, p99 {}",
                    crate::report::fmt_latency(sample.hist.value_at_quantile(0.5)),
                    crate::report::fmt_latency(sample.hist.value_at_quantile(0.99))
                );
                rows[o * subjects + r].samples.push(sample);
            }
        }
    }
    Ok(QueryResults { rows, notes })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_tags_read_well() {
        assert_eq!(size_tag(1_000_000), "1m");
        assert_eq!(size_tag(10_000), "10k");
        assert_eq!(size_tag(1_234), "1234");
        assert_eq!(pg_schema(1_000_000), "bench_query_1m");
    }

    #[test]
    fn the_mix_is_about_what_it_says() {
        let now = SystemClock.now();
        let n = 20_000u64;
        let mut completed = 0;
        let mut suspended = 0;
        let mut keys = 0;
        for i in 0..n {
            let p = plan_of(i, now);
            if p.save.complete {
                completed += 1;
            }
            if matches!(p.save.suspend, SuspendChange::Suspend { .. }) {
                suspended += 1;
            }
            keys += p.save.keys_to_associate.len();
            assert!(p.save.unlock);
        }
        let pct = |x: usize| x as f64 * 100.0 / n as f64;
        assert!((pct(completed) - 50.0).abs() < 2.0, "{}", pct(completed));
        assert!((pct(suspended) - 11.0).abs() < 1.5, "{}", pct(suspended));
        assert!((pct(keys) - 40.0).abs() < 2.0, "{}", pct(keys));
        // Deterministic in the instance number.
        assert_eq!(plan_of(7, now).host_type, plan_of(7, now).host_type);
    }

    #[test]
    fn groups_fold_into_statuses() {
        let Answer::Counts(c) = fold_groups(vec![(1, 2), (2, 3), (3, 4), (5, 1)], true) else {
            panic!("counts");
        };
        assert_eq!(c["Running"], 5);
        assert_eq!(c["Suspended"], 4);
        assert_eq!(c["Completed"], 1);
    }
}
