//! The model-based test (DESIGN "Testing"): proptest generates command sequences over a small
//! universe — a few owners, six handle slots, four instance ids, four keys, clock moves — and
//! runs each sequence on the provider under test *and* on a fresh [`MemoryProvider`] (the
//! oracle), each behind its own [`InstanceStore`] with the same settings and its own
//! [`ManualClock`], the two clocks moved in lockstep. Every result is compared; the first
//! mismatch fails the case, which proptest then shrinks, and the shrunk sequence is printed as
//! a `#[test]` ready to paste into the provider's test file (it calls [`replay_with`]).
//!
//! A provider crate runs it from a plain `#[test]` (not `#[tokio::test]`: each case builds its
//! own tokio runtime):
//!
//! ```ignore
//! #[test]
//! fn sqlite_behaves_like_the_memory_provider() {
//!     let report = instore_conformance::model::run_model(
//!         |clock| async move {
//!             // A fresh database per case (the factory is called once per case run).
//!             let path = fresh_temp_path();
//!             Arc::new(SqliteProvider::open_with(path, options(), Arc::new(clock)).await.unwrap())
//!                 as Arc<dyn PersistenceProvider>
//!         },
//!         100, // cases
//!         100, // steps per case: 10,000 steps in all
//!     );
//!     assert!(report.steps >= 10_000);
//! }
//! ```
//!
//! # What is compared
//!
//! For every command: `Ok` against `Err`; for errors the variant and all its fields; for views
//! every field (owner, instance, state, lock version, data, metadata, keys, status, timer,
//! bookmarks, suspension, host type, activatable). After every step also the binding of every
//! handle slot (owner, instance, lock version, freed) and the number of background unlocks
//! each store has run. Ids the providers invent are normalized first: owners by creation order
//! (`O(n)`), instances created by `LoadByKey` without `create_with_id` by first appearance
//! (`Invented(n)`); the four fixed instance ids are `Fixed(n)`, and keys print as `k0..k3`.
//!
//! # Determinism
//!
//! Nothing may race the comparison, so the runtime's background work is kept out of the way:
//!
//! - Leases are 600 s and renewals every 300 s, and small clock moves ([`Op::Advance`]) are
//!   clamped so that they add up to less than 150 s between lease jumps: the background
//!   renewal never fires between two steps. [`Op::PastLease`] moves the clock past every
//!   lease, which wakes the background renewal; the step waits until that pass has asked
//!   about every live owner (and found its lease ended), then renews leases in the foreground
//!   too, so every owner is lost on both sides before the next step. A store's first renewal
//!   pass (over no owners) and a jump's pass when no owner is live leave no trace to wait
//!   for; the driver gives them 3 ms of real time.
//! - `auto_recover_owner` is off (a replacement owner would be registered in the background),
//!   the lock retry policy is `NoRetry` and the fallback poll is an hour.
//! - Freeing a handle that holds a lock starts a background unlock. The driver knows when one
//!   starts (the handle is lock-bound and its owner is not lost) and waits, in real time and
//!   bounded, until each store's provider has answered that unlock before the next step; the
//!   number of unlocks is then compared to the expected one after every step.
//! - Every step first moves both clocks by 1 ms, and timers fall on the half millisecond, so no
//!   two instances become runnable at the same instant by an unlock or a timer. They still
//!   can when several instances are held by owners whose leases end together (one owner
//!   holding several, a renewal pass); "runnable longest" does not say which of those comes
//!   first, so a `TryLoadRunnable` facing such a tie is skipped. The driver knows from a small
//!   shadow model of the runnable set, fed by the oracle's views, and checks that shadow
//!   against the oracle on every `TryLoadRunnable` it does run.
//!
//! Memory against memory must never mismatch: `tests/model_memory.rs` checks the harness so.
//!
//! [`InstanceStore`]: instore::InstanceStore

mod compare;
mod driver;
mod handles;
mod ops;
mod report;
mod shadow;
mod side;
mod universe;

use instore::{ManualClock, MemoryProvider, PersistenceProvider, Timestamp};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestError, TestRunner};
use std::cell::Cell;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use driver::run_case;
use ops::{op_strategy, setup_strategy, OpsStrategy};
use report::regression_test;

pub use ops::{Keys, Op, Setup};
pub use report::ModelReport;

/// Handle slots.
const HANDLES: u8 = 6;
/// Fixed instance ids; indices `4..6` name instances the providers invented.
const INSTANCES: u8 = 4;
/// Instance indices an op may use.
const INSTANCE_INDICES: u8 = 6;
/// Keys.
const KEYS: u8 = 4;
/// At most this many live owners at once (a small universe makes collisions likely).
const MAX_LIVE_OWNERS: usize = 3;
/// Lease of every owner.
const LEASE: Duration = Duration::from_secs(600);
/// Background renewal interval (half the lease).
const RENEW_EVERY: Duration = Duration::from_secs(300);
/// Small clock moves add up to less than this between lease jumps (half the renewal interval),
/// so the background renewal never runs between two steps.
const ADVANCE_BUDGET: Duration = Duration::from_secs(150);
/// Every step moves both clocks this much first.
const TICK: Duration = Duration::from_millis(1);
/// Timers fall this far past a whole second from the step that set them, never on a tick.
const TIMER_OFFSET: Duration = Duration::from_micros(500);
/// Command timeout (on the manual clock: never reached, since no step moves time while a
/// command runs).
const T: Duration = Duration::from_secs(30);
/// Where both clocks start (2026-01-01T00:00:00Z).
const START: Timestamp = Timestamp::from_micros(1_767_225_600_000_000);
/// How long (real time) background work the driver waits for (an unlock, a renewal pass) may
/// take before the step fails.
const BACKGROUND_WAIT: Duration = Duration::from_secs(10);
/// Real time given to background work that leaves no trace the driver could wait for (a
/// store's first, empty renewal pass).
const SETTLE: Duration = Duration::from_millis(3);
/// Longest case [`run_model`] accepts: ticks must stay far inside [`ADVANCE_BUDGET`].
const MAX_STEPS_PER_CASE: usize = 10_000;

