//! Metrics as CloudWatch Embedded Metric Format log lines: CloudWatch extracts them from the
//! function's log, so counting costs no API call and no latency. Namespace `PnsCdr`, one
//! dimension `Function`; the dashboard and alarms in `template.yaml` use these names.

use std::sync::OnceLock;

use serde_json::{json, Value};

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
    /// 200 for an id (or requestId) already stored with the same payload: an exact retry.
    PushDuplicate,
    /// 200 for an id (or requestId) already stored with another payload: the first is kept,
    /// the new body saved under `conflicts/`.
    PushConflict,
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
            Self::PushConflict => "PushConflict",
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
            Metric::PushConflict,
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

/// Where [`emit`] sends its lines; chosen once per process (`ProcessConfig::metrics`).
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

/// The output in force: the one set, else [`Output::Off`].
pub fn output() -> Output {
    *OUTPUT.get_or_init(|| Output::Off)
}

/// One EMF document for `function` with the given values.
fn emf_line(function: Function, values: &[(Metric, f64)], timestamp_ms: i64) -> Value {
    let definitions: Vec<Value> = (values.iter())
        .map(|(metric, _)| json!({"Name": metric.name(), "Unit": metric.unit().as_str()}))
        .collect();
    let mut line = json!({
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [["Function"]],
                "Metrics": definitions,
            }],
        },
        "Function": function.as_str(),
    });
    for (metric, value) in values {
        line[metric.name()] = json!(value);
    }
    line
}

/// Writes the metrics to stdout on Lambda (or when `PNS_METRICS=emf`); elsewhere does nothing.
pub fn emit(function: Function, values: &[(Metric, f64)]) {
    let output = output();
    if output == Output::Off || values.is_empty() {
        return;
    }
    let now = time::OffsetDateTime::now_utc();
    let timestamp_ms = (now.unix_timestamp_nanos() / 1_000_000) as i64;
    let line = emf_line(function, values, timestamp_ms);
    match output {
        Output::Stdout => println!("{line}"),
        Output::Off | Output::Discard => {
            std::hint::black_box(line);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emf_document_declares_every_value() {
        let v = emf_line(
            Function::Webhook,
            &[(Metric::PushStored, 1.0), (Metric::PushLatencyMs, 12.5)],
            1_700_000_000_000,
        );
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
        assert_eq!(v.as_object().unwrap().len(), 4, "{v}");
    }

    #[test]
    fn emf_document_is_json_whatever_the_values() {
        let line = emf_line(
            Function::Archiver,
            &[
                (Metric::BytesArchived, f64::NAN),
                (Metric::PushReceived, 1e300),
            ],
            -1,
        )
        .to_string();
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["BytesArchived"], Value::Null);
        assert_eq!(v["PushReceived"], 1e300);
        assert_eq!(v["_aws"]["Timestamp"], -1);
    }

    #[test]
    fn catalogue_lists_each_metric_once_per_function() {
        for (function, metrics) in CATALOGUE {
            for (i, metric) in metrics.iter().enumerate() {
                assert!(
                    !metrics[..i].contains(metric),
                    "{function:?}: {metric:?} twice"
                );
            }
        }
    }
}
