//! The NXCLOUD call detail record: parsing, validation and canonical form.
//!
//! Parse, don't validate: `CallRecord::parse` is the only way to get a record, so every
//! `CallRecord` in the program has a positive id and correctly typed fields.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::canonical;
pub use crate::canonical::sha256_hex;

/// Why a push body is not a call record. `field` names the offending field when there is one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct InvalidPush {
    pub field: Option<String>,
    pub message: String,
}

impl InvalidPush {
    pub(crate) fn body(message: impl Into<String>) -> Self {
        Self {
            field: None,
            message: message.into(),
        }
    }
    pub(crate) fn field(field: &str, message: impl Into<String>) -> Self {
        Self {
            field: Some(field.to_owned()),
            message: format!("field `{field}`: {}", message.into()),
        }
    }
}

/// One call detail record as NXCLOUD pushes it. Field names are NXCLOUD's on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallRecord {
    pub id: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub business_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_bind_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub did: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callee: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_status: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_status_msg: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hangup_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hangup_cause: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hangup_code: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hangup: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_file: Option<String>,
    /// Fields NXCLOUD added that this version does not know: kept, never dropped.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// Longest `callId` / `businessId` accepted (they are secondary-index keys).
pub const MAX_INDEXED_LEN: usize = 1024;

/// A parsed push: the record plus the digest that tells an exact retry from a conflicting one.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedPush {
    pub record: CallRecord,
    /// SHA-256 (hex) of the canonical JSON form: key order and white space do not change it.
    pub payload_sha256: String,
}

/// A push body's top-level object, and the digest of its canonical form. Its fields are
/// read as a JSON map would hold them: by key, the last of a repeated key winning.
///
/// The reader puts each value of a declared name straight into that name's slot, found by
/// a perfect hash (`declared_slot`); only the other keys (none in a documented push) are
/// kept with their keys and sorted. Keeping every field in arrival order, sorting them all
/// and merging them with the declared names was a fifth of the webhook's work (a fast path:
/// see `crate::fast`).
pub(crate) struct PushObject<'a> {
    /// The value of each declared name, by position in `DECLARED_FIELDS`.
    declared: [Option<Value>; DECLARED_FIELDS.len()],
    /// The other fields with their `key_head`: by key, one per key.
    others: Vec<(u64, Key<'a>, Value)>,
    pub(crate) payload_sha256: String,
}

impl<'a> PushObject<'a> {
    /// Reads a body that must be a JSON object.
    pub(crate) fn read(body: &'a [u8]) -> Result<Self, InvalidPush> {
        let mut object = Self {
            declared: Default::default(),
            others: Vec::new(),
            payload_sha256: String::new(),
        };
        // As `serde_json::from_slice` reads, into the slots of `object`.
        let mut reader = serde_json::Deserializer::from_slice(body);
        let is_object = (ObjectReader(&mut object).deserialize(&mut reader))
            .and_then(|is_object| reader.end().map(|()| is_object))
            .map_err(|e| InvalidPush::body(format!("body is not valid JSON: {e}")))?;
        if !is_object {
            return Err(InvalidPush::body("body is not a JSON object"));
        }
        if !object.others.is_empty() {
            // By key, and stable: of a repeated key, the last arrival ends its run and is the
            // one kept.
            let others = &mut object.others;
            others.sort_by(|a, b| (a.0.cmp(&b.0)).then_with(|| a.1.cmp(&b.1)));
            others.dedup_by(|later, kept| {
                let repeated = later.0 == kept.0 && later.1 == kept.1;
                if repeated {
                    std::mem::swap(later, kept);
                }
                repeated
            });
        }
        // The digest is of the body as sent (before any field is normalised).
        let mut canonical = Vec::with_capacity(body.len());
        canonical::write_entries(object.sorted(), &mut canonical);
        object.payload_sha256 = sha256_hex(&canonical);
        Ok(object)
    }

    /// The fields by key, without repeats: the declared slots and the other keys, merged.
    fn sorted(&self) -> impl Iterator<Item = (SortedKey<'_, 'a>, &Value)> {
        let mut declared = (self.declared.iter().enumerate())
            .filter_map(|(slot, value)| value.as_ref().map(|value| (slot, value)))
            .peekable();
        let mut others = self.others.iter().peekable();
        std::iter::from_fn(move || {
            let declared_first = match (declared.peek(), others.peek()) {
                (Some(&(slot, _)), Some((head, key, _))) => {
                    (DECLARED_HEADS[slot], DECLARED_FIELDS[slot]) < (*head, key.as_ref())
                }
                (declared, _) => declared.is_some(),
            };
            if declared_first {
                let (slot, value) = declared.next()?;
                Some((SortedKey::Declared(DECLARED_FIELDS[slot]), value))
            } else {
                let (_, key, value) = others.next()?;
                Some((SortedKey::Other(key), value))
            }
        })
    }

