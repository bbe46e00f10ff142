//! A push body as the webhook receives it: read as one JSON object, judged as one of the two
//! PNS pushes, or refused with the reason and the field to blame.
//!
//! Customers may give NXCLOUD one URL for both pushes, so the body's shape decides: an `id`
//! makes a call record, a `requestId` without one a binding error. A body with neither is
//! judged as the push its route expects.

use serde::de::{self, Deserialize, DeserializeOwned, Deserializer};
use serde_json::{Map, Value};

use crate::binding::{BindingError, ParsedBindingError};
use crate::canonical::payload_sha256;
use crate::cdr::{CallRecord, ParsedCallRecord};

/// Longest identifier accepted where it becomes a table or index key (DynamoDB caps an index
/// key at 2048 bytes: a longer one could never be stored, so it is refused and kept).
pub const MAX_INDEXED_LEN: usize = 1024;

/// Why a body is not a push the receiver can store. Messages never quote the body's values:
/// they reach the log and the answer, and values may be phone numbers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidPush {
    #[error("body is not valid JSON: {0}")]
    NotJson(String),
    #[error("body is not a JSON object")]
    NotAnObject,
    #[error("body is {size} bytes; the limit is {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error("field `{field}`: is required")]
    Missing { field: &'static str },
    #[error("field `{field}`: expected {expected}, got {got}")]
    WrongType {
        field: String,
        expected: &'static str,
        got: &'static str,
    },
    #[error("field `{field}`: must be a positive integer")]
    NotPositive { field: &'static str },
    #[error("field `{field}`: is longer than {limit} bytes")]
    TooLong { field: &'static str, limit: usize },
    /// Valid to the contract, refused by the table (and so on every retry).
    #[error("the table refused the {push}: {reason}")]
    Unstorable { push: &'static str, reason: String },
}

impl InvalidPush {
    /// The field to blame, when one is.
    pub fn field(&self) -> Option<&str> {
        match self {
            Self::Missing { field } | Self::NotPositive { field } | Self::TooLong { field, .. } => {
                Some(field)
            }
            Self::WrongType { field, .. } => Some(field),
            Self::NotJson(_)
            | Self::NotAnObject
            | Self::TooLarge { .. }
            | Self::Unstorable { .. } => None,
        }
    }

    /// Refuses `value` of `field` when it is longer than [`MAX_INDEXED_LEN`].
    pub(crate) fn check_indexed(field: &'static str, value: Option<&str>) -> Result<(), Self> {
        match value {
            Some(v) if v.len() > MAX_INDEXED_LEN => Err(Self::TooLong {
                field,
                limit: MAX_INDEXED_LEN,
            }),
            _ => Ok(()),
        }
    }
}

/// The two PNS pushes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushKind {
    CallRecord,
    BindingError,
}

impl PushKind {
    /// The push's name in quarantine metadata and docs.
    pub fn name(self) -> &'static str {
        match self {
            Self::CallRecord => "call-result",
            Self::BindingError => "binding-error",
        }
    }
}

/// A parsed push of either kind.
// One per push, for a moment: boxing the larger variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Push {
    CallRecord(ParsedCallRecord),
    BindingError(ParsedBindingError),
}

/// Parses `body` as the push its shape says, else as `expected`. The error names the kind
/// the body was judged as.
pub fn parse(body: &[u8], expected: PushKind) -> Result<Push, (PushKind, InvalidPush)> {
    let object = read_object(body).map_err(|e| (expected, e))?;
    let kind = if object.fields.contains_key("id") {
        PushKind::CallRecord
    } else if object.fields.contains_key("requestId") {
        PushKind::BindingError
    } else {
        expected
    };
    match kind {
        PushKind::CallRecord => CallRecord::from_object(object).map(Push::CallRecord),
        PushKind::BindingError => BindingError::from_object(object).map(Push::BindingError),
    }
    .map_err(|e| (kind, e))
}

/// A push body read as a JSON object, and the digest of its canonical form.
pub(crate) struct PushObject {
    /// The fields: of a repeated key the last wins, as in any JSON map.
    pub(crate) fields: Map<String, Value>,
    pub(crate) payload_sha256: String,
}

/// Reads a body that must be a JSON object.
pub(crate) fn read_object(body: &[u8]) -> Result<PushObject, InvalidPush> {
    let not_json = |e: serde_json::Error| InvalidPush::NotJson(e.to_string());
    let fields = match serde_json::from_slice(body).map_err(not_json)? {
        Value::Object(fields) => fields,
        _ => return Err(InvalidPush::NotAnObject),
    };
    Ok(PushObject {
        fields,
        payload_sha256: payload_sha256(body).map_err(not_json)?,
    })
}

/// Deserialises `T` from a pushed object, naming the field that does not fit. The field
/// helpers below word the errors; serde's own wording would quote the value, so any other
/// error is reported without it.
pub(crate) fn from_object<T: DeserializeOwned>(
    object: Map<String, Value>,
) -> Result<T, InvalidPush> {
    serde_path_to_error::deserialize(Value::Object(object)).map_err(|e| {
        let (expected, got) = wrong_type(&e.inner().to_string())
            .unwrap_or(("another type", "a value this field does not take"));
        InvalidPush::WrongType {
            field: e.path().to_string(),
            expected,
            got,
        }
    })
}

