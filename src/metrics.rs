//! Metrics as CloudWatch Embedded Metric Format log lines: CloudWatch extracts them from the
//! function's log, so counting costs no API call and no latency. Namespace `PnsCdr`, one
//! dimension `Function`; the dashboard and alarms in `template.yaml` use these names.

use std::sync::OnceLock;

use serde_json::{json, Map, Value};

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

/// One EMF document for `function` with the given values.
pub fn emf_line(function: &str, values: &[(&str, f64, Unit)], timestamp_ms: i64) -> String {
    let definitions: Vec<Value> = values
        .iter()
        .map(|(name, _, unit)| json!({"Name": name, "Unit": unit.as_str()}))
        .collect();
    let mut document = Map::new();
    document.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{"Namespace": NAMESPACE, "Dimensions": [["Function"]], "Metrics": definitions}]
        }),
    );
    document.insert("Function".into(), function.into());
    for (name, value, _) in values {
        document.insert((*name).into(), json!(value));
    }
    Value::Object(document).to_string()
}

/// Writes the metrics to stdout on Lambda (or when `PNS_METRICS=emf`); elsewhere does nothing.
pub fn emit(function: &str, values: &[(&str, f64, Unit)]) {
    static ENABLED: OnceLock<bool> = OnceLock::new();
    let enabled = *ENABLED.get_or_init(|| {
        std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some()
            || std::env::var("PNS_METRICS").is_ok_and(|v| v == "emf")
    });
    if enabled && !values.is_empty() {
        let now = time::OffsetDateTime::now_utc();
        let timestamp_ms = (now.unix_timestamp_nanos() / 1_000_000) as i64;
        println!("{}", emf_line(function, values, timestamp_ms));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emf_document_declares_every_value() {
        let line = emf_line(
            "webhook",
            &[
                ("PushStored", 1.0, Unit::Count),
                ("PushLatencyMs", 12.5, Unit::Milliseconds),
            ],
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
    }
}
