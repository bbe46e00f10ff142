//! What downstream systems hear: each change of a stored item becomes zero or more events.
//!
//! The tables' streams carry every change with its old and new image; a change that is a
//! state transition consumers care about becomes an event, the others (attempt counters,
//! checksum notes, TTL deletions) become nothing. Each event's id is derived from the item's
//! key and the transition, so a stream batch delivered twice publishes the same ids again and
//! a consumer that dedupes on `eventId` sees each transition once.
//!
//! The detail of each type is versioned (`version`) and described by a JSON Schema in
//! `schemas/events/`; a change to a detail's shape is a new version there.

use std::fmt;
use std::str::FromStr;

use serde_json::{Map, Value};

use crate::canary::{is_canary_id, is_canary_request_id, CANARY_SOURCE};
use crate::numbers::{NumberKeys, CALL_NUMBER_FIELDS};
use crate::recording::RecordingStatus;

/// The `source` of every event.
pub const SOURCE: &str = "pns-cdr";

/// The detail version this code publishes (`version` in every detail).
pub const DETAIL_VERSION: u32 = 2;

/// The events, by EventBridge `detail-type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DetailType {
    /// A call record was stored for the first time.
    CallRecorded,
    /// Its recording is in the bucket, verified.
    RecordingArchived,
    /// Its recording will not be archived: refused at intake, or given up by the archiver.
    RecordingFailed,
    /// A binding-error push: someone dialled a masked number that had no binding.
    UnboundCall,
}

impl DetailType {
    pub const ALL: [Self; 4] = [
        Self::CallRecorded,
        Self::RecordingArchived,
        Self::RecordingFailed,
        Self::UnboundCall,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::CallRecorded => "CallRecorded",
            Self::RecordingArchived => "RecordingArchived",
            Self::RecordingFailed => "RecordingFailed",
            Self::UnboundCall => "UnboundCall",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

impl fmt::Display for DetailType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How callers' and callees' numbers appear in events. The DID is the business's own masked
/// number, the key of the per-number analyses, and is always published in full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PhoneNumbers {
    /// All but the last four digits replaced by `*` (`*******7583`).
    #[default]
    Masked,
    Full,
    /// Left out of the detail.
    Omitted,
}

impl PhoneNumbers {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Masked => "masked",
            Self::Full => "full",
            Self::Omitted => "omitted",
        }
    }

    /// The number as this setting publishes it; `None`: left out.
    pub fn apply(self, number: &str) -> Option<String> {
        match self {
            Self::Full => Some(number.to_owned()),
            Self::Omitted => None,
            Self::Masked => Some(mask(number)),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("phone numbers setting {0:?}: expected masked, full or omitted")]
pub struct InvalidPhoneNumbers(pub String);

impl FromStr for PhoneNumbers {
    type Err = InvalidPhoneNumbers;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "masked" => Ok(Self::Masked),
            "full" => Ok(Self::Full),
            "omitted" => Ok(Self::Omitted),
            other => Err(InvalidPhoneNumbers(other.to_owned())),
        }
    }
}

/// Adds each party's keyed hash (`callerHash`, `calleeHash`: HMAC-SHA256 of the digits, hex)
/// to the events that name the parties, whatever `PhoneNumbers` says: analyses group and join
/// by number, and an erasure finds the lake's rows, without the number.
pub fn add_number_hashes(events: &mut [Event], image: &Map<String, Value>, keys: &NumberKeys) {
    for event in events {
        if !matches!(
            event.detail_type,
            DetailType::CallRecorded | DetailType::UnboundCall
        ) {
            continue;
        }
        for field in CALL_NUMBER_FIELDS {
            if let Some(hash) = text(image, field).and_then(|n| keys.hash(n)) {
                event.detail.insert(format!("{field}Hash"), hash.into());
            }
        }
    }
}

/// Every character but the last four becomes `*`: the length and the line's tail stay, which
/// is what support staff match a caller by.
fn mask(number: &str) -> String {
    let count = number.chars().count();
    number
        .chars()
        .enumerate()
        .map(|(i, c)| if i + 4 < count { '*' } else { c })
        .collect()
}

