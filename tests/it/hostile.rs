//! Hostile input through the whole webhook, entered where API Gateway enters it
//! (`Webhook::handle_http`), over the in-memory ports, which count every write.
//!
//! Properties, for every generated request: no panic (and no stack overflow, which would kill
//! the test binary); every answer is JSON with `ok`; a request that is not a `POST`, comes from
//! outside the source list or presents a wrong token writes nothing (record, queue, object);
//! an authorised push is never answered 5xx while storage is healthy, a 200 means the record
//! is stored, and any other answer is a 4xx whose body was quarantined: nothing is lost.
//!
//! `PNS_HOSTILE_CASES` sets the number of generated requests (default 3 000; `make
//! test-faults` runs 1 000 000), split over `PNS_HOSTILE_THREADS` workers (default one per
//! core), each with its own runtime and webhooks so no lock is shared between them.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::LazyLock;
use std::time::Instant;

use aws_lambda_events::apigw::{
    ApiGatewayV2httpRequestContext, ApiGatewayV2httpRequestContextHttpDescription,
};
use lambda_http::request::RequestContext;
use lambda_http::{Body, RequestExt};
use pns_cdr::domain::recording::RecordingJob;
use pns_cdr::handlers::webhook::CALL_RESULT_ROUTE as ROUTE;
use pns_cdr::handlers::webhook::{MemoryWebhook, MAX_BODY_BYTES};
use pns_cdr::ports::ObjectMeta;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{select, Index};
use proptest::strategy::{BoxedStrategy, Union};
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRunner};
use serde_json::{json, Map, Value};

const TOKEN: &str = "hostile-test-token-0123456789";
const EXAMPLE: &[u8] = include_bytes!("../../events/bodies/call-result.json");
const BINDING_ERROR: &[u8] = include_bytes!("../../events/bodies/binding-error.json");
/// The fenced webhook accepts pushes from this block only.
const ALLOWED_CIDR: &str = "203.0.113.0/24";
const INSIDE: &str = "203.0.113.7";
const DEFAULT_CASES: u64 = 3_000;

const INTEGER_FIELDS: [&str; 8] = [
    "id",
    "callStatus",
    "duration",
    "startAt",
    "answerAt",
    "hangupAt",
    "hangupCode",
    "hangup",
];
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
/// The two index keys, capped at 1 024 bytes (`MAX_INDEXED_LEN`).
const INDEXED_FIELDS: [&str; 2] = ["callId", "businessId"];

/// Recording URLs, half of which the production policy must refuse (SSRF bait).
const RECORDING_URLS: [&str; 16] = [
    "https://remote.record.nxcloud.com/pns/20221219/228c76b1.mp3",
    "https://remote.record.nxcloud.com./pns/a.wav?x=1#f",
    "  https://REMOTE.record.NXCLOUD.com:443/pns/a.mp3  ",
    "https://a.nxcloud.com/%2e%2e/%2e%2e/etc/passwd",
    "http://remote.record.nxcloud.com/pns/a.mp3",
    "https://user:pw@remote.record.nxcloud.com/a.mp3",
    "https://169.254.169.254/latest/meta-data/",
    "https://[::1]/a.mp3",
    "https://nxcloud.com.evil.example/a.mp3",
    "https://evilnxcloud.com/a.mp3",
    "https://remote.record.nxcloud.com:8443/a.mp3",
    "file:///etc/passwd",
    "javascript:alert(1)",
    "//remote.record.nxcloud.com/a.mp3",
    "https://127.0.0.1:9000/a.mp3",
    "",
];

/// JSON texts put where a field's value goes: out-of-range and lexically invalid numbers,
/// numbers as strings, escapes that decode to nothing sensible, wrong types.
const LITERALS: [&str; 57] = [
    "1e400",
    "-1e400",
    "1E+400",
    "99999999999999999999",
    "18446744073709551615",
    "18446744073709551616",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "-9223372036854775809",
    "0",
    "-1",
    "-0",
    "45",
    "1.5",
    "45.0",
    "4.5e1",
    "1e308",
    "5e-324",
    "-0.0",
    r#""45""#,
    r#"" 45 ""#,
    r#""+45""#,
    r#""-1""#,
    r#""0""#,
    r#""\t7\n""#,
    r#""4_5""#,
    r#""0x2d""#,
    r#""""#,
    r#""45.0""#,
    r#""1e3""#,
    r#""9223372036854775808""#,
    r#""99999999999999999999""#,
    r#""\u0000""#,
    r#""\ud800""#,
    r#""\udc00\ud800""#,
    r#""\ud83d\ude00""#,
    r#""\u0031""#,
    r#""١٢""#,
    "true",
    "false",
    "null",
    "[]",
    "[45]",
    "{}",
    r#"{"id":45}"#,
    "01",
    "+1",
    ".5",
    "1.",
    "NaN",
    "Infinity",
    "-",
    "0x10",
    "1e",
    r#""unterminated"#,
    "'45'",
];

/// Byte sequences that are not UTF-8: stray continuation, overlong, surrogate, past U+10FFFF,
/// truncated.
const NOT_UTF8: [&[u8]; 9] = [
    b"\xff",
    b"\xfe\xfe",
    b"\x80",
    b"\xc0\x80",
    b"\xe0\x80\x80",
    b"\xed\xa0\x80",
    b"\xf4\x90\x80\x80",
    b"\xf8\x88\x80\x80\x80",
    b"\xe2\x82",
];

