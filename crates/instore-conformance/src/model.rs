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

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use instore::{
    Activatable, Clock, Command, CompletionAction, CreateOwner, ExceptionInfo, ExecutionStatus,
    InstanceHandle, InstanceId, InstanceSnapshot, InstanceState, InstanceStore, InstanceValue,
    InstanceView, KeyId, KeyView, LeaseState, Load, LoadByKey, LoadRequest, LockRetry, ManualClock,
    MemoryProvider, MetadataChange, NewKey, NewOwner, OwnerId, OwnerInfo, PersistenceProvider,
    PropertyBag, RunnableRequest, Save, SaveRequest, SharedClock, StoreError, StoreSettings,
    SuspendChange, Suspension, Timestamp, Uuid, Value, WakeUps,
};
use proptest::prelude::*;
use proptest::strategy::{NewTree, ValueTree};
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestError, TestRunner};

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

/// A set of the four keys, as a bit mask (`Keys(0b0101)` is `k0` and `k2`).
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct Keys(pub u8);

impl Keys {
    fn indices(self) -> impl Iterator<Item = u8> {
        (0..KEYS).filter(move |i| self.0 & (1 << i) != 0)
    }
}

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Keys(0b{:04b})", self.0)
    }
}

/// The store settings a case runs with besides the fixed ones (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setup {
    /// Register the suspension extension (`allow_suspended` then matters).
    pub suspension_extension: bool,
    /// Completion action `DeleteAll` instead of `Keep`.
    pub delete_all: bool,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            suspension_extension: true,
            delete_all: false,
        }
    }
}

/// One step of a generated sequence. Indices are small numbers into the case's universe:
///
/// - `h`: a handle slot (`0..6`). A command runs on a new handle put in the slot first (the
///   old one freed, as [`Op::Free`] does) if the slot is empty; if its handle is freed, or has
///   no owner while owners exist, or a lost owner while live ones exist; or if `Load`/`Save`
///   would find no instance on it, or `LoadByKey`/`TryLoadRunnable` one. The new handle is
///   bound to owner index `h` and, for `Load` and `Save`, instance index `h`. (So every
///   command reaches the provider unless the case has no live owner; a command on a freed
///   handle is the runtime's business, not the provider's.)
/// - owner (in [`Op::Handle`]): an index into the owners that are not lost, in creation order,
///   modulo their number (all owners if every one is lost; no owner if none exists yet).
/// - instance: `0..4` the fixed instance ids; `4..6` the ids the providers invented, by first
///   appearance (the fixed id `i % 4` while there are not that many).
/// - key: `0..4`; key `k3` has a write-only metadata value.
/// - data (`Save`): `0` empty, `1` `{a: 1}`, `2` `{a: 2, s: "text"}`, `3` `{a: 3}` plus a
///   write-only value, `4` a 600-byte value (over the 512-byte limit: `PayloadTooLarge`), `5`
///   `{a: 5}` plus an optional 600-byte value (dropped), `6` one value of every kind.
/// - metadata changes (`Save`): `(name, value)` with name `m0`/`m1` and value `None` for
///   `Deleted`, else `0` `1`, `1` `"v"`, `2` a write-only `9`, `3` `true`.
/// - status (`Save`): `Executing`, `Idle`, `Closed`, `Faulted`, `Canceled`, `Terminated`.
/// - bookmarks (`Save`): bit mask over `b0`, `b1`.
/// - suspend (`Save`): `0` unchanged, `1` suspend (reason `r1`), `2` suspend with an exception
///   (reason `r2`), `3` unsuspend.
/// - timer (`Save`): seconds from now (plus half a millisecond).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Puts a new handle in slot `h` (freeing the one there, as [`Op::Free`] does) bound to an
    /// owner and an instance.
    Handle {
        /// Slot.
        h: u8,
        /// Owner index, or an unbound handle.
        owner: Option<u8>,
        /// Instance index, or none.
        instance: Option<u8>,
    },
    /// `CreateOwner` on a new unbound handle (dropped afterwards; the owner stays registered).
    /// Skipped if it would make more than three live owners.
    CreateOwner {
        /// `None`, `Some(0)` host type `h`, `Some(1)` host type `g`.
        host_type: Option<u8>,
    },
    /// `DeleteOwner` on slot `h`.
    DeleteOwner {
        /// Slot.
        h: u8,
    },
    /// `Load` on slot `h`.
    Load {
        /// Slot.
        h: u8,
        /// `accept_uninitialized`.
        accept_uninitialized: bool,
        /// `allow_suspended`.
        allow_suspended: bool,
    },
    /// `LoadByKey` on slot `h`.
    LoadByKey {
        /// Slot.
        h: u8,
        /// The key looked up.
        key: u8,
        /// `accept_uninitialized`.
        accept_uninitialized: bool,
        /// `create_with_id`, an instance index.
        create_with_id: Option<u8>,
        /// `keys_to_associate`.
        associate: Keys,
        /// `allow_suspended`.
        allow_suspended: bool,
    },
    /// `Save` on slot `h`.
    Save {
        /// Slot.
        h: u8,
        /// Data bag index, or a metadata-only save.
        data: Option<u8>,
        /// Metadata changes, applied in order.
        meta: [Option<(u8, Option<u8>)>; 2],
        /// `keys_to_associate`.
        associate: Keys,
        /// `keys_to_complete`.
        complete_keys: Keys,
        /// `keys_to_free`.
        free_keys: Keys,
        /// Timer, seconds from now.
        timer: Option<u8>,
        /// Status index.
        status: u8,
        /// Bookmark mask.
        bookmarks: u8,
        /// Suspension change index.
        suspend: u8,
        /// `complete`.
        complete: bool,
        /// `unlock`.
        unlock: bool,
    },
    /// `TryLoadRunnable` on slot `h` (skipped when the oldest runnable instances tie).
    TryLoadRunnable {
        /// Slot.
        h: u8,
    },
    /// `QueryActivatable` on slot `h`.
    QueryActivatable {
        /// Slot.
        h: u8,
    },
    /// Frees the handle in slot `h` (it stays there, freed); a held lock is released in the
    /// background, and the step waits until both stores have done so.
    Free {
        /// Slot.
        h: u8,
    },
    /// Moves both clocks `secs` seconds (clamped to 0 past the budget, see the module docs).
    Advance {
        /// Seconds.
        secs: u8,
    },
    /// Moves both clocks past every lease, then renews leases: every owner is lost.
    PastLease,
    /// `renew_leases` on both stores.
    RenewLeases,
}

