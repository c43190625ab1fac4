//! The compact binary encoding of property bags (SPEC §3).
//!
//! Bags are written with postcard; encodings above a threshold are zstd-compressed. The encoding
//! is recorded with every blob ([`Encoding`]), so changing the store's setting never breaks old
//! rows. JSON values are kept as their text, because postcard is not self-describing.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{InstanceValue, PropertyBag, StorageError, StoreError, Timestamp, Value, ValueOptions};

/// How a blob is encoded. Stored per row next to the blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Encoding {
    /// postcard, uncompressed.
    Postcard,
    /// postcard, then zstd.
    PostcardZstd,
}

impl Encoding {
    /// The code stored in a row.
    pub const fn code(self) -> i16 {
        match self {
            Encoding::Postcard => 1,
            Encoding::PostcardZstd => 2,
        }
    }

    /// From the code stored in a row; an unknown code is a corrupt (or newer) row.
    pub fn from_code(code: i16) -> Result<Self, StoreError> {
        match code {
            1 => Ok(Encoding::Postcard),
            2 => Ok(Encoding::PostcardZstd),
            other => Err(StoreError::Storage(StorageError::corrupt(format!(
                "unknown bag encoding code {other}; the row was written by a newer instore or is damaged"
            )))),
        }
    }
}

/// Encoding settings of a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncodingSettings {
    /// Encodings larger than this many bytes are zstd-compressed (default 4 KiB).
    pub compress_above_bytes: usize,
    /// zstd level (default 3).
    pub zstd_level: i32,
}

impl Default for EncodingSettings {
    fn default() -> Self {
        Self {
            compress_above_bytes: 4096,
            zstd_level: 3,
        }
    }
}

/// An encoded bag, as providers store it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedBag {
    /// How `bytes` is encoded.
    pub encoding: Encoding,
    /// The blob.
    pub bytes: Vec<u8>,
    /// Size of the uncompressed encoding: what the size limit is judged on.
    pub logical_len: usize,
}

