//! The operator tools (`pns_cdr::ops` and the `pnsctl` binary) against the emulator.

use crate::common;

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use std::collections::HashSet;
use std::error::Error as _;
use std::time::Duration;

use crate::common::*;
use pns_cdr::adapters::aws::AwsClients;
use pns_cdr::adapters::dynamodb::DynamoRecordStore;
use pns_cdr::adapters::s3::S3ObjectStore;
use pns_cdr::adapters::sqs::{queue_url, SqsDeadLetters, SqsJobQueue};
use pns_cdr::config::QueueRef;
use pns_cdr::domain::recording::{RecordingJob, MAX_DELIVERIES};
use pns_cdr::ports::{JobQueue, RecordStore};
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
        force: bool,
    ) -> Result<pns_cdr::domain::recording::RecordingJob, OpsError> {
        ops::rearchive(&self.records, &self.queue, id, force).await
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

    let job = ops.rearchive(10, false).await.unwrap();
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
    let again = ops.rearchive(10, false).await.unwrap();
    assert_eq!(
        (again.id, &again.url, &again.key),
        (job.id, &job.url, &job.key)
    );
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
async fn rearchive_of_a_pending_record_supersedes_its_job_and_the_record_ends_archived() {
    let stack = stack().await;
    let ops = tools(&stack).await;
    // Not ready for the first two requests: the job in flight is being retried.
    let url = stack.recordings.url("late", 4096, "fail=2");
    assert_eq!(push(&stack, push_body(60, &url)).await.0, 200);
    let first = drain_bodies(&stack).await;
    assert_eq!(first.len(), 1);
    let old: RecordingJob = serde_json::from_value(first[0].clone()).unwrap();
    ops.queue.send(&old).await.unwrap();
    assert_eq!(stack.poll_once().await.unwrap(), 1);
    let retried = item(&stack, 60).await.unwrap();
    assert_eq!(retried["recordingStatus"], "PENDING", "{retried}");
    assert_eq!(retried["recordingAttempts"], 1, "{retried}");

    // Refused, with the reason and the way out, through the library and the binary.
    let refused = ops.rearchive(60, false).await.unwrap_err();
    assert!(
        matches!(
            refused,
            OpsError::InFlight {
                id: 60,
                attempts: 1,
                ..
            }
        ),
        "{refused:?}"
    );
    let out = common::pnsctl(&stack, &["rearchive", "60"]).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("is PENDING") && stderr.contains("pnsctl rearchive --force 60"),
        "{stderr}"
    );
    assert_eq!(
        item(&stack, 60).await.unwrap(),
        retried,
        "refusal changes nothing"
    );

    let out = common::pnsctl(&stack, &["rearchive", "--force", "60"]).await;
    assert!(out.status.success(), "{out:?}");
    let forced = item(&stack, 60).await.unwrap();
    assert_eq!(forced["recordingStatus"], "PENDING");
    let since = forced["pendingSince"].as_i64().expect("pendingSince set");
    assert!(since >= old.queued_at, "{forced}");
    assert!(forced.get("recordingAttempts").is_none(), "{forced}");

    // The old job, on its last delivery, gives up: it is no longer the record's to fail.
    let mut event = SqsEvent::default();
    let mut message = SqsMessage::default();
    message.message_id = Some("old-job".into());
    message.body = Some(serde_json::to_string(&old).unwrap());
    message
        .attributes
        .insert("ApproximateReceiveCount".into(), MAX_DELIVERIES.to_string());
    event.records.push(message);
    let response = stack.archiver.handle_batch(event, None).await;
    assert!(response.batch_item_failures.is_empty(), "acknowledged");
    assert!(!ops.records.mark_failed(&old, "gave up").await.unwrap());
    let after_old = item(&stack, 60).await.unwrap();
    assert_eq!(after_old["recordingStatus"], "PENDING", "{after_old}");
    assert!(after_old.get("recordingError").is_none(), "{after_old}");

    // The queue now holds the old job (its retry) and the new one: the old is skipped, the
    // new one retries until the host answers, and the record ends ARCHIVED.
    for _ in 0..10 {
        if queue_depth(&stack, &stack.queues.queue_url).await == 0 {
            break;
        }
        stack.poll_once().await.unwrap();
    }
    let archived = item(&stack, 60).await.unwrap();
    assert_eq!(archived["recordingStatus"], "ARCHIVED", "{archived}");
    assert_eq!(
        archived["recordingSha256"],
        SampleRecording::new(1, 4096).sha256().as_str()
    );
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

    let job = tools(&stack).await.rearchive(11, false).await.unwrap();
    assert_eq!(job.key, "recordings/2022/12/19/11.mp3");
    let pending = item(&stack, 11).await.unwrap();
    assert_eq!(pending["recordingStatus"], "PENDING");
    assert_eq!(pending["recordingKey"], job.key.as_str());
    assert_eq!(
        drain_bodies(&stack).await,
        vec![json!({"id": 11, "url": url, "key": job.key, "queuedAt": job.queued_at})]
    );
}