impl Op {
    fn kind(&self) -> &'static str {
        match self {
            Op::Handle { .. } => "Handle",
            Op::CreateOwner { .. } => "CreateOwner",
            Op::DeleteOwner { .. } => "DeleteOwner",
            Op::Load { .. } => "Load",
            Op::LoadByKey { .. } => "LoadByKey",
            Op::Save { .. } => "Save",
            Op::TryLoadRunnable { .. } => "TryLoadRunnable",
            Op::QueryActivatable { .. } => "QueryActivatable",
            Op::Free { .. } => "Free",
            Op::Advance { .. } => "Advance",
            Op::PastLease => "PastLease",
            Op::RenewLeases => "RenewLeases",
        }
    }
}

/// What [`run_model`] did.
#[derive(Debug, Clone, Default)]
pub struct ModelReport {
    /// The proptest seed (rerun with `PROPTEST_RNG_SEED=<seed>`); 0 for a replay.
    pub seed: u64,
    /// Cases run.
    pub cases: u32,
    /// Steps run in all (skipped ones included).
    pub steps: u64,
    /// Steps skipped: an owner over the cap of three live owners, a runnable tie.
    pub skipped: u64,
    /// How often each op ended how (`"Save: ok"`, `"Load: instance_locked"`, ...).
    pub outcomes: BTreeMap<String, u64>,
    /// Wall time.
    pub elapsed: Duration,
}

impl fmt::Display for ModelReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "model: {} cases, {} steps ({} skipped) in {:.1?}",
            self.cases, self.steps, self.skipped, self.elapsed
        )?;
        if self.seed != 0 {
            write!(
                f,
                "; seed {} (rerun with PROPTEST_RNG_SEED={})",
                self.seed, self.seed
            )?;
        }
        writeln!(f)?;
        for (what, n) in &self.outcomes {
            writeln!(f, "  {n:>7}  {what}")?;
        }
        Ok(())
    }
}

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

fn regression_test(setup: &Setup, ops: &[Op]) -> String {
    let mut s = String::new();
    s.push_str("#[test]\nfn model_regression() {\n");
    s.push_str("    use instore_conformance::model::{replay_with, Keys, Op, Setup};\n");
    s.push_str(&format!(
        "    replay_with(\n        provider, // your factory: Fn(ManualClock) -> impl Future<Output = Arc<dyn PersistenceProvider>>\n        {setup:?},\n        vec![\n"
    ));
    for op in ops {
        s.push_str(&format!("            Op::{op:?},\n"));
    }
    s.push_str("        ],\n    );\n}\n");
    // `Keys` may be unused in a sequence without key sets; keep the test warning-free.
    if !ops.iter().any(|op| format!("{op:?}").contains("Keys(")) {
        s = s.replace("{replay_with, Keys, Op, Setup}", "{replay_with, Op, Setup}");
    }
    s
}

// Generation.

fn setup_strategy() -> impl Strategy<Value = Setup> {
    (any::<bool>(), prop::bool::weighted(0.25)).prop_map(|(suspension_extension, delete_all)| {
        Setup {
            suspension_extension,
            delete_all,
        }
    })
}

fn keys_strategy(p_some: f64) -> impl Strategy<Value = Keys> {
    prop::option::weighted(p_some, 1u8..16).prop_map(|k| Keys(k.unwrap_or(0)))
}

fn save_strategy() -> impl Strategy<Value = Op> {
    let meta = prop::option::weighted(0.25, (0u8..2, prop::option::weighted(0.75, 0u8..4)));
    let complete_unlock = prop_oneof![
        12 => Just((false, false)),
        8 => Just((false, true)),
        4 => Just((true, true)),
        1 => Just((true, false)),
    ];
    let suspend = prop_oneof![10 => Just(0u8), 1 => Just(1u8), 1 => Just(2u8), 2 => Just(3u8)];
    (
        (
            0..HANDLES,
            prop::option::weighted(0.75, 0u8..7),
            [meta.clone(), meta],
        ),
        (keys_strategy(0.2), keys_strategy(0.1), keys_strategy(0.1)),
        (
            prop::option::weighted(0.4, 0u8..6),
            // Mostly `Executing` or `Idle`: the statuses that decide runnability.
            prop_oneof![3 => Just(0u8), 3 => Just(1u8), 2 => 2u8..6],
            0u8..4,
            suspend,
            complete_unlock,
        ),
    )
        .prop_map(
            |(
                (h, data, meta),
                (associate, complete_keys, free_keys),
                (timer, status, bookmarks, suspend, (complete, unlock)),
            )| Op::Save {
                h,
                data,
                meta,
                associate,
                complete_keys,
                free_keys,
                timer,
                status,
                bookmarks,
                suspend,
                complete,
                unlock,
            },
        )
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let h = || 0..HANDLES;
    prop_oneof![
        12 => (
            h(),
            prop::option::weighted(0.97, 0u8..MAX_LIVE_OWNERS as u8),
            prop::option::weighted(0.8, 0u8..INSTANCE_INDICES),
        )
            .prop_map(|(h, owner, instance)| Op::Handle { h, owner, instance }),
        5 => prop::option::weighted(0.75, 0u8..2).prop_map(|host_type| Op::CreateOwner { host_type }),
        1 => h().prop_map(|h| Op::DeleteOwner { h }),
        14 => (h(), prop::bool::weighted(0.6), prop::bool::weighted(0.3)).prop_map(
            |(h, accept_uninitialized, allow_suspended)| Op::Load {
                h,
                accept_uninitialized,
                allow_suspended,
            }
        ),
        12 => (
            h(),
            0..KEYS,
            prop::bool::weighted(0.7),
            prop::option::weighted(0.25, 0u8..INSTANCE_INDICES),
            keys_strategy(0.3),
            prop::bool::weighted(0.15),
            prop::bool::weighted(0.3),
        )
            .prop_map(
                |(h, key, accept_uninitialized, create_with_id, associate, refused, allow_suspended)| {
                    // Listing the lookup key among the keys to associate is refused without
                    // `create_with_id`, and `create_with_id` without `accept_uninitialized`:
                    // such requests only now and then.
                    let (associate, accept_uninitialized) = if refused {
                        (associate, accept_uninitialized)
                    } else {
                        (
                            Keys(associate.0 & !(1 << key)),
                            accept_uninitialized || create_with_id.is_some(),
                        )
                    };
                    Op::LoadByKey {
                        h,
                        key,
                        accept_uninitialized,
                        create_with_id,
                        associate,
                        allow_suspended,
                    }
                }
            ),
        24 => save_strategy(),
        8 => h().prop_map(|h| Op::TryLoadRunnable { h }),
        2 => h().prop_map(|h| Op::QueryActivatable { h }),
        4 => h().prop_map(|h| Op::Free { h }),
        6 => (0u8..6).prop_map(|secs| Op::Advance { secs }),
        1 => Just(Op::PastLease),
        2 => Just(Op::RenewLeases),
    ]
}

