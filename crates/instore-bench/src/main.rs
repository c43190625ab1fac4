//! `instore-bench`: runs named workloads on the chosen providers and on raw rusqlite baselines
//! doing the equivalent writes with the same durability, in one process run, and prints ops/s,
//! p50/p99/max latency and the ratio to the baselines. See `docs/bench.md`.
//!
//! ```text
//! instore-bench [--workload save|cycle|by-key|timers|all] [--provider memory|sqlite|all]
//!               [--handles 1,16,64] [--seconds N | --ops N] [--runs 3] [--dir PATH] [--json]
//! ```

mod baseline;
mod driver;
mod providers;
mod report;
mod workloads;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use serde_json::json;

use crate::driver::{Budget, Limit};
use crate::providers::{ProviderKind, SQLITE_LINKED};
use crate::report::{Machine, Row};
use crate::workloads::{RunCtx, Subject, Workload};

/// SQLite durability, for the provider and the raw baselines alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Synchronous {
    /// `synchronous=FULL`: fsync at every commit (the provider's default).
    Full,
    /// `synchronous=NORMAL`: WAL fsynced at checkpoints only.
    Normal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum WorkloadArg {
    Save,
    Cycle,
    ByKey,
    Timers,
    All,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ProviderArg {
    Memory,
    Sqlite,
    All,
}

/// Benchmarks instore's providers against raw rusqlite baselines in the same run.
#[derive(Debug, Parser)]
#[command(name = "instore-bench", version, about, long_about = None)]
struct Args {
    /// Workloads to run (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "all")]
    workload: Vec<WorkloadArg>,
    /// Providers to run them on (comma-separated); the raw baselines always run too.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "all")]
    provider: Vec<ProviderArg>,
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
    /// Skip the baselines (raw-txn, raw-batch, tokio-sleep).
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
    /// Keep the database files.
    #[arg(long)]
    keep: bool,
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
            WorkloadArg::All => Workload::ALL.to_vec(),
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
            ProviderArg::All => {
                for kind in [ProviderKind::Memory, ProviderKind::Sqlite] {
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

async fn run(args: Args) -> Result<(), String> {
    let plan = plan(&args)?;
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
    });

    let mut rows: Vec<Row> = Vec::new();
    for &workload in &plan.workloads {
        let mut subjects: Vec<Subject> = plan
            .providers
            .iter()
            .map(|&p| Subject::Provider(p))
            .collect();
        if !args.no_baseline {
            subjects.extend(workload.baselines(args.batch));
        }
        let handle_counts = match workload {
            Workload::Timers => vec![args.timer_loops.max(1)],
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
                            "p50 {}, p99 {}",
                            report::fmt_latency(sample.hist.value_at_quantile(0.5)),
                            report::fmt_latency(sample.hist.value_at_quantile(0.99))
                        ),
                    }
                    row.samples.push(sample);
                }
            }
        }
    }

    if args.json {
        let doc = report::json(&rows, &machine, settings);
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
        for s in &plan.skipped {
            println!("skipped provider: {s}");
        }
        println!();
        print!("{}", report::table(&rows));
    }
    Ok(())
}
