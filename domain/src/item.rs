//! The stored form of a call record: what an operator sees in the DynamoDB console.
//!
//! Pushed fields keep their NXCLOUD names; derived attributes make the item readable without
//! a calculator (ISO-8601 times, words for codes).

use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::cdr::ParsedCallRecord;
use crate::recording::RecordingStatus;

/// TTL attribute (Unix seconds), as named in the tables' `TimeToLiveSpecification`.
pub const EXPIRES_AT_ATTRIBUTE: &str = "expiresAt";

/// Attribute present (value `PENDING`) only while a recording waits to be archived, so the
/// index over it holds exactly the pending records (a sparse GSI).
pub const PENDING_ATTRIBUTE: &str = "pending";
/// Sparse GSI: `pending` (hash) + `receivedAtEpoch` (range); the reconciler's work list.
pub const PENDING_INDEX: &str = "pendingRecordings";
/// GSI: calls of a `businessId` by `startAt`.
pub const BUSINESS_INDEX: &str = "businessCalls";
/// GSI: lookup by NXCLOUD `callId`.
pub const CALL_ID_INDEX: &str = "callIdLookup";
/// GSI: the calls of a binding by the customer's own id for it (`customerBindId`), by
/// `startAt`: "the calls of order X".
pub const CUSTOMER_BIND_INDEX: &str = "callsByCustomerBindId";

/// What the receiver decided about the recording when it stored the record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordingPlan {
    None,
    Pending { key: String },
    Refused { reason: String },
}

impl RecordingPlan {
    pub fn status(&self) -> RecordingStatus {
        match self {
            Self::None => RecordingStatus::None,
            Self::Pending { .. } => RecordingStatus::Pending,
            Self::Refused { .. } => RecordingStatus::Failed,
        }
    }
}

/// A stored item as the receiver writes it: attributes by name, values as JSON, which the
/// DynamoDB adapter converts once.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RecordItem(Map<String, Value>);

impl RecordItem {
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name)
    }

    pub fn contains_key(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    /// Sets `name`, replacing any value it had.
    pub fn insert(&mut self, name: &str, value: Value) {
        self.0.insert(name.to_owned(), value);
    }

    pub fn remove(&mut self, name: &str) -> Option<Value> {
        self.0.remove(name)
    }

    /// The record id, as every call record's item carries it.
    pub fn id(&self) -> Option<i64> {
        self.get("id").and_then(Value::as_i64)
    }

    /// Sets the TTL attribute [`EXPIRES_AT_ATTRIBUTE`] so DynamoDB removes the item
    /// `retention` after `received_at`.
    pub fn expire_after(&mut self, received_at: OffsetDateTime, retention: Duration) {
        let expires_at = received_at.unix_timestamp() + retention.as_secs() as i64;
        self.insert(EXPIRES_AT_ATTRIBUTE, expires_at.into());
    }

    pub fn names(&self) -> impl Iterator<Item = &str> + '_ {
        self.0.keys().map(String::as_str)
    }

    /// The item as a JSON object (what the DynamoDB console shows, as plain JSON).
    pub fn to_json(&self) -> Map<String, Value> {
        self.0.clone()
    }

    pub fn into_json(self) -> Map<String, Value> {
        self.0
    }
}

/// As JSON indexing does: an absent attribute reads as `null`.
impl std::ops::Index<&str> for RecordItem {
    type Output = Value;

    fn index(&self, name: &str) -> &Value {
        &self.0[name]
    }
}

/// The item to put for a new call record: the record's own fields (as it serialises them,
/// absent ones left out), its unknown fields apart under `extraFields` (so a vendor's new
/// field can never overwrite one of ours), and the derived attributes.
pub fn record_item(
    push: ParsedCallRecord,
    received_at: OffsetDateTime,
    plan: &RecordingPlan,
) -> RecordItem {
    let ParsedCallRecord {
        record: mut r,
        payload_sha256,
    } = push;
    let extra = std::mem::take(&mut r.extra);
    let time = |t: Option<i64>| t.filter(|t| *t > 0).and_then(iso_time).map(Value::from);
    let derived = [
        ("answerTime", time(r.answer_at)),
        ("answered", Some(r.answered().into())),
        (
            "callStatusText",
            Some(call_status_text(r.call_status).into()),
        ),
        (
            "extraFields",
            (!extra.is_empty()).then(|| Value::Object(extra.into_iter().collect())),
        ),
        ("hangupBy", r.hangup.map(|h| hangup_by(h).into())),
        ("hangupTime", time(r.hangup_at)),
        ("payloadSha256", Some(payload_sha256.into())),
        ("receivedAt", Some(format_time(received_at).into())),
        ("receivedAtEpoch", Some(received_at.unix_timestamp().into())),
        ("recordingStatus", Some(plan.status().as_str().into())),
        ("startTime", time(r.start_at)),
    ];
    let Ok(Value::Object(mut item)) = serde_json::to_value(r) else {
        unreachable!("a record serialises to an object")
    };
    // DynamoDB refuses an empty string as a secondary-index key: an empty `callId` or
    // `businessId` is stored as absent, or the record could never be written.
    for index_key in ["businessId", "callId"] {
        if item.get(index_key).is_some_and(|v| v == "") {
            item.remove(index_key);
        }
    }
    item.extend((derived.into_iter()).filter_map(|(name, v)| Some((name.to_owned(), v?))));
    match plan {
        RecordingPlan::None => {}
        RecordingPlan::Pending { key } => {
            item.insert(
                PENDING_ATTRIBUTE.into(),
                RecordingStatus::Pending.as_str().into(),
            );
            item.insert("recordingKey".into(), key.as_str().into());
        }
        RecordingPlan::Refused { reason } => {
            item.insert("recordingError".into(), reason.as_str().into());
        }
    }
    RecordItem(item)
}