/// A sequence of exactly `len` ops, the first two creating owners, that shrinks by cutting
/// everything after the failing step, then deleting single ops, then simplifying each op.
#[derive(Debug)]
struct OpsStrategy {
    /// The first two ops (owners to start with).
    first: BoxedStrategy<Op>,
    element: BoxedStrategy<Op>,
    len: usize,
    /// Set by the test closure: index of the step that failed in the last failing run.
    failed_at: Rc<Cell<Option<usize>>>,
}

struct OpsTree {
    elements: Vec<Box<dyn ValueTree<Value = Op>>>,
    included: Vec<bool>,
    failed_at: Rc<Cell<Option<usize>>>,
    next: Shrink,
    prev: Option<Undo>,
}

#[derive(Clone, Copy)]
enum Shrink {
    Delete(usize),
    Element(usize),
}

enum Undo {
    Truncated(Vec<bool>),
    Deleted(usize),
    Element(usize),
}

impl Strategy for OpsStrategy {
    type Tree = OpsTree;
    type Value = Vec<Op>;

    fn new_tree(&self, runner: &mut TestRunner) -> NewTree<Self> {
        let mut elements = Vec::with_capacity(self.len);
        for i in 0..self.len {
            let strategy = if i < 2 { &self.first } else { &self.element };
            elements.push(strategy.new_tree(runner)?);
        }
        Ok(OpsTree {
            included: vec![true; self.len],
            elements,
            failed_at: self.failed_at.clone(),
            next: Shrink::Delete(0),
            prev: None,
        })
    }
}

impl ValueTree for OpsTree {
    type Value = Vec<Op>;

    fn current(&self) -> Vec<Op> {
        self.elements
            .iter()
            .zip(&self.included)
            .filter(|(_, inc)| **inc)
            .map(|(e, _)| e.current())
            .collect()
    }

    fn simplify(&mut self) -> bool {
        // The steps after the failing one never ran: cut them all at once.
        if let Some(k) = self.failed_at.take() {
            let kept: Vec<usize> = (0..self.included.len())
                .filter(|i| self.included[*i])
                .collect();
            if kept.len() > k + 1 {
                let saved = self.included.clone();
                for &i in &kept[k + 1..] {
                    self.included[i] = false;
                }
                self.prev = Some(Undo::Truncated(saved));
                return true;
            }
        }
        if let Shrink::Delete(from) = self.next {
            match (from..self.included.len()).find(|i| self.included[*i]) {
                Some(i) => {
                    self.included[i] = false;
                    self.prev = Some(Undo::Deleted(i));
                    self.next = Shrink::Delete(i + 1);
                    return true;
                }
                None => self.next = Shrink::Element(0),
            }
        }
        while let Shrink::Element(i) = self.next {
            if i >= self.elements.len() {
                return false;
            }
            if self.included[i] && self.elements[i].simplify() {
                self.prev = Some(Undo::Element(i));
                return true;
            }
            self.next = Shrink::Element(i + 1);
        }
        false
    }

    fn complicate(&mut self) -> bool {
        match self.prev.take() {
            None => false,
            Some(Undo::Truncated(saved)) => {
                self.included = saved;
                true
            }
            Some(Undo::Deleted(i)) => {
                self.included[i] = true;
                true
            }
            Some(Undo::Element(i)) => {
                let more = self.elements[i].complicate();
                if more {
                    self.prev = Some(Undo::Element(i));
                }
                more
            }
        }
    }
}

// The universe.

fn fixed_instance(i: u8) -> InstanceId {
    InstanceId::from_uuid(Uuid::from_u128(
        0x1157_0000_0000 + u128::from(i % INSTANCES) + 1,
    ))
}

fn fixed_index(id: InstanceId) -> Option<u8> {
    (0..INSTANCES).find(|i| fixed_instance(*i) == id)
}

fn key(i: u8) -> KeyId {
    KeyId::from_uuid(Uuid::from_u128(0x4e75_0000_0000 + u128::from(i % KEYS) + 1))
}

fn key_name(k: KeyId) -> String {
    match (0..KEYS).find(|i| key(*i) == k) {
        Some(i) => format!("k{i}"),
        None => k.to_string(),
    }
}

fn new_key(i: u8) -> NewKey {
    let mut metadata = PropertyBag::new();
    metadata.insert("k".into(), InstanceValue::new(i64::from(i)));
    if i == 3 {
        metadata.insert("hidden".into(), InstanceValue::write_only("w"));
    }
    NewKey {
        key: key(i),
        metadata,
    }
}

fn pb(entries: Vec<(&str, InstanceValue)>) -> PropertyBag {
    entries
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
}

fn data_bag(i: u8) -> PropertyBag {
    let v = InstanceValue::new;
    match i % 7 {
        0 => PropertyBag::new(),
        1 => pb(vec![("a", v(Value::Int(1)))]),
        2 => pb(vec![("a", v(Value::Int(2))), ("s", v("text".into()))]),
        3 => pb(vec![
            ("a", v(Value::Int(3))),
            ("w", InstanceValue::write_only(7i64)),
        ]),
        4 => pb(vec![("big", v(Value::Bytes(vec![7; 600])))]),
        5 => pb(vec![
            ("a", v(Value::Int(5))),
            ("opt", InstanceValue::optional(vec![9u8; 600])),
        ]),
        _ => pb(vec![
            ("n", v(Value::Null)),
            ("b", v(Value::Bool(true))),
            ("f", v(Value::Float(1.5))),
            ("s", v("ü".into())),
            ("by", v(Value::Bytes(vec![0, 255]))),
            ("t", v(Value::Timestamp(Timestamp::from_micros(1_000_001)))),
            ("u", v(Value::Uuid(Uuid::from_u128(42)))),
            ("d", v(Value::Duration(Duration::from_micros(1_500_000)))),
            ("j", v(Value::Json(serde_json::json!({"x": [1, 2]})))),
        ]),
    }
}

fn meta_value(i: u8) -> InstanceValue {
    match i % 4 {
        0 => InstanceValue::new(1i64),
        1 => InstanceValue::new("v"),
        2 => InstanceValue::write_only(9i64),
        _ => InstanceValue::new(true),
    }
}

const STATUSES: [ExecutionStatus; 6] = [
    ExecutionStatus::Executing,
    ExecutionStatus::Idle,
    ExecutionStatus::Closed,
    ExecutionStatus::Faulted,
    ExecutionStatus::Canceled,
    ExecutionStatus::Terminated,
];