/// What the contract says the handler must answer an authorised `POST` of this body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// No opinion beyond the general properties (random bytes, random mutations).
    Any,
    Stored,
    Invalid,
    TooLarge,
}

#[derive(Clone)]
struct Payload {
    bytes: Vec<u8>,
    expect: Expect,
    /// How the body was made, for the failure report.
    origin: String,
    /// Deliver as `Body::Text` when it is UTF-8 (else `Body::Binary`; empty: `Body::Empty`).
    as_text: bool,
}

impl Payload {
    fn new(bytes: Vec<u8>, expect: Expect, origin: impl Into<String>) -> Self {
        // Whatever the body is, past the limit it must be refused for its size.
        let expect = if bytes.len() > MAX_BODY_BYTES {
            Expect::TooLarge
        } else {
            expect
        };
        Self {
            bytes,
            expect,
            origin: origin.into(),
            as_text: true,
        }
    }

    fn body(&self) -> Body {
        match std::str::from_utf8(&self.bytes) {
            _ if self.bytes.is_empty() && !self.as_text => Body::Empty,
            Ok(text) if self.as_text => Body::Text(text.to_owned()),
            _ => Body::Binary(self.bytes.clone()),
        }
    }
}

impl fmt::Debug for Payload {
    // Bodies reach 64 KiB and more: print their origin, size and a readable head.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let head = &self.bytes[..self.bytes.len().min(400)];
        f.debug_struct("Payload")
            .field("origin", &self.origin)
            .field("expect", &self.expect)
            .field("len", &self.bytes.len())
            .field("as_text", &self.as_text)
            .field("head", &head.escape_ascii().to_string())
            .finish()
    }
}

/// Where the token is presented, and whether the contract makes it the right one.
#[derive(Clone)]
struct Credentials {
    what: &'static str,
    /// The raw query string (already URI-safe).
    query: Option<String>,
    authorization: Option<Vec<u8>>,
    good: bool,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let authorization = self
            .authorization
            .as_ref()
            .map(|a| a.escape_ascii().to_string());
        f.debug_struct("Credentials")
            .field("what", &self.what)
            .field("query", &self.query)
            .field("authorization", &authorization)
            .field("good", &self.good)
            .finish()
    }
}

#[derive(Debug, Clone)]
struct Case {
    method: String,
    credentials: Credentials,
    /// Sent to the webhook with a source-IP list rather than the open one.
    fenced: bool,
    source_ip: Option<&'static str>,
    payload: Payload,
    /// Sent a second time, as NXCLOUD retries.
    retry: bool,
}

impl Case {
    fn request(&self) -> lambda_http::Request {
        let uri = match &self.credentials.query {
            Some(q) => format!("https://abc123.execute-api.eu-west-1.amazonaws.com{ROUTE}?{q}"),
            None => format!("https://abc123.execute-api.eu-west-1.amazonaws.com{ROUTE}"),
        };
        let method = http::Method::from_bytes(self.method.as_bytes()).expect("a method token");
        let mut builder = http::Request::builder()
            .method(method.clone())
            .uri(uri)
            .header(http::header::CONTENT_TYPE, "application/json");
        if let Some(value) = &self.credentials.authorization {
            let value = http::HeaderValue::from_bytes(value).expect("a header value");
            builder = builder.header(http::header::AUTHORIZATION, value);
        }
        let request = builder.body(self.payload.body()).expect("a request");
        // The request context API Gateway (HTTP API, payload v2) attaches, as the local
        // server builds it.
        let mut description = ApiGatewayV2httpRequestContextHttpDescription::default();
        description.method = method;
        description.path = Some(ROUTE.into());
        description.source_ip = self.source_ip.map(str::to_owned);
        let mut context = ApiGatewayV2httpRequestContext::default();
        context.http = description;
        context.stage = Some("$default".into());
        context.route_key = Some(format!("ANY {ROUTE}"));
        request.with_request_context(RequestContext::ApiGatewayV2(context))
    }
}

// ---------------------------------------------------------------- bodies

fn example() -> Map<String, Value> {
    static PARSED: LazyLock<Map<String, Value>> =
        LazyLock::new(|| serde_json::from_slice(EXAMPLE).expect("the example is a JSON object"));
    PARSED.clone()
}

/// `{"field":<literal>, ...the example without field...}`, keeping the literal's exact text.
fn example_with(field: &str, literal: &[u8]) -> Vec<u8> {
    let mut rest = example();
    rest.remove(field);
    let rest = serde_json::to_vec(&rest).expect("serialises");
    let mut out = serde_json::to_vec(field).expect("serialises");
    out.insert(0, b'{');
    out.push(b':');
    out.extend_from_slice(literal);
    if rest.len() > 2 {
        out.push(b',');
    }
    out.extend_from_slice(&rest[1..]);
    out
}

/// The contract's typing rules for one field holding one JSON text.
fn expect_for(field: &str, literal: &str) -> Expect {
    let Ok(value) = serde_json::from_str::<Value>(literal) else {
        return Expect::Invalid;
    };
    if INTEGER_FIELDS.contains(&field) {
        let n = match &value {
            Value::Null if field != "id" => return Expect::Stored,
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.trim().parse::<i64>().ok(),
            _ => None,
        };
        match n {
            Some(n) if field != "id" || n > 0 => Expect::Stored,
            _ => Expect::Invalid,
        }
    } else if STRING_FIELDS.contains(&field) {
        match &value {
            Value::String(s) if INDEXED_FIELDS.contains(&field) && s.len() > 1024 => {
                Expect::Invalid
            }
            Value::String(_) | Value::Null => Expect::Stored,
            Value::Number(n) if n.is_i64() || n.is_u64() => Expect::Stored,
            _ => Expect::Invalid,
        }
    } else {
        // Unknown fields are kept whatever they hold.
        Expect::Stored
    }
}

