//! The NXCLOUD call detail record: parsing and validation.
//!
//! Parse, don't validate: `CallRecord::parse` is the way to get a record, so every
//! `CallRecord` in the program has a positive id and correctly typed fields.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::push::{field, from_object, read_object, InvalidPush, PushObject};

/// One call detail record as NXCLOUD pushes it. Field names are NXCLOUD's on the wire.
/// Integers may arrive as JSON strings, identifiers as JSON numbers; `null` means absent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallRecord {
    #[serde(deserialize_with = "id")]
    pub id: i64,
    #[serde(
        default,
        deserialize_with = "field::identifier",
        skip_serializing_if = "Option::is_none"
    )]
    pub business_id: Option<String>,
    #[serde(
        default,
        deserialize_with = "field::identifier",
        skip_serializing_if = "Option::is_none"
    )]
    pub customer_bind_id: Option<String>,
    #[serde(
        default,
        deserialize_with = "field::identifier",
        skip_serializing_if = "Option::is_none"
    )]
    pub bind_id: Option<String>,
    #[serde(
        default,
        deserialize_with = "field::identifier",
        skip_serializing_if = "Option::is_none"
    )]
    pub call_id: Option<String>,
    #[serde(
        default,
        deserialize_with = "field::identifier",
        skip_serializing_if = "Option::is_none"
    )]
    pub did: Option<String>,
    #[serde(
        default,
        deserialize_with = "field::identifier",
        skip_serializing_if = "Option::is_none"
    )]
    pub caller: Option<String>,
    #[serde(
        default,
        deserialize_with = "field::identifier",
        skip_serializing_if = "Option::is_none"
    )]
    pub callee: Option<String>,
    #[serde(
        default,
        deserialize_with = "field::integer",
        skip_serializing_if = "Option::is_none"
    )]
    pub call_status: Option<i64>,
    #[serde(
        default,
        deserialize_with = "field::identifier",
        skip_serializing_if = "Option::is_none"
    )]
    pub call_status_msg: Option<String>,
    #[serde(
        default,
        deserialize_with = "field::integer",
        skip_serializing_if = "Option::is_none"
    )]
    pub duration: Option<i64>,
    #[serde(
        default,
        deserialize_with = "field::integer",
        skip_serializing_if = "Option::is_none"
    )]
    pub start_at: Option<i64>,
    #[serde(
        default,
        deserialize_with = "field::integer",
        skip_serializing_if = "Option::is_none"
    )]
    pub answer_at: Option<i64>,
    #[serde(
        default,
        deserialize_with = "field::integer",
        skip_serializing_if = "Option::is_none"
    )]
    pub hangup_at: Option<i64>,
    #[serde(
        default,
        deserialize_with = "field::identifier",
        skip_serializing_if = "Option::is_none"
    )]
    pub hangup_cause: Option<String>,
    #[serde(
        default,
        deserialize_with = "field::integer",
        skip_serializing_if = "Option::is_none"
    )]
    pub hangup_code: Option<i64>,
    #[serde(
        default,
        deserialize_with = "field::integer",
        skip_serializing_if = "Option::is_none"
    )]
    pub hangup: Option<i64>,
    #[serde(
        default,
        deserialize_with = "field::identifier",
        skip_serializing_if = "Option::is_none"
    )]
    pub record_file: Option<String>,
    /// Fields NXCLOUD added that this version does not know: kept, never dropped.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// `id`, whose presence `CallRecord::from_object` checked first.
fn id<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    field::integer(d)?.ok_or_else(|| serde::de::Error::missing_field("id"))
}

/// A parsed call record and the digest that tells an exact retry from a conflicting one.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedCallRecord {
    pub record: CallRecord,
    /// SHA-256 (hex) of the body's canonical JSON: key order and white space do not change it.
    pub payload_sha256: String,
}

impl CallRecord {
    /// Parses a call-result push body.
    pub fn parse(body: &[u8]) -> Result<ParsedCallRecord, InvalidPush> {
        Self::from_object(read_object(body)?)
    }