#[tokio::test]
async fn rearchive_refuses_a_missing_record_and_one_without_recording() {
    let stack = stack().await;
    let ops = tools(&stack).await;
    assert_eq!(push(&stack, push_body(12, "")).await.0, 200);
    let before = item(&stack, 12).await.unwrap();
    assert_eq!(before["recordingStatus"], "NONE");

    let missing = ops.rearchive(999, false).await.unwrap_err();
    assert!(matches!(missing, OpsError::NotFound(999)), "{missing:?}");
    assert_eq!(missing.to_string(), "record 999 not found");
    let none = ops.rearchive(12, false).await.unwrap_err();
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
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("pnsctl: a table was not found")
            && stderr.contains("set PNS_TABLE_NAME"),
        "{stderr}"
    );

    let out = common::pnsctl(&stack, &["--help"]).await;
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("rearchive [--force] <id>"));
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

/// pnsctl with none of the developer's AWS settings: no region, no credentials, no profile,
/// no instance metadata service (so nothing is tried over the network).
fn bare_pnsctl(args: &[&str], home: &std::path::Path) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(common::pnsctl_binary());
    command.args(args).env_clear();
    if let Some(path) = std::env::var_os("PATH") {
        command.env("PATH", path);
    }
    command
        .env("HOME", home)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", home.join("no-config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", home.join("no-credentials"));
    command
}

#[tokio::test]
async fn the_pnsctl_binary_pipes_and_says_what_to_set_or_start() {
    let stack = stack().await;
    assert_eq!(push(&stack, push_body(70, "")).await.0, 200);

    // Data on stdout, logs on stderr, no escape codes in either when they are not terminals.
    let out = common::pnsctl_with(&stack, &["show", "70"], &[("RUST_LOG", "debug")]).await;
    assert!(out.status.success(), "{out:?}");
    let printed: Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON only");
    assert_eq!(printed["id"], 70);
    assert!(!out.stderr.is_empty(), "debug logs go to stderr");
    for stream in [&out.stdout, &out.stderr] {
        assert!(!stream.contains(&0x1b), "escape codes");
    }
    // A reader that stops reading (`| head -1`) costs no panic and no failure.
    let mut closed = std::process::Command::new(common::pnsctl_binary())
        .args(["show", "70"])
        .env("AWS_ENDPOINT_URL", &stack.endpoint)
        .env("PNS_TABLE_NAME", &stack.names.table)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(closed.stdout.take());
    let closed = closed.wait_with_output().unwrap();
    assert!(closed.status.success(), "{closed:?}");
    assert!(
        closed.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&closed.stderr)
    );
    // Quiet by default: only the data.
    let out = common::pnsctl(&stack, &["show", "70"]).await;
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let home = tempfile::tempdir().unwrap();
    let one_line = |out: &std::process::Output| {
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        assert!(out.stdout.is_empty(), "{out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        stderr
    };
    // No endpoint, no region: where the local stack is, and what AWS needs.
    let out = bare_pnsctl(&["show", "45"], home.path())
        .output()
        .await
        .unwrap();
    let stderr = one_line(&out);
    assert!(
        stderr.contains("AWS_REGION") && stderr.contains("AWS_ENDPOINT_URL=http://127.0.0.1:4566"),
        "{stderr}"
    );
    // A region but no credentials.
    let out = bare_pnsctl(&["show", "45"], home.path())
        .env("AWS_REGION", "eu-west-1")
        .output()
        .await
        .unwrap();
    let stderr = one_line(&out);
    assert!(
        stderr.contains("no AWS credentials")
            && stderr.contains("AWS_PROFILE")
            && stderr.contains("AWS_ENDPOINT_URL"),
        "{stderr}"
    );
    // The local stack stopped: nothing listens at the endpoint.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let out = bare_pnsctl(&["show", "45"], home.path())
        .env("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{closed}"))
        .output()
        .await
        .unwrap();
    let stderr = one_line(&out);
    assert!(
        stderr.contains(&format!("nothing answers at http://127.0.0.1:{closed}"))
            && stderr.contains("make run"),
        "{stderr}"
    );
}