    /// The fields, without repeats, declared names first; and the digest.
    pub(crate) fn into_fields(self) -> (impl Iterator<Item = (Key<'a>, Value)>, String) {
        let declared = (DECLARED_FIELDS.into_iter().zip(self.declared))
            .filter_map(|(name, value)| Some((Key::Borrowed(name), value?)));
        let others = (self.others.into_iter()).map(|(_, key, value)| (key, value));
        (declared.chain(others), self.payload_sha256)
    }

    /// Whether the object has a field `name`.
    pub(crate) fn has(&self, name: &str) -> bool {
        if let Some(slot) = declared_slot(name) {
            return self.declared[slot].is_some();
        }
        let head = key_head(name);
        self.others
            .binary_search_by(|(h, key, _)| h.cmp(&head).then_with(|| key.as_ref().cmp(name)))
            .is_ok()
    }
}

/// A key of a `PushObject`, as its canonical form writes it.
enum SortedKey<'s, 'a> {
    /// A declared name: plain letters, nothing to escape.
    Declared(&'static str),
    Other(&'s Key<'a>),
}

impl canonical::CanonicalKey for SortedKey<'_, '_> {
    fn write_key(&self, out: &mut Vec<u8>) {
        match self {
            Self::Declared(name) => canonical::write_quoted(name, out),
            Self::Other(key) => key.write_key(out),
        }
    }
}

impl CallRecord {
    /// Parses a push body. Integers may arrive as JSON strings; identifier fields may arrive
    /// as JSON numbers; `null` means absent; anything else of the wrong type is rejected.
    pub fn parse(body: &[u8]) -> Result<ParsedPush, InvalidPush> {
        Self::from_object(PushObject::read(body)?)
    }

    pub(crate) fn from_object(object: PushObject<'_>) -> Result<ParsedPush, InvalidPush> {
        let PushObject {
            declared,
            others,
            payload_sha256,
        } = object;
        let record = Self::from_fields(declared, others)?;
        if record.id <= 0 {
            return Err(InvalidPush::field("id", "must be a positive integer"));
        }
        // These two are index keys in the table, where DynamoDB caps a key at 2048 bytes:
        // a longer one could never be stored, so it is refused (and kept) here.
        for (name, value) in [
            ("callId", &record.call_id),
            ("businessId", &record.business_id),
        ] {
            if value.as_ref().is_some_and(|v| v.len() > MAX_INDEXED_LEN) {
                return Err(InvalidPush::field(
                    name,
                    format!("is longer than {MAX_INDEXED_LEN} bytes"),
                ));
            }
        }
        Ok(ParsedPush {
            record,
            payload_sha256,
        })
    }

    /// The call was answered when NXCLOUD reports a non-zero answer time.
    pub fn answered(&self) -> bool {
        self.answer_at.is_some_and(|t| t > 0)
    }

