//! Typed identifiers. A bare `Uuid` never travels through the API: the type says what it names.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! typed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// A new random (version 4) id.
            pub fn new() -> Self {
                Self(Uuid::new_v4())
            }

            /// Wraps an existing UUID.
            pub const fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            /// The UUID inside.
            pub const fn as_uuid(&self) -> Uuid {
                self.0
            }

            /// Whether this is the nil UUID (never a valid id for a stored object).
            pub fn is_nil(&self) -> bool {
                self.0.is_nil()
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, ":{}"), self.0)
            }
        }

        impl FromStr for $name {
            type Err = crate::StoreError;

            /// Parses a UUID in any of its usual spellings (hyphenated, simple, braced, urn).
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s.trim()).map(Self).map_err(|e| crate::StoreError::Invalid {
                    what: format!(concat!("'{}' is not a valid ", $prefix, " id (a UUID): {}"), s, e),
                })
            }
        }

        impl From<Uuid> for $name {
            fn from(uuid: Uuid) -> Self {
                Self(uuid)
            }
        }
    };
}

typed_id!(
    /// Identifies an instance (a workflow run) in a store.
    InstanceId,
    "instance"
);
typed_id!(
    /// Identifies an instance owner: one registration of a host in one store.
    OwnerId,
    "owner"
);
typed_id!(
    /// An instance key: a UUID alias of one instance. Hosts usually derive keys from business ids
    /// with [`KeyId::derive`].
    KeyId,
    "key"
);

impl KeyId {
    /// Derives a stable key from a business identifier (UUIDv5 in a namespace of the caller's
    /// choosing), so every host maps `order-42` to the same key.
    pub fn derive(namespace: Uuid, name: &str) -> Self {
        Self(Uuid::new_v5(&namespace, name.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_display() {
        let id = InstanceId::new();
        assert_eq!(id.to_string().parse::<InstanceId>().unwrap(), id);
    }

    #[test]
    fn a_bad_id_names_the_input_and_the_kind() {
        let err = "nope".parse::<OwnerId>().unwrap_err().to_string();
        assert!(err.contains("'nope'") && err.contains("owner id"), "{err}");
    }

    #[test]
    fn derived_keys_are_stable() {
        let ns = Uuid::from_u128(7);
        assert_eq!(KeyId::derive(ns, "order-42"), KeyId::derive(ns, "order-42"));
        assert_ne!(KeyId::derive(ns, "order-42"), KeyId::derive(ns, "order-43"));
    }
}
