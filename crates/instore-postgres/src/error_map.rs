//! Every PostgreSQL failure becomes a [`StoreError`] here, and nowhere else.
//!
//! Two sources: the rules the server-side functions enforce (SQLSTATE `IS001`, the error's name
//! as message, its fields as JSON detail), and the driver/server failures, sorted into transient
//! (`Unavailable`: connection lost, server restarting, deadlock or serialization failure) and
//! permanent ones.

use instore::encoding::decode;
use instore::{Encoding, InstanceId, KeyId, OwnerId, StorageError, StorageErrorKind, StoreError};
use serde_json::Value as Json;
use tokio_postgres::error::SqlState;

/// The SQLSTATE of a rule the server-side functions found broken.
const RULE: &str = "IS001";

/// A rule broken, as the server reported it (before it becomes a [`StoreError`]).
#[derive(Debug)]
pub(crate) struct Rule {
    pub(crate) name: String,
    pub(crate) detail: Json,
}

/// The rule a driver error carries, if it is one.
pub(crate) fn rule_of(error: &tokio_postgres::Error) -> Option<Rule> {
    let db = error.as_db_error()?;
    if db.code().code() != RULE {
        return None;
    }
    Some(Rule {
        name: db.message().to_owned(),
        detail: db
            .detail()
            .and_then(|d| serde_json::from_str(d).ok())
            .unwrap_or(Json::Null),
    })
}

fn corrupt(what: String) -> StoreError {
    StoreError::Storage(StorageError::corrupt(what))
}

fn uuid_field(rule: &Rule, field: &str) -> Result<uuid::Uuid, StoreError> {
    rule.detail
        .get(field)
        .and_then(Json::as_str)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| corrupt(format!("server error {} lacks its {field}", rule.name)))
}

fn usize_field(rule: &Rule, field: &str) -> usize {
    rule.detail
        .get(field)
        .and_then(Json::as_u64)
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(usize::MAX)
}