    /// The recording URL, when the push carries one (an empty string means "no recording").
    pub fn recording_url(&self) -> Option<&str> {
        self.record_file
            .as_deref()
            .map(str::trim)
            .filter(|u| !u.is_empty())
    }
}

impl CallRecord {
    /// Moves every declared field into its type, naming the first field that cannot be (the
    /// integers first, in this order, then the strings); the other fields are `extra`.
    /// Hand-written rather than `serde_json::from_value` (a fast path: see `crate::fast`).
    fn from_fields(
        mut declared: [Option<Value>; DECLARED_FIELDS.len()],
        others: Vec<(u64, Key<'_>, Value)>,
    ) -> Result<Self, InvalidPush> {
        let extra = (others.into_iter())
            .map(|(_, key, value)| (key.into_owned(), value))
            .collect();
        // Each declared field as (wire name, slot), bound by position in
        // `DECLARED_FIELDS` (`declared_fields_land_in_their_fields` checks every binding).
        #[rustfmt::skip] // One line per five names, not one line of 200 characters.
        let [
            answer_at, bind_id, business_id, call_id, call_status,
            call_status_msg, callee, caller, customer_bind_id, did,
            duration, hangup, hangup_at, hangup_cause, hangup_code,
            id, record_file, start_at,
        ] = std::array::from_fn(|i| (DECLARED_FIELDS[i], i));
        // Each value moves out of its slot once, straight to where it goes.
        let mut field = |(name, slot): (&'static str, usize)| Field(name, declared[slot].take());
        let id = field(id);
        if id.1.as_ref().is_none_or(Value::is_null) {
            return Err(InvalidPush::field("id", "is required"));
        }
        let call_status = field(call_status).integer()?;
        let duration = field(duration).integer()?;
        let start_at = field(start_at).integer()?;
        let answer_at = field(answer_at).integer()?;
        let hangup_at = field(hangup_at).integer()?;
        let hangup_code = field(hangup_code).integer()?;
        let hangup = field(hangup).integer()?;
        let id = id
            .integer()?
            .ok_or_else(|| InvalidPush::field("id", "is required"))?;
        Ok(Self {
            id,
            business_id: field(business_id).string()?,
            customer_bind_id: field(customer_bind_id).string()?,
            bind_id: field(bind_id).string()?,
            call_id: field(call_id).string()?,
            did: field(did).string()?,
            caller: field(caller).string()?,
            callee: field(callee).string()?,
            call_status,
            call_status_msg: field(call_status_msg).string()?,
            duration,
            start_at,
            answer_at,
            hangup_at,
            hangup_cause: field(hangup_cause).string()?,
            hangup_code,
            hangup,
            record_file: field(record_file).string()?,
            extra,
        })
    }
}

/// The wire names of the fields `CallRecord` declares, in key (byte) order, as the fields of
/// a `PushObject` are.
const DECLARED_FIELDS: [&str; 18] = [
    "answerAt",
    "bindId",
    "businessId",
    "callId",
    "callStatus",
    "callStatusMsg",
    "callee",
    "caller",
    "customerBindId",
    "did",
    "duration",
    "hangup",
    "hangupAt",
    "hangupCause",
    "hangupCode",
    "id",
    "recordFile",
    "startAt",
];

/// `key_head` of each declared name, computed once.
const DECLARED_HEADS: [u64; DECLARED_FIELDS.len()] = {
    let mut heads = [0; DECLARED_FIELDS.len()];
    let mut i = 0;
    while i < heads.len() {
        heads[i] = key_head(DECLARED_FIELDS[i]);
        i += 1;
    }
    heads
};

/// Where `key` is in `DECLARED_FIELDS`, if it is a declared name: `name_hash` picks the one
/// candidate, which is then compared in full. A binary search over the names took a branch
/// it could not predict at nearly every step, for every key of every push.
fn declared_slot(key: &str) -> Option<usize> {
    let slot = usize::from(DECLARED_BY_HASH[name_hash(key.as_bytes())?]);
    (DECLARED_FIELDS.get(slot)? == &key).then_some(slot)
}

/// A hash of a name's length and its first, middle and last bytes, into `0..32`: distinct
/// for the declared names, with this multiplier (`DECLARED_BY_HASH` fails the build if a
/// new name collides: then pick another odd multiplier). `None` for the empty name.
const fn name_hash(name: &[u8]) -> Option<usize> {
    const MULTIPLIER: u32 = 0x8e73_ca47;
    let len = name.len();
    if len == 0 {
        return None;
    }
    let mixed = (len as u32 & 0xff)
        | (name[0] as u32) << 8
        | (name[len - 1] as u32) << 16
        | (name[len / 2] as u32) << 24;
    Some((mixed.wrapping_mul(MULTIPLIER) >> 27) as usize)
}

/// The position in `DECLARED_FIELDS` of the name with each `name_hash`; `u8::MAX` for none.
const DECLARED_BY_HASH: [u8; 32] = {
    let mut slots = [u8::MAX; 32];
    let mut i = 0;
    while i < DECLARED_FIELDS.len() {
        let hash = match name_hash(DECLARED_FIELDS[i].as_bytes()) {
            Some(hash) => hash,
            None => panic!("a declared name is empty"),
        };
        assert!(
            slots[hash] == u8::MAX,
            "two declared names share a name_hash"
        );
        slots[hash] = i as u8;
        i += 1;
    }
    slots
};

/// A declared field's wire name and pushed value.
struct Field(&'static str, Option<Value>);

impl Field {
    /// Absent or `null` is `None`; otherwise it must be an [`integer`].
    fn integer(self) -> Result<Option<i64>, InvalidPush> {
        match self.1 {
            None | Some(Value::Null) => Ok(None),
            Some(v) => integer(&v).map(Some).ok_or_else(|| {
                InvalidPush::field(self.0, format!("expected an integer, got {}", kind(&v)))
            }),
        }
    }

    /// Absent or `null` is `None`.
    fn string(self) -> Result<Option<String>, InvalidPush> {
        match self.1 {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            // A 64-bit id sent as a bare number is still an id: keep its exact digits.
            Some(Value::Number(n)) if n.is_i64() || n.is_u64() => Ok(Some(n.to_string())),
            Some(other) => Err(InvalidPush::field(
                self.0,
                format!("expected a string, got {}", kind(&other)),
            )),
        }
    }
}

/// A key's first eight bytes (zero-padded) as a big-endian integer: ordered as the keys are,
/// where they differ in those bytes, so most comparisons of two keys are one integer
/// comparison instead of a `memcmp` call (a fast path: see `crate::fast`).
const fn key_head(key: &str) -> u64 {
    let bytes = key.as_bytes();
    if let Some((eight, _)) = bytes.split_first_chunk::<8>() {
        return u64::from_be_bytes(*eight);
    }
    let (mut head, mut i) = (0u64, 0);
    while i < 8 {
        let byte = if i < bytes.len() { bytes[i] } else { 0 };
        head = head << 8 | byte as u64;
        i += 1;
    }
    head
}

/// A key of the pushed object: borrowed from the body unless it holds an escape.
pub(crate) type Key<'a> = Cow<'a, str>;

/// Reads the pushed body's top level into a `PushObject`'s slots; answers whether it is an
/// object. Keys are borrowed from the body where they hold no escape, and no map is built
/// just to be taken apart again; values are ordinary `serde_json::Value`s.
struct ObjectReader<'o, 'a>(&'o mut PushObject<'a>);

impl<'de> DeserializeSeed<'de> for ObjectReader<'_, 'de> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ObjectReader<'_, 'de> {
    type Value = bool;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        let object = self.0;
        while let Some(key) = map.next_key_seed(KeySeed)? {
            match declared_slot(&key) {
                // A later arrival of the same key takes the slot.
                Some(slot) => object.declared[slot] = Some(map.next_value()?),
                None => object.others.push((key_head(&key), key, map.next_value()?)),
            }
        }
        Ok(true)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        // Still read to the end: a broken array is invalid JSON, not merely "not an object".
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(false)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
        Ok(false)
    }
}

struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Key<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Key<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a string key")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v))
    }
}

/// An integer from a JSON integer or a string holding one (`"1"`, `" 42 "`); floats, booleans
/// and out-of-range values are not integers.
pub(crate) fn integer(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    }
}

pub(crate) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a fractional number",
        Value::Number(_) => "an out-of-range number",
        Value::String(_) => "a string that is not an integer",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../events/bodies/call-result.json");