fn host_type(i: u8) -> String {
    if i % 2 == 0 { "h" } else { "g" }.to_owned()
}

fn settings(setup: Setup) -> StoreSettings {
    StoreSettings {
        lease: LEASE,
        renew_every: RENEW_EVERY,
        detection_poll: Duration::from_secs(3600),
        auto_recover_owner: false,
        lock_retry: LockRetry::NoRetry,
        completion: if setup.delete_all {
            CompletionAction::DeleteAll
        } else {
            CompletionAction::Keep
        },
        max_payload_bytes: 512,
        suspension_extension: setup.suspension_extension,
        ..StoreSettings::default()
    }
}

// Normalized results.

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum NInst {
    Fixed(u8),
    Invented(usize),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum NOwner {
    O(usize),
    Unknown(String),
}

#[derive(Debug, PartialEq)]
struct NView {
    owner: Option<NOwner>,
    instance: Option<NInst>,
    state: InstanceState,
    lock_version: Option<u64>,
    data: PropertyBag,
    metadata: PropertyBag,
    keys: BTreeMap<String, KeyView>,
    status: Option<ExecutionStatus>,
    timer: Option<Timestamp>,
    bookmarks: Vec<String>,
    suspension: Option<Suspension>,
    host_type: Option<String>,
    activatable: Vec<Activatable>,
}

#[derive(Debug, PartialEq)]
struct NBinding {
    owner: Option<NOwner>,
    instance: Option<NInst>,
    lock_version: Option<u64>,
    freed: bool,
}

type NResult = Result<NView, String>;

// The provider wrapper: counts the unlocks and renewals that reached the provider and returned.

#[derive(Debug, Default)]
struct Counts {
    /// Unlocks that succeeded.
    unlocks: AtomicU64,
    /// The last unlock that failed.
    unlock_error: Mutex<Option<String>>,
    /// Lease renewals answered (whatever the answer).
    renewals: AtomicU64,
}

#[derive(Debug)]
struct Counting {
    inner: Arc<dyn PersistenceProvider>,
    counts: Arc<Counts>,
}

#[async_trait::async_trait]
impl PersistenceProvider for Counting {
    fn clock(&self) -> SharedClock {
        self.inner.clock()
    }
    fn wake_ups(&self) -> WakeUps {
        self.inner.wake_ups()
    }
    async fn create_owner(&self, owner: NewOwner) -> Result<OwnerInfo, StoreError> {
        self.inner.create_owner(owner).await
    }
    async fn renew_lease(&self, owner: OwnerId, lease: Duration) -> Result<LeaseState, StoreError> {
        let result = self.inner.renew_lease(owner, lease).await;
        self.counts.renewals.fetch_add(1, Ordering::SeqCst);
        result
    }
    async fn delete_owner(&self, owner: OwnerId) -> Result<(), StoreError> {
        self.inner.delete_owner(owner).await
    }
    async fn load(
        &self,
        owner: OwnerId,
        request: LoadRequest,
    ) -> Result<InstanceSnapshot, StoreError> {
        self.inner.load(owner, request).await
    }
    async fn save(
        &self,
        owner: OwnerId,
        request: SaveRequest,
    ) -> Result<InstanceSnapshot, StoreError> {
        self.inner.save(owner, request).await
    }
    async fn unlock(&self, owner: OwnerId, instance: InstanceId) -> Result<(), StoreError> {
        let result = self.inner.unlock(owner, instance).await;
        match &result {
            Ok(()) => {
                self.counts.unlocks.fetch_add(1, Ordering::SeqCst);
            }
            Err(e) => {
                *self
                    .counts
                    .unlock_error
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = Some(format!("{e:?}"));
            }
        }
        result
    }
    async fn try_load_runnable(
        &self,
        owner: OwnerId,
        request: RunnableRequest,
    ) -> Result<Option<InstanceSnapshot>, StoreError> {
        self.inner.try_load_runnable(owner, request).await
    }
    async fn next_runnable(&self, host_type: &str) -> Result<Option<Timestamp>, StoreError> {
        self.inner.next_runnable(host_type).await
    }
    async fn activatable(&self) -> Result<Vec<Activatable>, StoreError> {
        self.inner.activatable().await
    }
    async fn owners(&self) -> Result<Vec<OwnerInfo>, StoreError> {
        self.inner.owners().await
    }
}

// One side: a store over a provider, its clock, its handles and its id normalization.

struct Side {
    store: InstanceStore,
    clock: ManualClock,
    counts: Arc<Counts>,
    handles: Vec<Option<InstanceHandle>>,
    /// Owners in creation order.
    owners: Vec<OwnerId>,
    /// Invented instance ids in order of first appearance.
    invented: Vec<InstanceId>,
}

impl Side {
    fn new(provider: Arc<dyn PersistenceProvider>, clock: ManualClock, setup: Setup) -> Side {
        let counts = Arc::new(Counts::default());
        let provider = Arc::new(Counting {
            inner: provider,
            counts: counts.clone(),
        });
        let store = InstanceStore::builder(provider)
            .settings(settings(setup))
            .machine("model")
            .build()
            .expect("the model's settings are valid");
        Side {
            store,
            clock,
            counts,
            handles: (0..HANDLES).map(|_| None).collect(),
            owners: Vec::new(),
            invented: Vec::new(),
        }
    }

    fn now(&self) -> Timestamp {
        self.clock.now()
    }

    fn handle(&self, h: u8) -> Option<&InstanceHandle> {
        self.handles[usize::from(h)].as_ref()
    }

    fn inst(&mut self, id: InstanceId) -> NInst {
        if let Some(i) = fixed_index(id) {
            return NInst::Fixed(i);
        }
        match self.invented.iter().position(|x| *x == id) {
            Some(i) => NInst::Invented(i),
            None => {
                self.invented.push(id);
                NInst::Invented(self.invented.len() - 1)
            }
        }
    }

    fn owner(&self, id: OwnerId) -> NOwner {
        match self.owners.iter().position(|o| *o == id) {
            Some(i) => NOwner::O(i),
            None => NOwner::Unknown(id.to_string()),
        }
    }

    fn resolve_instance(&self, i: u8) -> InstanceId {
        let invented = usize::from(i.saturating_sub(INSTANCES));
        if i >= INSTANCES && invented < self.invented.len() {
            self.invented[invented]
        } else {
            fixed_instance(i)
        }
    }

    fn view(&mut self, v: &InstanceView) -> NView {
        let mut activatable = v.activatable.clone();
        activatable.sort_by(|a, b| a.host_type.cmp(&b.host_type));
        NView {
            owner: v.owner.map(|o| self.owner(o)),
            instance: v.instance.map(|i| self.inst(i)),
            state: v.state,
            lock_version: v.lock_version,
            data: v.data.clone(),
            metadata: v.metadata.clone(),
            keys: v
                .keys
                .iter()
                .map(|(k, kv)| (key_name(*k), kv.clone()))
                .collect(),
            status: v.status,
            timer: v.timer,
            bookmarks: v.bookmarks.clone(),
            suspension: v.suspension.clone(),
            host_type: v.host_type.clone(),
            activatable,
        }
    }

    /// An error with its fields normalized, as text.
    fn error(&mut self, e: &StoreError) -> String {
        use StoreError as E;
        match e {
            E::InstanceNotReady { instance } => {
                format!(
                    "InstanceNotReady {{ instance: {:?} }}",
                    self.inst(*instance)
                )
            }
            E::InstanceComplete { instance } => {
                format!(
                    "InstanceComplete {{ instance: {:?} }}",
                    self.inst(*instance)
                )
            }
            E::InstanceLocked {
                instance,
                owner,
                owner_metadata,
            } => format!(
                "InstanceLocked {{ instance: {:?}, owner: {:?}, owner_metadata: {:?} }}",
                self.inst(*instance),
                self.owner(*owner),
                owner_metadata
            ),
            E::LockLost { instance } => {
                format!("LockLost {{ instance: {:?} }}", self.inst(*instance))
            }
            E::HandleConflict { instance } => {
                format!("HandleConflict {{ instance: {:?} }}", self.inst(*instance))
            }
            E::OwnerLost { owner } => format!("OwnerLost {{ owner: {:?} }}", self.owner(*owner)),
            E::InstanceKeyNotReady { key } => {
                format!("InstanceKeyNotReady {{ key: {} }}", key_name(*key))
            }
            E::InstanceKeyComplete { key } => {
                format!("InstanceKeyComplete {{ key: {} }}", key_name(*key))
            }
            E::InstanceKeyCollision { key, instance } => format!(
                "InstanceKeyCollision {{ key: {}, instance: {:?} }}",
                key_name(*key),
                self.inst(*instance)
            ),
            E::InstanceCollision { instance } => {
                format!(
                    "InstanceCollision {{ instance: {:?} }}",
                    self.inst(*instance)
                )
            }
            E::InstanceSuspended { instance, reason } => format!(
                "InstanceSuspended {{ instance: {:?}, reason: {reason:?} }}",
                self.inst(*instance)
            ),
            E::AlreadyBoundToOwner { owner } => {
                format!("AlreadyBoundToOwner {{ owner: {:?} }}", self.owner(*owner))
            }
            E::AlreadyBoundToInstance { instance } => format!(
                "AlreadyBoundToInstance {{ instance: {:?} }}",
                self.inst(*instance)
            ),
            E::Invalid { what } => format!("Invalid {{ what: {:?} }}", self.scrub(what)),
            E::PayloadTooLarge { size, limit } => {
                format!("PayloadTooLarge {{ size: {size}, limit: {limit} }}")
            }
            E::Storage(s) => format!("Storage({:?})", s.kind()),
            other => format!("{} ({})", other.code(), self.scrub(&other.to_string())),
        }
    }

    /// Replaces the ids this side invented in a message by their normalized names.
    fn scrub(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for (i, o) in self.owners.iter().enumerate() {
            text = text.replace(&o.to_string(), &format!("O({i})"));
        }
        for (i, id) in self.invented.iter().enumerate() {
            text = text.replace(&id.to_string(), &format!("Invented({i})"));
        }
        text
    }

    fn result(&mut self, r: &Result<InstanceView, StoreError>) -> NResult {
        match r {
            Ok(v) => Ok(self.view(v)),
            Err(e) => Err(self.error(e)),
        }
    }

    fn binding(&mut self, h: u8) -> Option<NBinding> {
        let handle = self.handle(h)?;
        let (owner, instance, lock_version, freed) = (
            handle.owner(),
            handle.instance(),
            handle.lock_version(),
            handle.is_freed(),
        );
        Some(NBinding {
            owner: owner.map(|o| self.owner(o)),
            instance: instance.map(|i| self.inst(i)),
            lock_version,
            freed,
        })
    }
}

// The shadow model: just enough of the oracle's state to know when `TryLoadRunnable` faces a
// tie, and when a freed handle's lock is released in the background.

#[derive(Debug, Clone)]
struct OwnerModel {
    host_type: Option<String>,
    /// Lost or deleted, as the runtime sees it: its handles answer `OwnerLost`.
    lost: bool,
}

#[derive(Debug, Clone)]
struct Shadow {
    state: InstanceState,
    status: ExecutionStatus,
    timer: Option<Timestamp>,
    suspended: bool,
    host_type: Option<String>,
    /// The owner holding the lock in storage (alive or not).
    holder: Option<usize>,
    /// While unlocked: since when it is runnable.
    ready_at: Option<Timestamp>,
}

impl Shadow {
    fn release(&mut self, now: Timestamp) {
        self.holder = None;
        self.ready_at = if self.state != InstanceState::Initialized || self.suspended {
            None
        } else if self.status == ExecutionStatus::Executing {
            Some(now)
        } else {
            self.timer
        };
    }
}

#[derive(Debug, Default)]
struct Model {
    owners: Vec<OwnerModel>,
    shadow: BTreeMap<NInst, Shadow>,
    expected_unlocks: u64,
    /// Clock moved by small steps since the start or the last lease jump.
    since_origin: Duration,
}

enum Runnable {
    /// No candidate: the oracle must find nothing.
    Nothing,
    /// The one candidate runnable longest.
    Unique(NInst),
    /// Several candidates runnable since the same instant: unspecified which comes first.
    Tie,
}

// Running a case.

#[derive(Debug, Default)]
struct CaseStats {
    steps: u64,
    skipped: u64,
    outcomes: BTreeMap<String, u64>,
}

struct Failure {
    /// Index of the failing step.
    step: usize,
    report: String,
}

fn run_case<F, Fut>(subject: &F, setup: Setup, ops: &[Op]) -> Result<CaseStats, Failure>
where
    F: Fn(ManualClock) -> Fut,
    Fut: Future<Output = Arc<dyn PersistenceProvider>>,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        let subject_clock = ManualClock::new(START);
        let subject_provider = subject(subject_clock.clone()).await;
        assert_eq!(
            subject_provider.clock().now(),
            START,
            "the subject factory must build its provider on the clock it is given"
        );
        let oracle_clock = ManualClock::new(START);
        let oracle_provider = memory_subject(oracle_clock.clone()).await;
        let mut driver = Driver {
            setup,
            sides: [
                Side::new(subject_provider, subject_clock, setup),
                Side::new(oracle_provider, oracle_clock, setup),
            ],
            model: Model::default(),
            stats: CaseStats::default(),
        };
        // Each store's renewal task starts with a pass over no owners; let it end before
        // owners exist, so that it renews nobody at a later tick.
        tokio::time::sleep(SETTLE).await;
        let mut result = Ok(());
        for (i, op) in ops.iter().enumerate() {
            if let Err(what) = driver.step(op).await {
                result = Err(Failure {
                    step: i,
                    report: format!(
                        "mismatch at step {i} of {}: Op::{op:?}\n{what}\n\n{setup:?}, steps up to it:\n{}",
                        ops.len(),
                        ops[..=i]
                            .iter()
                            .enumerate()
                            .map(|(n, op)| format!("  {n:>4}  Op::{op:?}"))
                            .collect::<Vec<_>>()
                            .join("\n")
                    ),
                });
                break;
            }
        }
        driver.shutdown().await;
        result.map(|()| driver.stats)
    })
}