/// One event to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// [`SOURCE`], or [`CANARY_SOURCE`] for a canary's events, which the lake and consumers'
    /// rules do not match.
    pub source: &'static str,
    pub detail_type: DetailType,
    /// Also `detail.eventId`: what consumers dedupe on.
    pub id: String,
    /// When the transition happened (RFC 3339 UTC): the event's `time`.
    pub time: String,
    pub detail: Map<String, Value>,
}

impl Event {
    /// The bytes this event counts for in a `PutEvents` request, as EventBridge reckons an
    /// entry: its source, detail type and detail in UTF-8, and 14 for its time.
    pub fn entry_bytes(&self) -> usize {
        let detail = serde_json::to_vec(&self.detail).expect("a JSON map serialises");
        self.source.len() + self.detail_type.as_str().len() + detail.len() + 14
    }
}

/// What happened to an item, as DynamoDB Streams names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Insert,
    Modify,
    Remove,
}

impl Change {
    /// A stream record's `eventName`.
    pub fn parse(event_name: &str) -> Option<Self> {
        match event_name {
            "INSERT" => Some(Self::Insert),
            "MODIFY" => Some(Self::Modify),
            "REMOVE" => Some(Self::Remove),
            _ => None,
        }
    }
}

/// An item change that cannot become events: the stream record is not one of ours.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnreadableChange {
    #[error("the change has no new image (the stream must carry NEW_AND_OLD_IMAGES)")]
    NoNewImage,
    #[error("the item has neither a numeric id nor a requestId")]
    UnknownItem,
}

/// The events one change of a call record or binding-error item makes.
pub fn events_for_change(
    change: Change,
    old: Option<&Map<String, Value>>,
    new: Option<&Map<String, Value>>,
    phones: PhoneNumbers,
) -> Result<Vec<Event>, UnreadableChange> {
    if change == Change::Remove {
        // TTL expiry or an operator's delete: nothing happened to the call.
        return Ok(Vec::new());
    }
    let new = new.ok_or(UnreadableChange::NoNewImage)?;
    if let Some(request_id) = new.get("requestId").and_then(Value::as_str) {
        return Ok(match change {
            Change::Insert => vec![unbound_call(request_id, new, phones)],
            _ => Vec::new(),
        });
    }
    let id = new
        .get("id")
        .and_then(Value::as_i64)
        .ok_or(UnreadableChange::UnknownItem)?;
    let status = |image: &Map<String, Value>| {
        image
            .get("recordingStatus")
            .and_then(Value::as_str)
            .and_then(RecordingStatus::parse)
    };
    let mut events = Vec::new();
    match change {
        Change::Insert => {
            events.push(call_recorded(id, new, phones));
            // A URL refused at intake: the record is born FAILED.
            if status(new) == Some(RecordingStatus::Failed) {
                events.push(recording_failed(id, new, "intake"));
            }
        }
        Change::Modify => {
            let before = old.and_then(status);
            match status(new) {
                Some(after) if Some(after) == before => {}
                Some(RecordingStatus::Archived) => events.push(recording_archived(id, new)),
                Some(RecordingStatus::Failed) => events.push(recording_failed(id, new, "archiver")),
                _ => {}
            }
        }
        Change::Remove => unreachable!("handled above"),
    }
    Ok(events)
}

/// The events that describe an item's current state, as its changes made them: `CallRecorded`
/// and its recording's outcome. Same ids as the stream's events, so re-publishing a record
/// (`pnsctl publish`) is a no-op for consumers that dedupe.
pub fn events_for_item(
    item: &Map<String, Value>,
    phones: PhoneNumbers,
) -> Result<Vec<Event>, UnreadableChange> {
    let mut events = events_for_change(Change::Insert, None, Some(item), phones)?;
    let concluded = item.contains_key("archivedAt") || item.contains_key("failedAt");
    if !item.contains_key("requestId") && concluded {
        // Whatever the archiver concluded, as the MODIFY that concluded it published it.
        let pending = Map::from_iter([("recordingStatus".to_owned(), "PENDING".into())]);
        events.extend(events_for_change(
            Change::Modify,
            Some(&pending),
            Some(item),
            phones,
        )?);
    }
    Ok(events)
}

fn text<'a>(image: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    image.get(name).and_then(Value::as_str)
}

/// Copies the named attributes that are present.
fn copy(detail: &mut Map<String, Value>, image: &Map<String, Value>, names: &[&str]) {
    for name in names {
        if let Some(value) = image.get(*name) {
            detail.insert((*name).to_owned(), value.clone());
        }
    }
}

