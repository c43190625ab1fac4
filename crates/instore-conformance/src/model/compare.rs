//! Normalized results: ids the providers invent mapped to stable names, so that the subject's
//! and the oracle's outcomes compare field by field.

use instore::{
    Activatable, ExecutionStatus, InstanceId, InstanceState, InstanceView, KeyView, OwnerId,
    PropertyBag, StoreError, Suspension, Timestamp,
};
use std::collections::BTreeMap;
use std::fmt;

use super::side::Side;
use super::universe::{fixed_index, fixed_instance, key_name};
use super::INSTANCES;

// Normalized results.

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum NInst {
    Fixed(u8),
    Invented(usize),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum NOwner {
    O(usize),
    Unknown(String),
}

#[derive(Debug, PartialEq)]
pub(super) struct NView {
    pub(super) owner: Option<NOwner>,
    pub(super) instance: Option<NInst>,
    pub(super) state: InstanceState,
    pub(super) lock_version: Option<u64>,
    data: PropertyBag,
    metadata: PropertyBag,
    keys: BTreeMap<String, KeyView>,
    pub(super) status: Option<ExecutionStatus>,
    pub(super) timer: Option<Timestamp>,
    bookmarks: Vec<String>,
    pub(super) suspension: Option<Suspension>,
    pub(super) host_type: Option<String>,
    pub(super) activatable: Vec<Activatable>,
}

#[derive(Debug, PartialEq)]
pub(super) struct NBinding {
    pub(super) owner: Option<NOwner>,
    pub(super) instance: Option<NInst>,
    pub(super) lock_version: Option<u64>,
    freed: bool,
}

pub(super) type NResult = Result<NView, String>;

pub(super) fn differ(what: &str, subject: &dyn fmt::Debug, oracle: &dyn fmt::Debug) -> String {
    format!("{what} differ:\n  subject: {subject:?}\n  oracle:  {oracle:?}")
}

impl Side {
    pub(super) fn inst(&mut self, id: InstanceId) -> NInst {
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

    pub(super) fn owner(&self, id: OwnerId) -> NOwner {
        match self.owners.iter().position(|o| *o == id) {
            Some(i) => NOwner::O(i),
            None => NOwner::Unknown(id.to_string()),
        }
    }

    pub(super) fn resolve_instance(&self, i: u8) -> InstanceId {
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

    pub(super) fn result(&mut self, r: &Result<InstanceView, StoreError>) -> NResult {
        match r {
            Ok(v) => Ok(self.view(v)),
            Err(e) => Err(self.error(e)),
        }
    }

    pub(super) fn binding(&mut self, h: u8) -> Option<NBinding> {
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