    pub(crate) fn from_object(object: PushObject) -> Result<ParsedCallRecord, InvalidPush> {
        let PushObject {
            fields,
            payload_sha256,
        } = object;
        if fields.get("id").is_none_or(Value::is_null) {
            return Err(InvalidPush::Missing { field: "id" });
        }
        let record: Self = from_object(fields)?;
        if record.id <= 0 {
            return Err(InvalidPush::NotPositive { field: "id" });
        }
        // Index keys of the table.
        InvalidPush::check_indexed("callId", record.call_id.as_deref())?;
        InvalidPush::check_indexed("businessId", record.business_id.as_deref())?;
        Ok(ParsedCallRecord {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canonical::sha256_hex;

    const EXAMPLE: &str = include_str!("../../events/bodies/call-result.json");

    /// The wire names `CallRecord` declares.
    const DECLARED: [&str; 18] = [
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
        assert!(record.extra.is_empty());
        assert_eq!(serde_json::to_value(&record).unwrap(), body);
        let names: Vec<&String> = body.as_object().unwrap().keys().collect();
        assert_eq!(names, DECLARED);
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
        let cases: [(&[u8], Option<&str>); 10] = [
            (b"not json", None),
            (b"[1,2]", None),
            (b"{}", Some("id")),
            (br#"{"id":null}"#, Some("id")),
            (br#"{"id":"forty-seven"}"#, Some("id")),
            (br#"{"id":0}"#, Some("id")),
            (br#"{"id":1,"duration":1.5}"#, Some("duration")),
            (br#"{"id":1,"caller":{"n":1}}"#, Some("caller")),
            (br#"{"id":1,"startAt":true}"#, Some("startAt")),
            (br#"{"id":1,"did":[]}"#, Some("did")),
        ];
        let long = format!(
            r#"{{"id":1,"callId":"{}"}}"#,
            "9".repeat(crate::push::MAX_INDEXED_LEN + 1)
        );
        assert_eq!(
            CallRecord::parse(long.as_bytes()).unwrap_err().field(),
            Some("callId")
        );
        for (body, field) in cases {
            let err = CallRecord::parse(body).unwrap_err();
            assert_eq!(err.field(), field, "{}", String::from_utf8_lossy(body));
        }
        let did = CallRecord::parse(br#"{"id":1,"did":[]}"#).unwrap_err();
        assert_eq!(
            did.to_string(),
            "field `did`: expected a string or an integer, got an array"
        );
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
            assert_eq!(err, InvalidPush::NotAnObject, "{body:?}");
        }
        for body in [&b"[1,"[..], b"[1]x", b"{\"id\":1", b"", b"{\"id\":1}{}"] {
            let err = CallRecord::parse(body).unwrap_err();
            assert!(
                err.to_string().starts_with("body is not valid JSON: "),
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

    /// `v` written compactly with every object's keys in byte order, by way of a `BTreeMap`:
    /// the canonical form, written independently of `canonical`.
    fn reference_canonical(v: &Value) -> Vec<u8> {
        fn sorted(v: &Value) -> serde_json::Value {
            match v {
                Value::Object(map) => {
                    let map: BTreeMap<&String, Value> =
                        map.iter().map(|(k, v)| (k, sorted(v))).collect();
                    serde_json::to_value(map).unwrap()
                }
                Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
                other => other.clone(),
            }
        }
        serde_json::to_vec(&sorted(v)).unwrap()
    }

    #[test]
    fn fields_and_digest_are_those_of_the_body_read_as_a_json_map() {
        // Declared names, names beside and between them, escaped and repeated keys, in
        // bodies of up to 30 fields, against `serde_json::Value` (whose map keeps the last
        // of a repeated key) written in canonical form.
        let keys: Vec<&str> = (DECLARED.iter().copied())
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
        let mut rng = fastrand::Rng::with_seed(0x2545_f491_4f6c_dd1d);
        let mut accepted = 0;
        for _ in 0..4000 {
            let mut fields: Vec<String> = (0..rng.usize(..30))
                .map(|_| {
                    let key = keys[rng.usize(..keys.len())];
                    // Values every declared field takes, so that most bodies are accepted.
                    let value = match DECLARED.contains(&key) {
                        true => values[rng.usize(..3)],
                        false => values[rng.usize(..values.len())],
                    };
                    format!("\"{key}\":{value}")
                })
                .collect();
            fields.insert(rng.usize(..=fields.len()), "\"id\":7".into());
            fields.push(format!("\"{}\":1", keys[rng.usize(..keys.len())]));
            let body = format!("{{{}}}", fields.join(","));
            let map: Value = serde_json::from_str(&body).unwrap();
            let Ok(parsed) = CallRecord::parse(body.as_bytes()) else {
                // A declared field with a value of the wrong type: refused, as it should be.
                continue;
            };
            accepted += 1;
            let reference = reference_canonical(&map);
            assert_eq!(parsed.payload_sha256, sha256_hex(&reference), "{body}");
            let extra: Vec<&String> = parsed.record.extra.keys().collect();
            let undeclared: Vec<&String> = (map.as_object().unwrap().keys())
                .filter(|k| !DECLARED.contains(&k.as_str()))
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
