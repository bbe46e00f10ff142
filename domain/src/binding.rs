//! NXCLOUD's second PNS push, the binding error ("PNS API Error Webhook"): a caller dialled a
//! masked number (DID) that has no binding, and the call failed. Same transport and retry
//! rule as the call-result push; `requestId` is its idempotency key.
//!
//! ```json
//! {"code":10013,"msg":"binding not exist","requestId":"1640920940635361280",
//!  "data":{"action":"queryAXB","requestParams":{"caller":"852121199","did":"85299999999"},
//!          "occurrenceTime":"2023-03-29 11:36:53"}}
//! ```

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use time::format_description::BorrowedFormatItem;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime, UtcOffset};

use crate::cdr::{integer, kind, InvalidPush, PushObject, MAX_INDEXED_LEN};
use crate::item::{format_time, RecordItem};

/// The GSI of the binding-error table: the errors of one DID (`did`) by time (`occurredAt`).
pub const DID_INDEX: &str = "bindingErrorsByDid";

/// NXCLOUD's `occurrenceTime`: no time zone, no fraction.
const OCCURRENCE_TIME: &[BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");

/// One binding error as NXCLOUD pushes it. Field names are NXCLOUD's on the wire.
#[derive(Debug, Clone, PartialEq)]
pub struct BindingError {
    pub request_id: String,
    /// PNS result code: 10013 "binding not exist"; 10001–10012 other binding failures.
    pub code: i64,
    pub msg: Option<String>,
    /// `data.action`: the interface NXCLOUD was running (e.g. `queryAXB`).
    pub action: Option<String>,
    /// `data.requestParams.caller` (personal data).
    pub caller: Option<String>,
    /// `data.requestParams.did`: the masked number dialled.
    pub did: Option<String>,
    /// `data.occurrenceTime` exactly as sent (`YYYY-MM-DD hh:mm:ss`, no zone).
    pub occurrence_time: Option<String>,
    /// Fields this version does not know, kept: top-level under their names, those inside
    /// `data` as `data.<name>`, those inside `requestParams` as `data.requestParams.<name>`.
    pub extra: BTreeMap<String, Value>,
}

/// A parsed binding error and the digest that tells an exact retry from a conflicting one.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedBindingError {
    pub error: BindingError,
    pub payload_sha256: String,
}

impl BindingError {
    /// Parses a binding-error body: `requestId` (a string, or an integer kept as its digits)
    /// and `code` (an integer, or a string holding one) are required; `null` means absent.
    pub fn parse(body: &[u8]) -> Result<ParsedBindingError, InvalidPush> {
        Self::from_object(PushObject::read(body)?)
    }

    pub(crate) fn from_object(object: PushObject<'_>) -> Result<ParsedBindingError, InvalidPush> {
        // Into a map by name: the order the fields come in does not matter.
        let (fields, payload_sha256) = object.into_fields();
        let mut top: Map<String, Value> = fields.map(|(k, v)| (k.into_owned(), v)).collect();
        let request_id = identifier(&mut top, "requestId")?
            .filter(|id| !id.trim().is_empty())
            .ok_or_else(|| InvalidPush::field("requestId", "is required"))?;
        if request_id.len() > MAX_INDEXED_LEN {
            return Err(InvalidPush::field(
                "requestId",
                format!("is longer than {MAX_INDEXED_LEN} bytes"),
            ));
        }
        let code = match top.remove("code") {
            None | Some(Value::Null) => return Err(InvalidPush::field("code", "is required")),
            Some(v) => integer(&v).ok_or_else(|| {
                InvalidPush::field("code", format!("expected an integer, got {}", kind(&v)))
            })?,
        };
        let msg = string(&mut top, "msg", "msg")?;
        let mut data = object_field(&mut top, "data", "data")?;
        let action = string(&mut data, "action", "data.action")?;
        let occurrence_time = string(&mut data, "occurrenceTime", "data.occurrenceTime")?;
        let mut params = object_field(&mut data, "requestParams", "data.requestParams")?;
        let caller = identifier_at(&mut params, "caller", "data.requestParams.caller")?;
        let did = identifier_at(&mut params, "did", "data.requestParams.did")?;
        if did.as_ref().is_some_and(|d| d.len() > MAX_INDEXED_LEN) {
            return Err(InvalidPush::field(
                "data.requestParams.did",
                format!("is longer than {MAX_INDEXED_LEN} bytes"),
            ));
        }
        let mut extra: BTreeMap<String, Value> = top.into_iter().collect();
        extra.extend(data.into_iter().map(|(k, v)| (format!("data.{k}"), v)));
        extra.extend(
            params
                .into_iter()
                .map(|(k, v)| (format!("data.requestParams.{k}"), v)),
        );
        Ok(ParsedBindingError {
            error: Self {
                request_id,
                code,
                msg,
                action,
                caller,
                did,
                occurrence_time,
                extra,
            },
            payload_sha256,
        })
    }

