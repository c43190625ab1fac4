//! `instore-bench`: runs named workloads on the chosen providers and on raw baselines (rusqlite,
//! tokio-postgres) doing the equivalent writes with the same durability, in one process run, and
//! prints ops/s, p50/p99/max latency and the ratio to the baselines. See `docs/bench.md`.
//!
//! ```text
//! instore-bench [--workload save|cycle|by-key|timers|takeover|control|query|all]
//!               [--provider memory|sqlite|postgres|all] [--pg-url URL]
//!               [--handles 1,16,64] [--seconds N | --ops N] [--runs 3] [--dir PATH] [--json]
//! ```

mod baseline;
mod driver;
mod providers;
#[cfg(feature = "postgres")]
mod raw_pg;
mod report;
mod workloads;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use serde_json::json;

use crate::driver::{Budget, Limit};
use crate::providers::{Place, ProviderKind, POSTGRES_LINKED, SQLITE_LINKED};
use crate::report::{Machine, Row};
use crate::workloads::control::ControlSettings;
use crate::workloads::query::{QueryOp, QuerySettings};
use crate::workloads::takeover::{self, Crash, TakeoverSettings};
use crate::workloads::{RunCtx, Subject, Workload};

/// SQLite durability, for the provider and the raw baselines alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Synchronous {
    /// `synchronous=FULL`: fsync at every commit (the provider's default).
    Full,
    /// `synchronous=NORMAL`: WAL fsynced at checkpoints only.
    Normal,
}

