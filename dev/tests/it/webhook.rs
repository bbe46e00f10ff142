//! The webhook over real HTTP, through the real handler, against the emulator.

use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use aws_sdk_dynamodb::types::AttributeValue;
use futures_util::StreamExt;
use pns_cdr::adapters::dynamodb::{DynamoBindingErrorStore, DynamoRecordStore};
use pns_cdr::adapters::s3::S3ObjectStore;
use pns_cdr::adapters::sqs::SqsJobQueue;
use pns_cdr::domain::auth::Authenticator;
use pns_cdr::domain::url_policy::{UrlPolicy, UrlProfile, DEFAULT_RECORDING_HOSTS};
use pns_cdr::handlers::webhook::{Webhook, WebhookSettings};
use pns_cdr_dev::local::{server, LocalStack, LOCAL_TOKEN};
use serde_json::Value;

const RECORDING: &str =
    "https://remote.record.nxcloud.com/pns/20221219/228c76b1-a685-4b26-9e48-a8a1d14670d4.mp3";

async fn post(url: &str, query: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{url}?{query}"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (
        status,
        serde_json::from_slice(&response.bytes().await.unwrap()).unwrap(),
    )
}

async fn push(stack: &LocalStack, body: impl Into<reqwest::Body>) -> (u16, Value) {
    post(&stack.webhook_url, &format!("token={LOCAL_TOKEN}"), body).await
}

#[tokio::test]
async fn new_push_stores_one_readable_item_and_queues_one_job() {
    let stack = stack().await;
    let body =
        std::fs::read(pns_cdr_dev::repo_root().join("events/bodies/call-result.json")).unwrap();
    let (status, answer) = push(&stack, body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer,
        serde_json::json!({"ok": true, "id": 45, "duplicate": false})
    );

    let item = item(&stack, 45).await.expect("stored");
    assert_eq!(item["callId"], "1604763745256783872");
    assert_eq!(item["caller"], "85235757583");
    assert_eq!(item["startTime"], "2022-12-19T09:00:52Z");
    assert_eq!(item["callStatusText"], "NORMAL_END");
    assert_eq!(item["hangupBy"], "CALLER");
    assert_eq!(item["recordingStatus"], "PENDING");
    assert_eq!(item["recordingKey"], "recordings/2022/12/19/45.mp3");
    assert_eq!(item["payloadSha256"].as_str().unwrap().len(), 64);

    let mut jobs = drain_bodies(&stack).await;
    assert_eq!(jobs.len(), 1);
    // When it was queued: a record re-archived later counts only newer jobs.
    let queued_at = jobs[0]["queuedAt"].take();
    assert!(
        queued_at.as_i64().unwrap() > 1_700_000_000_000,
        "{queued_at}"
    );
    assert_eq!(
        jobs,
        vec![
            serde_json::json!({"id": 45, "url": RECORDING, "key": "recordings/2022/12/19/45.mp3", "queuedAt": null})
        ]
    );
}

#[tokio::test]
async fn the_same_push_five_times_is_one_item_and_one_job() {
    let stack = stack().await;
    let body = push_body(7, RECORDING);
    for attempt in 0..5 {
        let (status, answer) = push(&stack, body.clone()).await;
        assert_eq!(status, 200);
        assert_eq!(answer["duplicate"], attempt > 0, "{answer}");
        assert_eq!(answer["id"], 7);
    }
    assert_eq!(items(&stack).await.len(), 1);
    assert_eq!(drain_bodies(&stack).await.len(), 1);
    assert!(
        keys(&stack, "").await.is_empty(),
        "exact duplicates are not conflicts"
    );
}

