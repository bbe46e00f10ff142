//! Metrics as CloudWatch Embedded Metric Format log lines: CloudWatch extracts them from the
//! function's log, so counting costs no API call and no latency. Namespace `PnsCdr`, one
//! dimension `Function`; the dashboard and alarms in `template.yaml` use these names.

use std::sync::OnceLock;

pub const NAMESPACE: &str = "PnsCdr";

/// CloudWatch units used here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Bytes,
    Milliseconds,
}

impl Unit {
    fn as_str(self) -> &'static str {
        match self {
            Self::Count => "Count",
            Self::Bytes => "Bytes",
            Self::Milliseconds => "Milliseconds",
        }
    }
}

/// The `Function` dimension: which function emitted a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    Webhook,
    Archiver,
    Reconciler,
    Publisher,
}

impl Function {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Webhook => "webhook",
            Self::Archiver => "archiver",
            Self::Reconciler => "reconciler",
            Self::Publisher => "publisher",
        }
    }
}

/// Every metric the functions emit: the one list of their names and units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// A request reached the webhook, whatever the answer.
    PushReceived,
    /// 200 for a new record.
    PushStored,
    /// 200 for an id already stored, conflicts included.
    PushDuplicate,
    /// 405: not a push at all (API Gateway routes every method to the function).
    PushRejected,
    /// 400, 413 or 422: the body is kept in the bucket, the push is not stored.
    PushQuarantined,
    /// 401 or 403: refused before anything was read or written.
    PushUnauthorized,
    /// 503: storage failed; NXCLOUD retries.
    PushFailed,
    /// Time spent in the webhook handler.
    PushLatencyMs,
    /// A new binding-error push: a caller dialled a masked number that has no binding.
    UnboundCall,
    RecordingArchived,
    BytesArchived,
    ArchiveLatencyMs,
    /// A recording ended `FAILED` (by the archiver, or refused at intake by the webhook).
    RecordingFailed,
    RecordingRetried,
    PendingRequeued,
    PendingOverdue,
    /// Events the bus accepted.
    EventsPublished,
    /// Events put again after the bus refused them.
    EventsRetried,
    /// An invocation that left records for Lambda to retry (an event still refused, or a
    /// stream record that cannot be read).
    PublishFailed,
}

impl Metric {
    pub fn name(self) -> &'static str {
        match self {
            Self::PushReceived => "PushReceived",
            Self::PushStored => "PushStored",
            Self::PushDuplicate => "PushDuplicate",
            Self::PushRejected => "PushRejected",
            Self::PushQuarantined => "PushQuarantined",
            Self::PushUnauthorized => "PushUnauthorized",
            Self::PushFailed => "PushFailed",
            Self::PushLatencyMs => "PushLatencyMs",
            Self::UnboundCall => "UnboundCall",
            Self::RecordingArchived => "RecordingArchived",
            Self::BytesArchived => "BytesArchived",
            Self::ArchiveLatencyMs => "ArchiveLatencyMs",
            Self::RecordingFailed => "RecordingFailed",
            Self::RecordingRetried => "RecordingRetried",
            Self::PendingRequeued => "PendingRequeued",
            Self::PendingOverdue => "PendingOverdue",
            Self::EventsPublished => "EventsPublished",
            Self::EventsRetried => "EventsRetried",
            Self::PublishFailed => "PublishFailed",
        }
    }

    pub fn unit(self) -> Unit {
        match self {
            Self::PushLatencyMs | Self::ArchiveLatencyMs => Unit::Milliseconds,
            Self::BytesArchived => Unit::Bytes,
            _ => Unit::Count,
        }
    }
}

/// Which function emits which metrics: what the dashboard must show (a test reads it).
pub const CATALOGUE: &[(Function, &[Metric])] = &[
    (
        Function::Webhook,
        &[
            Metric::PushReceived,
            Metric::PushStored,
            Metric::PushDuplicate,
            Metric::PushRejected,
            Metric::PushQuarantined,
            Metric::PushUnauthorized,
            Metric::PushFailed,
            Metric::PushLatencyMs,
            Metric::UnboundCall,
            Metric::RecordingFailed,
        ],
    ),
    (
        Function::Archiver,
        &[
            Metric::RecordingArchived,
            Metric::RecordingFailed,
            Metric::RecordingRetried,
            Metric::BytesArchived,
            Metric::ArchiveLatencyMs,
        ],
    ),
    (
        Function::Reconciler,
        &[Metric::PendingRequeued, Metric::PendingOverdue],
    ),
    (
        Function::Publisher,
        &[
            Metric::EventsPublished,
            Metric::EventsRetried,
            Metric::PublishFailed,
        ],
    ),
];

/// Where [`emit`] sends its lines; chosen once per process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// Neither on Lambda nor asked for: nothing is built or written.
    Off,
    /// One line per call on stdout, where CloudWatch extracts the metrics (on Lambda, or
    /// with `PNS_METRICS=emf`).
    Stdout,
    /// Every line is built, then dropped: what a benchmark uses to count the CPU cost of the
    /// metrics without the I/O of writing them.
    Discard,
}

static OUTPUT: OnceLock<Output> = OnceLock::new();

/// Chooses the output before the first [`emit`]; after it, the choice stands and this
/// returns the output in force as the error.
pub fn set_output(output: Output) -> Result<(), Output> {
    OUTPUT.set(output).map_err(|_| self::output())
}

/// The output in force: the one set, or else the environment's.
pub fn output() -> Output {
    *OUTPUT.get_or_init(|| {
        let on_lambda = std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some();
        if on_lambda || std::env::var("PNS_METRICS").is_ok_and(|v| v == "emf") {
            Output::Stdout
        } else {
            Output::Off
        }
    })
}