    #[test]
    fn parses_the_documented_example() {
        let parsed = CallRecord::parse(EXAMPLE.as_bytes()).unwrap();
        let r = parsed.record;
        assert_eq!(r.id, 45);
        assert_eq!(r.call_id.as_deref(), Some("1604763745256783872"));
        assert_eq!(r.call_status, Some(1));
        assert_eq!(r.answer_at, Some(1671440454));
        assert!(r.answered());
        assert!(r.recording_url().unwrap().ends_with(".mp3"));
        assert!(r.extra.is_empty());
    }

    #[test]
    fn declared_fields_land_in_their_fields() {
        // Every declared field with a value of its own, read back through serde's names.
        let body = serde_json::json!({
            "id": 1, "businessId": "b", "customerBindId": "cb", "bindId": "bi", "callId": "ci",
            "did": "d", "caller": "cr", "callee": "ce", "callStatus": 2, "callStatusMsg": "m",
            "duration": 3, "startAt": 4, "answerAt": 5, "hangupAt": 6, "hangupCause": "hc",
            "hangupCode": 7, "hangup": 8, "recordFile": "rf",
        });
        let record = CallRecord::parse(body.to_string().as_bytes())
            .unwrap()
            .record;
        assert_eq!(serde_json::to_value(&record).unwrap(), body);
        assert!(
            DECLARED_FIELDS.windows(2).all(|w| w[0] < w[1]),
            "in key order"
        );
        for (name, head) in DECLARED_FIELDS.iter().zip(DECLARED_HEADS) {
            assert_eq!(key_head(name), head);
        }
        for (slot, name) in DECLARED_FIELDS.iter().enumerate() {
            assert_eq!(declared_slot(name), Some(slot), "{name}");
        }
        for near in [
            "",
            "i",
            "id\0",
            "ID",
            "Id",
            "callStatu",
            "callStatusM",
            "callStatusMsg\0",
            "callStatusMsgs",
            "hangupA",
            "hangupAt\0",
            "customerBindIdX",
            "startAtstartAtstart",
            "\0\0\0\0\0\0\0\0\0",
        ] {
            assert_eq!(declared_slot(near), None, "{near:?}");
        }
    }