    /// When the call failed, in UTC: `occurrenceTime` read in NXCLOUD's zone `offset`.
    /// `None` when NXCLOUD sent none, or not in its documented form.
    pub fn occurred_at(&self, offset: UtcOffset) -> Option<OffsetDateTime> {
        let sent = self.occurrence_time.as_deref()?.trim();
        let local = PrimitiveDateTime::parse(sent, OCCURRENCE_TIME).ok()?;
        Some(local.assume_offset(offset).to_offset(UtcOffset::UTC))
    }
}

/// The item stored for a binding error: NXCLOUD's fields flattened to readable attributes,
/// the time as sent and in UTC, unknown fields apart.
pub fn binding_error_item(
    parsed: ParsedBindingError,
    received_at: OffsetDateTime,
    offset: UtcOffset,
) -> RecordItem {
    let ParsedBindingError {
        error: e,
        payload_sha256,
    } = parsed;
    // Dated by NXCLOUD's time when it can be read, else by arrival: the DID index's range
    // key must always be there for the error to be listable by day.
    let (occurred_at, source) = match e.occurred_at(offset) {
        Some(t) => (t, "occurrenceTime"),
        None => (received_at, "receivedAt"),
    };
    let string = |v: Option<String>| v.map(Value::from);
    let extra = (!e.extra.is_empty()).then(|| Value::Object(e.extra.into_iter().collect()));
    let mut item = RecordItem::default();
    let attributes: [(&'static str, Option<Value>); 13] = [
        ("action", string(e.action)),
        ("caller", string(e.caller)),
        ("code", Some(e.code.into())),
        // An empty DID cannot be an index key: stored as absent.
        ("did", e.did.filter(|d| !d.is_empty()).map(Value::from)),
        ("extraFields", extra),
        ("msg", string(e.msg)),
        ("occurrenceTime", string(e.occurrence_time)),
        ("occurredAt", Some(format_time(occurred_at).into())),
        ("occurredAtSource", Some(source.into())),
        ("payloadSha256", Some(payload_sha256.into())),
        ("receivedAt", Some(format_time(received_at).into())),
        ("receivedAtEpoch", Some(received_at.unix_timestamp().into())),
        ("requestId", Some(e.request_id.into())),
    ];
    for (name, value) in attributes {
        if let Some(value) = value {
            item.insert(name, value);
        }
    }
    item
}

/// NXCLOUD's zone for `occurrenceTime`, written `+08:00` (a fixed offset: no daylight saving).
pub fn parse_utc_offset(text: &str) -> Option<UtcOffset> {
    let format = format_description!("[offset_hour sign:mandatory]:[offset_minute]");
    UtcOffset::parse(text.trim(), format).ok()
}

/// An identifier: a string, or an integer kept with its exact digits.
fn identifier(map: &mut Map<String, Value>, name: &str) -> Result<Option<String>, InvalidPush> {
    identifier_at(map, name, name)
}

fn identifier_at(
    map: &mut Map<String, Value>,
    name: &str,
    path: &str,
) -> Result<Option<String>, InvalidPush> {
    match map.remove(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => Ok(Some(n.to_string())),
        Some(other) => Err(InvalidPush::field(
            path,
            format!("expected a string, got {}", kind(&other)),
        )),
    }
}

fn string(
    map: &mut Map<String, Value>,
    name: &str,
    path: &str,
) -> Result<Option<String>, InvalidPush> {
    match map.remove(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(InvalidPush::field(
            path,
            format!("expected a string, got {}", kind(&other)),
        )),
    }
}

/// A nested object, taken out of `map`; absent or `null` is an empty one.
fn object_field(
    map: &mut Map<String, Value>,
    name: &str,
    path: &str,
) -> Result<Map<String, Value>, InvalidPush> {
    match map.remove(name) {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(o)) => Ok(o),
        Some(other) => Err(InvalidPush::field(
            path,
            format!("expected an object, got {}", kind(&other)),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::{datetime, offset};

    const EXAMPLE: &str = include_str!("../../events/bodies/binding-error.json");

    #[test]
    fn the_documented_example_parses_and_dates_in_nxclouds_zone() {
        let parsed = BindingError::parse(EXAMPLE.as_bytes()).unwrap();
        let e = &parsed.error;
        assert_eq!(e.request_id, "1640920940635361280");
        assert_eq!(e.code, 10013);
        assert_eq!(e.msg.as_deref(), Some("binding not exist"));
        assert_eq!(e.action.as_deref(), Some("queryAXB"));
        assert_eq!(e.caller.as_deref(), Some("852121199"));
        assert_eq!(e.did.as_deref(), Some("85299999999"));
        assert_eq!(e.occurrence_time.as_deref(), Some("2023-03-29 11:36:53"));
        assert!(e.extra.is_empty());
        assert_eq!(
            e.occurred_at(offset!(+8)),
            Some(datetime!(2023-03-29 03:36:53 UTC))
        );
        assert_eq!(parse_utc_offset("+08:00"), Some(offset!(+8)));
        assert_eq!(parse_utc_offset("-03:30"), Some(offset!(-3:30)));
        assert_eq!(parse_utc_offset("Asia/Hong_Kong"), None);
    }

    #[test]
    fn the_item_is_readable_and_listable_by_did_and_day() {
        let parsed = BindingError::parse(EXAMPLE.as_bytes()).unwrap();
        let sha = parsed.payload_sha256.clone();
        let item = binding_error_item(parsed, datetime!(2023-03-29 03:37:00 UTC), offset!(+8));
        assert_eq!(item["requestId"], "1640920940635361280");
        assert_eq!(item["code"], 10013);
        assert_eq!(item["msg"], "binding not exist");
        assert_eq!(item["action"], "queryAXB");
        assert_eq!(item["did"], "85299999999");
        assert_eq!(item["occurrenceTime"], "2023-03-29 11:36:53");
        assert_eq!(item["occurredAt"], "2023-03-29T03:36:53Z");
        assert_eq!(item["occurredAtSource"], "occurrenceTime");
        assert_eq!(item["receivedAt"], "2023-03-29T03:37:00Z");
        assert_eq!(item["payloadSha256"], sha.as_str());
        assert!(!item.contains_key("extraFields"));
    }

    #[test]
    fn variations_are_accepted_and_unknown_fields_kept() {
        let body = br#"{"code":"10001","requestId":1640920940635361281,"extra":1,
            "data":{"action":"queryAXB","occurrenceTime":"sometime","new":true,
                    "requestParams":{"did":"","caller":85255501234,"x":[1]}}}"#;
        let parsed = BindingError::parse(body).unwrap();
        let e = &parsed.error;
        assert_eq!(e.code, 10001);
        assert_eq!(e.request_id, "1640920940635361281");
        assert_eq!(e.caller.as_deref(), Some("85255501234"));
        assert_eq!(e.occurred_at(offset!(+8)), None);
        let keys: Vec<&str> = e.extra.keys().map(String::as_str).collect();
        assert_eq!(keys, ["data.new", "data.requestParams.x", "extra"]);
        let item = binding_error_item(parsed, datetime!(2024-01-01 0:00 UTC), offset!(+8));
        assert!(!item.contains_key("did"), "an empty DID is no index key");
        assert_eq!(item["occurredAt"], "2024-01-01T00:00:00Z");
        assert_eq!(item["occurredAtSource"], "receivedAt");
        assert_eq!(item["extraFields"]["data.requestParams.x"][0], 1);
    }

    #[test]
    fn invalid_bodies_name_the_field() {
        for (body, field) in [
            (&br#"{"code":10013}"#[..], "requestId"),
            (br#"{"requestId":"","code":1}"#, "requestId"),
            (br#"{"requestId":"r"}"#, "code"),
            (br#"{"requestId":"r","code":1.5}"#, "code"),
            (br#"{"requestId":"r","code":1,"data":[]}"#, "data"),
            (
                br#"{"requestId":"r","code":1,"data":{"requestParams":{"did":{}}}}"#,
                "data.requestParams.did",
            ),
            (br#"{"requestId":"r","code":1,"msg":7}"#, "msg"),
        ] {
            let e = BindingError::parse(body).unwrap_err();
            assert_eq!(
                e.field.as_deref(),
                Some(field),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