struct Driver {
    setup: Setup,
    /// `[subject, oracle]`.
    sides: [Side; 2],
    model: Model,
    stats: CaseStats,
}

const SUBJECT: usize = 0;
const ORACLE: usize = 1;

/// What a command needs of the handle it runs on (see [`Op`] on replacing handles).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    /// A live handle, bound to an instance if it is new.
    Instance,
    /// A live handle not bound to an instance.
    NoInstance,
    /// A live handle.
    Any,
}

/// What a step did on both sides.
enum Ran {
    Skipped(&'static str),
    Done,
    Results(Box<[Result<InstanceView, StoreError>; 2]>),
}

fn differ(what: &str, subject: &dyn fmt::Debug, oracle: &dyn fmt::Debug) -> String {
    format!("{what} differ:\n  subject: {subject:?}\n  oracle:  {oracle:?}")
}

impl Driver {
    async fn shutdown(&mut self) {
        for side in &mut self.sides {
            side.store.shutdown().await;
            side.handles.clear();
        }
    }

    fn advance(&mut self, by: Duration) {
        for side in &self.sides {
            side.clock.advance(by);
        }
    }

    fn now(&self) -> Timestamp {
        self.sides[ORACLE].now()
    }

    /// Index of the owner of the oracle's handle in slot `h`.
    fn handle_owner(&self, h: u8) -> Option<usize> {
        let side = &self.sides[ORACLE];
        let owner = side.handle(h)?.owner()?;
        side.owners.iter().position(|o| *o == owner)
    }

