//! Values, options and property bags (SPEC §3).
//!
//! A [`PropertyBag`] maps names to [`InstanceValue`]s. Initial bags (owner metadata, key metadata,
//! instance data) hold values only; change bags ([`MetadataChanges`]) may also delete a name.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{StoreError, Timestamp};

/// One stored value. Round-trips are exact (floats bit for bit, timestamps to the microsecond).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// No value.
    Null,
    /// A boolean.
    Bool(bool),
    /// A 64-bit signed integer.
    Int(i64),
    /// A 64-bit float (NaN and signed zero survive).
    Float(f64),
    /// UTF-8 text.
    String(String),
    /// Raw bytes ("complex").
    Bytes(Vec<u8>),
    /// A UTC instant.
    Timestamp(Timestamp),
    /// A UUID.
    Uuid(Uuid),
    /// A duration.
    Duration(Duration),
    /// A JSON document ("complex").
    Json(serde_json::Value),
}

impl Value {
    /// Bytes and JSON are complex; everything else is primitive (SPEC §3).
    pub fn is_complex(&self) -> bool {
        matches!(self, Value::Bytes(_) | Value::Json(_))
    }

    /// The value's kind, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::String(_) => "string",
            Value::Bytes(_) => "bytes",
            Value::Timestamp(_) => "timestamp",
            Value::Uuid(_) => "uuid",
            Value::Duration(_) => "duration",
            Value::Json(_) => "json",
        }
    }
}

impl std::fmt::Display for Value {
    /// Human-readable: text as is, bytes as their length, JSON as compact JSON.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Null => f.write_str("null"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => write!(f, "{x}"),
            Value::String(s) => f.write_str(s),
            Value::Bytes(b) => write!(f, "<{} bytes>", b.len()),
            Value::Timestamp(t) => write!(f, "{t}"),
            Value::Uuid(u) => write!(f, "{u}"),
            Value::Duration(d) => write!(f, "{d:?}"),
            Value::Json(j) => write!(f, "{j}"),
        }
    }
}

macro_rules! value_from {
    ($($t:ty => $variant:ident),* $(,)?) => {
        $(impl From<$t> for Value {
            fn from(v: $t) -> Self {
                Value::$variant(v.into())
            }
        }
        impl From<$t> for InstanceValue {
            fn from(v: $t) -> Self {
                InstanceValue::new(Value::$variant(v.into()))
            }
        })*
    };
}
value_from!(bool => Bool, i64 => Int, i32 => Int, f64 => Float, String => String, &str => String,
    Vec<u8> => Bytes, Timestamp => Timestamp, Uuid => Uuid, Duration => Duration,
    serde_json::Value => Json);

/// Flags that say how a value is treated by the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ValueOptions(u8);

impl ValueOptions {
    /// No flags: persisted and loaded back.
    pub const NONE: ValueOptions = ValueOptions(0);
    /// Persisted (visible to queries and operators) but never loaded back into a host's view.
    pub const WRITE_ONLY: ValueOptions = ValueOptions(1);
    /// The store may drop it if it cannot persist it (for instance when it would push the
    /// instance over the size limit); it never makes a command fail.
    pub const OPTIONAL: ValueOptions = ValueOptions(2);

    /// Whether every flag of `other` is set here.
    pub const fn contains(self, other: ValueOptions) -> bool {
        self.0 & other.0 == other.0
    }

    /// The raw bits (for storage).
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// From raw bits; unknown bits are kept so that newer rows survive a round trip.
    pub const fn from_bits(bits: u8) -> Self {
        ValueOptions(bits)
    }
}

impl std::ops::BitOr for ValueOptions {
    type Output = ValueOptions;
    fn bitor(self, rhs: Self) -> Self {
        ValueOptions(self.0 | rhs.0)
    }
}

/// A value with its options.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceValue {
    /// The value.
    pub value: Value,
    /// How the store treats it.
    pub options: ValueOptions,
}

impl InstanceValue {
    /// A plain value (no options).
    pub fn new(value: impl Into<Value>) -> Self {
        Self {
            value: value.into(),
            options: ValueOptions::NONE,
        }
    }

    /// A value with options.
    pub fn with_options(value: impl Into<Value>, options: ValueOptions) -> Self {
        Self {
            value: value.into(),
            options,
        }
    }

    /// A write-only value: persisted, never loaded back.
    pub fn write_only(value: impl Into<Value>) -> Self {
        Self::with_options(value, ValueOptions::WRITE_ONLY)
    }

