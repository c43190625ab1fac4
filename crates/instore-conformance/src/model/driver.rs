//! Running a case: the driver runs each step on both sides and compares the results.

use instore::{
    Command, CreateOwner, ExceptionInfo, InstanceValue, InstanceView, Load, LoadByKey, ManualClock,
    MetadataChange, PersistenceProvider, Save, StoreError, SuspendChange, Timestamp,
};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::compare::differ;
use super::ops::{Op, Setup};
use super::shadow::{Model, OwnerModel, Runnable};
use super::side::Side;
use super::universe::{data_bag, host_type, key, meta_value, new_key, pb, STATUSES};
use super::{
    memory_subject, ADVANCE_BUDGET, HANDLES, LEASE, MAX_LIVE_OWNERS, SETTLE, START, T, TICK,
    TIMER_OFFSET,
};

// Running a case.

#[derive(Debug, Default)]
pub(super) struct CaseStats {
    pub(super) steps: u64,
    pub(super) skipped: u64,
    pub(super) outcomes: BTreeMap<String, u64>,
}

pub(super) struct Failure {
    /// Index of the failing step.
    pub(super) step: usize,
    pub(super) report: String,
}

pub(super) fn run_case<F, Fut>(subject: &F, setup: Setup, ops: &[Op]) -> Result<CaseStats, Failure>
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

pub(super) struct Driver {
    pub(super) setup: Setup,
    /// `[subject, oracle]`.
    pub(super) sides: [Side; 2],
    pub(super) model: Model,
    stats: CaseStats,
}

const SUBJECT: usize = 0;
pub(super) const ORACLE: usize = 1;

/// What a command needs of the handle it runs on (see [`Op`] on replacing handles).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Need {
    /// A live handle, bound to an instance if it is new.
    Instance,
    /// A live handle not bound to an instance.
    NoInstance,
    /// A live handle.
    Any,
}

/// What a step did on both sides.
pub(super) enum Ran {
    Skipped(&'static str),
    Done,
    Results(Box<[Result<InstanceView, StoreError>; 2]>),
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

    pub(super) fn now(&self) -> Timestamp {
        self.sides[ORACLE].now()
    }

    /// Index of the owner of the oracle's handle in slot `h`.
    pub(super) fn handle_owner(&self, h: u8) -> Option<usize> {
        let side = &self.sides[ORACLE];
        let owner = side.handle(h)?.owner()?;
        side.owners.iter().position(|o| *o == owner)
    }

    pub(super) fn pick_owner(&self, o: Option<u8>) -> Option<usize> {
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

    pub(super) fn live_owners(&self) -> usize {
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
    pub(super) async fn run(&mut self, op: &Op) -> Result<Ran, String> {
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
}