fn phone(
    detail: &mut Map<String, Value>,
    image: &Map<String, Value>,
    name: &str,
    phones: PhoneNumbers,
) {
    if let Some(number) = text(image, name).and_then(|n| phones.apply(n)) {
        detail.insert(name.to_owned(), number.into());
    }
}

fn event(detail_type: DetailType, id: String, time: &str, mut detail: Map<String, Value>) -> Event {
    detail.insert("eventId".into(), id.clone().into());
    detail.insert("version".into(), DETAIL_VERSION.into());
    let canary = detail
        .get("id")
        .and_then(Value::as_i64)
        .is_some_and(is_canary_id)
        || (detail.get("requestId").and_then(Value::as_str)).is_some_and(is_canary_request_id);
    Event {
        source: if canary { CANARY_SOURCE } else { SOURCE },
        detail_type,
        id,
        time: time.to_owned(),
        detail,
    }
}

/// The call's identity, repeated in every record event so consumers need no lookup.
const CALL_KEYS: &[&str] = &["id", "callId", "businessId", "did", "startAt"];

fn call_recorded(id: i64, item: &Map<String, Value>, phones: PhoneNumbers) -> Event {
    let mut detail = Map::new();
    copy(&mut detail, item, CALL_KEYS);
    copy(
        &mut detail,
        item,
        &[
            "customerBindId",
            "bindId",
            "callStatus",
            "callStatusText",
            "callStatusMsg",
            "answered",
            "duration",
            "answerAt",
            "hangupAt",
            "startTime",
            "answerTime",
            "hangupTime",
            "hangupCause",
            "hangupCode",
            "hangupBy",
            "recordingStatus",
            "receivedAt",
        ],
    );
    phone(&mut detail, item, "caller", phones);
    phone(&mut detail, item, "callee", phones);
    let time = text(item, "receivedAt").unwrap_or_default();
    event(
        DetailType::CallRecorded,
        format!("{}:{id}", DetailType::CallRecorded),
        time,
        detail,
    )
}

fn recording_archived(id: i64, item: &Map<String, Value>) -> Event {
    let mut detail = Map::new();
    copy(&mut detail, item, CALL_KEYS);
    copy(
        &mut detail,
        item,
        &[
            "recordingKey",
            "recordingBytes",
            "recordingSha256",
            "recordingContentType",
            "archivedAt",
        ],
    );
    let at = text(item, "archivedAt").unwrap_or_default();
    // Archived again after `pnsctl rearchive`: a new transition, a new id.
    event(
        DetailType::RecordingArchived,
        format!("{}:{id}:{at}", DetailType::RecordingArchived),
        at,
        detail,
    )
}

fn recording_failed(id: i64, item: &Map<String, Value>, stage: &str) -> Event {
    let mut detail = Map::new();
    copy(&mut detail, item, CALL_KEYS);
    copy(&mut detail, item, &["recordingError"]);
    // Refused at intake: failed when it arrived.
    let at = text(item, "failedAt")
        .filter(|_| stage == "archiver")
        .or_else(|| text(item, "receivedAt"))
        .unwrap_or_default();
    detail.insert("failedAt".into(), at.into());
    detail.insert("stage".into(), stage.into());
    event(
        DetailType::RecordingFailed,
        format!("{}:{id}:{at}", DetailType::RecordingFailed),
        at,
        detail,
    )
}

