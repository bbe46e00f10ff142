//! The stored form of a call record: what an operator sees in the DynamoDB console.
//!
//! Pushed fields keep their NXCLOUD names; derived attributes make the item readable without
//! a calculator (ISO-8601 times, words for codes). Unknown pushed fields live under
//! `extraFields` so a vendor's new field can never overwrite one of ours.

use serde::Deserialize;
use serde_json::{Map, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::cdr::ParsedPush;
use super::recording::RecordingStatus;

/// Attribute present (value `PENDING`) only while a recording waits to be archived, so the
/// index over it holds exactly the pending records (a sparse GSI).
pub const PENDING_ATTRIBUTE: &str = "pending";
/// Sparse GSI: `pending` (hash) + `receivedAtEpoch` (range); the reconciler's work list.
pub const PENDING_INDEX: &str = "pendingRecordings";
/// GSI: calls of a `businessId` by `startAt`.
pub const BUSINESS_INDEX: &str = "businessCalls";
/// GSI: lookup by NXCLOUD `callId`.
pub const CALL_ID_INDEX: &str = "callIdLookup";

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

/// The item to put for a new push, as JSON (the DynamoDB adapter converts it).
pub fn record_item(
    push: &ParsedPush,
    received_at: OffsetDateTime,
    plan: &RecordingPlan,
) -> Map<String, Value> {
    let record = &push.record;
    let Value::Object(mut item) = serde_json::to_value(record).expect("a record serialises") else {
        unreachable!("a record serialises to an object")
    };
    let extra: Map<String, Value> = record
        .extra
        .keys()
        .filter_map(|k| item.remove_entry(k))
        .collect();
    // DynamoDB refuses an empty string as a secondary-index key: an empty `callId` or
    // `businessId` is stored as absent, or the record could never be written.
    for indexed in ["callId", "businessId"] {
        if item.get(indexed).is_some_and(|v| v.as_str() == Some("")) {
            item.remove(indexed);
        }
    }
    if !extra.is_empty() {
        item.insert("extraFields".into(), Value::Object(extra));
    }
    for (field, derived) in [
        (record.start_at, "startTime"),
        (record.answer_at, "answerTime"),
        (record.hangup_at, "hangupTime"),
    ] {
        if let Some(t) = field.filter(|t| *t > 0).and_then(iso_time) {
            item.insert(derived.into(), t.into());
        }
    }
    item.insert("answered".into(), record.answered().into());
    item.insert(
        "callStatusText".into(),
        call_status_text(record.call_status).into(),
    );
    if let Some(h) = record.hangup {
        item.insert("hangupBy".into(), hangup_by(h).into());
    }
    item.insert("receivedAt".into(), format_time(received_at).into());
    item.insert(
        "receivedAtEpoch".into(),
        received_at.unix_timestamp().into(),
    );
    item.insert("payloadSha256".into(), push.payload_sha256.clone().into());
    item.insert("recordingStatus".into(), plan.status().as_str().into());
    match plan {
        RecordingPlan::None => {}
        RecordingPlan::Pending { key } => {
            item.insert("recordingKey".into(), key.clone().into());
            item.insert(
                PENDING_ATTRIBUTE.into(),
                RecordingStatus::Pending.as_str().into(),
            );
        }
        RecordingPlan::Refused { reason } => {
            item.insert("recordingError".into(), reason.clone().into());
        }
    }
    item
}

/// The part of a stored item the receiver and the archiver act on.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct StoredRecord {
    pub id: i64,
    pub call_id: Option<String>,
    pub record_file: Option<String>,
    pub payload_sha256: Option<String>,
    pub recording_status: Option<String>,
    pub recording_key: Option<String>,
    pub recording_sha256: Option<String>,
    pub recording_bytes: Option<u64>,
    pub received_at_epoch: Option<i64>,
    pub recording_attempts: Option<u32>,
}

impl StoredRecord {
    pub fn status(&self) -> Option<RecordingStatus> {
        self.recording_status
            .as_deref()
            .and_then(RecordingStatus::parse)
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
        .expect("a UTC time formats as RFC 3339")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::cdr::CallRecord;
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
        let item = record_item(&push, datetime!(2022-12-19 09:01:00.5 UTC), &plan);
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
        let item = record_item(&push, datetime!(2024-01-01 0:00 UTC), &RecordingPlan::None);
        assert!(!item.contains_key("callId") && !item.contains_key("businessId"));
        assert_eq!(item["did"], "");
    }

    #[test]
    fn refused_recording_is_failed_with_reason() {
        let push = CallRecord::parse(br#"{"id":1}"#).unwrap();
        let item = record_item(
            &push,
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
}