fn any_field() -> impl Strategy<Value = &'static str> {
    let mut names: Vec<&'static str> = INTEGER_FIELDS.to_vec();
    names.extend(STRING_FIELDS);
    names.extend([
        "extensionCaller",
        "x",
        "",
        "id ",
        "ID",
        "extraFields",
        "receivedAt",
    ]);
    select(names)
}

/// A JSON text for a field value: one of the hostile literals, or a generated one.
fn literal() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => select(LITERALS.to_vec()).prop_map(str::to_owned),
        1 => any::<i64>().prop_map(|n| n.to_string()),
        1 => any::<i64>().prop_map(|n| format!("\"{n}\"")),
        1 => any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| json!(f).to_string()),
        1 => ".{0,24}".prop_map(|s| json!(s).to_string()),
        1 => select(RECORDING_URLS.to_vec()).prop_map(|s| json!(s).to_string()),
        1 => (1_020usize..1_030).prop_map(|n| json!("9".repeat(n)).to_string()),
    ]
}

/// One field of the documented example replaced by a hostile value.
fn hostile_field() -> impl Strategy<Value = Payload> {
    (any_field(), literal()).prop_map(|(field, literal)| {
        Payload::new(
            example_with(field, literal.as_bytes()),
            expect_for(field, &literal),
            format!("example with {field:?} = {literal}"),
        )
    })
}

/// A key present twice; which one wins is serde_json's business, but nothing may break.
fn duplicate_keys() -> impl Strategy<Value = Payload> {
    (any_field(), literal(), any::<bool>()).prop_map(|(field, literal, first)| {
        let text = String::from_utf8(example_with(field, literal.as_bytes())).expect("UTF-8");
        let again = format!("{}:{literal}", json!(field));
        let text = if first {
            format!("{{{again},{}", &text[1..])
        } else {
            format!("{},{again}}}", &text[..text.len() - 1])
        };
        Payload::new(
            text.into_bytes(),
            Expect::Any,
            format!("duplicate {field:?} = {literal}"),
        )
    })
}

/// Valid pushes with a small id range, so duplicates and conflicting duplicates are common.
fn valid_push() -> impl Strategy<Value = Payload> {
    (
        1i64..64,
        any::<i64>(),
        select(RECORDING_URLS.to_vec()),
        prop_oneof![
            Just(Value::Null),
            any::<u64>().prop_map(Value::from),
            "[0-9]{0,20}".prop_map(Value::from)
        ],
        any::<f64>().prop_filter("finite", |f| f.is_finite()),
        any::<bool>(),
    )
        .prop_map(|(id, duration, url, call_id, extra, as_string)| {
            let mut push = example();
            push.insert(
                "id".into(),
                if as_string {
                    json!(id.to_string())
                } else {
                    json!(id)
                },
            );
            push.insert("duration".into(), json!(duration));
            push.insert("recordFile".into(), json!(url));
            push.insert("callId".into(), call_id);
            push.insert("extensionCaller".into(), json!(extra));
            Payload::new(
                serde_json::to_vec(&push).expect("serialises"),
                Expect::Stored,
                "valid push",
            )
        })
}

/// NXCLOUD's second push, sent to the call-result route (customers may give one URL): the
/// documented example with another requestId, its numbers as numbers or strings, an unknown
/// field, and sometimes a `code` that is no integer.
fn binding_error() -> impl Strategy<Value = Payload> {
    (
        1u64..u64::MAX,
        any::<bool>(),
        10_001i64..10_014,
        any::<bool>(),
        prop_oneof![4 => Just(None), 1 => Just(Some(json!(1.5))), 1 => Just(Some(json!("x")))],
    )
        .prop_map(
            |(request_id, id_as_number, code, code_as_string, bad_code)| {
                let mut error: Map<String, Value> =
                    serde_json::from_slice(BINDING_ERROR).expect("the sample is JSON");
                error.insert(
                    "requestId".into(),
                    if id_as_number {
                        json!(request_id)
                    } else {
                        json!(request_id.to_string())
                    },
                );
                let code = match (&bad_code, code_as_string) {
                    (Some(bad), _) => bad.clone(),
                    (None, true) => json!(code.to_string()),
                    (None, false) => json!(code),
                };
                error.insert("code".into(), code);
                error.insert("traceId".into(), json!(request_id % 7));
                let expect = if bad_code.is_some() {
                    Expect::Invalid
                } else {
                    Expect::Stored
                };
                Payload::new(
                    serde_json::to_vec(&error).expect("serialises"),
                    expect,
                    "binding error",
                )
            },
        )
}