#[tokio::test]
async fn concurrent_pushes_with_duplicates_store_each_id_once() {
    let stack = Arc::new(stack().await);
    // 100 pushes: 70 distinct ids, 30 repeats of some of them; every third has no recording.
    let ids: Vec<i64> = (1..=70).chain((1..=30).map(|i| i * 2)).collect();
    let statuses: Vec<u16> = futures_util::stream::iter(ids)
        .map(|id| {
            let stack = stack.clone();
            async move {
                let url = if id % 3 == 0 { "" } else { RECORDING };
                push(&stack, push_body(1000 + id, url)).await.0
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    assert_eq!(statuses.len(), 100);
    assert!(statuses.iter().all(|s| *s == 200));
    let stored = items(&stack).await;
    assert_eq!(stored.len(), 70);
    let with_recording = (1..=70).filter(|id| id % 3 != 0).count();
    assert_eq!(drain_bodies(&stack).await.len(), with_recording);
}

/// A webhook on the stack's table and bucket with its own queue URL, re-queuing PENDING
/// records after 1 s, served on a free port.
async fn serve_webhook(
    stack: &LocalStack,
    queue_url: String,
) -> (String, tokio::task::JoinHandle<()>) {
    let webhook = Webhook {
        store: DynamoRecordStore::new(stack.clients.dynamodb.clone(), &stack.names.table),
        queue: SqsJobQueue::new(stack.clients.sqs.clone(), queue_url),
        objects: S3ObjectStore::new(stack.clients.s3.clone(), &stack.names.bucket),
        bindings: DynamoBindingErrorStore::new(
            stack.clients.dynamodb.clone(),
            &stack.names.binding_errors_table,
        ),
        auth: Authenticator::new(LOCAL_TOKEN, "").unwrap().into(),
        policy: UrlPolicy::new(DEFAULT_RECORDING_HOSTS, UrlProfile::Local).unwrap(),
        settings: WebhookSettings {
            requeue_pending_after: Duration::from_secs(1),
            ..WebhookSettings::default()
        },
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}{}",
        listener.local_addr().unwrap(),
        server::ROUTES[0]
    );
    (
        url,
        tokio::spawn(server::serve(listener, Arc::new(webhook), None)),
    )
}

#[tokio::test]
async fn a_failed_enqueue_is_completed_by_the_retry() {
    let stack = stack().await;
    // A second webhook on the same table whose queue does not exist: the put succeeds, the
    // enqueue fails, and the push must not be answered 200.
    let (broken_url, server) =
        serve_webhook(&stack, format!("{}-missing", stack.queues.queue_url)).await;
    let body = push_body(11, RECORDING);
    let (status, answer) = post(&broken_url, &format!("token={LOCAL_TOKEN}"), body.clone()).await;
    assert_eq!(status, 503, "{answer}");
    assert_eq!(
        item(&stack, 11).await.unwrap()["recordingStatus"],
        "PENDING"
    );
    assert_eq!(queue_depth(&stack, &stack.queues.queue_url).await, 0);
    server.abort();

    // NXCLOUD retries a minute later; here the webhook re-queues PENDING records after 1 s.
    let (retry_url, _server) = serve_webhook(&stack, stack.queues.queue_url.clone()).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (status, answer) = post(&retry_url, &format!("token={LOCAL_TOKEN}"), body).await;
    assert_eq!(
        (status, answer["duplicate"].clone()),
        (200, Value::Bool(true)),
        "{answer}"
    );
    let jobs = drain_bodies(&stack).await;
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0]["id"], 11);
    assert_eq!(items(&stack).await.len(), 1);
}

