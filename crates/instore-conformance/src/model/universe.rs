//! The small universe ops range over: fixed instance ids, keys, data, metadata, statuses,
//! host types, and the store settings both sides share.

use instore::{
    CompletionAction, ExecutionStatus, InstanceId, InstanceValue, KeyId, LockRetry, NewKey,
    PropertyBag, StoreSettings, Timestamp, Uuid, Value,
};
use std::time::Duration;

use super::ops::Setup;
use super::{INSTANCES, KEYS, LEASE, RENEW_EVERY};

// The universe.

pub(super) fn fixed_instance(i: u8) -> InstanceId {
    InstanceId::from_uuid(Uuid::from_u128(
        0x1157_0000_0000 + u128::from(i % INSTANCES) + 1,
    ))
}

pub(super) fn fixed_index(id: InstanceId) -> Option<u8> {
    (0..INSTANCES).find(|i| fixed_instance(*i) == id)
}

pub(super) fn key(i: u8) -> KeyId {
    KeyId::from_uuid(Uuid::from_u128(0x4e75_0000_0000 + u128::from(i % KEYS) + 1))
}

pub(super) fn key_name(k: KeyId) -> String {
    match (0..KEYS).find(|i| key(*i) == k) {
        Some(i) => format!("k{i}"),
        None => k.to_string(),
    }
}

pub(super) fn new_key(i: u8) -> NewKey {
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

pub(super) fn pb(entries: Vec<(&str, InstanceValue)>) -> PropertyBag {
    entries
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
}

pub(super) fn data_bag(i: u8) -> PropertyBag {
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

pub(super) fn meta_value(i: u8) -> InstanceValue {
    match i % 4 {
        0 => InstanceValue::new(1i64),
        1 => InstanceValue::new("v"),
        2 => InstanceValue::write_only(9i64),
        _ => InstanceValue::new(true),
    }
}

pub(super) const STATUSES: [ExecutionStatus; 6] = [
    ExecutionStatus::Executing,
    ExecutionStatus::Idle,
    ExecutionStatus::Closed,
    ExecutionStatus::Faulted,
    ExecutionStatus::Canceled,
    ExecutionStatus::Terminated,
];

pub(super) fn host_type(i: u8) -> String {
    if i % 2 == 0 { "h" } else { "g" }.to_owned()
}

pub(super) fn settings(setup: Setup) -> StoreSettings {
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
