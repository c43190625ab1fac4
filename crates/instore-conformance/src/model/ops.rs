//! The commands of the model ([`Op`], [`Keys`], [`Setup`]) and the proptest strategies that
//! generate and shrink sequences of them.

use proptest::prelude::*;
use proptest::strategy::{NewTree, ValueTree};
use proptest::test_runner::TestRunner;
use std::cell::Cell;
use std::fmt;
use std::rc::Rc;

use super::{HANDLES, INSTANCE_INDICES, KEYS, MAX_LIVE_OWNERS};

/// A set of the four keys, as a bit mask (`Keys(0b0101)` is `k0` and `k2`).
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct Keys(pub u8);

impl Keys {
    pub(super) fn indices(self) -> impl Iterator<Item = u8> {
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
    pub(super) fn kind(&self) -> &'static str {
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

// Generation.

pub(super) fn setup_strategy() -> impl Strategy<Value = Setup> {
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

pub(super) fn op_strategy() -> impl Strategy<Value = Op> {
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
pub(super) struct OpsStrategy {
    /// The first two ops (owners to start with).
    pub(super) first: BoxedStrategy<Op>,
    pub(super) element: BoxedStrategy<Op>,
    pub(super) len: usize,
    /// Set by the test closure: index of the step that failed in the last failing run.
    pub(super) failed_at: Rc<Cell<Option<usize>>>,
}

pub(super) struct OpsTree {
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
