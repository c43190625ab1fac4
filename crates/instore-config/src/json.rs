//! The JSON shapes tools share: the CLI's `--json` output and (later) the HTTP API.
//!
//! Values come out **natural** — what a script expects to read: numbers as numbers, strings as
//! strings, timestamps as RFC 3339 strings (UTC, microseconds), UUIDs as hyphenated strings,
//! bytes as base64 (standard alphabet, padded), durations as humantime strings (`"1m 30s"`), JSON
//! values as they are, non-finite floats as `"NaN"`, `"inf"`, `"-inf"`. Natural JSON loses the
//! kind of some values (a timestamp and a string look alike), so where a value must come back
//! exactly, [`typed_value`] writes `{"type": KIND, "value": NATURAL}` and [`value_from_typed`]
//! reads it back.
//!
//! Field names are snake_case; enums are their names (`"Running"`, `"Suspend"`); missing
//! optional fields are `null`, never left out, so a script can rely on every key.

use std::time::Duration;

use base64::Engine as _;
use instore::{
    BlockedOn, ControlCommand, ErrorLogEntry, ExceptionInfo, GroupCount, InstanceInfo, OwnerInfo,
    Page, PendingCommand, PropertyBag, QueueEntry, Suspension, Timestamp, Value,
};
use serde_json::{json, Map, Value as Json};

use crate::instant::parse_rfc3339;

/// A timestamp as an RFC 3339 string.
pub fn timestamp(t: Timestamp) -> Json {
    Json::String(t.to_string())
}

fn opt_timestamp(t: Option<Timestamp>) -> Json {
    t.map_or(Json::Null, timestamp)
}

fn opt_string<T: ToString>(v: Option<T>) -> Json {
    v.map_or(Json::Null, |v| Json::String(v.to_string()))
}

fn float(f: f64) -> Json {
    if f.is_nan() {
        Json::from("NaN")
    } else if f.is_infinite() {
        Json::from(if f > 0.0 { "inf" } else { "-inf" })
    } else {
        Json::from(f)
    }
}

fn duration(d: Duration) -> Json {
    Json::String(humantime::format_duration(d).to_string())
}

/// A value as natural JSON (see the module docs).
pub fn value(v: &Value) -> Json {
    match v {
        Value::Null => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::Int(i) => Json::from(*i),
        Value::Float(f) => float(*f),
        Value::String(s) => Json::String(s.clone()),
        Value::Bytes(b) => Json::String(base64::engine::general_purpose::STANDARD.encode(b)),
        Value::Timestamp(t) => timestamp(*t),
        Value::Uuid(u) => Json::String(u.to_string()),
        Value::Duration(d) => duration(*d),
        Value::Json(j) => j.clone(),
    }
}

/// A value in the typed form that round-trips exactly: `{"type": KIND, "value": NATURAL}`,
/// with KIND one of `null`, `bool`, `int`, `float`, `string`, `bytes`, `timestamp`, `uuid`,
/// `duration`, `json` ([`Value::kind`]).
pub fn typed_value(v: &Value) -> Json {
    json!({ "type": v.kind(), "value": value(v) })
}

/// Reads a value written by [`typed_value`]. The error says what is wrong with it.
pub fn value_from_typed(typed: &Json) -> Result<Value, String> {
    let kind = typed
        .get("type")
        .and_then(Json::as_str)
        .ok_or("a typed value needs a \"type\" string")?;
    let v = typed.get("value").unwrap_or(&Json::Null);
    let bad = || format!("{v} is not a {kind} value");
    let text = || v.as_str().ok_or_else(bad);
    Ok(match kind {
        "null" => Value::Null,
        "bool" => Value::Bool(v.as_bool().ok_or_else(bad)?),
        "int" => Value::Int(v.as_i64().ok_or_else(bad)?),
        "float" => Value::Float(match v {
            Json::Number(n) => n.as_f64().ok_or_else(bad)?,
            Json::String(s) if s == "NaN" => f64::NAN,
            Json::String(s) if s == "inf" => f64::INFINITY,
            Json::String(s) if s == "-inf" => f64::NEG_INFINITY,
            _ => return Err(bad()),
        }),
        "string" => Value::String(text()?.to_owned()),
        "bytes" => Value::Bytes(
            base64::engine::general_purpose::STANDARD
                .decode(text()?)
                .map_err(|e| format!("{}: {e}", bad()))?,
        ),
        "timestamp" => Value::Timestamp(parse_rfc3339(text()?).ok_or_else(bad)?),
        "uuid" => Value::Uuid(text()?.parse().map_err(|e| format!("{}: {e}", bad()))?),
        "duration" => Value::Duration(
            humantime::parse_duration(text()?).map_err(|e| format!("{}: {e}", bad()))?,
        ),
        "json" => Value::Json(v.clone()),
        other => return Err(format!("unknown value type \"{other}\"")),
    })
}

