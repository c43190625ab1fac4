//! The measuring loop shared by every throughput workload: N concurrent workers, each repeating
//! one operation; a warm-up that is not recorded; then a time or operation budget. Latency is
//! taken around each operation (submit → acknowledged) into an HDR histogram in microseconds.

use std::future::Future;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// How much to measure.
#[derive(Debug, Clone, Copy)]
pub enum Limit {
    /// Record operations completing within this long after the warm-up.
    Seconds(Duration),
    /// Record exactly this many operations started after the warm-up (all workers together).
    Ops(u64),
}

/// The budget of one measurement.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// Unrecorded time before measuring.
    pub warmup: Duration,
    /// What is recorded.
    pub limit: Limit,
}

/// One measured run of one subject.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Operations recorded (for `timers`: timers seen).
    pub ops: u64,
    /// Time the recorded operations took; `None` when throughput means nothing (`timers`).
    pub elapsed: Option<Duration>,
    /// Latencies (for `timers`: lateness), microseconds.
    pub hist: Histogram<u64>,
    /// Anything the reader should know about this run.
    pub note: Option<String>,
    /// Further named measurements of this run, µs (signed: "after" something may be negative).
    pub extras: Vec<(&'static str, i64)>,
}

impl Sample {
    /// Operations per second, if the sample has a duration.
    pub fn ops_per_sec(&self) -> Option<f64> {
        self.elapsed
            .filter(|d| !d.is_zero())
            .map(|d| self.ops as f64 / d.as_secs_f64())
    }
}

/// A histogram for latencies from 1 µs to 10 min at 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3)
        .expect("1 µs..10 min at 3 significant digits is a valid histogram")
}

/// Records a duration in microseconds (at least 1).
pub fn record(hist: &mut Histogram<u64>, d: Duration) {
    let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1);
    hist.saturating_record(micros);
}

/// One worker: repeats [`Worker::op`] until the budget is spent.
pub trait Worker: Send + 'static {
    /// One operation, measured from call to completion.
    fn op(&mut self) -> impl Future<Output = Result<(), String>> + Send;
}

/// Runs the workers concurrently (one tokio task each) and merges what they recorded.
pub async fn drive<W: Worker>(workers: Vec<W>, budget: Budget) -> Result<Sample, String> {
    let t0 = Instant::now();
    let record_from = t0 + budget.warmup;
    let end = match budget.limit {
        Limit::Seconds(d) => Some(record_from + d),
        Limit::Ops(_) => None,
    };
    let tickets = Arc::new(AtomicI64::new(match budget.limit {
        Limit::Ops(n) => i64::try_from(n).unwrap_or(i64::MAX),
        Limit::Seconds(_) => 0,
    }));
    let mut tasks = Vec::with_capacity(workers.len());
    for mut worker in workers {
        let tickets = tickets.clone();
        tasks.push(tokio::spawn(async move {
            let mut hist = new_histogram();
            let mut ops = 0u64;
            let mut last_done = None;
            loop {
                let start = Instant::now();
                // In the ops mode an operation counts if it starts after the warm-up and gets a
                // ticket; in the time mode if it completes inside the window.
                let ticketed = end.is_none() && start >= record_from;
                if ticketed && tickets.fetch_sub(1, Ordering::Relaxed) <= 0 {
                    break;
                }
                worker.op().await?;
                let done = Instant::now();
                match end {
                    Some(end) if done >= end => break,
                    Some(_) if done < record_from => continue,
                    None if !ticketed => continue,
                    _ => {}
                }
                record(&mut hist, done - start);
                ops += 1;
                last_done = Some(done);
            }
            Ok::<_, String>((hist, ops, last_done))
        }));
    }
    let mut hist = new_histogram();
    let mut ops = 0;
    let mut last = None::<Instant>;
    let mut first_error = None;
    for task in tasks {
        match task.await {
            Ok(Ok((h, n, done))) => {
                hist.add(&h)
                    .map_err(|e| format!("merging histograms: {e}"))?;
                ops += n;
                last = last.max(done);
            }
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(e) => {
                first_error.get_or_insert(format!("worker task failed: {e}"));
            }
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    let elapsed = match (end, last) {
        (Some(end), _) => end - record_from,
        (None, Some(last)) => last.saturating_duration_since(record_from),
        (None, None) => Duration::ZERO,
    };
    Ok(Sample {
        ops,
        elapsed: Some(elapsed),
        hist,
        note: None,
        extras: Vec::new(),
    })
}