/// Appends one EMF document for `function` with the given values to `out`.
///
/// Written directly rather than built as a `serde_json::Value` (one of the webhook's fast
/// paths, all explained in `pns_cdr_domain`'s `fast` module).
fn emf_line(out: &mut Vec<u8>, function: Function, values: &[(Metric, f64)], timestamp_ms: i64) {
    out.extend_from_slice(b"{\"_aws\":{\"Timestamp\":");
    serde_json::to_writer(&mut *out, &timestamp_ms).expect("an integer serialises");
    out.extend_from_slice(b",\"CloudWatchMetrics\":[{\"Namespace\":");
    json_string(out, NAMESPACE);
    out.extend_from_slice(b",\"Dimensions\":[[\"Function\"]],\"Metrics\":[");
    for (i, (metric, _)) in values.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"Name\":");
        json_string(out, metric.name());
        out.extend_from_slice(b",\"Unit\":");
        json_string(out, metric.unit().as_str());
        out.push(b'}');
    }
    out.extend_from_slice(b"]}]},\"Function\":");
    json_string(out, function.as_str());
    for (metric, value) in values {
        out.push(b',');
        json_string(out, metric.name());
        out.push(b':');
        // A whole count as an integer (most values are `1`); any other value in the shortest
        // round-trip form, `null` when it is not finite.
        if value.fract() == 0.0 && value.abs() < 9.0e15 {
            serde_json::to_writer(&mut *out, &(*value as i64)).expect("an integer serialises");
        } else {
            serde_json::to_writer(&mut *out, value).expect("a float serialises");
        }
    }
    out.push(b'}');
}

/// Names, units and the namespace are plain ASCII words (a test checks every name), so they
/// are quoted as they are: nothing to escape.
fn json_string(out: &mut Vec<u8>, s: &str) {
    debug_assert!(s.bytes().all(|b| b.is_ascii_alphanumeric()), "{s}");
    out.push(b'"');
    out.extend_from_slice(s.as_bytes());
    out.push(b'"');
}

/// Writes the metrics to stdout on Lambda (or when `PNS_METRICS=emf`); elsewhere does nothing.
pub fn emit(function: Function, values: &[(Metric, f64)]) {
    emit_at(function, values, time::OffsetDateTime::now_utc());
}

/// [`emit`], stamped with `at` instead of the clock's time.
pub fn emit_at(function: Function, values: &[(Metric, f64)], at: time::OffsetDateTime) {
    let output = output();
    if output == Output::Off || values.is_empty() {
        return;
    }
    // Whole milliseconds without `unix_timestamp_nanos`: its `i128` division is a library call.
    let timestamp_ms = at.unix_timestamp() * 1000 + i64::from(at.millisecond());
    // One buffer per thread, reused: the line costs no allocation after the first.
    thread_local! {
        static LINE: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    LINE.with_borrow_mut(|line| {
        line.clear();
        emf_line(line, function, values, timestamp_ms);
        line.push(b'\n');
        match output {
            // As `println!` would: one write of the whole line, a panic if stdout is gone.
            Output::Stdout => std::io::Write::write_all(&mut std::io::stdout().lock(), line)
                .expect("failed printing the metrics line to stdout"),
            Output::Off | Output::Discard => {
                std::hint::black_box(line);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;

    fn document(function: Function, values: &[(Metric, f64)], timestamp_ms: i64) -> String {
        let mut out = Vec::new();
        emf_line(&mut out, function, values, timestamp_ms);
        String::from_utf8(out).expect("serde_json writes UTF-8")
    }

    #[test]
    fn emf_document_declares_every_value() {
        let line = document(
            Function::Webhook,
            &[(Metric::PushStored, 1.0), (Metric::PushLatencyMs, 12.5)],
            1_700_000_000_000,
        );
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["Function"], "webhook");
        assert_eq!(v["PushStored"], 1.0);
        assert_eq!(v["PushLatencyMs"], 12.5);
        let directive = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], NAMESPACE);
        assert_eq!(directive["Dimensions"], json!([["Function"]]));
        assert_eq!(
            directive["Metrics"][1],
            json!({"Name": "PushLatencyMs", "Unit": "Milliseconds"})
        );
        assert_eq!(v["_aws"]["Timestamp"], 1_700_000_000_000i64);
        assert_eq!(v.as_object().unwrap().len(), 4, "{line}");
    }

    #[test]
    fn emf_document_is_json_whatever_the_values() {
        let line = document(
            Function::Archiver,
            &[
                (Metric::BytesArchived, f64::NAN),
                (Metric::PushReceived, 1e300),
            ],
            -1,
        );
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["BytesArchived"], Value::Null);
        assert_eq!(v["PushReceived"], 1e300);
        assert_eq!(v["_aws"]["Timestamp"], -1);
        assert_eq!(
            v["_aws"]["CloudWatchMetrics"][0]["Metrics"][0],
            json!({"Name": "BytesArchived", "Unit": "Bytes"})
        );
    }

    #[test]
    fn catalogue_names_are_plain_and_listed_once_per_function() {
        for (function, metrics) in CATALOGUE {
            for (i, metric) in metrics.iter().enumerate() {
                let name = metric.name();
                for word in [name, metric.unit().as_str(), function.as_str(), NAMESPACE] {
                    // `emf_line` quotes them without escaping.
                    assert!(word.bytes().all(|b| b.is_ascii_alphanumeric()), "{word}");
                }
                assert!(!metrics[..i].contains(metric), "{function:?}: {name} twice");
            }
        }
    }
}
