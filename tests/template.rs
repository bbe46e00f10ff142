//! Invariants of `template.yaml` that linters do not check.

use pns_cdr::config::{DEFAULT_BUCKET, DEFAULT_QUEUE, DEFAULT_TABLE};
use pns_cdr::local::emulator::MAX_RECEIVE_COUNT;
use pns_cdr::local::poller::FUNCTION_TIMEOUT;
use serde_norway::Value;

fn template() -> Value {
    serde_norway::from_str(&std::fs::read_to_string("template.yaml").unwrap()).unwrap()
}

fn resource<'a>(t: &'a Value, name: &str) -> &'a Value {
    &t["Resources"][name]["Properties"]
}

fn functions(t: &Value) -> Vec<(String, &Value)> {
    t["Resources"]
        .as_mapping()
        .unwrap()
        .iter()
        .filter(|(_, r)| r["Type"] == "AWS::Serverless::Function")
        .map(|(k, r)| (k.as_str().unwrap().to_owned(), r))
        .collect()
}

#[test]
fn queue_visibility_covers_six_archiver_timeouts_and_redrive_is_sane() {
    let t = template();
    let timeout = resource(&t, "ArchiverFunction")["Timeout"]
        .as_u64()
        .unwrap();
    let visibility = resource(&t, "RecordingQueue")["VisibilityTimeout"]
        .as_u64()
        .unwrap();
    assert!(
        visibility >= 6 * timeout,
        "visibility {visibility} < 6 × {timeout}"
    );
    assert_eq!(
        timeout,
        FUNCTION_TIMEOUT.as_secs(),
        "the local stack simulates the same timeout"
    );
    let redrive = &resource(&t, "RecordingQueue")["RedrivePolicy"];
    let max_receive = redrive["maxReceiveCount"].as_u64().unwrap();
    assert!(max_receive >= 5);
    assert_eq!(
        max_receive,
        u64::from(MAX_RECEIVE_COUNT),
        "the local stack uses the same redrive"
    );
    let mapping = resource(&t, "ArchiverEventSourceMapping");
    assert!(mapping["FunctionResponseTypes"]
        .as_sequence()
        .unwrap()
        .iter()
        .any(|v| v == "ReportBatchItemFailures"));
    assert!(mapping["BatchSize"].as_u64().unwrap() <= 10);
    assert_eq!(
        resource(&t, "RecordingDeadLetterQueue")["MessageRetentionPeriod"].as_u64(),
        Some(1_209_600)
    );
}

#[test]
fn every_function_is_arm64_al2023_built_by_cargo_lambda() {
    let t = template();
    let functions = functions(&t);
    assert_eq!(functions.len(), 2);
    for (name, f) in functions {
        let p = &f["Properties"];
        assert_eq!(p["Runtime"], "provided.al2023", "{name}");
        assert_eq!(p["Architectures"][0], "arm64", "{name}");
        assert_eq!(f["Metadata"]["BuildMethod"], "rust-cargolambda", "{name}");
        let binary = f["Metadata"]["BuildProperties"]["Binary"].as_str().unwrap();
        assert!(
            std::path::Path::new(&format!("src/bin/{binary}.rs")).exists(),
            "{name}: no binary {binary}"
        );
    }
}

/// Every `Resource` under a function's policies, recursively.
fn policy_resources(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Mapping(m) => {
            for (k, v) in m {
                if k == "Resource" {
                    match v {
                        Value::Sequence(items) => {
                            out.extend(items.iter().map(|i| format!("{i:?}")))
                        }
                        other => out.push(format!("{other:?}")),
                    }
                } else {
                    policy_resources(v, out);
                }
            }
        }
        Value::Sequence(items) => items.iter().for_each(|i| policy_resources(i, out)),
        Value::Tagged(t) => policy_resources(&t.value, out),
        _ => {}
    }
}

#[test]
fn no_policy_grants_a_wildcard_resource() {
    let t = template();
    let mut resources = Vec::new();
    for (_, f) in functions(&t) {
        policy_resources(&f["Properties"]["Policies"], &mut resources);
    }
    assert!(resources.len() >= 6, "{resources:?}");
    for r in &resources {
        assert!(!r.contains("\"*\""), "wildcard resource {r}");
    }
}

#[test]
fn names_match_the_code_and_the_token_stays_secret() {
    let t = template();
    assert_eq!(t["Parameters"]["TableName"]["Default"], DEFAULT_TABLE);
    assert_eq!(t["Parameters"]["QueueName"]["Default"], DEFAULT_QUEUE);
    assert!(DEFAULT_BUCKET.starts_with("pns-recordings"));
    assert_eq!(t["Parameters"]["WebhookTokens"]["NoEcho"], true);
    for (name, output) in t["Outputs"].as_mapping().unwrap() {
        let value = format!("{:?}", output["Value"]);
        assert!(
            !value.contains("WebhookTokens"),
            "{name:?} outputs the token"
        );
    }
    // Every variable the template sets is one the code reads.
    let source: String = ["src/config.rs", "src/telemetry.rs"]
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    for (name, f) in functions(&t) {
        for (var, _) in f["Properties"]["Environment"]["Variables"]
            .as_mapping()
            .unwrap()
        {
            let var = var.as_str().unwrap();
            assert!(
                var == "RUST_LOG" || source.contains(&format!("\"{var}\"")),
                "{name}: {var} is read nowhere"
            );
        }
    }
}