    fn pick_owner(&self, o: Option<u8>) -> Option<usize> {
        let o = usize::from(o?);
        let live: Vec<usize> = (0..self.model.owners.len())
            .filter(|i| !self.model.owners[*i].lost)
            .collect();
        let pool: Vec<usize> = if live.is_empty() {
            (0..self.model.owners.len()).collect()
        } else {
            live
        };
        (!pool.is_empty()).then(|| pool[o % pool.len()])
    }

    fn live_owners(&self) -> usize {
        self.model.owners.iter().filter(|o| !o.lost).count()
    }

    async fn step(&mut self, op: &Op) -> Result<(), String> {
        self.advance(TICK);
        self.model.since_origin += TICK;
        let ran = self.run(op).await?;
        let outcome = match &ran {
            Ran::Skipped(why) => {
                self.stats.skipped += 1;
                format!("skipped ({why})")
            }
            Ran::Done => "done".to_owned(),
            Ran::Results(results) => {
                let [subject, oracle] = &**results;
                let [s, o] = &mut self.sides;
                let (ns, no) = (s.result(subject), o.result(oracle));
                if ns != no {
                    return Err(differ("results", &ns, &no));
                }
                match oracle {
                    Ok(v) if matches!(op, Op::TryLoadRunnable { .. }) && v.instance.is_none() => {
                        "ok, none found".to_owned()
                    }
                    Ok(_) => "ok".to_owned(),
                    Err(e) => e.code().to_owned(),
                }
            }
        };
        self.stats.steps += 1;
        *self
            .stats
            .outcomes
            .entry(format!("{}: {outcome}", op.kind()))
            .or_default() += 1;
        if let Ran::Results(results) = &ran {
            self.learn(op, &results[ORACLE]);
        }
        // Every handle's binding, and the background unlocks each store ran.
        for h in 0..HANDLES {
            let [s, o] = &mut self.sides;
            let (bs, bo) = (s.binding(h), o.binding(h));
            if bs != bo {
                return Err(differ(&format!("bindings of handle slot {h}"), &bs, &bo));
            }
        }
        for (name, side) in ["subject", "oracle"].iter().zip(&self.sides) {
            let seen = side.counts.unlocks.load(Ordering::SeqCst);
            if seen != self.model.expected_unlocks {
                return Err(format!(
                    "the {name} store ran {seen} background unlocks, the model expected {} \
                     (a background unlock the model did not foresee, or one still running)",
                    self.model.expected_unlocks
                ));
            }
        }
        Ok(())
    }