/// A property bag as a natural JSON object (write-only values included: operators see them).
pub fn bag(bag: &PropertyBag) -> Json {
    Json::Object(
        bag.iter()
            .map(|(name, v)| (name.clone(), value(&v.value)))
            .collect(),
    )
}

/// A property bag with every value in the typed form.
pub fn typed_bag(bag: &PropertyBag) -> Json {
    Json::Object(
        bag.iter()
            .map(|(name, v)| (name.clone(), typed_value(&v.value)))
            .collect(),
    )
}

/// A control command: `{"type": "Suspend", "reason": "…"}` (`reason` only where it has one).
pub fn command(c: &ControlCommand) -> Json {
    let mut o = Map::new();
    o.insert("type".into(), Json::from(c.name()));
    if let Some(r) = c.reason() {
        o.insert("reason".into(), Json::from(r));
    }
    Json::Object(o)
}

fn exception(e: &ExceptionInfo) -> Json {
    json!({ "name": e.name, "message": e.message })
}

fn suspension(s: &Suspension) -> Json {
    json!({
        "reason": s.reason,
        "exception": s.exception.as_ref().map_or(Json::Null, exception),
    })
}

/// A queued command as an instance shows it.
pub fn pending_command(p: &PendingCommand) -> Json {
    json!({
        "command": command(&p.command),
        "attempts": p.attempts,
        "enqueued_at": timestamp(p.enqueued_at),
        "locked_until": opt_timestamp(p.locked_until),
        "last_error": p.last_error,
    })
}

/// An error-log entry.
pub fn error_entry(e: &ErrorLogEntry) -> Json {
    json!({
        "instance": e.instance.to_string(),
        "command": command(&e.command),
        "code": e.code,
        "message": e.message,
        "last_attempt_at": timestamp(e.last_attempt_at),
        "machine": e.machine,
        "attempts": e.attempts,
    })
}

/// A control-queue entry.
pub fn queue_entry(e: &QueueEntry) -> Json {
    json!({
        "position": e.position,
        "instance": e.instance.to_string(),
        "command": command(&e.command),
        "attempts": e.attempts,
        "enqueued_at": timestamp(e.enqueued_at),
        "locked_until": opt_timestamp(e.locked_until),
        "last_error": e.last_error,
    })
}

/// An owner, and whether its lease is alive at `now`.
pub fn owner(o: &OwnerInfo, now: Timestamp) -> Json {
    json!({
        "id": o.id.to_string(),
        "host_type": o.host_type,
        "machine": o.machine,
        "created_at": timestamp(o.created_at),
        "lease_expires_at": timestamp(o.lease_expires_at),
        "alive": o.lease_expires_at > now,
        "metadata": bag(&o.metadata),
    })
}

/// One group of a group count.
pub fn group_count(g: &GroupCount) -> Json {
    json!({ "key": g.key, "count": g.count })
}

/// Why an instance is not moving: `{"kind": "suspended", …}` with the kind in snake_case and
/// the reason's fields beside it.
pub fn blocked_on(b: &BlockedOn) -> Json {
    match b {
        BlockedOn::CommandFailing {
            command: c,
            attempts,
            error,
        } => json!({
            "kind": "command_failing", "command": command(c), "attempts": attempts, "error": error,
        }),
        BlockedOn::Suspended {
            reason,
            exception: e,
        } => json!({
            "kind": "suspended", "reason": reason,
            "exception": e.as_ref().map_or(Json::Null, exception),
        }),
        BlockedOn::LockedByLiveOwner {
            owner,
            machine,
            since,
        } => json!({
            "kind": "locked_by_live_owner", "owner": owner.to_string(), "machine": machine,
            "since": opt_timestamp(*since),
        }),
        BlockedOn::HeldByDeadOwner {
            owner,
            lease_ended_at,
        } => json!({
            "kind": "held_by_dead_owner", "owner": owner.to_string(),
            "lease_ended_at": opt_timestamp(*lease_ended_at),
        }),
        BlockedOn::NoLiveHost { host_type } => {
            json!({ "kind": "no_live_host", "host_type": host_type })
        }
        BlockedOn::Timer { due } => json!({ "kind": "timer", "due": timestamp(*due) }),
        BlockedOn::Bookmarks { bookmarks } => {
            json!({ "kind": "bookmarks", "bookmarks": bookmarks })
        }
        BlockedOn::Idle => json!({ "kind": "idle" }),
    }
}

