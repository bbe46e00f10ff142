//! The operator tools (`pns_cdr::ops` and the `pnsctl` binary) against the emulator.

use crate::common;

use std::collections::HashSet;
use std::error::Error as _;
use std::time::Duration;

use crate::common::*;
use pns_cdr::adapters::aws::AwsClients;
use pns_cdr::adapters::dynamodb::DynamoRecordStore;
use pns_cdr::adapters::s3::S3ObjectStore;
use pns_cdr::adapters::sqs::{queue_url, SqsDeadLetters, SqsJobQueue};
use pns_cdr::config::QueueRef;
use pns_cdr_dev::local::fake_nxcloud::SampleRecording;
use pns_cdr_dev::local::{LocalStack, LOCAL_TOKEN};
use pnsctl::{self as ops, BodySource, OpsError};
use serde_json::{json, Value};

/// The ports the verbs take, over the test stack's resources.
struct Tools {
    records: DynamoRecordStore,
    queue: SqsJobQueue,
    objects: S3ObjectStore,
}

/// The operator's clients: the IAM check holds their calls to the operator policy.
async fn operator(stack: &LocalStack) -> AwsClients {
    AwsClients::for_caller(&stack.endpoint, "pnsctl")
        .await
        .unwrap()
}

async fn tools(stack: &LocalStack) -> Tools {
    let clients = &operator(stack).await;
    Tools {
        records: DynamoRecordStore::new(clients.dynamodb.clone(), &stack.names.table),
        queue: SqsJobQueue::new(clients.sqs.clone(), &stack.queues.queue_url),
        objects: S3ObjectStore::new(clients.s3.clone(), &stack.names.bucket),
    }
}

impl Tools {
    async fn rearchive(
        &self,
        id: i64,
    ) -> Result<pns_cdr::domain::recording::RecordingJob, OpsError> {
        ops::rearchive(&self.records, &self.queue, id).await
    }

    async fn show(&self, id: i64) -> Result<Value, OpsError> {
        ops::show(&self.records, id).await.map(Value::Object)
    }

    async fn show_call(&self, call_id: &str) -> Result<Vec<Value>, OpsError> {
        let items = ops::show_call(&self.records, call_id).await?;
        Ok(items.into_iter().map(Value::Object).collect())
    }

    async fn replay(&self, endpoint: &str, source: &BodySource) -> Result<ops::Replayed, OpsError> {
        ops::replay(&self.objects, endpoint, source).await
    }
}

fn endpoint(stack: &LocalStack) -> String {
    format!("{}?token={LOCAL_TOKEN}", stack.webhook_url)
}

/// Pushes through the webhook over HTTP, like NXCLOUD.
async fn push(stack: &LocalStack, body: impl Into<reqwest::Body>) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(endpoint(stack))
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

/// An error and all its sources, as an operator would read them.
fn full_message(e: &OpsError) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        message = format!("{message}: {s}");
        source = s.source();
    }
    message
}

#[tokio::test]
async fn redrive_moves_dead_letters_back_to_the_queue() {
    let stack = stack().await;
    let bodies: Vec<Value> = (1..=3)
        .map(|id| json!({"id": id, "url": format!("https://h/{id}.mp3"), "key": format!("k/{id}")}))
        .collect();
    for body in &bodies {
        stack
            .clients
            .sqs
            .send_message()
            .queue_url(&stack.queues.dead_letter_queue_url)
            .message_body(body.to_string())
            .send()
            .await
            .unwrap();
    }
    // By name, as `pnsctl` finds the local stack's queues.
    let sqs = &operator(&stack).await.sqs;
    let queue = QueueRef::Name(stack.names.queue.clone());
    let queue = SqsJobQueue::new(sqs.clone(), queue_url(sqs, &queue).await.unwrap());
    let dead = QueueRef::Name(stack.names.dead_letter_queue.clone());
    let dead = SqsDeadLetters::new(sqs.clone(), queue_url(sqs, &dead).await.unwrap());
    let redrive = |max| ops::redrive(&queue, &dead, max, |_| {});

    assert_eq!(redrive(2).await.unwrap(), 2, "at most max");
    assert_eq!(
        queue_depth(&stack, &stack.queues.dead_letter_queue_url).await,
        1
    );
    assert_eq!(redrive(10).await.unwrap(), 1);
    assert_eq!(
        queue_depth(&stack, &stack.queues.dead_letter_queue_url).await,
        0
    );
    let moved: HashSet<String> = drain_bodies(&stack)
        .await
        .iter()
        .map(Value::to_string)
        .collect();
    let sent: HashSet<String> = bodies.iter().map(Value::to_string).collect();
    assert_eq!(moved, sent);
    assert_eq!(redrive(10).await.unwrap(), 0, "nothing left to move");
}

