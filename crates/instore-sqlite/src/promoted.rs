//! Promoted values as stored: a kind code and a native SQLite value, so every value comes back
//! exactly as it was saved (floats bit for bit: NaN, which SQLite would turn into NULL, is kept
//! as its bits). Filters never read these columns; they compare `promoted.text`.

use std::time::Duration;

use instore::{StorageError, StoreError, Timestamp, Uuid, Value};
use rusqlite::types::Value as Sql;

const NULL: i64 = 0;
const BOOL: i64 = 1;
const INT: i64 = 2;
const FLOAT: i64 = 3;
const STRING: i64 = 4;
const BYTES: i64 = 5;
const TIMESTAMP: i64 = 6;
const UUID: i64 = 7;
const DURATION: i64 = 8;
const JSON: i64 = 9;

/// The kind code and stored value of `value`.
pub(crate) fn store(value: &Value) -> (i64, Sql) {
    match value {
        Value::Null => (NULL, Sql::Null),
        Value::Bool(b) => (BOOL, Sql::Integer(i64::from(*b))),
        Value::Int(i) => (INT, Sql::Integer(*i)),
        Value::Float(f) if f.is_nan() => (FLOAT, Sql::Integer(f.to_bits() as i64)),
        Value::Float(f) => (FLOAT, Sql::Real(*f)),
        Value::String(s) => (STRING, Sql::Text(s.clone())),
        Value::Bytes(b) => (BYTES, Sql::Blob(b.clone())),
        Value::Timestamp(t) => (TIMESTAMP, Sql::Integer(t.as_micros())),
        Value::Uuid(u) => (UUID, Sql::Blob(u.as_bytes().to_vec())),
        Value::Duration(d) => (
            DURATION,
            Sql::Text(format!("{}.{:09}", d.as_secs(), d.subsec_nanos())),
        ),
        Value::Json(j) => (JSON, Sql::Text(j.to_string())),
    }
}

fn corrupt(kind: i64, stored: &Sql) -> StoreError {
    StoreError::Storage(StorageError::corrupt(format!(
        "a promoted value of kind {kind} is stored as {:?}; the row is damaged or was written by a newer instore",
        stored.data_type()
    )))
}

/// The value stored as `kind` and `stored`.
pub(crate) fn load(kind: i64, stored: Sql) -> Result<Value, StoreError> {
    Ok(match (kind, stored) {
        (NULL, Sql::Null) => Value::Null,
        (BOOL, Sql::Integer(i)) => Value::Bool(i != 0),
        (INT, Sql::Integer(i)) => Value::Int(i),
        (FLOAT, Sql::Real(f)) => Value::Float(f),
        (FLOAT, Sql::Integer(bits)) => Value::Float(f64::from_bits(bits as u64)),
        (STRING, Sql::Text(s)) => Value::String(s),
        (BYTES, Sql::Blob(b)) => Value::Bytes(b),
        (TIMESTAMP, Sql::Integer(i)) => Value::Timestamp(Timestamp::from_micros(i)),
        (UUID, Sql::Blob(b)) => match Uuid::from_slice(&b) {
            Ok(u) => Value::Uuid(u),
            Err(_) => return Err(corrupt(kind, &Sql::Blob(b))),
        },
        (DURATION, Sql::Text(t)) => {
            let parsed = t
                .split_once('.')
                .and_then(|(s, n)| Some(Duration::new(s.parse().ok()?, n.parse().ok()?)));
            match parsed {
                Some(d) => Value::Duration(d),
                None => return Err(corrupt(kind, &Sql::Text(t))),
            }
        }
        (JSON, Sql::Text(t)) => match serde_json::from_str(&t) {
            Ok(j) => Value::Json(j),
            Err(_) => return Err(corrupt(kind, &Sql::Text(t))),
        },
        (kind, other) => return Err(corrupt(kind, &other)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::Connection;

    #[test]
    fn every_kind_round_trips_exactly_through_sqlite() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("create table t (kind integer not null, value)")
            .unwrap();
        let values = vec![
            Value::Null,
            Value::Bool(true),
            Value::Bool(false),
            Value::Int(i64::MIN),
            Value::Int(42),
            Value::Float(-0.0),
            Value::Float(f64::NAN),
            Value::Float(f64::INFINITY),
            Value::Float(42.0),
            Value::Float(0.1),
            Value::String("naïve 42".into()),
            Value::Bytes(vec![0, 1, 255]),
            Value::Timestamp(Timestamp::from_micros(-1_234_567)),
            Value::Uuid(Uuid::from_u128(0x1234_5678_9abc_def0_1234_5678_9abc_def0)),
            Value::Duration(Duration::new(u64::MAX, 999_999_999)),
            Value::Json(serde_json::json!({"a": [1, 2.5, "x", null]})),
        ];
        for v in &values {
            let (kind, stored) = store(v);
            conn.execute(
                "insert into t values (?1, ?2)",
                rusqlite::params![kind, stored],
            )
            .unwrap();
        }
        let mut stmt = conn
            .prepare("select kind, value from t order by rowid")
            .unwrap();
        let back: Vec<Value> = stmt
            .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Sql>(1)?)))
            .unwrap()
            .map(|r| {
                let (k, v) = r.unwrap();
                load(k, v).unwrap()
            })
            .collect();
        assert_eq!(back.len(), values.len());
        for (a, b) in values.iter().zip(&back) {
            match (a, b) {
                (Value::Float(x), Value::Float(y)) => assert_eq!(x.to_bits(), y.to_bits()),
                _ => assert_eq!(a, b),
            }
        }
    }
}