fn name<T: serde::Serialize + std::fmt::Debug>(v: &T) -> Json {
    serde_json::to_value(v).unwrap_or_else(|_| Json::String(format!("{v:?}")))
}

/// An instance as queries show it, every field of [`InstanceInfo`].
pub fn instance(i: &InstanceInfo) -> Json {
    json!({
        "id": i.id.to_string(),
        "status": i.status.name(),
        "condition": i.condition.name(),
        "state": name(&i.state),
        "execution_status": name(&i.execution_status),
        "created_at": timestamp(i.created_at),
        "updated_at": timestamp(i.updated_at),
        "updated_by": i.updated_by,
        "machine": i.machine,
        "host_type": i.host_type,
        "suspension": i.suspension.as_ref().map_or(Json::Null, suspension),
        "bookmarks": i.bookmarks,
        "timer": opt_timestamp(i.timer),
        "owner": opt_string(i.owner),
        "owner_machine": i.owner_machine,
        "owner_lease_expires_at": opt_timestamp(i.owner_lease_expires_at),
        "locked_since": opt_timestamp(i.locked_since),
        "lock_version": i.lock_version,
        "pending_command": i.pending_command.as_ref().map_or(Json::Null, pending_command),
        "error": i.error.as_ref().map_or(Json::Null, error_entry),
        "promoted": Json::Object(i.promoted.iter().map(|(k, v)| (k.clone(), value(v))).collect()),
        "metadata": bag(&i.metadata),
        "keys": Json::Object(i.keys.iter().map(|(k, s)| (k.to_string(), name(s))).collect()),
        "blocked_on": i.blocked_on.as_ref().map_or(Json::Null, blocked_on),
    })
}

/// A page of instances: `{"items": [...], "next": CURSOR | null}`.
pub fn page(p: &Page<InstanceInfo>) -> Json {
    json!({
        "items": p.items.iter().map(instance).collect::<Vec<_>>(),
        "next": opt_string(p.next),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_kind() -> Vec<Value> {
        vec![
            Value::Null,
            Value::Bool(true),
            Value::Int(i64::MIN),
            Value::Float(42.0),
            Value::Float(-0.0),
            Value::Float(0.1),
            Value::Float(f64::INFINITY),
            Value::String("2026-11-21T00:00:00Z".into()),
            Value::Bytes(vec![0, 1, 2, 255]),
            Value::Timestamp(Timestamp::from_micros(1_795_000_000_123_456)),
            Value::Uuid(instore::Uuid::from_u128(7)),
            Value::Duration(Duration::new(90, 1_500)),
            Value::Json(json!({"a": [1, 2.5, null]})),
        ]
    }

    #[test]
    fn typed_values_round_trip_exactly() {
        for v in every_kind() {
            let text = typed_value(&v).to_string();
            let back = value_from_typed(&serde_json::from_str(&text).unwrap()).unwrap();
            match (&v, &back) {
                (Value::Float(a), Value::Float(b)) => assert_eq!(a.to_bits(), b.to_bits()),
                _ => assert_eq!(back, v, "{text}"),
            }
        }
        let back = value_from_typed(&typed_value(&Value::Float(f64::NAN))).unwrap();
        assert!(matches!(back, Value::Float(f) if f.is_nan()));
    }

    #[test]
    fn natural_values_read_as_people_expect() {
        assert_eq!(value(&Value::Int(42)), json!(42));
        assert_eq!(value(&Value::Float(1.5)), json!(1.5));
        assert_eq!(value(&Value::Bytes(b"hi".to_vec())), json!("aGk="));
        assert_eq!(
            value(&Value::Timestamp(Timestamp::from_micros(0))),
            json!("1970-01-01T00:00:00.000000Z")
        );
        assert_eq!(
            value(&Value::Duration(Duration::from_secs(90))),
            json!("1m 30s")
        );
        assert_eq!(value(&Value::Json(json!({"a": 1}))), json!({"a": 1}));
    }

    #[test]
    fn bad_typed_values_say_why() {
        let err = value_from_typed(&json!({"type": "int", "value": "x"})).unwrap_err();
        assert!(err.contains("int"), "{err}");
        let err = value_from_typed(&json!({"type": "money", "value": 1})).unwrap_err();
        assert!(err.contains("money"), "{err}");
    }
}