#[tokio::test]
async fn rearchive_puts_a_failed_recording_back_and_the_archiver_copies_it() {
    let mut options = options();
    // The first 404 is final, so the record fails for good while the host would now answer.
    options.archiver.retry_grace = Duration::ZERO;
    let stack = LocalStack::start(options).await.unwrap();
    let ops = tools(&stack).await;
    let url = stack.recordings.url("ok", 2048, "fail=1");
    assert_eq!(push(&stack, push_body(10, &url)).await.0, 200);
    assert_eq!(stack.poll_once().await.unwrap(), 1);
    let failed = item(&stack, 10).await.unwrap();
    assert_eq!(failed["recordingStatus"], "FAILED", "{failed}");
    assert!(failed.get("failedAt").is_some());

    let job = ops.rearchive(10).await.unwrap();
    assert_eq!(job.id, 10);
    assert_eq!(job.url, url);
    assert_eq!(job.key, "recordings/2022/12/19/10.mp3");
    let pending = item(&stack, 10).await.unwrap();
    assert_eq!(pending["recordingStatus"], "PENDING");
    assert_eq!(pending["pending"], "PENDING", "back in the pending index");
    for gone in ["recordingError", "failedAt", "recordingAttempts"] {
        assert!(pending.get(gone).is_none(), "{gone}: {pending}");
    }
    assert_eq!(queue_depth(&stack, &stack.queues.queue_url).await, 1);

    assert_eq!(stack.poll_once().await.unwrap(), 1);
    let expected = SampleRecording::new(1, 2048).sha256();
    let archived = item(&stack, 10).await.unwrap();
    assert_eq!(archived["recordingStatus"], "ARCHIVED", "{archived}");
    assert_eq!(archived["recordingSha256"], expected.as_str());
    assert!(archived.get("pending").is_none());
    assert_eq!(keys(&stack, "recordings/").await, vec![job.key.clone()]);

    // An archived record can be re-archived too: same key, same bytes, ARCHIVED again.
    assert_eq!(ops.rearchive(10).await.unwrap(), job);
    assert_eq!(
        item(&stack, 10).await.unwrap()["recordingStatus"],
        "PENDING"
    );
    assert_eq!(stack.poll_once().await.unwrap(), 1);
    let again = item(&stack, 10).await.unwrap();
    assert_eq!(again["recordingStatus"], "ARCHIVED");
    assert_eq!(again["recordingSha256"], expected.as_str());
    assert_eq!(queue_depth(&stack, &stack.queues.queue_url).await, 0);
}

#[tokio::test]
async fn rearchive_of_a_refused_url_gets_the_key_the_webhook_would_have_given() {
    let stack = stack().await;
    let url = "https://recordings.example.com/r11.mp3";
    assert_eq!(push(&stack, push_body(11, url)).await.0, 200);
    let refused = item(&stack, 11).await.unwrap();
    assert_eq!(refused["recordingStatus"], "FAILED");
    assert!(refused.get("recordingKey").is_none(), "{refused}");
    assert_eq!(queue_depth(&stack, &stack.queues.queue_url).await, 0);

    let job = tools(&stack).await.rearchive(11).await.unwrap();
    assert_eq!(job.key, "recordings/2022/12/19/11.mp3");
    let pending = item(&stack, 11).await.unwrap();
    assert_eq!(pending["recordingStatus"], "PENDING");
    assert_eq!(pending["recordingKey"], job.key.as_str());
    assert_eq!(
        drain_bodies(&stack).await,
        vec![json!({"id": 11, "url": url, "key": job.key})]
    );
}