    #[test]
    fn key_heads_are_in_byte_order() {
        let keys = [
            "",
            "a",
            "a\0",
            "a\0b",
            "ab",
            "abcdefgh",
            "abcdefgh\0",
            "abcdefghi",
            "abcdefgi",
            "é",
            "e\u{7f}",
            "hangup",
            "hangupAt",
            "id",
            "~",
        ];
        for a in keys {
            for b in keys {
                let heads = key_head(a).cmp(&key_head(b));
                assert_eq!(heads.then(a.cmp(b)), a.cmp(b), "{a:?} {b:?}");
            }
        }
    }

    #[test]
    fn accepts_integers_written_as_strings() {
        let r = CallRecord::parse(br#"{"id":"7","callStatus":"2","duration":" 12 "}"#)
            .unwrap()
            .record;
        assert_eq!((r.id, r.call_status, r.duration), (7, Some(2), Some(12)));
    }

    #[test]
    fn keeps_unknown_fields_and_ids_sent_as_numbers() {
        let r = CallRecord::parse(
            br#"{"id":9,"callId":1604763745256783872,"extensionCaller":"8001","nested":{"a":[1]}}"#,
        )
        .unwrap()
        .record;
        assert_eq!(r.call_id.as_deref(), Some("1604763745256783872"));
        assert_eq!(r.extra["extensionCaller"], "8001");
        assert_eq!(r.extra["nested"]["a"][0], 1);
    }

    #[test]
    fn unanswered_calls_have_no_recording() {
        let r = CallRecord::parse(br#"{"id":3,"answerAt":0,"recordFile":"  "}"#)
            .unwrap()
            .record;
        assert!(!r.answered());
        assert_eq!(r.recording_url(), None);
    }

    #[test]
    fn rejections_name_the_field() {
        let cases: [(&[u8], Option<&str>); 9] = [
            (b"not json", None),
            (b"[1,2]", None),
            (b"{}", Some("id")),
            (br#"{"id":null}"#, Some("id")),
            (br#"{"id":"forty-seven"}"#, Some("id")),
            (br#"{"id":0}"#, Some("id")),
            (br#"{"id":1,"duration":1.5}"#, Some("duration")),
            (br#"{"id":1,"caller":{"n":1}}"#, Some("caller")),
            (br#"{"id":1,"startAt":true}"#, Some("startAt")),
        ];
        let long = format!(
            r#"{{"id":1,"callId":"{}"}}"#,
            "9".repeat(MAX_INDEXED_LEN + 1)
        );
        assert_eq!(
            CallRecord::parse(long.as_bytes())
                .unwrap_err()
                .field
                .as_deref(),
            Some("callId")
        );
        for (body, field) in cases {
            let err = CallRecord::parse(body).unwrap_err();
            assert_eq!(
                err.field.as_deref(),
                field,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn reads_the_body_as_a_json_map_would() {
        // A repeated key: the last one wins, for the record and for the digest alike.
        let twice = CallRecord::parse(br#"{"id":1,"x":1,"id":2,"x":{"a":2}}"#).unwrap();
        let once = CallRecord::parse(br#"{"x":{"a":2},"id":2}"#).unwrap();
        assert_eq!(twice, once);
        assert_eq!(once.record.extra["x"]["a"], 2);
        // Escaped keys are the same keys.
        let escaped = CallRecord::parse(br#"{"\u0069d":2,"x":{"a":2}}"#).unwrap();
        assert_eq!(escaped, once);
        for body in [
            &b"true"[..],
            b"1",
            b"-1.5",
            b"\"s\"",
            b"null",
            b"[1,{}]",
            b" [] ",
        ] {
            let err = CallRecord::parse(body).unwrap_err();
            assert_eq!(err.message, "body is not a JSON object", "{body:?}");
        }
        for body in [&b"[1,"[..], b"[1]x", b"{\"id\":1", b"", b"{\"id\":1}{}"] {
            let err = CallRecord::parse(body).unwrap_err();
            assert!(
                err.message.starts_with("body is not valid JSON: "),
                "{body:?}"
            );
        }
    }

    #[test]
    fn digest_is_stable_across_versions() {
        // Stored records carry this digest and a retry is compared against it: were the
        // canonical form to change, every retry of an older record would look like a conflict.
        let example = CallRecord::parse(EXAMPLE.as_bytes()).unwrap();
        assert_eq!(
            example.payload_sha256,
            "8da218d93a585d9901e3b1739d0b95786509a34e0059210df1f1756f67f5007d"
        );
        let odd = CallRecord::parse(
            r#"{"z":null,"nested":{"b":[1,1.5,"é"],"a":true},"id":"7","callId":1604763745256783872}"#
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(
            odd.payload_sha256,
            "67770e14ccd86b65e5cf6ccade23456ca72e5ea78ca4b39ca14a502c6952522b"
        );
    }

    #[test]
    fn fields_and_digest_are_those_of_the_body_read_as_a_json_map() {
        // Declared names, names beside and between them, escaped and repeated keys, in
        // bodies of up to 30 fields, against `serde_json::Value` (whose map keeps the last
        // of a repeated key) written in canonical form.
        let keys: Vec<&str> = (DECLARED_FIELDS.iter().copied())
            .chain([
                "",
                "a",
                "b1",
                "callStatusMsgs",
                "callStatu",
                "hangupA",
                "i",
                "id\\u0000",
                "\\u0069d",
                "c\\u0061llId",
                "zz",
                "startAtstartAtstart",
                "\\\"q",
                "é",
            ])
            .collect();
        let values = [
            "1",
            "\"s\"",
            "null",
            "2.5",
            "[1,{\"b\":1,\"a\":2}]",
            "{\"y\":1,\"x\":[]}",
        ];
        let mut next = crate::picker(0x2545_f491_4f6c_dd1d);
        let mut accepted = 0;
        for _ in 0..4000 {
            let mut fields: Vec<String> = (0..next(30))
                .map(|_| {
                    let key = keys[next(keys.len())];
                    // Values every declared field takes, so that most bodies are accepted.
                    let value = match DECLARED_FIELDS.contains(&key) {
                        true => values[next(3)],
                        false => values[next(values.len())],
                    };
                    format!("\"{key}\":{value}")
                })
                .collect();
            fields.insert(next(fields.len() + 1), "\"id\":7".into());
            fields.push(format!("\"{}\":1", keys[next(keys.len())]));
            let body = format!("{{{}}}", fields.join(","));
            let map: Value = serde_json::from_str(&body).unwrap();
            let mut reference = Vec::new();
            canonical::write_canonical(&map, &mut reference);
            let Ok(parsed) = CallRecord::parse(body.as_bytes()) else {
                // A declared field with a value of the wrong type: refused, as it should be.
                continue;
            };
            accepted += 1;
            assert_eq!(parsed.payload_sha256, sha256_hex(&reference), "{body}");
            let extra: Vec<&String> = parsed.record.extra.keys().collect();
            let undeclared: Vec<&String> = (map.as_object().unwrap().keys())
                .filter(|k| !DECLARED_FIELDS.contains(&k.as_str()))
                .collect();
            assert_eq!(extra, undeclared, "{body}");
            for (k, v) in &parsed.record.extra {
                assert_eq!(&map[k], v, "{body}");
            }
        }
        assert!(accepted > 1000, "{accepted} bodies accepted");
    }

    #[test]
    fn digest_ignores_key_order_and_white_space_but_not_values() {
        let a = CallRecord::parse(br#"{"id":1,"duration":5}"#).unwrap();
        let b = CallRecord::parse(b"{ \"duration\": 5,\n \"id\": 1 }").unwrap();
        let c = CallRecord::parse(br#"{"id":1,"duration":6}"#).unwrap();
        assert_eq!(a.payload_sha256, b.payload_sha256);
        assert_ne!(a.payload_sha256, c.payload_sha256);
    }
}