/// Runs `cases` generated sequences of `steps_per_case` steps each on the provider `subject`
/// builds (one fresh provider per case, judged by the given clock) and on a fresh memory
/// provider, comparing every result. Prints and returns a [`ModelReport`]; panics with the
/// shrunk sequence, as a ready-to-paste regression test, on the first mismatch.
///
/// Call it from a plain `#[test]`: it builds a tokio runtime per case. The seed is random
/// unless `PROPTEST_RNG_SEED` is set.
pub fn run_model<F, Fut>(subject: F, cases: u32, steps_per_case: usize) -> ModelReport
where
    F: Fn(ManualClock) -> Fut,
    Fut: Future<Output = Arc<dyn PersistenceProvider>>,
{
    assert!(
        (1..=MAX_STEPS_PER_CASE).contains(&steps_per_case),
        "steps_per_case must be 1..={MAX_STEPS_PER_CASE}"
    );
    let seed = seed();
    let config = Config {
        cases,
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(seed),
        max_shrink_iters: 4096,
        max_shrink_time: 300_000,
        ..Config::default()
    };
    let failed_at = Rc::new(Cell::new(None));
    let strategy = (
        setup_strategy(),
        OpsStrategy {
            first: prop::option::weighted(0.75, 0u8..2)
                .prop_map(|host_type| Op::CreateOwner { host_type })
                .boxed(),
            element: op_strategy().boxed(),
            len: steps_per_case,
            failed_at: failed_at.clone(),
        },
    );
    let started = Instant::now();
    let report = std::cell::RefCell::new(ModelReport {
        seed,
        ..ModelReport::default()
    });
    let shrinking = Cell::new(false);
    let mut runner = TestRunner::new(config);
    let result = runner.run(&strategy, |(setup, ops)| {
        match run_case(&subject, setup, &ops) {
            Ok(stats) => {
                if !shrinking.get() {
                    let mut r = report.borrow_mut();
                    r.cases += 1;
                    r.steps += stats.steps;
                    r.skipped += stats.skipped;
                    for (k, v) in stats.outcomes {
                        *r.outcomes.entry(k).or_default() += v;
                    }
                }
                Ok(())
            }
            Err(failure) => {
                shrinking.set(true);
                failed_at.set(Some(failure.step));
                Err(TestCaseError::fail(failure.report))
            }
        }
    });
    let mut report = report.into_inner();
    report.elapsed = started.elapsed();
    match result {
        Ok(()) => {
            eprintln!("{report}");
            report
        }
        Err(TestError::Fail(reason, (setup, ops))) => {
            // Run the minimal case once more for its own report.
            let again = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                run_case(&subject, setup, &ops)
            }));
            let detail = match again {
                Ok(Err(failure)) => failure.report,
                Ok(Ok(_)) => format!("(the minimal case passed when run again: flaky)\n{reason}"),
                Err(_) => format!("the case panicked: {reason}"),
            };
            panic!(
                "model-based test failed (seed {seed}; rerun with PROPTEST_RNG_SEED={seed}).\n\
                 {detail}\n\n\
                 Keep it as a regression test in the provider's test file:\n\n{}",
                regression_test(&setup, &ops)
            );
        }
        Err(TestError::Abort(reason)) => panic!("model-based test aborted: {reason}"),
    }
}

/// Replays a fixed sequence (a regression test kept from a shrunk failure) with the default
/// [`Setup`]; panics on a mismatch. The report says how each step ended.
pub fn replay<F, Fut>(subject: F, ops: Vec<Op>) -> ModelReport
where
    F: Fn(ManualClock) -> Fut,
    Fut: Future<Output = Arc<dyn PersistenceProvider>>,
{
    replay_with(subject, Setup::default(), ops)
}

/// Replays a fixed sequence with the given [`Setup`]; panics on a mismatch. The report says
/// how each step ended.
pub fn replay_with<F, Fut>(subject: F, setup: Setup, ops: Vec<Op>) -> ModelReport
where
    F: Fn(ManualClock) -> Fut,
    Fut: Future<Output = Arc<dyn PersistenceProvider>>,
{
    let started = Instant::now();
    match run_case(&subject, setup, &ops) {
        Ok(stats) => ModelReport {
            seed: 0,
            cases: 1,
            steps: stats.steps,
            skipped: stats.skipped,
            outcomes: stats.outcomes,
            elapsed: started.elapsed(),
        },
        Err(failure) => panic!("{}", failure.report),
    }
}

/// A factory for the memory provider as a subject: `run_model(memory_subject, ..)` checks the
/// harness itself (memory against memory must never differ).
pub async fn memory_subject(clock: ManualClock) -> Arc<dyn PersistenceProvider> {
    MemoryProvider::with_clock(Arc::new(clock))
}

fn seed() -> u64 {
    if let Some(seed) = std::env::var("PROPTEST_RNG_SEED")
        .ok()
        .and_then(|s| s.trim().parse().ok())
    {
        return seed;
    }
    // A randomly keyed hasher: a fresh random number without another dependency.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}