/// What a field helper may expect, and what it may have got, in words.
const EXPECTED: [&str; 4] = [
    "an integer",
    "a string",
    "a string or an integer",
    "an object",
];
const GOT: [&str; 8] = [
    "null",
    "a boolean",
    "a fractional number",
    "an out-of-range number",
    "a string",
    "a string that is not an integer",
    "an array",
    "an object",
];

/// What `value` is, in words fit for an error about a field that expects `expected`.
fn got(expected: &str, value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a fractional number",
        Value::Number(_) => "an out-of-range number",
        Value::String(_) if expected == "an integer" => "a string that is not an integer",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A field helper's error: `expected X, got Y`, where Y says what the value is, never what
/// it holds.
fn type_error<E: de::Error>(expected: &'static str, value: &Value) -> E {
    E::custom(format_args!(
        "expected {expected}, got {}",
        got(expected, value)
    ))
}

/// The words of a [`type_error`] message; `None` for any other message.
fn wrong_type(message: &str) -> Option<(&'static str, &'static str)> {
    let (expected, got) = message.strip_prefix("expected ")?.split_once(", got ")?;
    Some((
        EXPECTED.into_iter().find(|e| *e == expected)?,
        GOT.into_iter().find(|g| *g == got)?,
    ))
}

/// Refuses a nested object of the wrong type before serde reads it (serde's error would
/// quote the value). Absent or `null` stands for an empty one.
pub(crate) fn check_object(field: &str, value: Option<&Value>) -> Result<(), InvalidPush> {
    match value {
        None | Some(Value::Null | Value::Object(_)) => Ok(()),
        Some(other) => Err(InvalidPush::WrongType {
            field: field.to_owned(),
            expected: "an object",
            got: got("an object", other),
        }),
    }
}

/// `deserialize_with` helpers for NXCLOUD's lenient fields; each takes `null` as absent.
pub(crate) mod field {
    use super::*;

    /// An integer, or a string holding one (`"1"`, `" 42 "`): NXCLOUD's other pushes quote
    /// their numbers. Floats, booleans and out-of-range values are not integers.
    pub fn integer<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        let value = Value::deserialize(d)?;
        let integer = match &value {
            Value::Null => return Ok(None),
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        };
        integer
            .map(Some)
            .ok_or_else(|| type_error("an integer", &value))
    }

    /// A string, or an integer kept with its exact digits: a 64-bit id sent as a bare number
    /// is still an id.
    pub fn identifier<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        match Value::deserialize(d)? {
            Value::Null => Ok(None),
            Value::String(s) => Ok(Some(s)),
            Value::Number(n) if n.is_i64() || n.is_u64() => Ok(Some(n.to_string())),
            other => Err(type_error("a string or an integer", &other)),
        }
    }

    /// A string.
    pub fn string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        match Value::deserialize(d)? {
            Value::Null => Ok(None),
            Value::String(s) => Ok(Some(s)),
            other => Err(type_error("a string", &other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CALL: &[u8] = include_bytes!("../../events/bodies/call-result.json");
    const BINDING: &[u8] = include_bytes!("../../events/bodies/binding-error.json");

    #[test]
    fn the_shape_decides_whatever_the_route() {
        for expected in [PushKind::CallRecord, PushKind::BindingError] {
            assert!(matches!(parse(CALL, expected), Ok(Push::CallRecord(_))));
            assert!(matches!(
                parse(BINDING, expected),
                Ok(Push::BindingError(_))
            ));
        }
        let neither = br#"{"code":1}"#;
        let field = |expected| {
            parse(neither, expected)
                .unwrap_err()
                .1
                .field()
                .map(str::to_owned)
        };
        assert_eq!(field(PushKind::CallRecord).as_deref(), Some("id"));
        assert_eq!(field(PushKind::BindingError).as_deref(), Some("requestId"));
        let (kind, e) = parse(b"[1]", PushKind::BindingError).unwrap_err();
        assert_eq!(
            (kind, e),
            (PushKind::BindingError, InvalidPush::NotAnObject)
        );
    }

    #[test]
    fn messages_keep_their_wording_and_never_quote_a_value() {
        let e = parse(
            br#"{"id":1,"caller":{"n":"85212345678"}}"#,
            PushKind::CallRecord,
        )
        .unwrap_err()
        .1;
        assert_eq!(
            e.to_string(),
            "field `caller`: expected a string or an integer, got an object"
        );
        let e = parse(br#"{"id":"85212345678x"}"#, PushKind::CallRecord)
            .unwrap_err()
            .1;
        assert_eq!(
            e.to_string(),
            "field `id`: expected an integer, got a string that is not an integer"
        );
        let e = parse(
            br#"{"requestId":"r","code":1,"data":"85212345678"}"#,
            PushKind::CallRecord,
        )
        .unwrap_err()
        .1;
        assert_eq!(
            e.to_string(),
            "field `data`: expected an object, got a string"
        );
        assert!(!e.to_string().contains("852"));
    }
}