#[derive(Serialize, Deserialize)]
enum WireValue {
    Null,
    Bool(bool),
    Int(i64),
    Float(u64),
    String(String),
    /// Written as one byte string (postcard lays it out exactly as a sequence of bytes, so rows
    /// written either way read the same), not byte by byte.
    Bytes(#[serde(with = "serde_bytes")] Vec<u8>),
    Timestamp(i64),
    Uuid([u8; 16]),
    Duration(u64, u32),
    Json(String),
}

#[derive(Serialize, Deserialize)]
struct WireEntry {
    name: String,
    options: u8,
    value: WireValue,
}

fn to_wire(value: &Value) -> WireValue {
    match value {
        Value::Null => WireValue::Null,
        Value::Bool(b) => WireValue::Bool(*b),
        Value::Int(i) => WireValue::Int(*i),
        Value::Float(f) => WireValue::Float(f.to_bits()),
        Value::String(s) => WireValue::String(s.clone()),
        Value::Bytes(b) => WireValue::Bytes(b.clone()),
        Value::Timestamp(t) => WireValue::Timestamp(t.as_micros()),
        Value::Uuid(u) => WireValue::Uuid(*u.as_bytes()),
        Value::Duration(d) => WireValue::Duration(d.as_secs(), d.subsec_nanos()),
        Value::Json(j) => WireValue::Json(j.to_string()),
    }
}

fn from_wire(value: WireValue) -> Result<Value, StoreError> {
    Ok(match value {
        WireValue::Null => Value::Null,
        WireValue::Bool(b) => Value::Bool(b),
        WireValue::Int(i) => Value::Int(i),
        WireValue::Float(bits) => Value::Float(f64::from_bits(bits)),
        WireValue::String(s) => Value::String(s),
        WireValue::Bytes(b) => Value::Bytes(b),
        WireValue::Timestamp(t) => Value::Timestamp(Timestamp::from_micros(t)),
        WireValue::Uuid(u) => Value::Uuid(Uuid::from_bytes(u)),
        WireValue::Duration(secs, nanos) if nanos < 1_000_000_000 => {
            Value::Duration(Duration::new(secs, nanos))
        }
        WireValue::Duration(secs, nanos) => {
            return Err(StoreError::Storage(StorageError::corrupt(format!(
                "duration value has {nanos} nanoseconds past {secs} s; at most 999999999 are valid"
            ))))
        }
        WireValue::Json(text) => Value::Json(serde_json::from_str(&text).map_err(|e| {
            StoreError::Storage(StorageError::corrupt(format!(
                "json value does not parse: {e}"
            )))
        })?),
    })
}

/// Encodes a bag (uncompressed postcard).
fn encode_raw(bag: &PropertyBag) -> Vec<u8> {
    let entries: Vec<WireEntry> = bag
        .iter()
        .map(|(name, v)| WireEntry {
            name: name.clone(),
            options: v.options.bits(),
            value: to_wire(&v.value),
        })
        .collect();
    // Serializing plain owned data into a Vec cannot fail.
    postcard::to_allocvec(&entries).expect("postcard encodes owned plain data into a Vec")
}

/// Encodes a bag with the store's settings.
pub fn encode(bag: &PropertyBag, settings: &EncodingSettings) -> EncodedBag {
    let raw = encode_raw(bag);
    let logical_len = raw.len();
    if logical_len > settings.compress_above_bytes {
        // Kept only if it saves space: incompressible payloads stay as they are (and cost no
        // decompression when read).
        if let Some(compressed) =
            compress(&raw, settings.zstd_level).filter(|c| c.len() < raw.len())
        {
            return EncodedBag {
                encoding: Encoding::PostcardZstd,
                bytes: compressed,
                logical_len,
            };
        }
    }
    EncodedBag {
        encoding: Encoding::Postcard,
        bytes: raw,
        logical_len,
    }
}

/// Compresses with a zstd context kept per thread: creating a context costs more than
/// compressing a few KiB with it.
fn compress(raw: &[u8], level: i32) -> Option<Vec<u8>> {
    thread_local! {
        static COMPRESSOR: std::cell::RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
            const { std::cell::RefCell::new(None) };
    }
    COMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if !matches!(slot.as_ref(), Some((l, _)) if *l == level) {
            *slot = Some((level, zstd::bulk::Compressor::new(level).ok()?));
        }
        let (_, compressor) = slot.as_mut()?;
        compressor.compress(raw).ok()
    })
}

/// Decodes a blob. A damaged blob is a non-transient storage error ("corrupt row").
pub fn decode(encoding: Encoding, bytes: &[u8]) -> Result<PropertyBag, StoreError> {
    let corrupt = |what: String| StoreError::Storage(StorageError::corrupt(what));
    let raw;
    let plain: &[u8] = match encoding {
        Encoding::Postcard => bytes,
        Encoding::PostcardZstd => {
            raw = zstd::stream::decode_all(bytes)
                .map_err(|e| corrupt(format!("zstd blob does not decompress: {e}")))?;
            &raw
        }
    };
    let entries: Vec<WireEntry> = postcard::from_bytes(plain)
        .map_err(|e| corrupt(format!("bag blob does not decode: {e}")))?;
    let mut bag = PropertyBag::new();
    for e in entries {
        bag.insert(
            e.name,
            InstanceValue {
                value: from_wire(e.value)?,
                options: ValueOptions::from_bits(e.options),
            },
        );
    }
    Ok(bag)
}

/// The encoding of one bag entry, as it appears inside [`encode`]'s uncompressed output (a bag
/// is postcard's length prefix followed by its entries). Lets a provider store a bag entry by
/// entry and change it without decoding the rest (the PostgreSQL provider's metadata).
pub fn encode_entry(name: &str, value: &InstanceValue) -> Vec<u8> {
    let entry = WireEntry {
        name: name.to_owned(),
        options: value.options.bits(),
        value: to_wire(&value.value),
    };
    // Serializing plain owned data into a Vec cannot fail.
    postcard::to_allocvec(&entry).expect("postcard encodes owned plain data into a Vec")
}