/// The part of a stored item the receiver and the archiver act on.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct StoredRecord {
    pub id: i64,
    pub call_id: Option<String>,
    pub record_file: Option<String>,
    pub payload_sha256: Option<String>,
    pub recording_status: Option<RecordingStatus>,
    pub recording_key: Option<String>,
    pub recording_sha256: Option<String>,
    pub recording_bytes: Option<u64>,
    pub received_at_epoch: Option<i64>,
    pub recording_attempts: Option<u32>,
    /// Why the latest attempt failed (PENDING), or why the copy failed for good (FAILED).
    pub recording_error: Option<String>,
    pub start_at: Option<i64>,
    /// Noted before a multipart copy completed: its digest, size and the object's ETag.
    pub copy_sha256: Option<String>,
    pub copy_bytes: Option<u64>,
    pub copy_etag: Option<String>,
    /// Set by `pnsctl rearchive` (epoch ms): jobs queued before it are superseded.
    pub pending_since: Option<i64>,
}

impl StoredRecord {
    pub fn status(&self) -> Option<RecordingStatus> {
        self.recording_status
    }
}

/// `callStatus` as a word: 0 unknown, 1 normal end, 2 abnormal end.
pub fn call_status_text(status: Option<i64>) -> &'static str {
    match status {
        Some(1) => "NORMAL_END",
        Some(2) => "ABNORMAL_END",
        _ => "UNKNOWN",
    }
}

/// `hangup` as a word: 0 caller, 1 callee.
pub fn hangup_by(hangup: i64) -> &'static str {
    match hangup {
        0 => "CALLER",
        1 => "CALLEE",
        _ => "UNKNOWN",
    }
}

fn iso_time(unix: i64) -> Option<String> {
    OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .map(format_time)
}