#[tokio::test]
async fn rearchive_refuses_a_missing_record_and_one_without_recording() {
    let stack = stack().await;
    let ops = tools(&stack).await;
    assert_eq!(push(&stack, push_body(12, "")).await.0, 200);
    let before = item(&stack, 12).await.unwrap();
    assert_eq!(before["recordingStatus"], "NONE");

    let missing = ops.rearchive(999).await.unwrap_err();
    assert!(matches!(missing, OpsError::NotFound(999)), "{missing:?}");
    assert_eq!(missing.to_string(), "record 999 not found");
    let none = ops.rearchive(12).await.unwrap_err();
    assert!(matches!(none, OpsError::NoRecording(12)), "{none:?}");

    assert_eq!(item(&stack, 12).await.unwrap(), before, "record untouched");
    assert!(item(&stack, 999).await.is_none(), "nothing created");
    assert_eq!(queue_depth(&stack, &stack.queues.queue_url).await, 0);
}

#[tokio::test]
async fn show_and_show_call_return_the_stored_item() {
    let stack = stack().await;
    let ops = tools(&stack).await;
    for id in [30, 31] {
        assert_eq!(push(&stack, push_body(id, "")).await.0, 200);
    }
    let stored = item(&stack, 30).await.unwrap();
    assert_eq!(ops.show(30).await.unwrap(), stored);
    assert!(matches!(ops.show(32).await, Err(OpsError::NotFound(32))));

    let call_id = stored["callId"].as_str().unwrap();
    assert_eq!(call_id, "1604763745256700030");
    assert_eq!(ops.show_call(call_id).await.unwrap(), vec![stored]);
    assert!(ops.show_call("0").await.unwrap().is_empty());
}

#[tokio::test]
async fn replay_posts_a_saved_body_from_a_file_or_from_the_bucket() {
    let stack = stack().await;
    let ops = tools(&stack).await;

    let path = std::env::temp_dir().join(format!("pnsctl-replay-{}-40.json", std::process::id()));
    std::fs::write(&path, push_body(40, "")).unwrap();
    let answer = ops
        .replay(&endpoint(&stack), &BodySource::File(path.clone()))
        .await
        .unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(answer.status, 200, "{}", answer.body);
    let body: Value = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(body["id"], 40);
    assert!(item(&stack, 40).await.is_some());

    let (status, rejected) = push(&stack, r#"{"id":"forty-one"}"#).await;
    assert_eq!(status, 400);
    let key = rejected["quarantineKey"].as_str().unwrap().to_owned();
    assert!(key.starts_with("rejected/"), "{key}");
    let answer = ops
        .replay(&endpoint(&stack), &BodySource::S3Key(key))
        .await
        .unwrap();
    assert_eq!(answer.status, 400);
    let body: Value = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(body["error"], "invalid_body");

    let missing = ops
        .replay(
            &endpoint(&stack),
            &BodySource::S3Key("rejected/none.json".into()),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&missing, OpsError::ObjectNotFound(k) if k == "rejected/none.json"),
        "{missing:?}"
    );
}

