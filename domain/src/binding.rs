//! NXCLOUD's second PNS push, the binding error ("PNS API Error Webhook"): a caller dialled a
//! masked number (DID) that has no binding, and the call failed. Same transport and retry
//! rule as the call-result push; `requestId` is its idempotency key.
//!
//! ```json
//! {"code":10013,"msg":"binding not exist","requestId":"1640920940635361280",
//!  "data":{"action":"queryAXB","requestParams":{"caller":"852121199","did":"85299999999"},
//!          "occurrenceTime":"2023-03-29 11:36:53"}}
//! ```

use serde::Deserialize;
use serde_json::{Map, Value};
use time::format_description::BorrowedFormatItem;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime, UtcOffset};

use crate::item::{format_time, RecordItem};
use crate::push::{check_object, field, from_object, read_object, InvalidPush, PushObject};

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
    /// Fields this version does not know, kept where the body has them: top-level ones under
    /// their names, those inside `data` under `data`, those inside `requestParams` under
    /// `data.requestParams`. Nested, so no pushed name can stand for another.
    pub extra: Map<String, Value>,
}

/// The body as NXCLOUD nests it; `BindingError` is its flat, checked form.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Wire {
    #[serde(default, deserialize_with = "field::identifier")]
    request_id: Option<String>,
    #[serde(default, deserialize_with = "field::integer")]
    code: Option<i64>,
    #[serde(default, deserialize_with = "field::string")]
    msg: Option<String>,
    #[serde(default)]
    data: Option<Data>,
    #[serde(flatten)]
    extra: Map<String, Value>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Data {
    #[serde(default, deserialize_with = "field::string")]
    action: Option<String>,
    #[serde(default, deserialize_with = "field::string")]
    occurrence_time: Option<String>,
    #[serde(default)]
    request_params: Option<Params>,
    #[serde(flatten)]
    extra: Map<String, Value>,
}

#[derive(Deserialize, Default)]
struct Params {
    #[serde(default, deserialize_with = "field::identifier")]
    caller: Option<String>,
    #[serde(default, deserialize_with = "field::identifier")]
    did: Option<String>,
    #[serde(flatten)]
    extra: Map<String, Value>,
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
        Self::from_object(read_object(body)?)
    }

    pub(crate) fn from_object(object: PushObject) -> Result<ParsedBindingError, InvalidPush> {
        let PushObject {
            fields,
            payload_sha256,
        } = object;
        let data = fields.get("data");
        check_object("data", data)?;
        check_object(
            "data.requestParams",
            data.and_then(|d| d.get("requestParams")),
        )?;
        let wire: Wire = from_object(fields)?;
        let request_id = (wire.request_id)
            .filter(|id| !id.trim().is_empty())
            .ok_or(InvalidPush::Missing { field: "requestId" })?;
        InvalidPush::check_indexed("requestId", Some(&request_id))?;
        let code = wire.code.ok_or(InvalidPush::Missing { field: "code" })?;
        let data = wire.data.unwrap_or_default();
        let params = data.request_params.unwrap_or_default();
        InvalidPush::check_indexed("data.requestParams.did", params.did.as_deref())?;
        // `data` and `requestParams` are declared names, never unknown fields themselves, so
        // the nested unknown fields have those names to themselves.
        let mut extra = wire.extra;
        let mut data_extra = data.extra;
        if !params.extra.is_empty() {
            data_extra.insert("requestParams".into(), params.extra.into());
        }
        if !data_extra.is_empty() {
            extra.insert("data".into(), data_extra.into());
        }
        Ok(ParsedBindingError {
            error: Self {
                request_id,
                code,
                msg: wire.msg,
                action: data.action,
                caller: params.caller,
                did: params.did,
                occurrence_time: data.occurrence_time,
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
    let extra = (!e.extra.is_empty()).then_some(Value::Object(e.extra));
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
        assert_eq!(
            Value::Object(e.extra.clone()),
            serde_json::json!({"extra": 1, "data": {"new": true, "requestParams": {"x": [1]}}})
        );
        let item = binding_error_item(parsed, datetime!(2024-01-01 0:00 UTC), offset!(+8));
        assert!(!item.contains_key("did"), "an empty DID is no index key");
        assert_eq!(item["occurredAt"], "2024-01-01T00:00:00Z");
        assert_eq!(item["occurredAtSource"], "receivedAt");
        assert_eq!(item["extraFields"]["data"]["requestParams"]["x"][0], 1);
    }

    #[test]
    fn a_top_level_name_with_a_dot_stands_only_for_itself() {
        let body = br#"{"requestId":"r","code":1,"data.x":"top","data":{"x":"nested"}}"#;
        let e = BindingError::parse(body).unwrap().error;
        assert_eq!(e.extra["data.x"], "top");
        assert_eq!(e.extra["data"]["x"], "nested");
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
            assert_eq!(e.field(), Some(field), "{}", String::from_utf8_lossy(body));
        }
    }
}