    /// Runs one op on both sides.
    async fn run(&mut self, op: &Op) -> Result<Ran, String> {
        Ok(match *op {
            Op::Handle { h, owner, instance } => {
                let owner = self.pick_owner(owner);
                self.put_handle(h, owner, instance).await?;
                Ran::Done
            }
            Op::CreateOwner { host_type: ht } => {
                if self.live_owners() >= MAX_LIVE_OWNERS {
                    return Ok(Ran::Skipped("live owner cap"));
                }
                let n = self.model.owners.len();
                let command = CreateOwner {
                    host_type: ht.map(host_type),
                    metadata: pb(vec![
                        ("name", InstanceValue::new(format!("owner-{n}"))),
                        ("secret", InstanceValue::write_only("s")),
                    ]),
                    lease: None,
                };
                let mut results = Vec::with_capacity(2);
                for side in &self.sides {
                    let handle = side.store.create_handle_for(None, None);
                    let command = Command::CreateOwner(command.clone());
                    results.push(side.store.execute(&handle, command, T).await);
                }
                let results: [_; 2] = results.try_into().map_err(|_| "two sides")?;
                // Record new owners before comparing, so that the views normalize.
                if let (Ok(s), Ok(o)) = (&results[SUBJECT], &results[ORACLE]) {
                    if let (Some(so), Some(oo)) = (s.owner, o.owner) {
                        if !self.sides[ORACLE].owners.contains(&oo) {
                            self.sides[SUBJECT].owners.push(so);
                            self.sides[ORACLE].owners.push(oo);
                            self.model.owners.push(OwnerModel {
                                host_type: ht.map(host_type),
                                lost: false,
                            });
                        }
                    }
                }
                Ran::Results(Box::new(results))
            }
            Op::DeleteOwner { h } => self.command(h, Need::Any, |_| Command::DeleteOwner).await?,
            Op::Load {
                h,
                accept_uninitialized,
                allow_suspended,
            } => {
                let load = Load {
                    accept_uninitialized,
                    allow_suspended,
                };
                self.command(h, Need::Instance, |_| Command::Load(load))
                    .await?
            }
            Op::LoadByKey {
                h,
                key: k,
                accept_uninitialized,
                create_with_id,
                associate,
                allow_suspended,
            } => {
                self.command(h, Need::NoInstance, |side| {
                    Command::LoadByKey(LoadByKey {
                        key: key(k),
                        accept_uninitialized,
                        create_with_id: create_with_id.map(|i| side.resolve_instance(i)),
                        keys_to_associate: associate.indices().map(new_key).collect(),
                        allow_suspended,
                    })
                })
                .await?
            }
            Op::Save {
                h,
                data,
                meta,
                associate,
                complete_keys,
                free_keys,
                timer,
                status,
                bookmarks,
                suspend,
                complete,
                unlock,
            } => {
                self.command(h, Need::Instance, |side| {
                    Command::Save(Save {
                        data: data.map(data_bag),
                        metadata_changes: meta
                            .iter()
                            .flatten()
                            .map(|(name, value)| {
                                (
                                    format!("m{}", name % 2),
                                    match value {
                                        None => MetadataChange::Deleted,
                                        Some(v) => MetadataChange::Set(meta_value(*v)),
                                    },
                                )
                            })
                            .collect(),
                        keys_to_associate: associate.indices().map(new_key).collect(),
                        keys_to_complete: complete_keys.indices().map(key).collect(),
                        keys_to_free: free_keys.indices().map(key).collect(),
                        timer: timer.map(|s| {
                            side.now()
                                .plus(Duration::from_secs(u64::from(s)) + TIMER_OFFSET)
                        }),
                        status: STATUSES[usize::from(status) % STATUSES.len()],
                        bookmarks: ["b0", "b1"]
                            .iter()
                            .enumerate()
                            .filter(|(i, _)| bookmarks & (1 << i) != 0)
                            .map(|(_, b)| (*b).to_owned())
                            .collect(),
                        suspend: match suspend % 4 {
                            0 => SuspendChange::Unchanged,
                            1 => SuspendChange::Suspend {
                                reason: "r1".into(),
                                exception: None,
                            },
                            2 => SuspendChange::Suspend {
                                reason: "r2".into(),
                                exception: Some(ExceptionInfo {
                                    name: "E".into(),
                                    message: "boom".into(),
                                }),
                            },
                            _ => SuspendChange::Unsuspend,
                        },
                        complete,
                        unlock,
                    })
                })
                .await?
            }
            Op::TryLoadRunnable { h } => {
                self.ensure(h, Need::NoInstance).await?;
                let expected = self.runnable(h).await;
                if let Some(Runnable::Tie) = expected {
                    return Ok(Ran::Skipped("runnable tie"));
                }
                let ran = self
                    .command(h, Need::Any, |_| Command::TryLoadRunnable)
                    .await?;
                if let (Ran::Results(results), Some(expected)) = (&ran, expected) {
                    let Ok(view) = &results[ORACLE] else {
                        return Ok(ran);
                    };
                    let found = view.instance.map(|i| self.sides[ORACLE].inst(i));
                    let foreseen = match expected {
                        Runnable::Unique(i) => Some(i),
                        _ => None,
                    };
                    if found != foreseen {
                        return Err(format!(
                            "harness defect: the shadow model foresaw {foreseen:?} runnable, \
                             the memory provider found {found:?}"
                        ));
                    }
                }
                ran
            }
            Op::QueryActivatable { h } => {
                self.command(h, Need::Any, |_| Command::QueryActivatable)
                    .await?
            }
            Op::Free { h } => {
                self.free(h, false).await?;
                Ran::Done
            }
            Op::Advance { secs } => {
                let by = Duration::from_secs(u64::from(secs));
                if self.model.since_origin + by < ADVANCE_BUDGET {
                    self.advance(by);
                    self.model.since_origin += by;
                }
                Ran::Done
            }
            Op::PastLease => {
                // The jump wakes each store's background renewal, which finds every live
                // owner's lease ended: wait until it has asked about each of them, so that it
                // never runs into a later step. Then renew in the foreground too (it marks
                // lost what the background pass may not have marked yet).
                let live = self.live_owners() as u64;
                let before: Vec<u64> = self
                    .sides
                    .iter()
                    .map(|s| s.counts.renewals.load(Ordering::SeqCst))
                    .collect();
                self.advance(LEASE + Duration::from_secs(1));
                self.model.since_origin = Duration::ZERO;
                self.wait_for("the background renewal woken by the jump", |side, c| {
                    c.renewals.load(Ordering::SeqCst) >= before[side] + live
                })
                .await?;
                if live == 0 {
                    // A pass with no owner to renew leaves no trace: give it time to end.
                    tokio::time::sleep(SETTLE).await;
                }
                for side in &self.sides {
                    side.store.renew_leases().await;
                }
                for owner in &mut self.model.owners {
                    owner.lost = true;
                }
                Ran::Done
            }
            Op::RenewLeases => {
                for side in &self.sides {
                    side.store.renew_leases().await;
                }
                Ran::Done
            }
        })
    }

    /// Executes a command on slot `h` of both sides (`None` if the slot is empty).
    async fn exec(
        &mut self,
        h: u8,
        make: impl Fn(&Side) -> Command,
    ) -> Option<[Result<InstanceView, StoreError>; 2]> {
        let mut results = Vec::with_capacity(2);
        for side in &self.sides {
            let handle = side.handle(h)?;
            results.push(side.store.execute(handle, make(side), T).await);
        }
        results.try_into().ok()
    }

    async fn command(
        &mut self,
        h: u8,
        need: Need,
        make: impl Fn(&Side) -> Command,
    ) -> Result<Ran, String> {
        self.ensure(h, need).await?;
        Ok(match self.exec(h, make).await {
            Some(results) => Ran::Results(Box::new(results)),
            None => Ran::Skipped("empty slot"),
        })
    }

