//! Events and the lake on the local stack: the tables' streams read by the publisher as
//! Lambda's event source would, the emulator's bus, and the lake the bus fills.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crate::common::*;
use aws_sdk_dynamodbstreams::types::ShardIteratorType;
use pns_cdr::domain::events::{DetailType, DETAIL_VERSION};
use pns_cdr::domain::numbers::NumberKeys;
use pns_cdr::domain::recording::LAKE_PREFIX;
use pns_cdr_dev::local::{streams, LocalStack, LOCAL_TOKEN};
use pns_cdr_dev::sim::{
    plan, reports, send, summary, verify, Delivery, Expect, PlannedRecording, RecordingHost,
    Workload,
};
use pnsctl::lake::Table;
use serde_json::Value;

/// Every event in the stack's lake, as delivered (duplicates included).
async fn lake(stack: &LocalStack) -> Vec<Value> {
    let s3 = &stack.clients.s3;
    let listed = s3
        .list_objects_v2()
        .bucket(&stack.names.bucket)
        .prefix(LAKE_PREFIX)
        .send()
        .await
        .unwrap();
    let mut events = Vec::new();
    for listed in listed.contents.unwrap_or_default() {
        let body = object(stack, &listed.key.unwrap()).await;
        for line in String::from_utf8(body).unwrap().lines() {
            events.push(serde_json::from_str(line).unwrap());
        }
    }
    events
}

