//! The results: medians over runs, ratios to the baselines, the table and the JSON document, and
//! the machine and settings they were measured with.

use std::fmt::Write as _;
use std::path::Path;

use serde_json::{json, Value};

use crate::baseline::RawMode;
use crate::driver::Sample;
use crate::providers::ProviderKind;
use crate::workloads::{Subject, Workload};

/// Every run of one workload × subject × handles.
#[derive(Debug)]
pub struct Row {
    /// The workload.
    pub workload: Workload,
    /// What it ran on.
    pub subject: Subject,
    /// Concurrent handles (host loops for `timers`).
    pub handles: usize,
    /// One sample per run.
    pub samples: Vec<Sample>,
}

/// Medians over the runs of a row, each metric on its own.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    /// Operations recorded.
    pub ops: u64,
    /// Operations per second (`None` for `timers`).
    pub ops_per_sec: Option<f64>,
    /// Median latency, µs.
    pub p50: u64,
    /// 99th percentile, µs.
    pub p99: u64,
    /// Maximum, µs.
    pub max: u64,
}

fn median_u64(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    match v.len() {
        0 => 0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2,
    }
}

fn median_f64(mut v: Vec<f64>) -> Option<f64> {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => None,
        n if n % 2 == 1 => Some(v[n / 2]),
        n => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

impl Row {
    /// The medians.
    pub fn summary(&self) -> Summary {
        let each = |f: &dyn Fn(&Sample) -> u64| self.samples.iter().map(f).collect::<Vec<_>>();
        Summary {
            ops: median_u64(each(&|s| s.ops)),
            ops_per_sec: median_f64(
                self.samples
                    .iter()
                    .filter_map(Sample::ops_per_sec)
                    .collect(),
            ),
            p50: median_u64(each(&|s| s.hist.value_at_quantile(0.5))),
            p99: median_u64(each(&|s| s.hist.value_at_quantile(0.99))),
            max: median_u64(each(&|s| s.hist.max())),
        }
    }

    /// Medians over the runs of each extra measurement, in the order of the first run.
    pub fn extras(&self) -> Vec<(&'static str, i64)> {
        let Some(first) = self.samples.first() else {
            return Vec::new();
        };
        first
            .extras
            .iter()
            .map(|(name, _)| {
                let mut v: Vec<i64> = self
                    .samples
                    .iter()
                    .flat_map(|s| s.extras.iter().filter(|(n, _)| n == name).map(|(_, x)| *x))
                    .collect();
                v.sort_unstable();
                let median = match v.len() {
                    0 => 0,
                    n if n % 2 == 1 => v[n / 2],
                    n => (v[n / 2 - 1] + v[n / 2]) / 2,
                };
                (*name, median)
            })
            .collect()
    }

    fn notes(&self) -> String {
        let mut notes: Vec<String> = Vec::new();
        for n in self.samples.iter().filter_map(|s| s.note.as_deref()) {
            if !notes.iter().any(|m| m == n) {
                notes.push(n.to_owned());
            }
        }
        let extras = self.extras();
        if !extras.is_empty() {
            let medians: Vec<String> = extras.iter().map(|(name, x)| fmt_extra(name, *x)).collect();
            notes.push(format!("medians: {}", medians.join(", ")));
        }
        notes.join(" | ")
    }
}

/// The baselines ratios are taken against, in column order.
const RATIO_BASELINES: [&str; 3] = ["raw-txn", "raw-batch", "raw-pg"];

/// The baselines the p50 ratio (one handle) is taken against.
const P50_BASELINES: [&str; 2] = ["raw-txn", "raw-pg"];

/// `row ÷ baseline` for ops/s, and for p50 (the p50 ratios are shown for one handle only).
struct Ratios {
    ops: [Option<f64>; 3],
    p50: [Option<f64>; 2],
}

fn ratios(row: &Row, rows: &[Row]) -> Ratios {
    let me = row.summary();
    let baseline = |name: &str| {
        rows.iter()
            .find(|b| {
                b.workload == row.workload
                    && b.handles == row.handles
                    && b.subject.name() == name
                    && b.subject != row.subject
            })
            .map(Row::summary)
    };
    let ops = RATIO_BASELINES.map(|name| {
        let b = baseline(name)?;
        Some(me.ops_per_sec? / b.ops_per_sec.filter(|x| *x > 0.0)?)
    });
    let p50 = P50_BASELINES.map(|name| {
        baseline(name)
            .filter(|b| row.handles == 1 && b.p50 > 0 && me.ops_per_sec.is_some())
            .map(|b| me.p50 as f64 / b.p50 as f64)
    });
    Ratios { ops, p50 }
}

/// An extra measurement for people: µs, or — its name ending in `‰` — a count in thousandths.
fn fmt_extra(name: &str, x: i64) -> String {
    match name.strip_suffix('‰') {
        Some(name) => format!("{name} {:.1}", x as f64 / 1000.0),
        None => format!("{name} {}", fmt_signed_latency(x)),
    }
}

/// A latency in µs, for people.
pub fn fmt_latency(micros: u64) -> String {
    if micros < 1_000 {
        format!("{micros}µs")
    } else if micros < 1_000_000 {
        format!("{:.2}ms", micros as f64 / 1_000.0)
    } else {
        format!("{:.2}s", micros as f64 / 1_000_000.0)
    }
}

/// A signed duration in µs, for people.
pub fn fmt_signed_latency(micros: i64) -> String {
    let magnitude = fmt_latency(micros.unsigned_abs());
    if micros < 0 {
        format!("-{magnitude}")
    } else {
        magnitude
    }
}

fn fmt_ratio(r: Option<f64>) -> String {
    r.map_or_else(|| "-".to_owned(), |r| format!("{r:.2}×"))
}

/// The results table (medians of the runs). Ratio columns appear only when a row has one.
pub fn table(rows: &[Row]) -> String {
    let ratios: Vec<Ratios> = rows.iter().map(|row| ratios(row, rows)).collect();
    let ops_columns: Vec<usize> = (0..RATIO_BASELINES.len())
        .filter(|&i| ratios.iter().any(|r| r.ops[i].is_some()))
        .collect();
    let p50_columns: Vec<usize> = (0..P50_BASELINES.len())
        .filter(|&i| ratios.iter().any(|r| r.p50[i].is_some()))
        .collect();
    let mut header: Vec<String> = [
        "workload", "subject", "handles", "ops", "ops/s", "p50", "p99", "max",
    ]
    .iter()
    .map(|h| (*h).to_owned())
    .collect();
    header.extend(
        ops_columns
            .iter()
            .map(|&i| format!("ops/s÷{}", RATIO_BASELINES[i])),
    );
    header.extend(
        p50_columns
            .iter()
            .map(|&i| format!("p50÷{}", P50_BASELINES[i])),
    );
    header.push("note".to_owned());
    let mut lines = Vec::new();
    for (row, r) in rows.iter().zip(&ratios) {
        let s = row.summary();
        let mut line = vec![
            row.workload.name().to_owned(),
            row.subject.name().to_owned(),
            row.handles.to_string(),
            s.ops.to_string(),
            s.ops_per_sec
                .map_or_else(|| "-".to_owned(), |x| format!("{x:.0}")),
            fmt_latency(s.p50),
            fmt_latency(s.p99),
            fmt_latency(s.max),
        ];
        line.extend(ops_columns.iter().map(|&i| fmt_ratio(r.ops[i])));
        line.extend(p50_columns.iter().map(|&i| fmt_ratio(r.p50[i])));
        line.push(row.notes());
        lines.push(line);
    }
    render(header, lines, 2)
}

/// Renders a table: the first `names` columns and the last (notes) left-aligned, the rest
/// (numbers) right-aligned.
fn render(header: Vec<String>, lines: Vec<Vec<String>>, names: usize) -> String {
    let mut cells: Vec<Vec<String>> = vec![header];
    cells.extend(lines);
    let columns = cells[0].len();
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            cells
                .iter()
                .map(|r| r[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for (i, line) in cells.iter().enumerate() {
        let mut text = String::new();
        for (c, cell) in line.iter().enumerate() {
            let pad = widths[c] - cell.chars().count();
            if c < names || c == columns - 1 {
                text.push_str(cell);
                if c != columns - 1 {
                    text.push_str(&" ".repeat(pad));
                }
            } else {
                text.push_str(&" ".repeat(pad));
                text.push_str(cell);
            }
            if c != columns - 1 {
                text.push_str("  ");
            }
        }
        let _ = writeln!(out, "{}", text.trim_end());
        if i == 0 {
            let total: usize = widths.iter().sum::<usize>() + 2 * (columns - 1);
            let _ = writeln!(out, "{}", "-".repeat(total.min(160)));
        }
    }
    out
}

/// The baseline on the same storage as `subject`, for `control` and `query`.
fn own_baseline(subject: Subject) -> Option<&'static str> {
    match subject {
        Subject::Provider(ProviderKind::Sqlite) => Some("raw-sqlite"),
        Subject::Provider(ProviderKind::Postgres) => Some("raw-pg"),
        _ => None,
    }
}

/// `row ÷ its own storage's baseline`: ops/s, p50, p99.
#[derive(Debug, Clone, Copy, Default)]
struct OwnRatios {
    ops: Option<f64>,
    p50: Option<f64>,
    p99: Option<f64>,
}

fn own_ratios(row: &Row, rows: &[Row]) -> OwnRatios {
    let Some(name) = own_baseline(row.subject) else {
        return OwnRatios::default();
    };
    let Some(b) = rows
        .iter()
        .find(|b| {
            b.workload == row.workload && b.handles == row.handles && b.subject.name() == name
        })
        .map(Row::summary)
    else {
        return OwnRatios::default();
    };
    let me = row.summary();
    let div = |a: u64, b: u64| (b > 0).then(|| a as f64 / b as f64);
    OwnRatios {
        ops: me
            .ops_per_sec
            .zip(b.ops_per_sec.filter(|x| *x > 0.0))
            .map(|(a, b)| a / b),
        p50: div(me.p50, b.p50),
        p99: div(me.p99, b.p99),
    }
}

/// A row's target and whether the medians meet it (`control` and `query` on SQLite and
/// PostgreSQL).
pub fn target(row: &Row) -> Option<(String, bool)> {
    let s = row.summary();
    match (row.workload, row.subject) {
        (Workload::Query(op), Subject::Provider(ProviderKind::Sqlite | ProviderKind::Postgres)) => {
            op.target().map(|t| {
                let limit = u64::try_from(t.as_micros()).unwrap_or(u64::MAX);
                (format!("p99 ≤ {}", fmt_latency(limit)), s.p99 <= limit)
            })
        }
        (Workload::Control, Subject::Provider(ProviderKind::Sqlite)) => {
            let want = crate::workloads::control::SQLITE_TARGET;
            Some((
                format!("≥ {want:.0} commands/s"),
                s.ops_per_sec.is_some_and(|x| x >= want),
            ))
        }
        _ => None,
    }
}

fn verdict(t: Option<(String, bool)>) -> (String, String) {
    match t {
        Some((what, met)) => (what, if met { "met" } else { "MISSED" }.to_owned()),
        None => ("-".to_owned(), "-".to_owned()),
    }
}

/// The `query` table: one line per read and subject.
pub fn query_table(rows: &[Row]) -> String {
    let header: Vec<String> = [
        "read", "subject", "n", "ops/s", "p50", "p99", "max", "p50÷raw", "p99÷raw", "target", "",
        "note",
    ]
    .iter()
    .map(|h| (*h).to_owned())
    .collect();
    let lines = rows
        .iter()
        .map(|row| {
            let s = row.summary();
            let r = own_ratios(row, rows);
            let (what, met) = verdict(target(row));
            let read = match row.workload {
                Workload::Query(op) => op.name().to_owned(),
                w => w.label(),
            };
            vec![
                read,
                row.subject.name().to_owned(),
                s.ops.to_string(),
                s.ops_per_sec
                    .map_or_else(|| "-".to_owned(), |x| format!("{x:.0}")),
                fmt_latency(s.p50),
                fmt_latency(s.p99),
                fmt_latency(s.max),
                fmt_ratio(r.p50),
                fmt_ratio(r.p99),
                what,
                met,
                row.notes(),
            ]
        })
        .collect();
    render(header, lines, 2)
}

/// The `control` table: one line per subject.
pub fn control_table(rows: &[Row]) -> String {
    let header: Vec<String> = [
        "subject",
        "commands",
        "commands/s",
        "p50",
        "p99",
        "max",
        "cmd/s÷raw",
        "target",
        "",
        "note",
    ]
    .iter()
    .map(|h| (*h).to_owned())
    .collect();
    let lines = rows
        .iter()
        .map(|row| {
            let s = row.summary();
            let r = own_ratios(row, rows);
            let (what, met) = verdict(target(row));
            vec![
                row.subject.name().to_owned(),
                s.ops.to_string(),
                s.ops_per_sec
                    .map_or_else(|| "-".to_owned(), |x| format!("{x:.0}")),
                fmt_latency(s.p50),
                fmt_latency(s.p99),
                fmt_latency(s.max),
                fmt_ratio(r.ops),
                what,
                met,
                row.notes(),
            ]
        })
        .collect();
    render(header, lines, 1)
}

/// The whole result as JSON: machine, settings, and per row the medians, ratios and every run.
pub fn json(rows: &[Row], machine: &Machine, settings: Value) -> Value {
    let results: Vec<Value> = rows
        .iter()
        .map(|row| {
            let s = row.summary();
            let r = ratios(row, rows);
            let runs: Vec<Value> = row
                .samples
                .iter()
                .map(|x| {
                    json!({
                        "ops": x.ops,
                        "elapsed_s": x.elapsed.map(|d| d.as_secs_f64()),
                        "ops_per_sec": x.ops_per_sec(),
                        "p50_us": x.hist.value_at_quantile(0.5),
                        "p99_us": x.hist.value_at_quantile(0.99),
                        "max_us": x.hist.max(),
                        "note": x.note,
                        "extras_us": extras_json(&x.extras),
                    })
                })
                .collect();
            let own = own_ratios(row, rows);
            let target = target(row);
            json!({
                "workload": row.workload.name(),
                "read": match row.workload {
                    Workload::Query(op) => Some(op.key()),
                    _ => None,
                },
                "subject": row.subject.name(),
                "baseline": row.subject.is_baseline(),
                "raw_batch_max": match row.subject {
                    Subject::Raw(RawMode::Batch(n)) => Some(n),
                    _ => None,
                },
                "handles": row.handles,
                "ops": s.ops,
                "ops_per_sec": s.ops_per_sec,
                "p50_us": s.p50,
                "p99_us": s.p99,
                "max_us": s.max,
                "ops_per_sec_vs_raw_txn": r.ops[0],
                "ops_per_sec_vs_raw_batch": r.ops[1],
                "ops_per_sec_vs_raw_pg": r.ops[2],
                "p50_vs_raw_txn": r.p50[0],
                "p50_vs_raw_pg": r.p50[1],
                "own_baseline": own_baseline(row.subject).filter(|_| row.workload.has_own_table()),
                "ops_per_sec_vs_own_baseline": own.ops.filter(|_| row.workload.has_own_table()),
                "p50_vs_own_baseline": own.p50.filter(|_| row.workload.has_own_table()),
                "p99_vs_own_baseline": own.p99.filter(|_| row.workload.has_own_table()),
                "target": target.as_ref().map(|(t, _)| t.clone()),
                "target_met": target.as_ref().map(|(_, met)| *met),
                "extras_us": extras_json(&row.extras()),
                "runs": runs,
            })
        })
        .collect();
    json!({
        "machine": machine.json(),
        "settings": settings,
        "results": results,
    })
}

fn extras_json(extras: &[(&'static str, i64)]) -> Value {
    Value::Object(
        extras
            .iter()
            .map(|(name, x)| ((*name).to_owned(), json!(x)))
            .collect(),
    )
}

/// The machine and code a result was measured on.
#[derive(Debug, Clone)]
pub struct Machine {
    /// CPU model (from /proc/cpuinfo).
    pub cpu: String,
    /// Logical CPUs available.
    pub cpus: usize,
    /// Memory (from /proc/meminfo), KiB.
    pub mem_kib: Option<u64>,
    /// Git commit of the source tree this binary was built from, `+dirty` if it had changes.
    pub commit: String,
    /// File system type of the database directory.
    pub fs: String,
    /// Load averages (1, 5, 15 min) when the run started: other work on the machine skews results.
    pub load: String,
}

impl Machine {
    /// Reads it from the system; anything unreadable is "unknown".
    pub fn detect(dir: &Path) -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map_or_else(|| "unknown".to_owned(), |(_, v)| v.trim().to_owned());
        let mem_kib = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        });
        Self {
            cpu,
            cpus: std::thread::available_parallelism().map_or(0, usize::from),
            mem_kib,
            commit: git_commit(),
            fs: fs_type(dir),
            load: std::fs::read_to_string("/proc/loadavg")
                .ok()
                .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
                .unwrap_or_else(|| "unknown".to_owned()),
        }
    }

    fn json(&self) -> Value {
        json!({
            "cpu": self.cpu,
            "cpus": self.cpus,
            "mem_kib": self.mem_kib,
            "commit": self.commit,
            "db_fs": self.fs,
            "load_average_at_start": self.load,
        })
    }

    /// One line for people.
    pub fn describe(&self) -> String {
        let mem = self.mem_kib.map_or_else(
            || "? GiB".to_owned(),
            |k| format!("{:.1} GiB", k as f64 / 1024.0 / 1024.0),
        );
        format!(
            "{} × {} CPUs, {mem} RAM, load average {} at start; commit {}",
            self.cpu, self.cpus, self.load, self.commit
        )
    }
}

fn git_commit() -> String {
    let src = env!("CARGO_MANIFEST_DIR");
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(src)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    match git(&["rev-parse", "--short=12", "HEAD"]) {
        Some(commit) => {
            let dirty = git(&["status", "--porcelain"]).is_some_and(|s| !s.is_empty());
            if dirty {
                format!("{commit}+dirty")
            } else {
                commit
            }
        }
        None => "unknown".to_owned(),
    }
}

/// The type of the file system holding `dir` (longest mount point that prefixes it).
fn fs_type(dir: &Path) -> String {
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_owned());
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_dev, mount, fs) = (f.next()?, f.next()?, f.next()?);
            dir.starts_with(mount).then(|| (mount.len(), fs.to_owned()))
        })
        .max_by_key(|(len, _)| *len)
        .map_or_else(|| "unknown".to_owned(), |(_, fs)| fs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_of_odd_and_even_counts() {
        assert_eq!(median_u64(vec![5, 1, 3]), 3);
        assert_eq!(median_u64(vec![4, 1, 3, 2]), 2);
        assert_eq!(median_f64(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median_f64(vec![]), None);
    }

    #[test]
    fn latencies_read_in_the_right_unit() {
        assert_eq!(fmt_latency(999), "999µs");
        assert_eq!(fmt_latency(1_500), "1.50ms");
        assert_eq!(fmt_latency(2_500_000), "2.50s");
        assert_eq!(fmt_signed_latency(-1_500), "-1.50ms");
        assert_eq!(fmt_signed_latency(42), "42µs");
    }

    fn sample(extras: Vec<(&'static str, i64)>) -> Sample {
        Sample {
            ops: 1,
            elapsed: None,
            hist: crate::driver::new_histogram(),
            note: None,
            extras,
        }
    }

    #[test]
    fn extras_are_medians_per_name_and_show_in_the_notes() {
        let row = Row {
            workload: Workload::Takeover,
            subject: Subject::Provider(crate::providers::ProviderKind::Memory),
            handles: 1,
            samples: vec![
                sample(vec![("after", 30), ("left", -5)]),
                sample(vec![("after", 10), ("left", -1)]),
                sample(vec![("after", 20), ("left", -3)]),
            ],
        };
        assert_eq!(row.extras(), vec![("after", 20), ("left", -3)]);
        assert!(
            row.notes().contains("after 20µs, left -3µs"),
            "{}",
            row.notes()
        );
    }

    #[test]
    fn ratio_columns_appear_only_for_baselines_that_ran() {
        let row = |subject, ops: u64| Row {
            workload: Workload::Save,
            subject,
            handles: 16,
            samples: vec![Sample {
                ops,
                elapsed: Some(std::time::Duration::from_secs(1)),
                hist: crate::driver::new_histogram(),
                note: None,
                extras: Vec::new(),
            }],
        };
        let rows = [
            row(
                Subject::Provider(crate::providers::ProviderKind::Postgres),
                900,
            ),
            row(Subject::RawPg, 1000),
        ];
        let text = table(&rows);
        assert!(
            text.contains("ops/s÷raw-pg") && text.contains("0.90×"),
            "{text}"
        );
        assert!(!text.contains("raw-txn"), "{text}");
    }
}