    /// Makes slot `h` hold a handle fit for a command that needs `need`.
    async fn ensure(&mut self, h: u8, need: Need) -> Result<(), String> {
        let replace = match self.sides[ORACLE].handle(h) {
            None => true,
            Some(x) => {
                x.is_freed()
                    || (x.owner().is_none() && !self.model.owners.is_empty())
                    || (self
                        .handle_owner(h)
                        .is_some_and(|o| self.model.owners[o].lost)
                        && self.live_owners() > 0)
                    || match need {
                        Need::Instance => x.instance().is_none(),
                        Need::NoInstance => x.instance().is_some(),
                        Need::Any => false,
                    }
            }
        };
        if replace {
            let owner = self.pick_owner(Some(h));
            let instance = (need == Need::Instance).then_some(h);
            self.put_handle(h, owner, instance).await?;
        }
        Ok(())
    }

    /// Puts a new handle bound to owner index `owner` and instance index `instance` in slot
    /// `h`, freeing the one there.
    async fn put_handle(
        &mut self,
        h: u8,
        owner: Option<usize>,
        instance: Option<u8>,
    ) -> Result<(), String> {
        self.free(h, true).await?;
        for side in &mut self.sides {
            let owner = owner.map(|i| side.owners[i]);
            let instance = instance.map(|i| side.resolve_instance(i));
            side.handles[usize::from(h)] = Some(side.store.create_handle_for(owner, instance));
        }
        Ok(())
    }

    /// Frees the handle in slot `h` on both sides (and takes it out if `remove`), waiting for
    /// the background unlock it starts.
    async fn free(&mut self, h: u8, remove: bool) -> Result<(), String> {
        let Some(handle) = self.sides[ORACLE].handle(h) else {
            return Ok(());
        };
        let owner = self.handle_owner(h);
        let releases = !handle.is_freed()
            && handle.lock_version().is_some()
            && owner.is_some_and(|o| !self.model.owners[o].lost);
        let instance = handle.instance();
        for side in &mut self.sides {
            if let Some(handle) = side.handle(h) {
                handle.free();
            }
            if remove {
                side.handles[usize::from(h)] = None;
            }
        }
        if !releases {
            return Ok(());
        }
        self.model.expected_unlocks += 1;
        let expected = self.model.expected_unlocks;
        self.wait_for("the background unlock of a freed handle", |_, c| {
            c.unlocks.load(Ordering::SeqCst) >= expected
        })
        .await?;
        if let Some(id) = instance {
            let now = self.now();
            let i = self.sides[ORACLE].inst(id);
            if let Some(s) = self.model.shadow.get_mut(&i) {
                s.release(now);
            }
        }
        Ok(())
    }

    /// Waits (real time, bounded) until `done(side, counts)` holds for the subject's counts,
    /// then for the oracle's.
    async fn wait_for(
        &self,
        what: &str,
        mut done: impl FnMut(usize, &Counts) -> bool,
    ) -> Result<(), String> {
        let started = Instant::now();
        for (i, (name, side)) in ["subject", "oracle"].iter().zip(&self.sides).enumerate() {
            while !done(i, &side.counts) {
                if started.elapsed() > BACKGROUND_WAIT {
                    let error = side
                        .counts
                        .unlock_error
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .clone();
                    return Err(format!(
                        "the {name} store did not finish {what} within {BACKGROUND_WAIT:?} \
                         (last failed unlock: {error:?})"
                    ));
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        Ok(())
    }

    /// What `TryLoadRunnable` on slot `h` must find, by the shadow model; `None` if the
    /// command will not get as far as looking.
    async fn runnable(&mut self, h: u8) -> Option<Runnable> {
        let handle = self.sides[ORACLE].handle(h)?;
        if handle.is_freed() || handle.instance().is_some() {
            return None;
        }
        let me = self.handle_owner(h)?;
        let owner = &self.model.owners[me];
        if owner.lost {
            return None;
        }
        let host_type = owner.host_type.clone()?;
        let now = self.now();
        let stored: HashMap<OwnerId, Timestamp> = self.sides[ORACLE]
            .store
            .provider()
            .owners()
            .await
            .ok()?
            .into_iter()
            .map(|o| (o.id, o.lease_expires_at))
            .collect();
        let lease_end = |o: usize| {
            stored
                .get(&self.sides[ORACLE].owners[o])
                .copied()
                .unwrap_or(Timestamp::UNIX_EPOCH)
        };
        let mut candidates: Vec<(Timestamp, NInst)> = self
            .model
            .shadow
            .iter()
            .filter(|(_, s)| {
                s.state == InstanceState::Initialized
                    && !s.suspended
                    && s.host_type.as_deref() == Some(host_type.as_str())
                    && s.holder != Some(me)
            })
            .filter_map(|(i, s)| {
                let since = match s.holder {
                    None => s.ready_at,
                    Some(holder) => Some(lease_end(holder)),
                };
                since.filter(|t| *t <= now).map(|t| (t, *i))
            })
            .collect();
        candidates.sort();
        Some(match candidates.as_slice() {
            [] => Runnable::Nothing,
            [(a, _), (b, _), ..] if a == b => Runnable::Tie,
            [(_, i), ..] => Runnable::Unique(*i),
        })
    }

    /// Updates the model from the oracle's result of `op` (equal to the subject's).
    fn learn(&mut self, op: &Op, oracle: &Result<InstanceView, StoreError>) {
        let view = match oracle {
            Err(StoreError::OwnerLost { owner }) => {
                if let NOwner::O(i) = self.sides[ORACLE].owner(*owner) {
                    self.model.owners[i].lost = true;
                }
                return;
            }
            Err(_) => return,
            Ok(view) => view,
        };
        if let Op::DeleteOwner { .. } = op {
            if let Some(NOwner::O(i)) = view.owner.map(|o| self.sides[ORACLE].owner(o)) {
                self.model.owners[i].lost = true;
            }
            return;
        }
        let (Some(id), Some(NOwner::O(me))) = (
            view.instance,
            view.owner.map(|o| self.sides[ORACLE].owner(o)),
        ) else {
            return;
        };
        let now = self.now();
        let i = self.sides[ORACLE].inst(id);
        let mut shadow = Shadow {
            state: view.state,
            status: view.status.unwrap_or_default(),
            timer: view.timer,
            suspended: view.suspension.is_some(),
            host_type: view.host_type.clone(),
            holder: Some(me),
            ready_at: None,
        };
        if view.lock_version.is_none() {
            shadow.release(now);
        }
        if view.state == InstanceState::Completed && self.setup.delete_all {
            self.model.shadow.remove(&i);
        } else {
            self.model.shadow.insert(i, shadow);
        }
    }
}