/// Decodes one entry written by [`encode_entry`]. A damaged entry is a corrupt row.
pub fn decode_entry(bytes: &[u8]) -> Result<(String, InstanceValue), StoreError> {
    let entry: WireEntry = postcard::from_bytes(bytes).map_err(|e| {
        StoreError::Storage(StorageError::corrupt(format!(
            "bag entry does not decode: {e}"
        )))
    })?;
    Ok((
        entry.name,
        InstanceValue {
            value: from_wire(entry.value)?,
            options: ValueOptions::from_bits(entry.options),
        },
    ))
}

/// The logical size of a bag of `entries` entries of `entry_bytes` bytes in all: what
/// [`EncodedBag::logical_len`] would be for it.
pub fn bag_len(entries: usize, entry_bytes: usize) -> usize {
    let mut prefix = 1;
    let mut n = entries >> 7;
    while n > 0 {
        prefix += 1;
        n >>= 7;
    }
    prefix + entry_bytes
}

/// Encodes instance data and metadata together within `limit` bytes (logical size, summed).
///
/// If they do not fit, `OPTIONAL` values are dropped, largest first, until they do (SPEC §3: an
/// optional value never makes a command fail). If they still do not fit, the answer is
/// [`StoreError::PayloadTooLarge`] and the caller must change nothing.
pub fn encode_within(
    data: &PropertyBag,
    metadata: &PropertyBag,
    limit: usize,
    settings: &EncodingSettings,
) -> Result<(EncodedBag, EncodedBag), StoreError> {
    let mut data = std::borrow::Cow::Borrowed(data);
    let mut metadata = std::borrow::Cow::Borrowed(metadata);
    loop {
        let d = encode(&data, settings);
        let m = encode(&metadata, settings);
        let size = d.logical_len + m.logical_len;
        if size <= limit {
            return Ok((d, m));
        }
        // Drop the largest optional value of either bag and try again.
        let largest = |bag: &PropertyBag| {
            bag.iter()
                .filter(|(_, v)| v.is_optional())
                .map(|(k, v)| {
                    (
                        encode_raw(&PropertyBag::from([(k.clone(), v.clone())])).len(),
                        k.clone(),
                    )
                })
                .max()
        };
        match (largest(&data), largest(&metadata)) {
            (None, None) => return Err(StoreError::PayloadTooLarge { size, limit }),
            (Some(a), Some(b)) if b > a => {
                metadata.to_mut().remove(&b.1);
            }
            (Some(a), _) => {
                data.to_mut().remove(&a.1);
            }
            (None, Some(b)) => {
                metadata.to_mut().remove(&b.1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bag;

    fn every_kind() -> PropertyBag {
        bag([
            ("null", InstanceValue::new(Value::Null)),
            ("bool", true.into()),
            ("int", i64::MIN.into()),
            ("float", (-0.0f64).into()),
            ("nan", f64::NAN.into()),
            ("string", "héllo".into()),
            ("bytes", vec![0u8, 255, 7].into()),
            ("ts", Timestamp::from_micros(-123_456_789).into()),
            ("uuid", Uuid::from_u128(42).into()),
            ("dur", Duration::new(3, 999_999_999).into()),
            ("json", serde_json::json!({"a": [1, 2.5, null, "x"]}).into()),
            ("wo", InstanceValue::write_only(1i64)),
        ])
    }

    fn same(a: &PropertyBag, b: &PropertyBag) -> bool {
        // NaN != NaN, so compare the encodings.
        encode_raw(a) == encode_raw(b)
    }

    #[test]
    fn a_bag_is_its_length_prefix_and_its_entries() {
        let b = every_kind();
        let entries: Vec<Vec<u8>> = b.iter().map(|(k, v)| encode_entry(k, v)).collect();
        let total: usize = entries.iter().map(Vec::len).sum();
        let whole = encode_raw(&b);
        assert_eq!(bag_len(b.len(), total), whole.len());
        assert_eq!(whole[1..], entries.concat()[..]);
        for (bytes, (name, value)) in entries.iter().zip(&b) {
            let (n, v) = decode_entry(bytes).unwrap();
            assert_eq!(
                (&n, encode_entry(&n, &v)),
                (name, encode_entry(name, value))
            );
        }
        assert_eq!(bag_len(127, 0), 1);
        assert_eq!(bag_len(128, 0), 2);
        assert_eq!(bag_len(16_384, 0), 3);
        assert!(decode_entry(&[0xff, 0xff]).is_err());
    }

    #[test]
    fn every_kind_of_value_round_trips_exactly() {
        let b = every_kind();
        let e = encode(&b, &EncodingSettings::default());
        assert_eq!(e.encoding, Encoding::Postcard);
        assert!(same(&decode(e.encoding, &e.bytes).unwrap(), &b));
    }

    #[test]
    fn large_bags_are_compressed_and_round_trip() {
        let b = bag([("big", "x".repeat(100_000))]);
        let e = encode(&b, &EncodingSettings::default());
        assert_eq!(e.encoding, Encoding::PostcardZstd);
        assert!(e.bytes.len() < 10_000);
        assert_eq!(decode(e.encoding, &e.bytes).unwrap(), b);
    }

    #[test]
    fn bytes_are_laid_out_as_a_sequence_of_bytes_was() {
        // Rows written before bytes were serialized as one string must read the same.
        let payload: Vec<u8> = (0..300u16).map(|i| (i % 251) as u8).collect();
        let as_sequence = postcard::to_allocvec(&payload).unwrap();
        let as_bytes = postcard::to_allocvec(&serde_bytes::Bytes::new(&payload)).unwrap();
        assert_eq!(as_sequence, as_bytes);
    }

    #[test]
    fn incompressible_bags_are_stored_uncompressed() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let noise: Vec<u8> = (0..8192)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 32) as u8
            })
            .collect();
        let b = bag([("noise", noise)]);
        let e = encode(&b, &EncodingSettings::default());
        assert_eq!(
            e.encoding,
            Encoding::Postcard,
            "zstd would not make it smaller"
        );
        assert_eq!(decode(e.encoding, &e.bytes).unwrap(), b);
    }

    #[test]
    fn old_rows_decode_whatever_the_current_setting() {
        let b = bag([("big", "y".repeat(10_000))]);
        let compressed = encode(&b, &EncodingSettings::default());
        let never = EncodingSettings {
            compress_above_bytes: usize::MAX,
            zstd_level: 3,
        };
        let plain = encode(&b, &never);
        assert_ne!(compressed.encoding, plain.encoding);
        assert_eq!(decode(compressed.encoding, &compressed.bytes).unwrap(), b);
        assert_eq!(decode(plain.encoding, &plain.bytes).unwrap(), b);
    }

    #[test]
    fn damaged_blobs_are_corrupt_storage_errors() {
        let err = decode(Encoding::Postcard, &[0xff, 0xff, 0xff]).unwrap_err();
        assert!(
            matches!(err, StoreError::Storage(ref s) if !s.is_transient()),
            "{err:?}"
        );
        assert!(Encoding::from_code(99).is_err());
    }

    #[test]
    fn a_damaged_duration_is_a_corrupt_row_not_a_panic() {
        let entries = vec![WireEntry {
            name: "d".into(),
            options: 0,
            value: WireValue::Duration(u64::MAX, 1_500_000_000),
        }];
        let bytes = postcard::to_allocvec(&entries).unwrap();
        let decoded = std::panic::catch_unwind(|| decode(Encoding::Postcard, &bytes));
        assert!(
            matches!(decoded, Ok(Err(StoreError::Storage(_)))),
            "decoding panicked or succeeded"
        );
    }

    #[test]
    fn optional_values_are_dropped_before_failing() {
        let data = bag([
            ("keep", InstanceValue::new(1i64)),
            ("opt", InstanceValue::optional("z".repeat(1000))),
        ]);
        let (d, _) = encode_within(
            &data,
            &PropertyBag::new(),
            100,
            &EncodingSettings::default(),
        )
        .unwrap();
        let back = decode(d.encoding, &d.bytes).unwrap();
        assert!(back.contains_key("keep") && !back.contains_key("opt"));
        let too_big = bag([("big", "z".repeat(1000))]);
        let err = encode_within(
            &too_big,
            &PropertyBag::new(),
            100,
            &EncodingSettings::default(),
        )
        .unwrap_err();
        assert!(
            matches!(err, StoreError::PayloadTooLarge { limit: 100, .. }),
            "{err:?}"
        );
    }
}