#[tokio::test]
async fn invalid_bodies_are_quarantined_once_each_and_answered_400() {
    let stack = stack().await;
    let cases = [
        (
            r#"{"id":"forty-seven","callId":"1604763745256783999"}"#,
            Some("id"),
        ),
        (r#"{"callId":"1"}"#, Some("id")),
        (r#"{"id":5,"duration":"six"}"#, Some("duration")),
        (r#"[1,2,3]"#, None),
        ("not json at all", None),
    ];
    for (body, field) in cases {
        for _ in 0..3 {
            let (status, answer) = push(&stack, body).await;
            assert_eq!(status, 400, "{body}: {answer}");
            assert_eq!(answer["ok"], false);
            assert_eq!(answer["error"], "invalid_body");
            assert_eq!(answer["field"].as_str(), field, "{body}");
        }
    }
    let rejected = keys(&stack, "rejected/").await;
    assert_eq!(
        rejected.len(),
        cases.len(),
        "one object per distinct bad body: {rejected:?}"
    );
    let head = stack
        .clients
        .s3
        .head_object()
        .bucket(&stack.names.bucket)
        .key(pns_cdr::domain::recording::rejected_key(
            &pns_cdr::domain::sha256_hex(cases[0].0.as_bytes()),
        ))
        .send()
        .await
        .unwrap();
    assert!(head.metadata().unwrap()["reason"].contains("id"));
    assert!(items(&stack).await.is_empty());
    assert_eq!(queue_depth(&stack, &stack.queues.queue_url).await, 0);
}

#[tokio::test]
async fn unauthenticated_requests_change_nothing() {
    let stack = stack().await;
    let body = push_body(21, RECORDING);
    for query in [
        "",
        "token=wrong-token-value",
        "token=local-dev-toke",
        "token=local-dev-token0",
    ] {
        let (status, answer) = post(&stack.webhook_url, query, body.clone()).await;
        assert_eq!(status, 401, "{query}: {answer}");
        assert_eq!(answer["error"], "unauthorized");
    }
    // Invalid bodies with a bad token are not quarantined either.
    assert_eq!(
        post(&stack.webhook_url, "token=nope", "garbage").await.0,
        401
    );
    assert!(items(&stack).await.is_empty());
    assert_eq!(queue_depth(&stack, &stack.queues.queue_url).await, 0);
    assert!(keys(&stack, "").await.is_empty());

    // The bearer header is accepted as well.
    let response = reqwest::Client::new()
        .post(&stack.webhook_url)
        .bearer_auth(LOCAL_TOKEN)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn http_edges_answer_405_413_and_404() {
    let stack = stack().await;
    let get = reqwest::get(format!("{}?token={LOCAL_TOKEN}", stack.webhook_url))
        .await
        .unwrap();
    assert_eq!(get.status(), 405);
    assert_eq!(get.headers()["allow"], "POST");
    let huge = format!(r#"{{"id":1,"pad":"{}"}}"#, "x".repeat(64 * 1024));
    let (status, answer) = push(&stack, huge).await;
    assert_eq!(status, 413, "{answer}");
    assert!(answer["quarantineKey"]
        .as_str()
        .unwrap()
        .starts_with("rejected/"));
    let elsewhere = reqwest::Client::new()
        .post(stack.webhook_url.replace("/pns/call-result", "/other"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(elsewhere.status(), 404);
    assert!(items(&stack).await.is_empty());
}

#[tokio::test]
async fn conflicting_duplicate_keeps_the_first_record_and_saves_the_second_body() {
    let stack = stack().await;
    assert_eq!(push(&stack, push_body(31, "")).await.0, 200);
    let mut changed: Value = serde_json::from_str(&push_body(31, "")).unwrap();
    changed["duration"] = 99.into();
    for _ in 0..2 {
        let (status, answer) = push(&stack, changed.to_string()).await;
        assert_eq!(status, 200);
        assert_eq!(answer["duplicate"], true);
        assert_eq!(answer["conflict"], true);
    }
    assert_eq!(item(&stack, 31).await.unwrap()["duration"], 6);
    let conflicts = keys(&stack, "conflicts/31/").await;
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    let saved: Value = serde_json::from_slice(&object(&stack, &conflicts[0]).await).unwrap();
    assert_eq!(saved["duration"], 99);
}

#[tokio::test]
async fn vendor_variations_are_accepted_and_kept() {
    let stack = stack().await;
    let body = r#"{"id":"48","callId":1604763745256783872,"callStatus":"2","duration":"0","answerAt":0,
        "recordFile":"","extensionCaller":"8001","hangup":"1"}"#;
    let (status, answer) = push(&stack, body).await;
    assert_eq!(status, 200, "{answer}");
    let item = item(&stack, 48).await.unwrap();
    assert_eq!(item["callId"], "1604763745256783872");
    assert_eq!(item["callStatus"], 2);
    assert_eq!(item["callStatusText"], "ABNORMAL_END");
    assert_eq!(item["answered"], false);
    assert_eq!(item["hangupBy"], "CALLEE");
    assert_eq!(item["recordingStatus"], "NONE");
    assert_eq!(item["extraFields"]["extensionCaller"], "8001");
    assert_eq!(queue_depth(&stack, &stack.queues.queue_url).await, 0);
}

#[tokio::test]
async fn unknown_fields_dynamodb_cannot_hold_as_numbers_are_kept_as_text() {
    let stack = stack().await;
    // DynamoDB refuses these magnitudes; before, the put failed on every retry (503).
    let body = r#"{"id":62,"startAt":1671440452,"recordFile":"","extensionCaller":1e200,
        "extensionCallee":5e-324,"rating":{"score":1e100}}"#;
    let (status, answer) = push(&stack, body).await;
    assert_eq!(status, 200, "{answer}");
    let item = item(&stack, 62).await.unwrap();
    assert_eq!(item["extraFields"]["extensionCaller"], "1e+200");
    assert_eq!(item["extraFields"]["extensionCallee"], "5e-324");
    assert_eq!(item["extraFields"]["rating"]["score"], 1e100);
}

#[tokio::test]
async fn empty_index_keys_do_not_block_the_record() {
    let stack = stack().await;
    let body = r#"{"id":61,"callId":"","businessId":"","startAt":1671440452,"recordFile":""}"#;
    let (status, answer) = push(&stack, body).await;
    assert_eq!(status, 200, "{answer}");
    assert!(item(&stack, 61).await.is_some());
}

#[tokio::test]
async fn a_refused_recording_url_is_recorded_as_failed_without_a_job() {
    let stack = stack().await;
    let (status, _) = push(
        &stack,
        push_body(51, "http://169.254.169.254/latest/meta-data/"),
    )
    .await;
    assert_eq!(status, 200, "the call record itself is valid and kept");
    let item = item(&stack, 51).await.unwrap();
    assert_eq!(item["recordingStatus"], "FAILED");
    assert!(
        item["recordingError"]
            .as_str()
            .unwrap()
            .contains("not allowed"),
        "{item}"
    );
    assert_eq!(queue_depth(&stack, &stack.queues.queue_url).await, 0);
}

#[tokio::test]
async fn a_binding_error_is_stored_once_from_either_route_and_nothing_is_rejected() {
    let stack = stack().await;
    let body =
        std::fs::read(pns_cdr_dev::repo_root().join("events/bodies/binding-error.json")).unwrap();
    let token = format!("token={LOCAL_TOKEN}");
    // NXCLOUD's three deliveries, as a customer with one URL or two would receive them.
    let urls = [
        &stack.binding_error_url,
        &stack.webhook_url,
        &stack.binding_error_url,
    ];
    for (n, url) in urls.into_iter().enumerate() {
        let (status, answer) = post(url, &token, body.clone()).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["requestId"], "1640920940635361280");
        assert_eq!(answer["duplicate"], n > 0, "{answer}");
    }
    let stored = stack.binding_errors().await.unwrap();
    assert_eq!(stored.len(), 1, "{stored:?}");
    let item = &stored[0];
    assert_eq!(item["code"], 10013);
    assert_eq!(item["msg"], "binding not exist");
    assert_eq!(item["action"], "queryAXB");
    assert_eq!(item["did"], "85299999999");
    assert_eq!(item["occurrenceTime"], "2023-03-29 11:36:53");
    assert_eq!(item["occurredAt"], "2023-03-29T03:36:53Z", "read as UTC+8");
    assert!(keys(&stack, "rejected/").await.is_empty());
    assert!(items(&stack).await.is_empty(), "no call record");

    // Listable by DID and day, through the index.
    let by_day = stack
        .clients
        .dynamodb
        .query()
        .table_name(&stack.names.binding_errors_table)
        .index_name(pns_cdr::domain::binding::DID_INDEX)
        .key_condition_expression("did = :did AND begins_with(occurredAt, :day)")
        .expression_attribute_values(":did", AttributeValue::S("85299999999".into()))
        .expression_attribute_values(":day", AttributeValue::S("2023-03-29".into()))
        .send()
        .await
        .unwrap();
    assert_eq!(by_day.count(), 1);

    // An invalid one is quarantined like any other body, named as a binding error.
    let (status, answer) = post(
        &stack.binding_error_url,
        &token,
        r#"{"requestId":"r","code":"ten"}"#,
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["field"], "code");
    assert_eq!(keys(&stack, "rejected/").await.len(), 1);
}
