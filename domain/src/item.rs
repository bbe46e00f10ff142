//! The stored form of a call record: what an operator sees in the DynamoDB console.
//!
//! Pushed fields keep their NXCLOUD names; derived attributes make the item readable without
//! a calculator (ISO-8601 times, words for codes). Unknown pushed fields live under
//! `extraFields` so a vendor's new field can never overwrite one of ours.

use serde::Deserialize;
use serde_json::{Map, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::cdr::ParsedPush;
use crate::recording::RecordingStatus;

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

/// A stored item as the receiver writes it: attribute names are the receiver's own, so they
/// are `&'static str` (a push's unknown fields live inside `extraFields`, a value); values are
/// JSON, which the DynamoDB adapter converts once. Names are unique.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RecordItem(Vec<(&'static str, Value)>);

impl RecordItem {
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    pub fn contains_key(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Sets `name`, replacing any value it had.
    pub fn insert(&mut self, name: &'static str, value: Value) {
        match self.0.iter_mut().find(|(n, _)| *n == name) {
            Some((_, old)) => *old = value,
            None => self.0.push((name, value)),
        }
    }

    pub fn remove(&mut self, name: &str) -> Option<Value> {
        let i = self.0.iter().position(|(n, _)| *n == name)?;
        Some(self.0.remove(i).1)
    }

    /// The record id, as every item carries it.
    pub fn id(&self) -> Option<i64> {
        self.get("id").and_then(Value::as_i64)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.0.iter().map(|(n, _)| *n)
    }

    /// The item as a JSON object (what the DynamoDB console shows, as plain JSON).
    pub fn to_json(&self) -> Map<String, Value> {
        self.0
            .iter()
            .map(|(n, v)| ((*n).to_owned(), v.clone()))
            .collect()
    }
}

impl IntoIterator for RecordItem {
    type Item = (&'static str, Value);
    type IntoIter = std::vec::IntoIter<(&'static str, Value)>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

/// As JSON indexing does: an absent attribute reads as `null`.
impl std::ops::Index<&str> for RecordItem {
    type Output = Value;

    fn index(&self, name: &str) -> &Value {
        static NULL: Value = Value::Null;
        self.get(name).unwrap_or(&NULL)
    }
}

/// The item to put for a new push.
pub fn record_item(
    push: &ParsedPush,
    received_at: OffsetDateTime,
    plan: &RecordingPlan,
) -> RecordItem {
    into_record_item(push.clone(), received_at, plan)
}

/// As [`record_item`], moving the push's strings into the item instead of copying them (a
/// fast path: see `crate::fast`).
///
/// The attributes: the record's own fields (as `serde_json::to_value(record)` writes them,
/// `None` left out) minus the unknown ones, which go under `extraFields`, plus the derived
/// ones. Listed in key (byte) order, as the console lists them.
pub fn into_record_item(
    push: ParsedPush,
    received_at: OffsetDateTime,
    plan: &RecordingPlan,
) -> RecordItem {
    let ParsedPush {
        record: r,
        payload_sha256,
    } = push;
    let answered = r.answered();
    // DynamoDB refuses an empty string as a secondary-index key: an empty `callId` or
    // `businessId` is stored as absent, or the record could never be written.
    let index_key = |v: Option<String>| v.filter(|s| !s.is_empty());
    let time = |t: Option<i64>| t.filter(|t| *t > 0).and_then(iso_time);
    let extra = (!r.extra.is_empty()).then(|| Value::Object(r.extra.into_iter().collect()));
    let (pending, recording_key, recording_error) = match plan {
        RecordingPlan::None => (None, None, None),
        RecordingPlan::Pending { key } => (
            Some(RecordingStatus::Pending.as_str()),
            Some(key.as_str()),
            None,
        ),
        RecordingPlan::Refused { reason } => (None, None, Some(reason.as_str())),
    };
    // Pushed straight into a vector sized once, each value made into JSON as it goes in (a
    // staged `Option<Value>` per attribute cost more than the rest of the item).
    let mut item = Vec::with_capacity(32);
    put(&mut item, "answerAt", r.answer_at);
    put(&mut item, "answerTime", time(r.answer_at));
    put(&mut item, "answered", Some(answered));
    put(&mut item, "bindId", r.bind_id);
    put(&mut item, "businessId", index_key(r.business_id));
    put(&mut item, "callId", index_key(r.call_id));
    put(&mut item, "callStatus", r.call_status);
    put(&mut item, "callStatusMsg", r.call_status_msg);
    put(
        &mut item,
        "callStatusText",
        Some(call_status_text(r.call_status)),
    );
    put(&mut item, "callee", r.callee);
    put(&mut item, "caller", r.caller);
    put(&mut item, "customerBindId", r.customer_bind_id);
    put(&mut item, "did", r.did);
    put(&mut item, "duration", r.duration);
    put(&mut item, "extraFields", extra);
    put(&mut item, "hangup", r.hangup);
    put(&mut item, "hangupAt", r.hangup_at);
    put(&mut item, "hangupBy", r.hangup.map(hangup_by));
    put(&mut item, "hangupCause", r.hangup_cause);
    put(&mut item, "hangupCode", r.hangup_code);
    put(&mut item, "hangupTime", time(r.hangup_at));
    put(&mut item, "id", Some(r.id));
    put(&mut item, "payloadSha256", Some(payload_sha256));
    put(&mut item, PENDING_ATTRIBUTE, pending);
    put(&mut item, "receivedAt", Some(format_time(received_at)));
    put(
        &mut item,
        "receivedAtEpoch",
        Some(received_at.unix_timestamp()),
    );
    put(&mut item, "recordFile", r.record_file);
    put(&mut item, "recordingError", recording_error);
    put(&mut item, "recordingKey", recording_key);
    put(&mut item, "recordingStatus", Some(plan.status().as_str()));
    put(&mut item, "startAt", r.start_at);
    put(&mut item, "startTime", time(r.start_at));
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
    pub start_at: Option<i64>,
    /// Noted before a multipart copy completed: its digest, size and the object's ETag.
    pub copy_sha256: Option<String>,
    pub copy_bytes: Option<u64>,
    pub copy_etag: Option<String>,
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

/// Appends attribute `name` when it has a value.
fn put<T: Into<Value>>(
    item: &mut Vec<(&'static str, Value)>,
    name: &'static str,
    value: Option<T>,
) {
    if let Some(value) = value {
        item.push((name, value.into()));
    }
}

/// RFC 3339 / ISO-8601 in UTC, second precision (`2022-12-19T09:00:52Z`).
pub fn format_time(t: OffsetDateTime) -> String {
    // One calendar conversion: `year()`, `month()` and `day()` would each redo it.
    let ((year, month, day), (hour, minute, second)) = (t.to_calendar_date(), t.to_hms());
    if !t.offset().is_utc() || !(0..=9999).contains(&year) {
        // Never the case for the callers (UTC, years 1970+); kept exact all the same.
        return t
            .replace_nanosecond(0)
            .expect("zero nanoseconds is valid")
            .format(&Rfc3339)
            .expect("a UTC time formats as RFC 3339");
    }
    // As `Rfc3339` writes it (a fast path: see `crate::fast`): digits into a template.
    let mut text = *b"0000-00-00T00:00:00Z";
    let year = year as u16; // 0..=9999, checked above
    for (at, n) in [
        (0, (year / 100) as u8),
        (2, (year % 100) as u8),
        (5, u8::from(month)),
        (8, day),
        (11, hour),
        (14, minute),
        (17, second),
    ] {
        text[at] = b'0' + n / 10;
        text[at + 1] = b'0' + n % 10;
    }
    String::from_utf8(text.to_vec()).expect("ASCII digits and separators")
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

    #[test]
    fn item_is_the_record_serialised_with_unknown_fields_apart() {
        let push = CallRecord::parse(
            br#"{"id":"9","callId":1604763745256783872,"businessId":"","did":"","caller":null,
                "duration":"12","hangupCode":0,"hangup":7,"x":{"b":[1,2.5]},"answered":"spoofed"}"#,
        )
        .unwrap();
        let item = record_item(&push, datetime!(2024-01-01 0:00 UTC), &RecordingPlan::None);
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
    fn attributes_come_in_key_order() {
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
            let names: Vec<&str> = into_record_item(push.clone(), at, &plan).names().collect();
            assert!(names.is_sorted(), "{names:?}");
            assert_eq!(names.len(), count, "{names:?}");
        }
    }

    #[test]
    fn times_format_as_rfc3339_would() {
        let mut unix = -62_167_219_200; // 0000-01-01T00:00:00Z
        while unix < 253_402_300_799 {
            // 9999-12-31T23:59:59Z
            let t = OffsetDateTime::from_unix_timestamp(unix).unwrap();
            assert_eq!(format_time(t), t.format(&Rfc3339).unwrap(), "{unix}");
            unix += 9_876_543;
        }
        let t = datetime!(2024-02-29 23:59:59.999 UTC);
        assert_eq!(format_time(t), "2024-02-29T23:59:59Z");
        let t = datetime!(2024-02-29 23:59:59 +08:00);
        assert_eq!(format_time(t), "2024-02-29T23:59:59+08:00");
    }
}