impl Synchronous {
    /// Its spelling on the command line.
    pub fn arg(self) -> &'static str {
        match self {
            Synchronous::Full => "full",
            Synchronous::Normal => "normal",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum WorkloadArg {
    Save,
    Cycle,
    ByKey,
    Timers,
    Takeover,
    Control,
    Query,
    All,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ProviderArg {
    Memory,
    Sqlite,
    Postgres,
    All,
}

/// Benchmarks instore's providers against raw SQLite and PostgreSQL baselines in the same run.
#[derive(Debug, Parser)]
#[command(name = "instore-bench", version, about, long_about = None)]
struct Args {
    /// Workloads to run (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "all")]
    workload: Vec<WorkloadArg>,
    /// Providers to run them on (comma-separated); the raw baselines of their storage run too.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "all")]
    provider: Vec<ProviderArg>,
    /// The PostgreSQL server for `postgres` and `raw-pg`; each run gets a fresh schema there,
    /// dropped after it.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
    pg_url: String,
    /// Concurrent handles (comma-separated), for save, cycle and by-key.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    handles: Vec<usize>,
    /// Seconds recorded per run (after the warm-up). Default 3.
    #[arg(long, conflicts_with = "ops")]
    seconds: Option<f64>,
    /// Operations recorded per run instead (all handles together).
    #[arg(long)]
    ops: Option<u64>,
    /// Runs of each measurement; the table shows the median of each metric.
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// Directory for the database files (default: a fresh temporary directory, removed after).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Print the results as JSON (progress still goes to stderr).
    #[arg(long)]
    json: bool,
    /// Unrecorded warm-up before each measurement, seconds.
    #[arg(long, default_value_t = 0.5)]
    warmup: f64,
    /// SQLite durability for the provider and the baselines.
    #[arg(long, value_enum, default_value = "full")]
    synchronous: Synchronous,
    /// Size of the saved state, bytes (random, so incompressible).
    #[arg(long, default_value_t = 4096)]
    payload_bytes: usize,
    /// Most upserts the raw-batch baseline commits in one transaction.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Skip the baselines (raw-txn, raw-batch, raw-pg, tokio-sleep).
    #[arg(long)]
    no_baseline: bool,
    /// Instances (with keys) created for by-key (at least one per handle).
    #[arg(long, default_value_t = 10_000)]
    keys: usize,
    /// Timers for the timers workload.
    #[arg(long, default_value_t = 1_000)]
    timers: usize,
    /// Seconds over which the timers fall due.
    #[arg(long, default_value_t = 5.0)]
    timer_spread: f64,
    /// Host loops (waiting handles running TryLoadRunnable) for the timers workload.
    #[arg(long, default_value_t = 1)]
    timer_loops: usize,
    /// Instances host A holds when it is killed, for the takeover workload.
    #[arg(long, default_value_t = 100)]
    takeover_instances: usize,
    /// Host A's lease for the takeover workload, seconds (more than 1).
    #[arg(long, default_value_t = 2.0)]
    takeover_lease: f64,
    /// Host loops of host B for the takeover workload (comma-separated counts).
    #[arg(long, value_delimiter = ',', default_value = "1")]
    takeover_loops: Vec<usize>,
    /// How host A dies: a SIGKILLed child process, or stopping its store in this process
    /// (memory always runs in-process).
    #[arg(long, value_enum, default_value = "process")]
    takeover_crash: Crash,
    /// Commands of the control workload (half Suspend, half Resume on commands/2 instances).
    #[arg(long, default_value_t = 10_000)]
    control_commands: usize,
    /// Concurrent enqueuers of the control workload.
    #[arg(long, default_value_t = 16)]
    control_enqueuers: usize,
    /// Suspend commands enqueued per second in the control workload (0: all at once).
    #[arg(long, default_value_t = 0.0)]
    control_rate: f64,
    /// Seconds the control workload may take before it is given up.
    #[arg(long, default_value_t = 600.0)]
    control_timeout: f64,
    /// Instances in the query workload's store.
    #[arg(long, default_value_t = 1_000_000)]
    query_instances: usize,
    /// Measured iterations of each read per run (query).
    #[arg(long, default_value_t = 200)]
    query_iterations: usize,
    /// Unmeasured iterations of each read before them (query).
    #[arg(long, default_value_t = 20)]
    query_warmup: usize,
    /// Concurrent handles filling the query store.
    #[arg(long, default_value_t = 64)]
    query_fill_handles: usize,
    /// Days the query store's creation times are spread over.
    #[arg(long, default_value_t = 30)]
    query_days: u32,
    /// Where the query workload keeps its SQLite store (default: target/instore-bench).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Fill the query store again even if a kept one matches.
    #[arg(long)]
    refill: bool,
    /// Keep the database files.
    #[arg(long)]
    keep: bool,
    /// Internal: run as the takeover workload's host A for this provider.
    #[arg(long, hide = true, value_enum, requires = "takeover_place")]
    takeover_child: Option<ProviderArg>,
    /// Internal: host A's store (a SQLite file, or a PostgreSQL schema on --pg-url).
    #[arg(long, hide = true)]
    takeover_place: Option<String>,
}

/// Where the query workload keeps its SQLite store by default: the workspace's
/// `target/instore-bench`.
fn default_data_dir() -> PathBuf {
    let crate_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    crate_dir
        .parent()
        .and_then(std::path::Path::parent)
        .unwrap_or(crate_dir)
        .join("target")
        .join("instore-bench")
}

fn seconds(what: &str, s: f64) -> Result<Duration, String> {
    Duration::try_from_secs_f64(s).map_err(|_| format!("--{what} {s} is not a duration in seconds"))
}

struct Plan {
    workloads: Vec<Workload>,
    providers: Vec<ProviderKind>,
    skipped: Vec<String>,
}

fn plan(args: &Args) -> Result<Plan, String> {
    let mut workloads: Vec<Workload> = args
        .workload
        .iter()
        .flat_map(|w| match w {
            WorkloadArg::Save => vec![Workload::Save],
            WorkloadArg::Cycle => vec![Workload::Cycle],
            WorkloadArg::ByKey => vec![Workload::ByKey],
            WorkloadArg::Timers => vec![Workload::Timers],
            WorkloadArg::Takeover => vec![Workload::Takeover],
            WorkloadArg::Control => vec![Workload::Control],
            WorkloadArg::Query => vec![Workload::Query(QueryOp::PageSuspended)],
            WorkloadArg::All => {
                let mut all = Workload::ALL.to_vec();
                all.push(Workload::Query(QueryOp::PageSuspended));
                all
            }
        })
        .collect();
    workloads.sort();
    workloads.dedup();
    let mut providers = Vec::new();
    let mut skipped = Vec::new();
    for p in &args.provider {
        match p {
            ProviderArg::Memory => providers.push(ProviderKind::Memory),
            ProviderArg::Sqlite if !SQLITE_LINKED => {
                return Err(
                    "--provider sqlite: this instore-bench was built without the SQLite \
                            provider; build it with `--features sqlite`"
                        .to_owned(),
                )
            }
            ProviderArg::Sqlite => providers.push(ProviderKind::Sqlite),
            ProviderArg::Postgres if !POSTGRES_LINKED => {
                return Err(
                    "--provider postgres: this instore-bench was built without the PostgreSQL \
                            provider; build it with `--features postgres`"
                        .to_owned(),
                )
            }
            ProviderArg::Postgres => providers.push(ProviderKind::Postgres),
            ProviderArg::All => {
                for kind in [
                    ProviderKind::Memory,
                    ProviderKind::Sqlite,
                    ProviderKind::Postgres,
                ] {
                    if kind.available() {
                        providers.push(kind);
                    } else {
                        skipped.push(format!("{} (not linked into this build)", kind.name()));
                    }
                }
            }
        }
    }
    providers.sort();
    providers.dedup();
    if args.handles.contains(&0) || args.handles.is_empty() {
        return Err("--handles takes positive counts, e.g. 1,16,64".to_owned());
    }
    if args.runs == 0 {
        return Err("--runs must be at least 1".to_owned());
    }
    if args.batch == 0 {
        return Err("--batch must be at least 1".to_owned());
    }
    if args.takeover_loops.contains(&0) || args.takeover_loops.is_empty() {
        return Err("--takeover-loops takes positive counts, e.g. 1,4".to_owned());
    }
    if args.takeover_instances == 0 {
        return Err("--takeover-instances must be at least 1".to_owned());
    }
    if args.control_commands < 2 || args.control_enqueuers == 0 {
        return Err(
            "--control-commands must be at least 2 and --control-enqueuers at least 1".to_owned(),
        );
    }
    if !(args.control_rate >= 0.0 && args.control_rate.is_finite()) {
        return Err("--control-rate must be 0 (all at once) or a positive rate".to_owned());
    }
    if args.query_instances == 0 || args.query_iterations == 0 || args.query_fill_handles == 0 {
        return Err(
            "--query-instances, --query-iterations and --query-fill-handles must be at least 1"
                .to_owned(),
        );
    }
    Ok(Plan {
        workloads,
        providers,
        skipped,
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("instore-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn takeover_settings(args: &Args) -> Result<TakeoverSettings, String> {
    let lease = seconds("takeover-lease", args.takeover_lease)?;
    takeover::store_settings(lease)?;
    Ok(TakeoverSettings {
        instances: args.takeover_instances,
        lease,
        crash: args.takeover_crash,
    })
}

/// Host A of the takeover workload, in its own process.
async fn takeover_child(args: &Args, kind: ProviderArg) -> Result<(), String> {
    let at = args.takeover_place.clone().unwrap_or_default();
    let place = match kind {
        ProviderArg::Sqlite => Place::Sqlite {
            path: at.into(),
            sync: args.synchronous,
        },
        ProviderArg::Postgres => Place::Postgres {
            url: args.pg_url.clone(),
            schema: at,
            pool_size: takeover::POOL,
        },
        ProviderArg::Memory | ProviderArg::All => {
            return Err("--takeover-child is for sqlite or postgres".to_owned())
        }
    };
    takeover::child(place, takeover_settings(args)?, args.payload_bytes).await
}

async fn run(args: Args) -> Result<(), String> {
    if let Some(kind) = args.takeover_child {
        return takeover_child(&args, kind).await;
    }
    let plan = plan(&args)?;
    let takeover = takeover_settings(&args)?;
    let control = ControlSettings {
        commands: args.control_commands,
        enqueuers: args.control_enqueuers,
        rate: (args.control_rate > 0.0).then_some(args.control_rate),
        timeout: seconds("control-timeout", args.control_timeout)?,
    };
    let query = QuerySettings {
        instances: args.query_instances,
        iterations: args.query_iterations,
        warmup: args.query_warmup,
        fill_handles: args.query_fill_handles,
        days: args.query_days.max(1),
        data_dir: args.data_dir.clone().unwrap_or_else(default_data_dir),
        refill: args.refill,
        sync: args.synchronous,
        pg_url: args.pg_url.clone(),
        runs: args.runs,
        baselines: !args.no_baseline,
    };
    let limit = match args.ops {
        Some(n) => Limit::Ops(n),
        None => Limit::Seconds(seconds("seconds", args.seconds.unwrap_or(3.0))?),
    };
    let budget = Budget {
        warmup: seconds("warmup", args.warmup)?,
        limit,
    };
    // The temporary directory lives until the end of the run.
    let (dir, _temp) = match &args.dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("creating --dir {}: {e}", dir.display()))?;
            (dir.clone(), None)
        }
        None => {
            let temp = tempfile::Builder::new()
                .prefix("instore-bench-")
                .tempdir()
                .map_err(|e| format!("creating a temporary directory: {e}"))?;
            (temp.path().to_owned(), Some(temp))
        }
    };
    let machine = Machine::detect(&dir);
    let settings = json!({
        "synchronous": format!("{:?}", args.synchronous).to_uppercase(),
        "journal_mode": "WAL",
        "payload_bytes": args.payload_bytes,
        "warmup_s": budget.warmup.as_secs_f64(),
        "seconds": match limit { Limit::Seconds(d) => Some(d.as_secs_f64()), Limit::Ops(_) => None },
        "ops": match limit { Limit::Ops(n) => Some(n), Limit::Seconds(_) => None },
        "runs": args.runs,
        "raw_batch_max": args.batch,
        "keys": args.keys,
        "timers": args.timers,
        "timer_spread_s": args.timer_spread,
        "timer_loops": args.timer_loops,
        "db_dir": dir.display().to_string(),
        "pg_url": providers::redacted(&args.pg_url),
        "pg_pool": "the handle count for save, cycle and by-key; 16 for timers and takeover",
        "takeover_instances": takeover.instances,
        "takeover_lease_s": takeover.lease.as_secs_f64(),
        "takeover_crash": format!("{:?}", takeover.crash),
        "control_commands": control.commands,
        "control_enqueuers": control.enqueuers,
        "control_rate": control.rate,
        "query_instances": query.instances,
        "query_iterations": query.iterations,
        "query_warmup": query.warmup,
        "query_fill_handles": query.fill_handles,
        "query_days": query.days,
        "query_data_dir": query.data_dir.display().to_string(),
    });

    let mut rows: Vec<Row> = Vec::new();
    let mut query_notes: Vec<String> = Vec::new();
    for &workload in &plan.workloads {
        if let Workload::Query(_) = workload {
            // The memory provider (the oracle) answers by scanning every instance: at a million
            // that is slow, so `query` runs on it only when it is named.
            let named_memory = args.provider.contains(&ProviderArg::Memory);
            let kinds: Vec<ProviderKind> = plan
                .providers
                .iter()
                .copied()
                .filter(|&k| k != ProviderKind::Memory || named_memory)
                .collect();
            if kinds.len() < plan.providers.len() {
                query_notes.push(
                    "memory: not run (it scans every instance per read; name it with --provider memory to run it)"
                        .to_owned(),
                );
            }
            let results = workloads::query::run_all(&kinds, &query).await?;
            rows.extend(results.rows);
            query_notes.extend(results.notes);
            continue;
        }
        let mut subjects: Vec<Subject> = plan
            .providers
            .iter()
            .map(|&p| Subject::Provider(p))
            .collect();
        if !args.no_baseline {
            subjects.extend(workload.baselines(args.batch, &plan.providers));
        }
        let handle_counts = match workload {
            Workload::Timers => vec![args.timer_loops.max(1)],
            Workload::Takeover => args.takeover_loops.clone(),
            Workload::Control => vec![1],
            _ => args.handles.clone(),
        };
        for &handles in &handle_counts {
            let first = rows.len();
            rows.extend(subjects.iter().map(|&subject| Row {
                workload,
                subject,
                handles,
                samples: Vec::new(),
            }));
            // Runs interleave the subjects, so a drift of the machine hits them all alike.
            for run in 1..=args.runs {
                for row in &mut rows[first..] {
                    let ctx = RunCtx {
                        dir: dir.clone(),
                        sync: args.synchronous,
                        budget,
                        payload_bytes: args.payload_bytes,
                        keys: args.keys,
                        timers: args.timers,
                        timer_spread: seconds("timer-spread", args.timer_spread)?,
                        keep: args.keep,
                        tag: format!("{}-h{handles}-r{run}", workload.name()),
                        pg_url: args.pg_url.clone(),
                        takeover,
                        control,
                    };
                    eprint!(
                        "{} on {} with {handles} handle(s), run {run}/{}… ",
                        workload.name(),
                        row.subject.name(),
                        args.runs
                    );
                    let sample = workloads::run(workload, row.subject, handles, &ctx).await?;
                    match sample.ops_per_sec() {
                        Some(x) => eprintln!(
                            "{x:.0} ops/s, p50 {}",
                            report::fmt_latency(sample.hist.value_at_quantile(0.5))
                        ),
                        None => eprintln!(
                            "p50 {}, p99 {}, max {}",
                            report::fmt_latency(sample.hist.value_at_quantile(0.5)),
                            report::fmt_latency(sample.hist.value_at_quantile(0.99)),
                            report::fmt_latency(sample.hist.max())
                        ),
                    }
                    row.samples.push(sample);
                }
            }
        }
    }

    let (own, classic): (Vec<Row>, Vec<Row>) =
        rows.into_iter().partition(|r| r.workload.has_own_table());
    let (control_rows, query_rows): (Vec<Row>, Vec<Row>) = own
        .into_iter()
        .partition(|r| r.workload == Workload::Control);
    if args.json {
        let mut settings = settings;
        settings["query_stores"] = json!(query_notes);
        let mut all = classic;
        all.extend(control_rows);
        all.extend(query_rows);
        let doc = report::json(&all, &machine, settings);
        println!(
            "{}",
            serde_json::to_string_pretty(&doc).map_err(|e| format!("writing JSON: {e}"))?
        );
    } else {
        println!("instore-bench: {}", machine.describe());
        println!(
            "db: {} ({}); synchronous={:?}, WAL; payload {} B; warm-up {:?}; {}; {} run(s), medians shown; raw-batch ≤ {} per transaction",
            dir.display(),
            machine.fs,
            args.synchronous,
            args.payload_bytes,
            budget.warmup,
            match limit {
                Limit::Seconds(d) => format!("{:?} recorded per run", d),
                Limit::Ops(n) => format!("{n} ops recorded per run"),
            },
            args.runs,
            args.batch,
        );
        if plan.providers.contains(&ProviderKind::Postgres) {
            println!(
                "postgres: {} (a fresh schema per run, dropped after it; server settings as found, \
                 synchronous_commit as the server has it); provider pool = handles for \
                 save/cycle/by-key, {} for timers/takeover; raw-pg: one connection per handle",
                providers::redacted(&args.pg_url),
                workloads::DEFAULT_PG_POOL
            );
        }
        if plan.workloads.contains(&Workload::Takeover) {
            println!(
                "takeover: {} instances, lease {:?}, host A {}",
                takeover.instances,
                takeover.lease,
                match takeover.crash {
                    Crash::Process => "SIGKILLed (child process; in-process for memory)",
                    Crash::InProcess => "stopped in-process",
                }
            );
        }
        for s in &plan.skipped {
            println!("skipped provider: {s}");
        }
        if !classic.is_empty() {
            println!();
            print!("{}", report::table(&classic));
        }
        if !control_rows.is_empty() {
            println!();
            println!(
                "control: {} commands ({} Suspend, then Resume as each Suspend is executed), {} enqueuers, {}; management service with default settings; latency = enqueue call start → the service's complete() returned",
                control.commands,
                control.commands / 2,
                control.enqueuers,
                control.rate.map_or_else(|| "Suspends all at once".to_owned(), |r| format!("{r} Suspends/s")),
            );
            print!("{}", report::control_table(&control_rows));
        }
        if !query_rows.is_empty() {
            println!();
            println!(
                "query: {} instances, {} measured iterations per read and run after {} unmeasured, one read at a time",
                query.instances, query.iterations, query.warmup
            );
            for n in &query_notes {
                println!("  {n}");
            }
            print!("{}", report::query_table(&query_rows));
        }
    }
    Ok(())
}