#[derive(Debug, Clone)]
enum Mutation {
    SetByte(Index, u8),
    Delete(Index, usize),
    Insert(Index, Vec<u8>),
    InsertToken(Index, &'static str),
    Repeat(Index, usize),
    Truncate(Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let tokens = vec![
        ",", "{", "}", "[", "]", "\"", ":", "\\", "null", "1e400", "-", "\\u0000", "\\ud800", "\0",
    ];
    prop_oneof![
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::SetByte(i, b)),
        (any::<Index>(), 1usize..16).prop_map(|(i, n)| Mutation::Delete(i, n)),
        (any::<Index>(), vec(any::<u8>(), 1..8)).prop_map(|(i, b)| Mutation::Insert(i, b)),
        (any::<Index>(), select(tokens)).prop_map(|(i, t)| Mutation::InsertToken(i, t)),
        (any::<Index>(), 1usize..64).prop_map(|(i, n)| Mutation::Repeat(i, n)),
        any::<Index>().prop_map(Mutation::Truncate),
    ]
}

fn apply(bytes: &mut Vec<u8>, mutation: &Mutation) {
    let at = |i: &Index, len: usize| i.index(len + 1);
    match mutation {
        Mutation::SetByte(i, b) if !bytes.is_empty() => {
            let at = i.index(bytes.len());
            bytes[at] = *b;
        }
        Mutation::SetByte(..) => {}
        Mutation::Delete(i, n) => {
            let start = at(i, bytes.len());
            let end = (start + n).min(bytes.len());
            bytes.drain(start..end);
        }
        Mutation::Insert(i, new) => {
            let start = at(i, bytes.len());
            bytes.splice(start..start, new.iter().copied());
        }
        Mutation::InsertToken(i, token) => {
            let start = at(i, bytes.len());
            bytes.splice(start..start, token.bytes());
        }
        Mutation::Repeat(i, n) => {
            let start = at(i, bytes.len());
            let end = (start + n).min(bytes.len());
            let slice = bytes[start..end].to_vec();
            bytes.splice(end..end, slice);
        }
        Mutation::Truncate(i) => {
            let len = at(i, bytes.len());
            bytes.truncate(len);
        }
    }
}

fn mutated_example() -> impl Strategy<Value = Payload> {
    vec(mutation(), 1..6).prop_map(|mutations| {
        let mut bytes = EXAMPLE.to_vec();
        for m in &mutations {
            apply(&mut bytes, m);
        }
        Payload::new(
            bytes,
            Expect::Any,
            format!("example mutated by {mutations:?}"),
        )
    })
}

fn arbitrary_bytes() -> impl Strategy<Value = Payload> {
    prop_oneof![
        vec(any::<u8>(), 0..600),
        // Bytes from JSON's alphabet reach deeper into the parser than uniform noise.
        vec(
            select(b"{}[]\":,0123456789-+.eEtrufalsn \\/u".to_vec()),
            0..200
        ),
    ]
    .prop_map(|bytes| Payload::new(bytes, Expect::Any, "arbitrary bytes"))
}

#[derive(Debug, Clone, Copy)]
enum Nest {
    Arrays,
    Objects,
    Mixed,
}

fn nested(depth: usize, shape: Nest) -> String {
    // `str::repeat` copies in doubling blocks: cheap even unoptimised, at 100 000 levels.
    let (open, close) = match shape {
        Nest::Arrays => ("[".repeat(depth), "]".repeat(depth)),
        Nest::Objects => (r#"{"a":"#.repeat(depth), "}".repeat(depth)),
        Nest::Mixed => (
            r#"[{"a":"#.repeat(depth / 2) + &"[".repeat(depth % 2),
            "]".repeat(depth % 2) + &"}]".repeat(depth / 2),
        ),
    };
    open + "1" + &close
}

/// Nesting far past serde_json's recursion limit (128) must be a 400, never a stack overflow;
/// nesting well inside it, in an unknown field, is kept.
fn deep_nesting() -> impl Strategy<Value = Payload> {
    let shape = prop_oneof![Just(Nest::Arrays), Just(Nest::Objects), Just(Nest::Mixed)];
    let deep = prop_oneof![200usize..2_000, Just(10_000), Just(100_000)];
    let place = select(vec!["top", "extra", "id"]);
    prop_oneof![
        (deep, shape.clone(), place).prop_map(|(depth, shape, place)| {
            let value = nested(depth, shape);
            let bytes = match place {
                "top" => value.into_bytes(),
                field => example_with(if field == "id" { "id" } else { "x" }, value.as_bytes()),
            };
            Payload::new(
                bytes,
                Expect::Invalid,
                format!("{depth} levels of {shape:?} at {place}"),
            )
        }),
        (1usize..=100, shape).prop_map(|(depth, shape)| {
            let value = nested(depth, shape);
            Payload::new(
                example_with("extensionDeep", value.as_bytes()),
                Expect::Stored,
                format!("{depth} levels of {shape:?} in an unknown field"),
            )
        }),
    ]
}

/// Bytes that are not UTF-8 inside a string value or a key.
fn invalid_utf8() -> impl Strategy<Value = Payload> {
    (
        select(STRING_FIELDS.to_vec()),
        select(NOT_UTF8.to_vec()),
        any::<bool>(),
    )
        .prop_map(|(field, bad, in_key)| {
            let mut value = b"\"85".to_vec();
            value.extend_from_slice(bad);
            value.extend_from_slice(b"235\"");
            let bytes = if in_key {
                let mut key = b"{\"ext".to_vec();
                key.extend_from_slice(bad);
                key.extend_from_slice(b"\":1,");
                let mut rest = EXAMPLE.to_vec();
                rest.remove(0);
                key.extend_from_slice(&rest);
                key
            } else {
                example_with(field, &value)
            };
            let mut payload = Payload::new(
                bytes,
                Expect::Invalid,
                format!(
                    "{} in {}",
                    bad.escape_ascii(),
                    if in_key { "a key" } else { field }
                ),
            );
            payload.as_text = false;
            payload
        })
}

#[derive(Debug, Clone, Copy)]
enum Padding {
    /// Trailing white space: still the documented example.
    Space,
    /// An unknown string field: still a valid push.
    Field,
    /// Trailing garbage: not JSON.
    Garbage,
}

/// The example padded to exactly `len` bytes.
fn padded(len: usize, padding: Padding) -> Vec<u8> {
    let mut bytes = match padding {
        Padding::Space | Padding::Garbage => EXAMPLE.to_vec(),
        Padding::Field => example_with("padding", b"\"\""),
    };
    let missing = len.saturating_sub(bytes.len());
    match padding {
        Padding::Space => bytes.extend_from_slice(" ".repeat(missing).as_bytes()),
        Padding::Garbage => bytes.extend_from_slice("#".repeat(missing).as_bytes()),
        Padding::Field => {
            let at = "{\"padding\":\"".len();
            bytes.splice(at..at, "x".repeat(missing).into_bytes());
        }
    }
    assert_eq!(bytes.len(), len);
    bytes
}

/// Bodies around the 64 KiB limit, built from two small parameters so that generating and
/// shrinking them stays cheap.
fn around_the_limit() -> impl Strategy<Value = Payload> {
    let padding = prop_oneof![
        Just(Padding::Space),
        Just(Padding::Field),
        Just(Padding::Garbage)
    ];
    (
        select(vec![
            MAX_BODY_BYTES - 1,
            MAX_BODY_BYTES,
            MAX_BODY_BYTES + 1,
            MAX_BODY_BYTES + 2,
            2 * MAX_BODY_BYTES,
        ]),
        padding,
    )
        .prop_map(|(len, padding)| {
            let expect = match padding {
                Padding::Garbage => Expect::Invalid,
                _ => Expect::Stored,
            };
            Payload::new(
                padded(len, padding),
                expect,
                format!("{len} bytes, {padding:?} padding"),
            )
        })
}

fn payload() -> impl Strategy<Value = Payload> {
    let as_text = any::<bool>();
    let body = Union::new_weighted(vec![
        (15, arbitrary_bytes().boxed()),
        (20, mutated_example().boxed()),
        (20, hostile_field().boxed()),
        (15, valid_push().boxed()),
        (8, binding_error().boxed()),
        (8, duplicate_keys().boxed()),
        (6, deep_nesting().boxed()),
        (8, invalid_utf8().boxed()),
        (2, around_the_limit().boxed()),
    ]);
    (body, as_text).prop_map(|(mut payload, as_text)| {
        payload.as_text &= as_text;
        payload
    })
}

// ---------------------------------------------------------------- requests

fn encoded(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn query(token: &str) -> Option<String> {
    Some(format!("token={}", encoded(token)))
}

fn bearer(token: &str) -> Option<Vec<u8>> {
    Some(format!("Bearer {token}").into_bytes())
}

fn creds(
    what: &'static str,
    query: Option<String>,
    authorization: Option<Vec<u8>>,
    good: bool,
) -> Credentials {
    Credentials {
        what,
        query,
        authorization,
        good,
    }
}

/// The right token in every accepted place, and near misses of it: a strict prefix, one
/// character more, one character changed, case, wrong scheme or parameter name, and a wrong
/// query token that must win over a right header.
fn credentials() -> impl Strategy<Value = Credentials> {
    let good = prop_oneof![
        Just(creds("query", query(TOKEN), None, true)),
        Just(creds("bearer", None, bearer(TOKEN), true)),
        Just(creds(
            "bearer, odd case and spaces",
            None,
            Some(format!("  bEaReR   {TOKEN}  ").into_bytes()),
            true
        )),
        Just(creds(
            "query wins over a wrong bearer",
            query(TOKEN),
            bearer("wrong-token-0123456789"),
            true
        )),
        Just(creds(
            "query among other parameters",
            Some(format!("a=1&token={TOKEN}&token=wrong&b=%ff")),
            None,
            true
        )),
        Just(creds(
            "query, every byte percent-encoded",
            Some(format!(
                "token={}",
                TOKEN
                    .bytes()
                    .map(|b| format!("%{b:02X}"))
                    .collect::<String>()
            )),
            None,
            true
        )),
    ];
    let bad = prop_oneof![
        Just(creds("none", None, None, false)),
        (0..TOKEN.len()).prop_map(|n| creds("query prefix", query(&TOKEN[..n]), None, false)),
        (0..TOKEN.len()).prop_map(|n| creds("bearer prefix", None, bearer(&TOKEN[..n]), false)),
        any::<char>().prop_map(|c| creds(
            "query with one more char",
            query(&format!("{TOKEN}{c}")),
            None,
            false
        )),
        // White space after a header value is trimmed (and is not part of the token).
        "[!-~]".prop_map(|c| creds(
            "bearer with one more char",
            None,
            bearer(&format!("{TOKEN}{c}")),
            false
        )),
        (0..TOKEN.len(), any::<char>()).prop_map(|(i, c)| {
            let mut chars: Vec<char> = TOKEN.chars().collect();
            let changed = chars[i] != c;
            chars[i] = c;
            let token: String = chars.into_iter().collect();
            creds("query with one char changed", query(&token), None, !changed)
        }),
        ".{0,40}".prop_map(|t| {
            let good = t == TOKEN;
            creds("random query token", query(&t), None, good)
        }),
        Just(creds(
            "upper case",
            query(&TOKEN.to_uppercase()),
            None,
            false
        )),
        Just(creds(
            "basic scheme",
            None,
            Some(format!("Basic {TOKEN}").into_bytes()),
            false
        )),
        Just(creds(
            "header without scheme",
            None,
            Some(TOKEN.as_bytes().to_vec()),
            false
        )),
        Just(creds(
            "tab after scheme",
            None,
            Some(format!("Bearer\t{TOKEN}").into_bytes()),
            false
        )),
        Just(creds(
            "header not ASCII",
            None,
            Some([format!("Bearer {TOKEN}").as_bytes(), b"\xff"].concat()),
            false
        )),
        Just(creds(
            "parameter name case",
            Some(format!("Token={TOKEN}")),
            None,
            false
        )),
        Just(creds(
            "parameter name longer",
            Some(format!("tokens={TOKEN}")),
            None,
            false
        )),
        Just(creds(
            "wrong query token first",
            Some(format!("token=wrong&token={TOKEN}")),
            None,
            false
        )),
        Just(creds(
            "empty query token wins over a right bearer",
            Some("token=".into()),
            bearer(TOKEN),
            false
        )),
        Just(creds(
            "trailing NUL",
            Some(format!("token={TOKEN}%00")),
            None,
            false
        )),
        Just(creds(
            "plus decodes to a space",
            Some(format!("token={TOKEN}+")),
            None,
            false
        )),
        Just(creds(
            "invalid percent-encoding",
            Some("token=%ff%zz".into()),
            None,
            false
        )),
    ];
    prop_oneof![3 => good, 2 => bad]
}

fn method() -> impl Strategy<Value = String> {
    let odd = select(vec![
        "GET", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE", "CONNECT", "post", "Post",
        "POSTS", "PROPFIND",
    ]);
    prop_oneof![9 => Just("POST"), 1 => odd].prop_map(str::to_owned)
}

fn case() -> BoxedStrategy<Case> {
    let source = select(vec![
        None,
        Some(INSIDE),
        Some("198.51.100.1"),
        Some("2001:db8::1"),
        Some("not-an-ip"),
        Some("203.0.113.300"),
        Some(""),
    ]);
    (
        method(),
        credentials(),
        prop::bool::weighted(0.1),
        source,
        payload(),
        prop::bool::weighted(0.1),
    )
        .prop_map(
            |(method, credentials, fenced, source_ip, payload, retry)| Case {
                method,
                credentials,
                fenced,
                source_ip,
                payload,
                retry,
            },
        )
        .boxed()
}

// ---------------------------------------------------------------- the check

struct Worker {
    runtime: tokio::runtime::Runtime,
    open: MemoryWebhook,
    fenced: MemoryWebhook,
    /// Outcomes reached, to show the generators exercise every path of the handler.
    seen: RefCell<BTreeSet<&'static str>>,
}

/// Every outcome a run of the default size must reach.
const OUTCOMES: [&str; 8] = [
    "stored",
    "duplicate",
    "conflict",
    "invalid",
    "too large",
    "unauthorized",
    "forbidden",
    "method",
];

fn outcome(status: u16, answer: &Value) -> &'static str {
    match status {
        200 if answer["conflict"] == true => "conflict",
        200 if answer["duplicate"] == true => "duplicate",
        200 => "stored",
        400 => "invalid",
        401 => "unauthorized",
        403 => "forbidden",
        405 => "method",
        413 => "too large",
        _ => "other",
    }
}

impl Worker {
    fn new() -> Self {
        let webhook = |cidrs: &str| MemoryWebhook::in_memory(TOKEN, cidrs);
        Self {
            runtime: tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("a runtime"),
            open: webhook(""),
            fenced: webhook(ALLOWED_CIDR),
            seen: RefCell::default(),
        }
    }

    /// Sends the case once, from an empty queue and bucket so that any write shows; checks
    /// what every answer must be, and reports what was written.
    fn send(&self, case: &Case) -> Result<Sent, TestCaseError> {
        let webhook = if case.fenced {
            &self.fenced
        } else {
            &self.open
        };
        webhook.objects.objects.lock().unwrap().clear();
        webhook.queue.jobs.lock().unwrap().clear();
        {
            // Records are kept, bounded, so later cases take the duplicate and conflict paths.
            let mut items = webhook.store.items.lock().unwrap();
            if items.len() > 4_096 {
                items.clear();
            }
        }
        let writes_before = webhook.store.writes.load(Ordering::SeqCst);
        let bindings_before = webhook.bindings.items.lock().unwrap().len();

        let Ok(response) = self.runtime.block_on(webhook.handle_http(case.request()));

        let status = response.status().as_u16();
        let header = |name| response.headers().get(name).map(|v| v.as_bytes());
        prop_assert_eq!(
            header(http::header::CONTENT_TYPE),
            Some(&b"application/json"[..])
        );
        if status == 405 {
            prop_assert_eq!(header(http::header::ALLOW), Some(&b"POST"[..]));
        }
        let answer: Value = serde_json::from_slice(response.body().as_ref())
            .map_err(|e| TestCaseError::fail(format!("answer is not JSON: {e}")))?;
        prop_assert_eq!(
            answer.get("ok"),
            Some(&Value::Bool(status == 200)),
            "status {} answer {}",
            status,
            answer
        );
        let id = answer["id"].as_i64();
        self.seen.borrow_mut().insert(outcome(status, &answer));
        Ok(Sent {
            status,
            record: id.and_then(|id| {
                let items = webhook.store.items.lock().unwrap();
                items.get(&id).map(|item| item.to_json())
            }),
            binding: answer["requestId"].as_str().and_then(|id| {
                let items = webhook.bindings.items.lock().unwrap();
                items.get(id).map(|item| item.to_json())
            }),
            answer,
            record_writes: webhook.store.writes.load(Ordering::SeqCst) - writes_before
                + webhook.bindings.items.lock().unwrap().len()
                - bindings_before,
            jobs: webhook.queue.jobs.lock().unwrap().clone(),
            objects: webhook.objects.objects.lock().unwrap().clone(),
        })
    }

    fn check(&self, case: &Case) -> Result<(), TestCaseError> {
        let sent = self.send(case)?;
        let Sent {
            status,
            answer,
            record_writes,
            jobs,
            objects,
            record,
            binding,
        } = &sent;
        let status = *status;
        let record_writes = *record_writes;

        let is_post = case.method.eq_ignore_ascii_case("POST");
        let source_ok = !case.fenced || case.source_ip == Some(INSIDE);
        if !is_post || !source_ok || !case.credentials.good {
            let expected = match () {
                _ if !is_post => 405,
                _ if !source_ok => 403,
                _ => 401,
            };
            prop_assert_eq!(
                status,
                expected,
                "credentials {}: answer {}",
                case.credentials.what,
                answer
            );
            prop_assert!(
                record_writes == 0 && jobs.is_empty() && objects.is_empty(),
                "refused request wrote: {} record(s), {} job(s), {} object(s)",
                record_writes,
                jobs.len(),
                objects.len()
            );
            return Ok(());
        }

        let body = &case.payload.bytes;
        prop_assert!(status < 500, "{} with healthy storage: {}", status, answer);
        match case.payload.expect {
            Expect::Any => {}
            Expect::Stored => prop_assert_eq!(status, 200, "answer {}", answer),
            Expect::Invalid => prop_assert_eq!(status, 400, "answer {}", answer),
            Expect::TooLarge => prop_assert_eq!(status, 413, "answer {}", answer),
        }
        let conflict = answer["conflict"] == true;
        if status == 200 && answer.get("requestId").is_some() {
            // A binding error: stored in its own table, never a record, never a job.
            let item = binding.as_ref().ok_or_else(|| {
                TestCaseError::fail(format!("200 but no binding error: {answer}"))
            })?;
            prop_assert_eq!(&item["requestId"], &answer["requestId"]);
            let duplicate = answer["duplicate"] == true;
            prop_assert_eq!(record_writes, usize::from(!duplicate));
            prop_assert!(jobs.is_empty(), "a binding error queued a job");
            prop_assert_eq!(objects.len(), usize::from(conflict));
        } else if status == 200 {
            let id = answer["id"].as_i64().unwrap_or_default();
            let item = record
                .as_ref()
                .ok_or_else(|| TestCaseError::fail(format!("200 but no record: {answer}")))?;
            let duplicate = answer["duplicate"] == true;
            prop_assert_eq!(record_writes, usize::from(!duplicate));
            if conflict {
                // The first record is kept and the conflicting body saved, byte for byte.
                prop_assert_eq!(objects.len(), 1);
                prop_assert!(objects.values().all(|(saved, _)| saved.as_ref() == body));
            } else {
                prop_assert!(objects.is_empty(), "objects written for a clean push");
            }
            if !duplicate {
                // SSRF: a job is queued exactly when the URL passes the production allow-list.
                let url = item
                    .get("recordFile")
                    .and_then(Value::as_str)
                    .map(str::trim)
                    .filter(|u| !u.is_empty());
                let allowed = url.is_some_and(allowed_recording_url);
                let expected = match url {
                    None => "NONE",
                    Some(_) if allowed => "PENDING",
                    Some(_) => "FAILED",
                };
                prop_assert_eq!(
                    item["recordingStatus"].as_str(),
                    Some(expected),
                    "recordFile {:?}",
                    url
                );
                prop_assert_eq!(jobs.len(), usize::from(allowed));
            }
            for job in jobs {
                prop_assert_eq!(job.id, id);
                prop_assert!(allowed_recording_url(&job.url), "queued {}", job.url);
            }
        } else {
            prop_assert!(
                status == 400 || status == 413,
                "{} for an authorised push: {}",
                status,
                answer
            );
            prop_assert!(record_writes == 0 && jobs.is_empty(), "refused body stored");
            // Nothing lost: the refused body is in the bucket under the key the answer names.
            let key = answer["quarantineKey"].as_str().unwrap_or_default();
            let saved = objects.get(key).map(|(saved, _)| saved.as_ref());
            prop_assert!(
                saved == Some(body.as_slice()),
                "body not quarantined under {:?}",
                key
            );
        }

        if case.retry {
            // NXCLOUD's retry of the same bytes: the same answer, and no second record.
            let again = self.send(case)?;
            prop_assert_eq!(again.status, status, "retry answered {}", again.answer);
            prop_assert_eq!(again.record_writes, 0);
            if status == 200 {
                prop_assert_eq!(&again.answer["id"], &answer["id"]);
                prop_assert_eq!(&again.answer["requestId"], &answer["requestId"]);
                prop_assert_eq!(&again.answer["duplicate"], &Value::Bool(true));
                prop_assert_eq!(&again.answer["conflict"], &Value::Bool(conflict));
                prop_assert_eq!(again.objects.len(), usize::from(conflict));
            } else {
                prop_assert_eq!(&again.answer["quarantineKey"], &answer["quarantineKey"]);
            }
        }
        Ok(())
    }
}

/// What one request did.
struct Sent {
    status: u16,
    answer: Value,
    /// The stored record for the id the answer names.
    record: Option<Map<String, Value>>,
    /// The stored binding error for the requestId the answer names.
    binding: Option<Map<String, Value>>,
    record_writes: usize,
    jobs: Vec<RecordingJob>,
    objects: HashMap<String, (bytes::Bytes, ObjectMeta)>,
}

/// The production allow-list restated from the README: https, no credentials, a host name
/// under `*.nxcloud.com`, port 443.
fn allowed_recording_url(raw: &str) -> bool {
    let Ok(url) = url::Url::parse(raw.trim()) else {
        return false;
    };
    let host_ok = match url.host() {
        Some(url::Host::Domain(d)) => d
            .trim_end_matches('.')
            .to_ascii_lowercase()
            .strip_suffix(".nxcloud.com")
            .is_some_and(|head| !head.is_empty()),
        _ => false,
    };
    url.scheme() == "https"
        && url.username().is_empty()
        && url.password().is_none()
        && host_ok
        && matches!(url.port(), None | Some(443))
}

fn env_number(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .replace('_', "")
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v} is not a number")),
        Err(_) => default,
    }
}

