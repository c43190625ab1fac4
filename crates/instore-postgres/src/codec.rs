//! Between Rust values and the columns of the schema: state and status codes, metadata as JSON
//! entries, snapshots from the `snapshot` type the functions return.

use std::collections::BTreeMap;

use instore::encoding::{bag_len, decode, decode_entry, encode_entry};
use instore::{
    promoted_text, Encoding, ExceptionInfo, ExecutionStatus, InstanceId, InstanceSnapshot,
    InstanceState, InstanceValue, KeyId, KeyState, KeyView, MetadataChange, MetadataChanges,
    PropertyBag, StorageError, StoreError, Suspension, Timestamp, Value,
};
use serde_json::{json, Map, Value as Json};
use tokio_postgres::Row;

use crate::error_map::{from_hex, to_hex};

fn corrupt(what: String) -> StoreError {
    StoreError::Storage(StorageError::corrupt(what))
}

/// A metadata bag as the schema stores it: name → `[options, entry length, entry hex]`.
pub(crate) fn metadata_json(bag: &PropertyBag) -> Json {
    Json::Object(
        bag.iter()
            .map(|(name, value)| (name.clone(), entry_json(name, value)))
            .collect(),
    )
}

fn entry_json(name: &str, value: &instore::InstanceValue) -> Json {
    let entry = encode_entry(name, value);
    json!([value.options.bits(), entry.len(), to_hex(&entry)])
}

/// Change bags flattened into one net change: names to delete, entries to set (disjoint).
pub(crate) fn flatten_changes(changes: &MetadataChanges) -> (Vec<String>, Json) {
    let mut net: BTreeMap<&str, Option<&instore::InstanceValue>> = BTreeMap::new();
    for (name, change) in changes {
        net.insert(
            name,
            match change {
                MetadataChange::Set(v) => Some(v),
                MetadataChange::Deleted => None,
            },
        );
    }
    let mut deleted = Vec::new();
    let mut set = Map::new();
    for (name, change) in net {
        match change {
            Some(v) => {
                set.insert(name.to_owned(), entry_json(name, v));
            }
            None => deleted.push(name.to_owned()),
        }
    }
    (deleted, Json::Object(set))
}

/// A stored metadata bag, decoded; with its logical size.
pub(crate) fn metadata_of(stored: &Json) -> Result<(PropertyBag, usize), StoreError> {
    let Json::Object(entries) = stored else {
        return Err(corrupt("instance metadata is not a JSON object".into()));
    };
    let mut bag = PropertyBag::new();
    let mut bytes = 0;
    for (name, entry) in entries {
        let hex = entry
            .get(2)
            .and_then(Json::as_str)
            .ok_or_else(|| corrupt(format!("metadata entry {name:?} lacks its encoding")))?;
        let raw = from_hex(hex)?;
        bytes += raw.len();
        let (decoded_name, value) = decode_entry(&raw)?;
        if decoded_name != *name {
            return Err(corrupt(format!(
                "metadata entry {name:?} holds the value of {decoded_name:?}"
            )));
        }
        bag.insert(decoded_name, value);
    }
    Ok((bag, bag_len(entries.len(), bytes)))
}

/// Promoted values as the `save` function takes them: names, texts, typed values (the
/// encoding of each as a bag entry).
pub(crate) struct Promoted {
    pub(crate) names: Vec<String>,
    pub(crate) texts: Vec<Option<String>>,
    pub(crate) values: Vec<Vec<u8>>,
}

/// The promoted values of a save, each with its text (`None` for a value that is not
/// promotable: kept as given, matched by no filter).
pub(crate) fn promoted(values: &BTreeMap<String, Value>) -> Promoted {
    let mut out = Promoted {
        names: Vec::new(),
        texts: Vec::new(),
        values: Vec::new(),
    };
    for (name, value) in values {
        out.names.push(name.clone());
        out.texts.push(promoted_text(value));
        out.values
            .push(encode_entry(name, &InstanceValue::from(value.clone())));
    }
    out
}

/// A promoted value read back.
pub(crate) fn promoted_value(name: &str, bytes: &[u8]) -> Result<Value, StoreError> {
    let (stored, value) = decode_entry(bytes)?;
    if stored != name {
        return Err(corrupt(format!(
            "promoted value {name:?} holds the value of {stored:?}"
        )));
    }
    Ok(value.value)
}

fn micros(t: Option<i64>) -> Option<Timestamp> {
    t.map(Timestamp::from_micros)
}