/// The lake's events once `done` holds for them (or the test fails after a minute).
async fn lake_until(stack: &LocalStack, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let events = lake(stack).await;
        if done(&events) {
            return events;
        }
        assert!(
            Instant::now() < deadline,
            "the lake never got there: {events:#?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn detail_types(events: &[Value]) -> BTreeSet<String> {
    events
        .iter()
        .filter_map(|e| e["detail-type"].as_str().map(str::to_owned))
        .collect()
}

fn event_ids(events: &[Value]) -> BTreeSet<String> {
    events
        .iter()
        .filter_map(|e| e["detail"]["eventId"].as_str().map(str::to_owned))
        .collect()
}

/// The schema of each detail type, from `schemas/events/`.
fn validators() -> BTreeMap<DetailType, jsonschema::Validator> {
    DetailType::ALL
        .into_iter()
        .map(|t| {
            let path =
                pns_cdr_dev::repo_root().join(format!("schemas/events/{t}.v{DETAIL_VERSION}.json"));
            let schema: Value =
                serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
            let validator = jsonschema::options()
                .should_validate_formats(true)
                .build(&schema)
                .unwrap_or_else(|e| panic!("{t}'s schema: {e}"));
            (t, validator)
        })
        .collect()
}

/// Every event is one of ours and its detail validates against its type's schema.
fn assert_valid(events: &[Value]) {
    let validators = validators();
    for event in events {
        assert_eq!(event["source"], "pns-cdr");
        let detail_type = DetailType::parse(event["detail-type"].as_str().unwrap()).unwrap();
        let errors: Vec<String> = validators[&detail_type]
            .iter_errors(&event["detail"])
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{detail_type}: {errors:?}\n{event:#}");
    }
}

async fn post(url: &str, body: String) {
    let answer = reqwest::Client::new()
        .post(format!("{url}?token={LOCAL_TOKEN}"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
}

fn binding_error(request_id: &str) -> String {
    serde_json::json!({
        "code": 10013, "msg": "binding not exist", "requestId": request_id,
        "data": {"action": "queryAXB",
                 "requestParams": {"caller": "85255501111", "did": "85255502222"},
                 "occurrenceTime": "2026-03-29 11:36:53"}
    })
    .to_string()
}

#[tokio::test]
async fn a_push_its_recording_and_a_binding_error_become_events_that_match_their_schemas() {
    let stack = stack_with_events().await;
    let recording = stack.recordings.url("events", 2048, "");
    post(&stack.webhook_url, push_body(501, &recording)).await;
    // A refused URL: the record is born FAILED.
    post(
        &stack.webhook_url,
        push_body(502, "http://evil.example/a.mp3"),
    )
    .await;
    post(
        &stack.binding_error_url,
        binding_error("1640920940635361999"),
    )
    .await;

    let events = lake_until(&stack, |events| detail_types(events).len() == 4).await;
    assert_valid(&events);
    let ids = event_ids(&events);
    for id in [
        "CallRecorded:501",
        "CallRecorded:502",
        "UnboundCall:1640920940635361999",
    ] {
        assert!(ids.contains(id), "{id} missing: {ids:?}");
    }
    let archived = events
        .iter()
        .find(|e| e["detail-type"] == "RecordingArchived")
        .unwrap();
    assert_eq!(archived["detail"]["id"], 501);
    assert_eq!(archived["detail"]["recordingBytes"], 2048);
    let failed = events
        .iter()
        .find(|e| e["detail-type"] == "RecordingFailed")
        .unwrap();
    assert_eq!(
        (
            failed["detail"]["id"].as_i64(),
            failed["detail"]["stage"].as_str()
        ),
        (Some(502), Some("intake"))
    );
    // Masked by default; the DID stays whole.
    let recorded = events
        .iter()
        .find(|e| e["detail"]["eventId"] == "CallRecorded:501")
        .unwrap();
    assert_eq!(recorded["detail"]["caller"], "*******1234");
    assert_eq!(recorded["detail"]["did"], "85235757584");
    // Each number also as its keyed hash, the local stack's key: grouped without the number.
    let keys = NumberKeys::parse(pns_cdr_dev::local::LOCAL_NUMBER_KEY).unwrap();
    assert_eq!(
        recorded["detail"]["callerHash"].as_str(),
        keys.hash("85255501234").as_deref()
    );
    assert_eq!(
        recorded["detail"]["calleeHash"].as_str(),
        keys.hash("85255509876").as_deref()
    );
    let text = serde_json::to_string(&events).unwrap();
    for number in ["85255501234", "85255509876", "85255501111"] {
        assert!(!text.contains(number), "{number} reached the lake");
    }
}

#[tokio::test]
async fn replaying_a_stream_batch_publishes_nothing_new_to_consumers_that_dedupe() {
    let stack = stack_with_events().await;
    for id in 601..606 {
        post(&stack.webhook_url, push_body(id, "")).await;
    }
    let first = lake_until(&stack, |events| event_ids(events).len() == 5).await;

    // The whole stream again, as Lambda redelivers a batch after a timeout.
    let streams = aws_sdk_dynamodbstreams::Client::new(&stack.clients.config);
    let stream = &stack.downstream.calls_stream;
    let shard = streams
        .describe_stream()
        .stream_arn(stream)
        .send()
        .await
        .unwrap()
        .stream_description
        .unwrap()
        .shards
        .unwrap()[0]
        .shard_id
        .clone()
        .unwrap();
    let iterator = streams
        .get_shard_iterator()
        .stream_arn(stream)
        .shard_id(shard)
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await
        .unwrap()
        .shard_iterator
        .unwrap();
    let records = streams
        .get_records()
        .shard_iterator(iterator)
        .send()
        .await
        .unwrap()
        .records
        .unwrap();
    assert_eq!(records.len(), 5);
    let response = stack
        .publisher
        .handle(streams::lambda_event(stream, &records))
        .await;
    assert!(response.batch_item_failures.is_empty());

    let again = lake_until(&stack, |events| events.len() >= first.len() + 5).await;
    assert_eq!(event_ids(&again), event_ids(&first));
    assert_valid(&again);
    // The reports count each call once although the lake now holds every event twice.
    let python = pns_cdr_dev::repo_root().join(".venv/bin/python");
    let objects =
        pns_cdr::adapters::s3::S3ObjectStore::new(stack.clients.s3.clone(), &stack.names.bucket);
    let dir = tempfile::tempdir().unwrap();
    pnsctl::lake::copy_lake(&objects, dir.path()).await.unwrap();
    let sql = pnsctl::lake::report_sql("hangup-causes").unwrap();
    let table = pnsctl::lake::run_duckdb(python.to_str().unwrap(), sql, dir.path()).unwrap();
    let calls: i64 = table
        .objects()
        .iter()
        .map(|r| r["calls"].as_i64().unwrap())
        .sum();
    assert_eq!(calls, 5, "{table:?}");
}

#[tokio::test]
async fn a_batch_the_bus_keeps_refusing_is_described_in_the_failure_queue() {
    let stack = stack_with_events().await;
    // No bus: every PutEvents fails, as during an outage or a misconfiguration.
    stack
        .clients
        .events()
        .delete_event_bus()
        .name(&stack.names.event_bus)
        .send()
        .await
        .unwrap();
    post(&stack.webhook_url, push_body(701, "")).await;

    let deadline = Instant::now() + Duration::from_secs(60);
    let description = loop {
        let messages = stack
            .clients
            .sqs
            .receive_message()
            .queue_url(&stack.downstream.publisher_failures_url)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap()
            .messages
            .unwrap_or_default();
        if let Some(message) = messages.first() {
            break serde_json::from_str::<Value>(message.body().unwrap()).unwrap();
        }
        assert!(Instant::now() < deadline, "no failure was described");
    };
    let batch = &description["DDBStreamBatchInfo"];
    assert_eq!(batch["streamArn"], stack.downstream.calls_stream.as_str());
    assert_eq!(batch["batchSize"], 1);
    assert_eq!(
        description["requestContext"]["condition"],
        "RetryAttemptsExhausted"
    );
    // The record itself is safe: it is in the table, only its event is missing.
    assert!(item(&stack, 701).await.is_some());
    assert!(lake(&stack).await.is_empty());
}

/// Recordings that archive, one whose host is off the allow-list (refused at intake) and one
/// that is not audio (failed by the archiver), in turn.
struct Mixed(pns_cdr_dev::local::fake_nxcloud::FakeNxcloud);

impl RecordingHost for Mixed {
    fn recording(&self, id: i64, size: u64, seed: u64) -> PlannedRecording {
        let failed = |url: String, reason: &str| PlannedRecording {
            url,
            expect: Expect::Failed {
                reason_contains: reason.into(),
            },
        };
        match id % 4 {
            0 => failed(
                format!("https://files.example.org/{id}.mp3"),
                "not in the allow-list",
            ),
            1 => failed(
                self.0.url(
                    &format!("html-{id}"),
                    size,
                    &format!("seed={seed}&ctype=text/html"),
                ),
                "Content-Type is text/html",
            ),
            _ => self.0.recording(id, size, seed),
        }
    }
}

#[tokio::test]
async fn every_named_query_answers_what_the_simulator_sent() {
    let stack = stack_with_events().await;
    let workload = Workload {
        first_id: 800,
        count: 60,
        duplicate_share: 0.3,
        conflict_share: 0.05,
        recording_share: 0.6,
        recording_sizes: vec![4096],
        binding_error_share: 0.25,
        seed: 12,
    };
    let host = Mixed(
        pns_cdr_dev::local::fake_nxcloud::FakeNxcloud::start(0)
            .await
            .unwrap(),
    );
    let records = plan(&workload, Some(&host));
    let mut delivery = Delivery::new(format!("{}?token={LOCAL_TOKEN}", stack.webhook_url));
    delivery.binding_error_url = Some(format!("{}?token={LOCAL_TOKEN}", stack.binding_error_url));
    delivery.retry_interval = Duration::from_millis(200);
    delivery.retry_window = Duration::from_secs(20);
    let sent = send(&records, &delivery).await.unwrap();
    let target = stack.target();
    let verified = verify(&target, &records, &sent, Duration::from_secs(60))
        .await
        .unwrap();
    assert!(verified.passed(), "{}", summary(&sent, &verified));

    let python = pns_cdr_dev::repo_root().join(".venv/bin/python");
    let python = python.to_str().unwrap();
    let offset = time::macros::offset!(+8);
    let verdicts = reports::check(&target, &records, offset, python, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(verdicts.len(), 5);
    for (name, verdict) in &verdicts {
        assert!(verdict.is_ok(), "{name}: {}", verdict.as_ref().unwrap_err());
    }

    // The operator's command answers the same: the stack's lake holds only this run.
    let expected = reports::expected(&records, offset);
    for name in ["answer-rate-per-did", "recording-coverage"] {
        let out = pnsctl(&stack, &["report", name, "--json"]).await;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let rows: Vec<serde_json::Map<String, Value>> =
            serde_json::from_slice(&out.stdout).unwrap();
        let columns: Vec<String> = rows
            .first()
            .map(|r| r.keys().cloned().collect())
            .unwrap_or_default();
        let table = Table {
            rows: rows
                .iter()
                .map(|r| columns.iter().map(|c| r[c].clone()).collect())
                .collect(),
            columns,
        };
        reports::compare(&expected[name], &table).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[tokio::test]
async fn pnsctl_publish_sends_the_same_events_again_from_the_tables() {
    let stack = stack_with_events().await;
    let since = time::OffsetDateTime::now_utc() - time::Duration::minutes(1);
    for id in 901..904 {
        post(&stack.webhook_url, push_body(id, "")).await;
    }
    post(
        &stack.binding_error_url,
        binding_error("1640920940635369001"),
    )
    .await;
    let first = lake_until(&stack, |events| event_ids(events).len() == 4).await;

    let since = since
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    // Without the stack's phone-number mode it publishes nothing rather than guess.
    let refused = pnsctl(&stack, &["publish", "--since", &since]).await;
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("PNS_PHONE_NUMBERS"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let args = ["publish", "--since", &since];
    let out = pnsctl_with(&stack, &args, &[("PNS_PHONE_NUMBERS", "masked")]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("published 4 events"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let again = lake_until(&stack, |events| events.len() >= first.len() + 4).await;
    assert_eq!(event_ids(&again), event_ids(&first));
    assert_valid(&again);
}