#[test]
fn hostile_requests_never_panic_nor_5xx_nor_write_when_refused() {
    let total = env_number("PNS_HOSTILE_CASES", DEFAULT_CASES);
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get() as u64);
    let threads = env_number("PNS_HOSTILE_THREADS", cores).clamp(1, total.max(1));
    let ran = AtomicU64::new(0);
    let started = Instant::now();
    let results: Vec<(Result<(), String>, BTreeSet<&str>)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|i| {
                let share = total / threads + u64::from(i < total % threads);
                let ran = &ran;
                scope.spawn(move || {
                    let worker = Worker::new();
                    let mut runner = TestRunner::new(Config {
                        cases: u32::try_from(share).expect("at most 4 billion cases per thread"),
                        failure_persistence: None,
                        // ChaCha, the default, is a third of the run time unoptimised.
                        rng_algorithm: RngAlgorithm::XorShift,
                        ..Config::default()
                    });
                    let result = runner
                        .run(&case(), |case| {
                            ran.fetch_add(1, Ordering::Relaxed);
                            worker.check(&case)
                        })
                        .map_err(|e| e.to_string());
                    (result, worker.seen.take())
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("the runner reports panics"))
            .collect()
    });
    let ran = ran.load(Ordering::Relaxed);
    // Straight to stderr, past the test harness's capture, so every log shows the count.
    let _ = writeln!(
        std::io::stderr(),
        "hostile: {ran} generated requests (incl. shrinking) on {threads} thread(s) in {:.1?}",
        started.elapsed()
    );
    let failures: Vec<&String> = results
        .iter()
        .filter_map(|(r, _)| r.as_ref().err())
        .collect();
    assert!(
        failures.is_empty(),
        "{}",
        failures
            .into_iter()
            .cloned()
            .collect::<Vec<_>>()
            .join("\n\n")
    );
    assert!(ran >= total);
    // Each outcome is drawn in about 1 % of cases or more: a run of a thousand that misses
    // one means a generator no longer reaches that path of the handler.
    if total >= 1_000 {
        let seen: BTreeSet<&str> = results.into_iter().flat_map(|(_, seen)| seen).collect();
        let missing: Vec<_> = OUTCOMES.iter().filter(|o| !seen.contains(*o)).collect();
        assert!(missing.is_empty(), "never produced: {missing:?}");
    }
}

