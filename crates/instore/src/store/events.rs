//! Events delivered to waiting handles and store-level events.

use crate::OwnerId;

/// An event bound to a handle, returned by [`crate::InstanceStore::wait_for_events`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum InstanceEvent {
    /// An instance of the owner's host type is runnable: run `TryLoadRunnable` until it finds
    /// nothing (which resets the event).
    HasRunnableWorkflow,
}

/// Something that happened to the store as a whole, from [`crate::InstanceStore::subscribe`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreEvent {
    /// An owner's lease could not be renewed before it ended. Its handles answer `OwnerLost`.
    OwnerLost {
        /// The lost owner.
        owner: OwnerId,
    },
    /// A fresh owner was registered to replace a lost one (`auto_recover_owner`). If the lost
    /// owner was the store's default owner, the replacement is the default now.
    OwnerRecovered {
        /// The lost owner.
        lost: OwnerId,
        /// Its replacement.
        replacement: OwnerId,
    },
}
