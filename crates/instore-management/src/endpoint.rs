//! Control endpoints: how the service reaches a host that holds an instance (SPEC §10 "executes
//! through the instance's control endpoint when a live owner holds the instance and has
//! registered one").
//!
//! A host names its endpoint in its owner's metadata ([`owner_metadata`], entry
//! [`instore::handover::CONTROL_ENDPOINT`]); the control provider copies it into each queued
//! command's handover bag while that owner is alive and holds the instance. The service asks its
//! [`EndpointResolver`] for that name. [`EndpointRegistry`] resolves endpoints of hosts running
//! in the same process; a resolver for remote hosts (HTTP) implements the same trait and can
//! fall back to a registry for the rest.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};

use instore::{handover, ControlCommand, InstanceId, PropertyBag, StoreError, Value};

/// Where a host applies control commands to the instances it runs (the host runtime implements
/// it).
#[async_trait::async_trait]
pub trait ControlEndpoint: fmt::Debug + Send + Sync + 'static {
    /// Applies `command` to the running `instance` and persists the result; `Ok` only once the
    /// effect is durable. `metadata` is the command's handover bag
    /// ([`instore::QueuedCommand::metadata`]). An error is reported to the queue as the
    /// attempt's failure (its [`StoreError::code`] and message), and the command is retried.
    async fn execute(
        &self,
        instance: InstanceId,
        command: &ControlCommand,
        metadata: &PropertyBag,
    ) -> Result<(), StoreError>;
}

/// Finds the endpoint a host registered under a name. The extension point for endpoints of
/// other kinds (HTTP, ...): implement it, and fall back to an [`EndpointRegistry`] for
/// in-process ones.
pub trait EndpointResolver: fmt::Debug + Send + Sync + 'static {
    /// The endpoint called `name`, if this resolver can reach it. `None` makes the service
    /// execute the command at the store level (which fails with `InstanceLocked` while the host
    /// holds the instance, so the command is retried).
    fn resolve(&self, name: &str) -> Option<Arc<dyn ControlEndpoint>>;
}

/// Endpoints of hosts in this process, by name. Cheap to clone; clones share the registry, so a
/// host runtime can register while the service runs.
#[derive(Debug, Clone, Default)]
pub struct EndpointRegistry {
    endpoints: Arc<RwLock<HashMap<String, Arc<dyn ControlEndpoint>>>>,
}

impl EndpointRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers (or replaces) the endpoint called `name`.
    pub fn register(&self, name: impl Into<String>, endpoint: Arc<dyn ControlEndpoint>) {
        self.write().insert(name.into(), endpoint);
    }

    /// Registers `endpoint` under a new unique name (`inproc:<uuid>`) and returns the name, to be
    /// put in the owner's metadata with [`owner_metadata`].
    pub fn register_unique(&self, endpoint: Arc<dyn ControlEndpoint>) -> String {
        let name = format!("inproc:{}", instore::Uuid::new_v4());
        self.register(name.clone(), endpoint);
        name
    }

    /// Removes the endpoint called `name`; whether there was one.
    pub fn unregister(&self, name: &str) -> bool {
        self.write().remove(name).is_some()
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<dyn ControlEndpoint>>> {
        // A panic while inserting into a map leaves the map usable.
        self.endpoints.write().unwrap_or_else(|p| p.into_inner())
    }
}

impl EndpointResolver for EndpointRegistry {
    fn resolve(&self, name: &str) -> Option<Arc<dyn ControlEndpoint>> {
        self.endpoints
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }
}

/// Owner metadata naming a control endpoint: pass it to `CreateOwner { metadata }`.
pub fn owner_metadata(endpoint: &str) -> PropertyBag {
    instore::bag([(handover::CONTROL_ENDPOINT, endpoint)])
}

/// The endpoint a handover bag names: present only while a live owner holds the instance and
/// registered one.
pub(crate) fn named_endpoint(metadata: &PropertyBag) -> Option<&str> {
    metadata.get(handover::OWNER)?;
    match &metadata.get(handover::CONTROL_ENDPOINT)?.value {
        Value::String(name) if !name.is_empty() => Some(name),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Nothing;

    #[async_trait::async_trait]
    impl ControlEndpoint for Nothing {
        async fn execute(
            &self,
            _: InstanceId,
            _: &ControlCommand,
            _: &PropertyBag,
        ) -> Result<(), StoreError> {
            Ok(())
        }
    }

    #[test]
    fn registered_endpoints_resolve_until_unregistered() {
        let registry = EndpointRegistry::new();
        let name = registry.register_unique(Arc::new(Nothing));
        assert!(name.starts_with("inproc:"));
        assert!(registry.clone().resolve(&name).is_some());
        assert!(registry.resolve("inproc:other").is_none());
        assert!(registry.unregister(&name));
        assert!(registry.resolve(&name).is_none());
    }

    #[test]
    fn only_a_live_holders_endpoint_counts() {
        let mut bag = owner_metadata("inproc:x");
        assert_eq!(named_endpoint(&bag), None, "no live owner named");
        bag.insert(
            handover::OWNER.into(),
            Value::Uuid(instore::Uuid::new_v4()).into(),
        );
        assert_eq!(named_endpoint(&bag), Some("inproc:x"));
    }
}