/// RFC 3339 / ISO-8601 in UTC, second precision (`2022-12-19T09:00:52Z`).
pub fn format_time(t: OffsetDateTime) -> String {
    t.replace_nanosecond(0)
        .expect("zero nanoseconds is valid")
        .format(&Rfc3339)
        .expect("a time of years 0 to 9999 formats as RFC 3339")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cdr::CallRecord;
    use time::macros::datetime;

    #[test]
    fn item_is_readable_and_keeps_unknown_fields_apart() {
        let push = CallRecord::parse(
            br#"{"id":45,"callStatus":1,"startAt":1671440452,"answerAt":0,"hangup":1,"caller":"85235757583","receivedAt":"spoofed"}"#,
        )
        .unwrap();
        let plan = RecordingPlan::Pending {
            key: "recordings/2022/12/19/45.mp3".into(),
        };
        let item = record_item(push.clone(), datetime!(2022-12-19 09:01:00.5 UTC), &plan);
        assert_eq!(item["id"], 45);
        assert_eq!(item["caller"], "85235757583");
        assert_eq!(item["startTime"], "2022-12-19T09:00:52Z");
        assert!(!item.contains_key("answerTime"));
        assert_eq!(item["answered"], false);
        assert_eq!(item["callStatusText"], "NORMAL_END");
        assert_eq!(item["hangupBy"], "CALLEE");
        assert_eq!(item["receivedAt"], "2022-12-19T09:01:00Z");
        assert_eq!(item["extraFields"]["receivedAt"], "spoofed");
        assert_eq!(item["recordingStatus"], "PENDING");
        assert_eq!(item["recordingKey"], "recordings/2022/12/19/45.mp3");
        assert_eq!(item[PENDING_ATTRIBUTE], "PENDING");
        assert_eq!(item["payloadSha256"], push.payload_sha256.as_str());
    }

    #[test]
    fn empty_index_keys_are_left_out() {
        let push = CallRecord::parse(br#"{"id":2,"callId":"","businessId":"","did":""}"#).unwrap();
        let item = record_item(
            push.clone(),
            datetime!(2024-01-01 0:00 UTC),
            &RecordingPlan::None,
        );
        assert!(!item.contains_key("callId") && !item.contains_key("businessId"));
        assert_eq!(item["did"], "");
    }

    #[test]
    fn refused_recording_is_failed_with_reason() {
        let push = CallRecord::parse(br#"{"id":1}"#).unwrap();
        let item = record_item(
            push.clone(),
            datetime!(2024-01-01 0:00 UTC),
            &RecordingPlan::Refused {
                reason: "nope".into(),
            },
        );
        assert_eq!(item["recordingStatus"], "FAILED");
        assert_eq!(item["recordingError"], "nope");
        assert!(!item.contains_key(PENDING_ATTRIBUTE));
        assert_eq!(item["callStatusText"], "UNKNOWN");
    }

    #[test]
    fn item_is_the_record_serialised_with_unknown_fields_apart() {
        let push = CallRecord::parse(
            br#"{"id":"9","callId":1604763745256783872,"businessId":"","did":"","caller":null,
                "duration":"12","hangupCode":0,"hangup":7,"x":{"b":[1,2.5]},"answered":"spoofed"}"#,
        )
        .unwrap();
        let item = record_item(
            push.clone(),
            datetime!(2024-01-01 0:00 UTC),
            &RecordingPlan::None,
        );
        // What the item held when it was built through serde: the record's serialisation,
        // unknown fields moved apart, the empty index key dropped.
        let Value::Object(mut expected) = serde_json::to_value(&push.record).unwrap() else {
            unreachable!("a record serialises to an object")
        };
        let extra: Map<String, Value> = push
            .record
            .extra
            .keys()
            .filter_map(|k| expected.remove_entry(k))
            .collect();
        expected.remove("businessId");
        for (k, v) in &expected {
            assert_eq!(item.get(k), Some(v), "{k}");
        }
        assert_eq!(item["extraFields"], Value::Object(extra));
        let derived: Vec<&str> = item
            .names()
            .filter(|k| !expected.contains_key(*k))
            .collect();
        assert_eq!(
            derived,
            [
                "answered",
                "callStatusText",
                "extraFields",
                "hangupBy",
                "payloadSha256",
                "receivedAt",
                "receivedAtEpoch",
                "recordingStatus"
            ]
        );
        assert!(!item.contains_key("businessId") && !item.contains_key("caller"));
        assert_eq!(item["callId"], "1604763745256783872");
        assert_eq!(item["answered"], false);
        assert_eq!(item["hangupBy"], "UNKNOWN");
    }

    #[test]
    fn a_full_record_has_every_attribute() {
        let push = CallRecord::parse(
            br#"{"id":1,"businessId":"b","callId":"c","bindId":"x","customerBindId":"y",
                "did":"d","caller":"1","callee":"2","callStatus":1,"callStatusMsg":"m",
                "duration":3,"startAt":5,"answerAt":6,"hangupAt":7,"hangupCause":"h",
                "hangupCode":0,"hangup":1,"recordFile":"https://a.nxcloud.com/r.mp3","new":1}"#,
        )
        .unwrap();
        let at = datetime!(2024-01-01 0:00 UTC);
        // Pending adds `pending` and `recordingKey`, refused `recordingError`: 31 and 30 of 32.
        for (plan, count) in [
            (RecordingPlan::Pending { key: "k".into() }, 31),
            (RecordingPlan::Refused { reason: "r".into() }, 30),
        ] {
            let item = record_item(push.clone(), at, &plan);
            let names: Vec<&str> = item.names().collect();
            assert_eq!(names.len(), count, "{names:?}");
        }
    }

    #[test]
    fn times_are_utc_seconds() {
        let t = datetime!(2024-02-29 23:59:59.999 UTC);
        assert_eq!(format_time(t), "2024-02-29T23:59:59Z");
        let t = datetime!(2024-02-29 23:59:59 +08:00);
        assert_eq!(format_time(t), "2024-02-29T23:59:59+08:00");
    }

    #[test]
    fn expiry_is_retention_after_arrival() {
        let mut item = RecordItem::default();
        item.expire_after(datetime!(2024-01-01 0:00 UTC), Duration::from_secs(86_400));
        assert_eq!(item[EXPIRES_AT_ATTRIBUTE], 1_704_153_600);
    }
}