/// Decodes hex text (what `encode(bytea, 'hex')` writes).
pub(crate) fn from_hex(text: &str) -> Result<Vec<u8>, StoreError> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        b'A'..=b'F' => Ok(c - b'A' + 10),
        _ => Err(corrupt(format!("not a hex digit: {:?}", char::from(c)))),
    };
    let bytes = text.as_bytes();
    if bytes.len() % 2 != 0 {
        return Err(corrupt("hex text of odd length".to_owned()));
    }
    bytes
        .chunks(2)
        .map(|pair| Ok(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

/// Writes bytes as hex text.
pub(crate) fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

/// The [`StoreError`] a broken rule stands for.
pub(crate) fn rule_error(rule: &Rule) -> StoreError {
    match map_rule(rule) {
        Ok(e) | Err(e) => e,
    }
}

fn map_rule(rule: &Rule) -> Result<StoreError, StoreError> {
    let instance = || uuid_field(rule, "instance").map(InstanceId::from_uuid);
    let key = || uuid_field(rule, "key").map(KeyId::from_uuid);
    Ok(match rule.name.as_str() {
        "owner_lost" => StoreError::OwnerLost {
            owner: OwnerId::from_uuid(uuid_field(rule, "owner")?),
        },
        "lock_lost" => StoreError::LockLost {
            instance: instance()?,
        },
        "instance_complete" => StoreError::InstanceComplete {
            instance: instance()?,
        },
        "instance_not_ready" => StoreError::InstanceNotReady {
            instance: instance()?,
        },
        "handle_conflict" => StoreError::HandleConflict {
            instance: instance()?,
        },
        "instance_collision" => StoreError::InstanceCollision {
            instance: instance()?,
        },
        "instance_key_not_ready" => StoreError::InstanceKeyNotReady { key: key()? },
        "instance_key_complete" => StoreError::InstanceKeyComplete { key: key()? },
        "instance_key_collision" => StoreError::InstanceKeyCollision {
            key: key()?,
            instance: instance()?,
        },
        "instance_suspended" => StoreError::InstanceSuspended {
            instance: instance()?,
            reason: rule
                .detail
                .get("reason")
                .and_then(Json::as_str)
                .unwrap_or_default()
                .to_owned(),
        },
        "instance_locked" => {
            let hex = rule.detail.get("metadata").and_then(Json::as_str);
            let code = rule.detail.get("encoding").and_then(Json::as_i64);
            let (Some(hex), Some(code)) = (hex, code) else {
                return Err(corrupt("instance_locked lacks the holder's metadata".into()));
            };
            let encoding = Encoding::from_code(i16::try_from(code).unwrap_or(-1))?;
            StoreError::InstanceLocked {
                instance: instance()?,
                owner: OwnerId::from_uuid(uuid_field(rule, "owner")?),
                owner_metadata: decode(encoding, &from_hex(hex)?)?,
            }
        }
        "instance_not_found" => StoreError::InstanceNotFound {
            instance: instance()?,
        },
        "command_locked" => StoreError::CommandLocked {
            instance: instance()?,
        },
        "command_pending" => StoreError::CommandPending {
            instance: instance()?,
            attempts: rule
                .detail
                .get("attempts")
                .and_then(Json::as_u64)
                .and_then(|n| u32::try_from(n).ok())
                .unwrap_or(u32::MAX),
        },
        "command_lock_lost" => StoreError::CommandLockLost {
            instance: instance()?,
        },
        "payload_too_large" => StoreError::PayloadTooLarge {
            size: usize_field(rule, "size"),
            limit: usize_field(rule, "limit"),
        },
        "corrupt" => corrupt(format!(
            "instance {}: {}",
            instance()?,
            rule.detail
                .get("what")
                .and_then(Json::as_str)
                .unwrap_or("damaged row")
        )),
        other => StoreError::Storage(StorageError::new(
            StorageErrorKind::Other,
            format!("the server reported an unknown instore error {other:?}; is the schema newer than this build?"),
        )),
    })
}

/// Whether a driver error means the server or the connection is (for now) unavailable.
pub(crate) fn is_transient(error: &tokio_postgres::Error) -> bool {
    if error.is_closed() {
        return true;
    }
    match error.code() {
        Some(code) => {
            let c = code.code();
            c.starts_with("08") // connection exception
                || c.starts_with("53") // insufficient resources
                || c.starts_with("57P") // admin/crash shutdown, cannot connect now
                || *code == SqlState::T_R_SERIALIZATION_FAILURE
                || *code == SqlState::T_R_DEADLOCK_DETECTED
                || *code == SqlState::LOCK_NOT_AVAILABLE
                || *code == SqlState::QUERY_CANCELED
        }
        // No SQLSTATE: an I/O or protocol failure on the way.
        None => error.as_db_error().is_none(),
    }
}

/// Whether the server aborted the call for a conflict with another transaction (deadlock,
/// serialization failure, or a concurrent creator inserting the same new instance first): it
/// was rolled back whole and can simply run again, when it sees the other's outcome.
pub(crate) fn is_retryable(error: &tokio_postgres::Error) -> bool {
    error.code() == Some(&SqlState::T_R_DEADLOCK_DETECTED)
        || error.code() == Some(&SqlState::T_R_SERIALIZATION_FAILURE)
        || error.code() == Some(&SqlState::UNIQUE_VIOLATION)
}

/// Maps any driver error of a command.
pub(crate) fn map(error: tokio_postgres::Error) -> StoreError {
    if let Some(rule) = rule_of(&error) {
        return rule_error(&rule);
    }
    let kind = if is_transient(&error) {
        StorageErrorKind::Unavailable
    } else if error.code() == Some(&SqlState::UNDEFINED_FUNCTION)
        || error.code() == Some(&SqlState::UNDEFINED_TABLE)
        || error.code() == Some(&SqlState::INVALID_SCHEMA_NAME)
    {
        StorageErrorKind::Schema
    } else {
        StorageErrorKind::Other
    };
    StoreError::Storage(StorageError::new(kind, describe(&error)).with_source(error))
}

/// One line saying what went wrong: the server's message (and detail), or the driver's.
pub(crate) fn describe(error: &tokio_postgres::Error) -> String {
    let text = match error.as_db_error() {
        Some(db) => match db.detail() {
            Some(detail) => format!("{}: {} ({detail})", db.severity(), db.message()),
            None => format!("{}: {}", db.severity(), db.message()),
        },
        None => {
            // The driver's own text plus its cause, on one line.
            let mut text = error.to_string();
            let mut source = std::error::Error::source(error);
            while let Some(s) = source {
                text.push_str(": ");
                text.push_str(&s.to_string());
                source = s.source();
            }
            text
        }
    };
    // Server details can span lines (a deadlock report does); errors here are one line.
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A pool failure (no connection to be had).
pub(crate) fn pool(error: deadpool_postgres::PoolError, server: &str) -> StoreError {
    use deadpool_postgres::PoolError;
    let message = match &error {
        PoolError::Backend(e) => return map_connect(e, server),
        PoolError::Timeout(_) => format!("no connection to {server} became free in time"),
        other => format!("cannot get a connection to {server}: {other}"),
    };
    StoreError::Storage(StorageError::new(StorageErrorKind::Unavailable, message))
}

/// A failure to connect, as one line naming the server and the cause.
pub(crate) fn map_connect(error: &tokio_postgres::Error, server: &str) -> StoreError {
    let (kind, hint) = match error.code() {
        Some(c)
            if *c == SqlState::INVALID_PASSWORD
                || *c == SqlState::INVALID_AUTHORIZATION_SPECIFICATION =>
        {
            (
                StorageErrorKind::Other,
                "check the user and password in the URL",
            )
        }
        Some(c) if *c == SqlState::INVALID_CATALOG_NAME => (
            StorageErrorKind::Other,
            "create the database or fix its name in the URL",
        ),
        Some(c) if *c == SqlState::INSUFFICIENT_PRIVILEGE => (
            StorageErrorKind::Other,
            "grant the user CONNECT on the database",
        ),
        _ if is_transient(error) => (
            StorageErrorKind::Unavailable,
            "is the server running and reachable at that address?",
        ),
        _ => (StorageErrorKind::Other, "check the URL"),
    };
    StoreError::Storage(StorageError::new(
        kind,
        format!(
            "cannot connect to PostgreSQL at {server}: {}; {hint}",
            describe(error)
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips() {
        let bytes = vec![0u8, 1, 0x7f, 0x80, 0xff];
        assert_eq!(from_hex(&to_hex(&bytes)).unwrap(), bytes);
        assert!(from_hex("abc").is_err());
        assert!(from_hex("zz").is_err());
    }

    #[test]
    fn an_unknown_rule_is_a_permanent_storage_error() {
        let rule = Rule {
            name: "brand_new".into(),
            detail: Json::Null,
        };
        let e = rule_error(&rule);
        assert!(
            matches!(e, StoreError::Storage(ref s) if !s.is_transient()),
            "{e:?}"
        );
    }
}