#[tokio::test]
async fn replay_errors_never_show_the_token() {
    let stack = stack().await;
    let ops = tools(&stack).await;
    let body = BodySource::S3Key("unused".into());
    for endpoint in [
        "ftp://127.0.0.1/pns/call-result?token=s3cret-token",
        "not a url?token=s3cret-token",
    ] {
        let e = ops.replay(endpoint, &body).await.unwrap_err();
        assert!(matches!(e, OpsError::InvalidEndpoint), "{e:?}");
    }
    // Nothing listens on port 1: the request itself fails.
    let path = std::env::temp_dir().join(format!("pnsctl-replay-{}-tok.json", std::process::id()));
    std::fs::write(&path, "{}").unwrap();
    let e = ops
        .replay(
            "http://127.0.0.1:1/pns/call-result?token=s3cret-token",
            &BodySource::File(path.clone()),
        )
        .await
        .unwrap_err();
    std::fs::remove_file(&path).unwrap();
    assert!(matches!(e, OpsError::Http { .. }), "{e:?}");
    let message = full_message(&e);
    assert!(
        message.contains("http://127.0.0.1:1/pns/call-result"),
        "{message}"
    );
    assert!(!message.contains("s3cret"), "{message}");
    assert!(!format!("{e:?}").contains("s3cret"), "{e:?}");
}

#[tokio::test]
async fn the_pnsctl_binary_shows_a_record_and_redrives() {
    let stack = stack().await;
    assert_eq!(push(&stack, push_body(50, "")).await.0, 200);

    let out = common::pnsctl(&stack, &["show", "50"]).await;
    assert!(out.status.success(), "{out:?}");
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed, item(&stack, 50).await.unwrap());

    let out = common::pnsctl(&stack, &["show-call", "1604763745256700050"]).await;
    assert!(out.status.success(), "{out:?}");
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed[0]["id"], 50);

    // Queue URLs are looked up by name, as for the local stack.
    let out = common::pnsctl(&stack, &["redrive", "--max", "5"]).await;
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("moved 0 messages"));

    let out = common::pnsctl(&stack, &["show", "51"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "pnsctl: record 51 not found"
    );

    let out = tokio::process::Command::new(common::pnsctl_binary())
        .args(["show", "50"])
        .env("AWS_ENDPOINT_URL", &stack.endpoint)
        .env("PNS_TABLE_NAME", "no-such-table")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("GetItem failed") && stderr.contains("ResourceNotFoundException"),
        "{stderr}"
    );

    let out = common::pnsctl(&stack, &["--help"]).await;
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("rearchive <id>"));
    let out = common::pnsctl(&stack, &["frobnicate"]).await;
    assert_eq!(out.status.code(), Some(1));
    // clap writes the usage line capitalised.
    assert!(String::from_utf8_lossy(&out.stderr).contains("Usage: pnsctl"));
}

#[tokio::test]
async fn the_pnsctl_binary_shows_binding_errors_by_id_and_by_did_and_day() {
    let stack = stack().await;
    let body =
        std::fs::read(pns_cdr_dev::repo_root().join("events/bodies/binding-error.json")).unwrap();
    let answer = reqwest::Client::new()
        .post(format!("{}?token={LOCAL_TOKEN}", stack.binding_error_url))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);

    let out = common::pnsctl(&stack, &["binding-error", "1640920940635361280"]).await;
    assert!(out.status.success(), "{out:?}");
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed["code"], 10013);
    assert_eq!(printed["occurredAt"], "2023-03-29T03:36:53Z");

    let list = |day: &'static str| {
        let stack = &stack;
        async move {
            let out = pnsctl(
                stack,
                &["binding-errors", "--did", "85299999999", "--day", day],
            )
            .await;
            assert!(out.status.success(), "{out:?}");
            serde_json::from_slice::<Vec<Value>>(&out.stdout).unwrap()
        }
    };
    assert_eq!(list("2023-03-29").await.len(), 1);
    assert!(list("2023-03-30").await.is_empty());

    let out = common::pnsctl(&stack, &["binding-error", "0"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "pnsctl: binding error 0 not found"
    );
    let out = pnsctl(
        &stack,
        &["binding-errors", "--did", "1", "--day", "29/03/2023"],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "a day is YYYY-MM-DD");
}