/// The issue's named inputs, every run, whatever the generators happen to draw.
#[test]
fn named_hostile_inputs() {
    let worker = Worker::new();
    let deep = |depth, shape| nested(depth, shape).into_bytes();
    let cases: Vec<(Vec<u8>, Expect)> = vec![
        (deep(10_000, Nest::Arrays), Expect::Invalid),
        (deep(10_000, Nest::Objects), Expect::Invalid),
        (
            example_with("x", &deep(10_000, Nest::Mixed)),
            Expect::Invalid,
        ),
        (padded(MAX_BODY_BYTES, Padding::Field), Expect::Stored),
        (padded(MAX_BODY_BYTES + 1, Padding::Space), Expect::TooLarge),
        (br#"{"id":1,"id":2}"#.to_vec(), Expect::Stored),
        (br#"{"id":1e400}"#.to_vec(), Expect::Invalid),
        (br#"{"id":99999999999999999999}"#.to_vec(), Expect::Invalid),
        (br#"{"id":-45}"#.to_vec(), Expect::Invalid),
        (br#"{"id":45.0}"#.to_vec(), Expect::Invalid),
        (br#"{"id":" 46 ","duration":"6"}"#.to_vec(), Expect::Stored),
        (
            br#"{"id":47,"callId":26047637452567838720}"#.to_vec(),
            Expect::Invalid,
        ),
        (b"{\"id\":48,\"caller\":\"\xff\"}".to_vec(), Expect::Invalid),
        (Vec::new(), Expect::Invalid),
    ];
    for (bytes, expect) in cases {
        for credentials in [
            creds("query", query(TOKEN), None, true),
            creds("bearer", None, bearer(TOKEN), true),
            creds("one more char", query(&format!("{TOKEN}0")), None, false),
        ] {
            let case = Case {
                method: "POST".into(),
                credentials,
                fenced: false,
                source_ip: None,
                payload: Payload::new(bytes.clone(), expect, "named"),
                retry: true,
            };
            if let Err(e) = worker.check(&case) {
                panic!("{e}\n{case:#?}");
            }
        }
    }
}
