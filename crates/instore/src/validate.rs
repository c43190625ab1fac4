//! Command validation against the handle's binding, before anything reaches storage (SPEC §6).
//! Every message says which command, which field or bag, and which entry or key.

use std::collections::HashSet;
use std::time::Duration;

use crate::value::{validate_bag, validate_changes, BagKind};
use crate::{Command, InstanceId, KeyId, NewKey, OwnerId, StoreError};

/// What the handle is bound to, as validation sees it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bound {
    pub(crate) owner: Option<OwnerId>,
    pub(crate) instance: Option<InstanceId>,
}

pub(crate) fn command(command: &Command, bound: Bound) -> Result<(), StoreError> {
    let name = command.name();
    let need_owner = || -> Result<(), StoreError> {
        match bound.owner {
            Some(_) => Ok(()),
            None => Err(StoreError::invalid(format!(
                "{name} needs a handle bound to an owner: run CreateOwner on a handle first, then create handles from the store"
            ))),
        }
    };
    let need_instance = || -> Result<(), StoreError> {
        match bound.instance {
            Some(_) => Ok(()),
            None => Err(StoreError::invalid(format!(
                "{name} needs a handle bound to an instance id: create it with create_handle_for(owner, Some(id)), or use LoadByKey"
            ))),
        }
    };
    let no_instance = || -> Result<(), StoreError> {
        match bound.instance {
            Some(instance) => Err(StoreError::AlreadyBoundToInstance { instance }),
            None => Ok(()),
        }
    };
    match command {
        Command::CreateOwner(c) => {
            if let Some(owner) = bound.owner {
                return Err(StoreError::AlreadyBoundToOwner { owner });
            }
            if c.host_type.as_deref().is_some_and(|h| h.trim().is_empty()) {
                return Err(StoreError::invalid(
                    "CreateOwner: host_type is empty; give a name such as 'orders-service' or none",
                ));
            }
            if let Some(lease) = c.lease {
                if lease < Duration::from_secs(1) {
                    return Err(StoreError::invalid(format!(
                        "CreateOwner: lease is {lease:?}; it must be at least 1s"
                    )));
                }
            }
            validate_bag(BagKind::OwnerMetadata, &c.metadata)
        }
        Command::DeleteOwner | Command::QueryActivatable => need_owner(),
        Command::Load(_) => {
            need_owner()?;
            need_instance()
        }
        Command::LoadByKey(l) => {
            need_owner()?;
            no_instance()?;
            if l.key.is_nil() {
                return Err(StoreError::invalid(
                    "LoadByKey: key is the nil UUID; keys must be non-nil",
                ));
            }
            match l.create_with_id {
                None => {
                    if l.keys_to_associate.iter().any(|k| k.key == l.key) {
                        return Err(StoreError::invalid(format!(
                            "LoadByKey: keys_to_associate contains the lookup key {}; it is associated already if it is found",
                            l.key
                        )));
                    }
                }
                Some(id) => {
                    if !l.accept_uninitialized {
                        return Err(StoreError::invalid(
                            "LoadByKey: create_with_id needs accept_uninitialized = true",
                        ));
                    }
                    if id.is_nil() {
                        return Err(StoreError::invalid(
                            "LoadByKey: create_with_id is the nil UUID",
                        ));
                    }
                }
            }
            new_keys("LoadByKey", "keys_to_associate", &l.keys_to_associate)
        }
        Command::Save(s) => {
            need_owner()?;
            need_instance()?;
            if s.complete && !s.unlock {
                return Err(StoreError::invalid(
                    "Save: complete requires unlock (a completed instance cannot stay locked)",
                ));
            }
            if let Some(data) = &s.data {
                validate_bag(BagKind::InstanceData, data)?;
            }
            validate_changes(&s.metadata_changes)?;
            new_keys("Save", "keys_to_associate", &s.keys_to_associate)?;
            keys(
                "Save",
                "keys_to_complete",
                s.keys_to_complete.iter().copied(),
            )?;
            keys("Save", "keys_to_free", s.keys_to_free.iter().copied())?;
            if s.bookmarks.iter().any(|b| b.trim().is_empty()) {
                return Err(StoreError::invalid("Save: bookmarks contain an empty name"));
            }
            Ok(())
        }
        Command::TryLoadRunnable => {
            need_owner()?;
            no_instance()
        }
        Command::Custom(_) => Ok(()),
    }
}

fn new_keys(command: &str, field: &str, list: &[NewKey]) -> Result<(), StoreError> {
    keys(command, field, list.iter().map(|k| k.key))?;
    for k in list {
        validate_bag(BagKind::KeyMetadata, &k.metadata).map_err(|e| match e {
            StoreError::Invalid { what } => {
                StoreError::invalid(format!("{command}: {field}: key {}: {what}", k.key))
            }
            other => other,
        })?;
    }
    Ok(())
}

fn keys(command: &str, field: &str, list: impl Iterator<Item = KeyId>) -> Result<(), StoreError> {
    let mut seen = HashSet::new();
    for key in list {
        if key.is_nil() {
            return Err(StoreError::invalid(format!(
                "{command}: {field} contains the nil UUID; keys must be non-nil"
            )));
        }
        if !seen.insert(key) {
            return Err(StoreError::invalid(format!(
                "{command}: {field} lists key {key} twice"
            )));
        }
    }
    Ok(())
}
