//! The NXCLOUD call detail record: parsing, validation and canonical form.
//!
//! Parse, don't validate: `CallRecord::parse` is the only way to get a record, so every
//! `CallRecord` in the program has a positive id and correctly typed fields.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// Why a push body is not a call record. `field` names the offending field when there is one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct InvalidPush {
    pub field: Option<String>,
    pub message: String,
}

impl InvalidPush {
    fn body(message: impl Into<String>) -> Self {
        Self {
            field: None,
            message: message.into(),
        }
    }
    fn field(field: &str, message: impl Into<String>) -> Self {
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

const STRING_FIELDS: [&str; 10] = [
    "businessId",
    "customerBindId",
    "bindId",
    "callId",
    "did",
    "caller",
    "callee",
    "callStatusMsg",
    "hangupCause",
    "recordFile",
];
const INTEGER_FIELDS: [&str; 8] = [
    "callStatus",
    "duration",
    "startAt",
    "answerAt",
    "hangupAt",
    "hangupCode",
    "hangup",
    "id",
];

/// A parsed push: the record plus the digest that tells an exact retry from a conflicting one.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedPush {
    pub record: CallRecord,
    /// SHA-256 (hex) of the canonical JSON form: key order and white space do not change it.
    pub payload_sha256: String,
}

impl CallRecord {
    /// Parses a push body. Integers may arrive as JSON strings; identifier fields may arrive
    /// as JSON numbers; `null` means absent; anything else of the wrong type is rejected.
    pub fn parse(body: &[u8]) -> Result<ParsedPush, InvalidPush> {
        let value: Value = serde_json::from_slice(body)
            .map_err(|e| InvalidPush::body(format!("body is not valid JSON: {e}")))?;
        let Value::Object(mut object) = value else {
            return Err(InvalidPush::body("body is not a JSON object"));
        };
        let mut canonical = Vec::with_capacity(body.len());
        write_canonical(&Value::Object(object.clone()), &mut canonical);
        let payload_sha256 = sha256_hex(&canonical);
        normalise(&mut object)?;
        let record: CallRecord = serde_json::from_value(Value::Object(object))
            .map_err(|e| InvalidPush::body(format!("body does not match the record shape: {e}")))?;
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

/// Brings every known field to its declared type, naming the first field that cannot be.
fn normalise(object: &mut Map<String, Value>) -> Result<(), InvalidPush> {
    if !object.contains_key("id") || object["id"].is_null() {
        return Err(InvalidPush::field("id", "is required"));
    }
    for name in INTEGER_FIELDS {
        if let Some(v) = object.get_mut(name) {
            if v.is_null() {
                object.remove(name);
                continue;
            }
            let n = integer(v).ok_or_else(|| {
                InvalidPush::field(name, format!("expected an integer, got {}", kind(v)))
            })?;
            *v = Value::from(n);
        }
    }
    for name in STRING_FIELDS {
        if let Some(v) = object.get_mut(name) {
            match v {
                Value::Null => {
                    object.remove(name);
                }
                Value::String(_) => {}
                // A 64-bit id sent as a bare number is still an id: keep its exact digits.
                Value::Number(n) if n.is_i64() || n.is_u64() => *v = Value::String(n.to_string()),
                other => {
                    return Err(InvalidPush::field(
                        name,
                        format!("expected a string, got {}", kind(other)),
                    ))
                }
            }
        }
    }
    Ok(())
}

/// An integer from a JSON integer or a string holding one (`"1"`, `" 42 "`); floats, booleans
/// and out-of-range values are not integers.
fn integer(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    }
}

fn kind(v: &Value) -> &'static str {
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

/// Compact JSON with object keys sorted at every depth, so the digest does not depend on the
/// sender's key order or on which map type serde_json was built with.
fn write_canonical(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push(b'{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                serde_json::to_writer(&mut *out, k).expect("a string serialises");
                out.push(b':');
                write_canonical(v, out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(v, out);
            }
            out.push(b']');
        }
        scalar => serde_json::to_writer(&mut *out, scalar).expect("a scalar serialises"),
    }
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../tests/data/example-push.json");

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
    fn digest_ignores_key_order_and_white_space_but_not_values() {
        let a = CallRecord::parse(br#"{"id":1,"duration":5}"#).unwrap();
        let b = CallRecord::parse(b"{ \"duration\": 5,\n \"id\": 1 }").unwrap();
        let c = CallRecord::parse(br#"{"id":1,"duration":6}"#).unwrap();
        assert_eq!(a.payload_sha256, b.payload_sha256);
        assert_ne!(a.payload_sha256, c.payload_sha256);
    }
}