    /// An optional value: may be dropped by the store, never fails a command.
    pub fn optional(value: impl Into<Value>) -> Self {
        Self::with_options(value, ValueOptions::OPTIONAL)
    }

    /// Whether the host's view leaves this value out.
    pub fn is_write_only(&self) -> bool {
        self.options.contains(ValueOptions::WRITE_ONLY)
    }

    /// Whether the store may drop this value.
    pub fn is_optional(&self) -> bool {
        self.options.contains(ValueOptions::OPTIONAL)
    }
}

/// A property bag: names (namespacing like `orders:total` is recommended) to values.
pub type PropertyBag = BTreeMap<String, InstanceValue>;

/// One entry of a change bag: set a name to a value, or delete it.
#[derive(Debug, Clone, PartialEq)]
pub enum MetadataChange {
    /// Set (insert or replace) the value.
    Set(InstanceValue),
    /// The `Deleted` marker: remove the name.
    Deleted,
}

/// A change bag, applied in order.
pub type MetadataChanges = Vec<(String, MetadataChange)>;

/// Which bag a validation error is about; part of every message so the caller can find it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BagKind {
    /// `CreateOwner { metadata }`.
    OwnerMetadata,
    /// The metadata of a key being associated.
    KeyMetadata,
    /// `Save { data }`.
    InstanceData,
    /// `Save { metadata_changes }`.
    MetadataChanges,
}

impl std::fmt::Display for BagKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BagKind::OwnerMetadata => "owner metadata",
            BagKind::KeyMetadata => "key metadata",
            BagKind::InstanceData => "instance data",
            BagKind::MetadataChanges => "metadata changes",
        })
    }
}

/// Checks an initial bag: every name must be non-empty.
///
/// The `Deleted` marker cannot appear in a [`PropertyBag`] (only in [`MetadataChanges`]), and a
/// missing value cannot be expressed in Rust; both are rejected where bags are parsed from
/// outside (JSON), with the same kind of message.
pub fn validate_bag(kind: BagKind, bag: &PropertyBag) -> Result<(), StoreError> {
    for name in bag.keys() {
        validate_name(kind, name)?;
    }
    Ok(())
}

/// Checks a change bag: every name must be non-empty.
pub fn validate_changes(changes: &MetadataChanges) -> Result<(), StoreError> {
    for (name, _) in changes {
        validate_name(BagKind::MetadataChanges, name)?;
    }
    Ok(())
}

fn validate_name(kind: BagKind, name: &str) -> Result<(), StoreError> {
    if name.trim().is_empty() {
        return Err(StoreError::Invalid {
            what: format!("{kind} has an entry with an empty name {name:?}; give every value a non-empty name such as 'orders:total'"),
        });
    }
    Ok(())
}

/// Applies a change bag to a bag, in order.
pub fn apply_changes(bag: &mut PropertyBag, changes: &MetadataChanges) {
    for (name, change) in changes {
        match change {
            MetadataChange::Set(v) => {
                bag.insert(name.clone(), v.clone());
            }
            MetadataChange::Deleted => {
                bag.remove(name);
            }
        }
    }
}

/// The bag as a host sees it: write-only values left out.
pub fn readable(bag: &PropertyBag) -> PropertyBag {
    bag.iter()
        .filter(|(_, v)| !v.is_write_only())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Builds a bag from `(name, value)` pairs; a convenience for hosts and tests.
pub fn bag<I, K, V>(entries: I) -> PropertyBag
where
    I: IntoIterator<Item = (K, V)>,
    K: Into<String>,
    V: Into<InstanceValue>,
{
    entries
        .into_iter()
        .map(|(k, v)| (k.into(), v.into()))
        .collect()
}

impl From<Value> for InstanceValue {
    fn from(v: Value) -> Self {
        InstanceValue::new(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_names_are_rejected_with_the_bag_named() {
        let b = bag([("", 1i64)]);
        let err = validate_bag(BagKind::InstanceData, &b)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("instance data") && err.contains("empty name"),
            "{err}"
        );
    }

    #[test]
    fn changes_apply_in_order() {
        let mut b = bag([("a", 1i64), ("b", 2i64)]);
        apply_changes(
            &mut b,
            &vec![
                ("a".into(), MetadataChange::Deleted),
                ("c".into(), MetadataChange::Set(3i64.into())),
                ("c".into(), MetadataChange::Set(4i64.into())),
            ],
        );
        assert_eq!(b, bag([("b", 2i64), ("c", 4i64)]));
    }
}