/// Reads column `i` of a row the functions returned.
fn col<'a, T: tokio_postgres::types::FromSql<'a>>(row: &'a Row, i: usize) -> Result<T, StoreError> {
    row.try_get(i)
        .map_err(|e| corrupt(format!("snapshot column {i} does not read: {e}")))
}

/// A snapshot from a row of the `snapshot` type (`select * from f(...)`). `None` when the
/// function returned no instance (all columns null). `data` is the bag the caller already holds
/// when the function did not send it back.
pub(crate) fn snapshot(
    row: &Row,
    data: Option<PropertyBag>,
) -> Result<Option<InstanceSnapshot>, StoreError> {
    let Some(id) = col::<Option<uuid::Uuid>>(row, 0)? else {
        return Ok(None);
    };
    let instance = InstanceId::from_uuid(id);
    let blob: Option<&[u8]> = col(row, 4)?;
    let data = match (data, blob) {
        (Some(data), _) => data,
        (None, Some(bytes)) => decode(Encoding::from_code(col(row, 5)?)?, bytes)?,
        (None, None) => {
            return Err(corrupt(format!(
                "instance {instance} came back without data"
            )))
        }
    };
    let metadata: Json = col(row, 6)?;
    let (metadata, _) = metadata_of(&metadata)?;
    let key_ids: Vec<uuid::Uuid> = col(row, 7)?;
    let key_states: Vec<i16> = col(row, 8)?;
    let key_metadata: Vec<&[u8]> = col(row, 9)?;
    let key_encodings: Vec<i16> = col(row, 10)?;
    let mut keys = BTreeMap::new();
    for (((k, s), m), e) in key_ids
        .into_iter()
        .zip(key_states)
        .zip(key_metadata)
        .zip(key_encodings)
    {
        keys.insert(
            KeyId::from_uuid(k),
            KeyView {
                state: KeyState::from_code(s.into())?,
                metadata: decode(Encoding::from_code(e)?, m)?,
            },
        );
    }
    let suspended: bool = col(row, 14)?;
    let suspension = if suspended {
        let name: Option<String> = col(row, 16)?;
        let message: Option<String> = col(row, 17)?;
        Some(Suspension {
            reason: col::<Option<String>>(row, 15)?.unwrap_or_default(),
            exception: name.map(|name| ExceptionInfo {
                name,
                message: message.unwrap_or_default(),
            }),
        })
    } else {
        None
    };
    let lock_version: i64 = col(row, 2)?;
    Ok(Some(InstanceSnapshot {
        instance,
        state: InstanceState::from_code(col::<i16>(row, 1)?.into())?,
        lock_version: u64::try_from(lock_version)
            .map_err(|_| corrupt(format!("negative lock version {lock_version}")))?,
        locked: col(row, 3)?,
        data,
        metadata,
        keys,
        status: ExecutionStatus::from_code(col::<i16>(row, 11)?.into())?,
        timer: micros(col(row, 12)?),
        bookmarks: col(row, 13)?,
        suspension,
        host_type: col(row, 18)?,
    }))
}

#[cfg(test)]
mod tests {
    use instore::{bag, InstanceValue};

    use super::*;

    #[test]
    fn metadata_round_trips_through_its_json_form_with_the_bags_logical_size() {
        let b = bag([
            ("a", InstanceValue::from(1i64)),
            ("b", InstanceValue::optional("x".repeat(300))),
            ("c", InstanceValue::write_only(true)),
        ]);
        let (back, len) = metadata_of(&metadata_json(&b)).unwrap();
        assert_eq!(back, b);
        let encoded = instore::encoding::encode(&b, &Default::default());
        assert_eq!(len, encoded.logical_len);
    }

    #[test]
    fn later_changes_win_when_flattened() {
        let changes: MetadataChanges = vec![
            ("a".into(), MetadataChange::Set(1i64.into())),
            ("a".into(), MetadataChange::Deleted),
            ("b".into(), MetadataChange::Deleted),
            ("b".into(), MetadataChange::Set(2i64.into())),
        ];
        let (deleted, set) = flatten_changes(&changes);
        assert_eq!(deleted, vec!["a".to_owned()]);
        assert_eq!(
            set.as_object().unwrap().keys().collect::<Vec<_>>(),
            vec!["b"]
        );
    }

    #[test]
    fn a_damaged_entry_is_a_corrupt_row() {
        let e = metadata_of(&json!({"a": [0, 2, "zz"]})).unwrap_err();
        assert!(matches!(e, StoreError::Storage(ref s) if !s.is_transient()));
        let e = metadata_of(&json!([1])).unwrap_err();
        assert!(matches!(e, StoreError::Storage(_)));
    }
}