fn unbound_call(request_id: &str, item: &Map<String, Value>, phones: PhoneNumbers) -> Event {
    let mut detail = Map::new();
    copy(
        &mut detail,
        item,
        &[
            "requestId",
            "code",
            "msg",
            "action",
            "did",
            "occurredAt",
            "occurrenceTime",
            "receivedAt",
        ],
    );
    phone(&mut detail, item, "caller", phones);
    let time = text(item, "occurredAt").unwrap_or_default();
    event(
        DetailType::UnboundCall,
        format!("{}:{request_id}", DetailType::UnboundCall),
        time,
        detail,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn record(status: &str) -> Map<String, Value> {
        map(json!({
            "id": 45, "callId": "1604763745256783872", "businessId": "test_busi",
            "did": "85235757584", "caller": "85235757583", "callee": "85238533300",
            "startAt": 1671440452, "answered": true, "duration": 6,
            "hangupCause": "NORMAL_CLEARING", "recordingStatus": status,
            "receivedAt": "2022-12-19T09:01:02Z", "payloadSha256": "ab",
            "extraFields": {"extensionCaller": "85200000000"},
            "recordFile": "https://remote.record.nxcloud.com/pns/a.mp3?sig=secret",
        }))
    }

    fn types(events: &[Event]) -> Vec<DetailType> {
        events.iter().map(|e| e.detail_type).collect()
    }

    #[test]
    fn a_new_record_is_recorded_and_a_refused_url_fails_at_intake() {
        let new = record("PENDING");
        let events = events_for_change(Change::Insert, None, Some(&new), PhoneNumbers::Full);
        let events = events.unwrap();
        assert_eq!(types(&events), [DetailType::CallRecorded]);
        let e = &events[0];
        assert_eq!(e.id, "CallRecorded:45");
        assert_eq!(e.detail["eventId"], "CallRecorded:45");
        assert_eq!(e.detail["version"], 2);
        assert_eq!(e.detail["caller"], "85235757583");
        assert_eq!(e.time, "2022-12-19T09:01:02Z");
        // Neither the URL (it carries a signature) nor unknown fields (they may hold
        // numbers) nor storage internals reach consumers.
        for absent in ["recordFile", "extraFields", "payloadSha256"] {
            assert!(!e.detail.contains_key(absent), "{absent}");
        }

        let mut refused = record("FAILED");
        refused.insert("recordingError".into(), "scheme http is not allowed".into());
        let events =
            events_for_change(Change::Insert, None, Some(&refused), PhoneNumbers::Full).unwrap();
        assert_eq!(
            types(&events),
            [DetailType::CallRecorded, DetailType::RecordingFailed]
        );
        assert_eq!(events[1].detail["stage"], "intake");
        assert_eq!(events[1].detail["failedAt"], "2022-12-19T09:01:02Z");
        assert_eq!(
            events[1].detail["recordingError"],
            "scheme http is not allowed"
        );
    }

    #[test]
    fn only_status_transitions_make_events_and_their_ids_name_the_transition() {
        let pending = record("PENDING");
        let mut retried = record("PENDING");
        retried.insert("recordingAttempts".into(), 2.into());
        assert!(events_for_change(
            Change::Modify,
            Some(&pending),
            Some(&retried),
            PhoneNumbers::Masked
        )
        .unwrap()
        .is_empty());

        let mut archived = record("ARCHIVED");
        archived.insert("archivedAt".into(), "2022-12-19T09:02:00Z".into());
        archived.insert("recordingKey".into(), "recordings/2022/12/19/45.mp3".into());
        archived.insert("recordingBytes".into(), 1024.into());
        let events = events_for_change(
            Change::Modify,
            Some(&pending),
            Some(&archived),
            PhoneNumbers::Masked,
        )
        .unwrap();
        assert_eq!(types(&events), [DetailType::RecordingArchived]);
        assert_eq!(events[0].id, "RecordingArchived:45:2022-12-19T09:02:00Z");
        assert_eq!(events[0].detail["recordingBytes"], 1024);
        // A later change of an archived record (a checksum note) is no transition.
        assert!(events_for_change(
            Change::Modify,
            Some(&archived),
            Some(&archived),
            PhoneNumbers::Masked
        )
        .unwrap()
        .is_empty());

        let mut failed = record("FAILED");
        failed.insert("failedAt".into(), "2022-12-19T10:00:00Z".into());
        failed.insert("recordingError".into(), "HTTP 404".into());
        let events = events_for_change(
            Change::Modify,
            Some(&pending),
            Some(&failed),
            PhoneNumbers::Masked,
        )
        .unwrap();
        assert_eq!(events[0].id, "RecordingFailed:45:2022-12-19T10:00:00Z");
        assert_eq!(events[0].detail["stage"], "archiver");

        // TTL deletions and re-queues by an operator tell consumers nothing.
        assert!(
            events_for_change(Change::Remove, Some(&archived), None, PhoneNumbers::Full)
                .unwrap()
                .is_empty()
        );
        assert!(events_for_change(
            Change::Modify,
            Some(&failed),
            Some(&pending),
            PhoneNumbers::Full
        )
        .unwrap()
        .is_empty());
    }

    #[test]
    fn phone_numbers_follow_the_setting_and_the_did_stays() {
        let new = record("NONE");
        let detail = |phones| {
            events_for_change(Change::Insert, None, Some(&new), phones).unwrap()[0]
                .detail
                .clone()
        };
        let masked = detail(PhoneNumbers::Masked);
        assert_eq!(masked["caller"], "*******7583");
        assert_eq!(masked["callee"], "*******3300");
        assert_eq!(masked["did"], "85235757584");
        let omitted = detail(PhoneNumbers::Omitted);
        assert!(!omitted.contains_key("caller") && !omitted.contains_key("callee"));
        assert_eq!(omitted["did"], "85235757584");
        assert_eq!(mask("123"), "123");
        assert_eq!(mask("+85212345678"), "********5678");
        assert_eq!("omitted".parse(), Ok(PhoneNumbers::Omitted));
        assert!("hidden".parse::<PhoneNumbers>().is_err());
    }

    #[test]
    fn a_binding_error_is_an_unbound_call_once() {
        let item = map(json!({
            "requestId": "1640920940635361280", "code": 10013, "msg": "binding not exist",
            "action": "queryAXB", "caller": "852121199", "did": "85299999999",
            "occurrenceTime": "2023-03-29 11:36:53", "occurredAt": "2023-03-29T03:36:53Z",
            "occurredAtSource": "occurrenceTime", "receivedAt": "2023-03-29T03:37:00Z",
            "receivedAtEpoch": 1680061020,
        }));
        let events =
            events_for_change(Change::Insert, None, Some(&item), PhoneNumbers::Masked).unwrap();
        assert_eq!(types(&events), [DetailType::UnboundCall]);
        assert_eq!(events[0].id, "UnboundCall:1640920940635361280");
        assert_eq!(events[0].detail["caller"], "*****1199");
        assert_eq!(events[0].time, "2023-03-29T03:36:53Z");
        assert!(
            events_for_change(Change::Modify, Some(&item), Some(&item), PhoneNumbers::Full)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn an_item_republished_has_the_ids_its_changes_had() {
        let pending = record("PENDING");
        let mut archived = record("ARCHIVED");
        archived.insert("archivedAt".into(), "2022-12-19T09:02:00Z".into());
        let mut from_stream =
            events_for_change(Change::Insert, None, Some(&pending), PhoneNumbers::Masked).unwrap();
        from_stream.extend(
            events_for_change(
                Change::Modify,
                Some(&pending),
                Some(&archived),
                PhoneNumbers::Masked,
            )
            .unwrap(),
        );
        let again = events_for_item(&archived, PhoneNumbers::Masked).unwrap();
        let ids = |events: &[Event]| events.iter().map(|e| e.id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&again), ids(&from_stream));
    }

    #[test]
    fn changes_that_are_not_ours_are_refused() {
        let stranger = map(json!({"pk": "x"}));
        assert_eq!(
            events_for_change(Change::Insert, None, Some(&stranger), PhoneNumbers::Full),
            Err(UnreadableChange::UnknownItem)
        );
        assert_eq!(
            events_for_change(Change::Insert, None, None, PhoneNumbers::Full),
            Err(UnreadableChange::NoNewImage)
        );
    }

    #[test]
    fn a_canarys_events_have_their_own_source() {
        let item = |id: i64| {
            serde_json::json!({"id": id, "recordingStatus": "NONE", "receivedAt": "2026-12-03T00:00:00Z"})
                .as_object()
                .cloned()
                .unwrap()
        };
        let canary = crate::canary::canary_id(1);
        let events = events_for_item(&item(canary), PhoneNumbers::Masked).unwrap();
        assert_eq!(events[0].source, CANARY_SOURCE);
        let events = events_for_item(&item(45), PhoneNumbers::Masked).unwrap();
        assert_eq!(events[0].source, SOURCE);
        let binding = serde_json::json!({"requestId": "pns-cdr-canary-1", "code": 10013,
            "occurredAt": "2026-12-03T00:00:00Z"});
        let events = events_for_item(binding.as_object().unwrap(), PhoneNumbers::Masked).unwrap();
        assert_eq!(events[0].source, CANARY_SOURCE);
    }
}