#[tokio::test]
async fn the_pnsctl_binary_replay_fails_unless_the_webhook_answers_200() {
    let stack = stack().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("push.json");
    std::fs::write(&file, push_body(80, "")).unwrap();
    let file = file.to_str().unwrap();
    let wrong = format!("{}?token=wrong", stack.webhook_url);
    // A replay of a file calls no AWS API: it needs no AWS settings.
    let out = bare_pnsctl(&["replay", &wrong, "--file", file], dir.path())
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("-> 401"), "the answer is printed: {stdout}");
    assert!(!stdout.contains("wrong"), "no token printed: {stdout}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("answered 401, not 200"), "{stderr}");
    assert!(item(&stack, 80).await.is_none());

    let out = bare_pnsctl(&["replay", &endpoint(&stack), "--file", file], dir.path())
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("-> 200"));
    assert_eq!(item(&stack, 80).await.unwrap()["id"], 80);
}

#[tokio::test]
async fn the_pnsctl_binary_lists_the_calls_of_a_binding() {
    let stack = stack().await;
    // Three calls of order-7 out of start order, one of another order, one without any.
    let calls = [
        (90, Some("order-7"), "bind-a", 1_671_440_500),
        (91, Some("order-8"), "bind-b", 1_671_440_400),
        (92, Some("order-7"), "bind-a", 1_671_440_300),
        (93, None, "bind-a", 1_671_440_200),
        (94, Some("order-7"), "bind-c", 1_671_440_600),
    ];
    for (id, customer, bind, start) in calls {
        let mut body: Value = serde_json::from_str(&push_body(id, "")).unwrap();
        body["customerBindId"] = customer.into();
        body["bindId"] = bind.into();
        body["startAt"] = start.into();
        assert_eq!(push(&stack, body.to_string()).await.0, 200);
    }
    let ids = |out: std::process::Output| -> Vec<i64> {
        assert!(out.status.success(), "{out:?}");
        let printed: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
        printed.iter().map(|i| i["id"].as_i64().unwrap()).collect()
    };
    let by_order = common::pnsctl(&stack, &["calls", "--customer-bind-id", "order-7"]).await;
    assert_eq!(
        ids(by_order),
        [92, 90, 94],
        "exactly order-7's, oldest first"
    );
    let by_bind = common::pnsctl(&stack, &["calls", "--bind-id", "bind-a"]).await;
    assert_eq!(ids(by_bind), [93, 92, 90]);
    let none = common::pnsctl(&stack, &["calls", "--customer-bind-id", "order-9"]).await;
    assert!(ids(none).is_empty());
    let neither = common::pnsctl(&stack, &["calls"]).await;
    assert_eq!(neither.status.code(), Some(1), "one of the two is required");
}
