//! The archiver against the emulator and a local recording host, over real sockets.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use pns_cdr::adapters::dynamodb::DynamoRecordStore;
use pns_cdr::adapters::http_source::{HttpRecordingSource, HttpTimeouts, StaticLookup};
use pns_cdr::domain::cdr::CallRecord;
use pns_cdr::domain::item::{record_item, RecordingPlan};
use pns_cdr::domain::recording::{recording_key, RecordingJob};
use pns_cdr::domain::sha256_hex;
use pns_cdr::domain::url_policy::{UrlPolicy, UrlProfile, DEFAULT_RECORDING_HOSTS};
use pns_cdr::handlers::archiver::{Archiver, Outcome};
use pns_cdr::ports::{ObjectMeta, ObjectStore, RecordStore};
use pns_cdr_dev::local::fake_nxcloud::SampleRecording;
use pns_cdr_dev::local::fault_proxy::{Fault, FaultProxy};
use pns_cdr_dev::local::{LocalStack, LOCAL_TOKEN};
use time::OffsetDateTime;

const MIB: u64 = 1024 * 1024;

/// Stores a PENDING record for `url` directly (as the webhook would) and returns its job.
async fn pending(stack: &LocalStack, id: i64, url: &str) -> RecordingJob {
    let body = push_body(id, url);
    let push = CallRecord::parse(body.as_bytes()).unwrap();
    let now = OffsetDateTime::now_utc();
    let key = recording_key(id, push.record.start_at, now, url);
    let item = record_item(
        push.clone(),
        now,
        &RecordingPlan::Pending { key: key.clone() },
    );
    stack.record_store().put_new(item).await.unwrap();
    RecordingJob::new(id, url, key, now)
}

/// Pushes through the webhook over HTTP, like NXCLOUD.
async fn push(stack: &LocalStack, id: i64, url: &str) {
    let response = reqwest::Client::new()
        .post(format!("{}?token={LOCAL_TOKEN}", stack.webhook_url))
        .body(push_body(id, url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn recordings_of_every_size_class_arrive_byte_identical() {
    let stack = stack().await;
    let sizes = [1024, 79 * MIB / 10, 8 * MIB + 1, 100 * MIB];
    for (i, size) in sizes.into_iter().enumerate() {
        let id = 100 + i as i64;
        push(
            &stack,
            id,
            &stack
                .recordings
                .url(&format!("r{id}"), size, &format!("seed={id}")),
        )
        .await;
        assert_eq!(stack.poll_once().await.unwrap(), 1);

        let expected = SampleRecording::new(id as u64, size).sha256();
        let item = item(&stack, id).await.unwrap();
        assert_eq!(item["recordingStatus"], "ARCHIVED", "{size}: {item}");
        assert_eq!(item["recordingBytes"], size);
        assert_eq!(item["recordingSha256"], expected.as_str());
        assert_eq!(item["recordingContentType"], "audio/mpeg");
        let key = item["recordingKey"].as_str().unwrap();
        let stored = object(&stack, key).await;
        assert_eq!(stored.len() as u64, size);
        assert_eq!(sha256_hex(&stored), expected, "{size} bytes differ");
    }
    assert_eq!(keys(&stack, "recordings/").await.len(), 4);
    assert_eq!(open_uploads(&stack).await, 0);
    assert_eq!(queue_depth(&stack, &stack.queues.queue_url).await, 0);
}

#[tokio::test]
async fn not_ready_twice_then_archived_on_the_third_delivery() {
    let stack = stack().await;
    let url = stack.recordings.url("late", 4096, "fail=2");
    push(&stack, 200, &url).await;
    stack.poll_once().await.unwrap();
    stack.poll_once().await.unwrap();
    let item_after_two = item(&stack, 200).await.unwrap();
    assert_eq!(item_after_two["recordingStatus"], "PENDING");
    assert_eq!(item_after_two["recordingAttempts"], 2);
    assert!(item_after_two["recordingError"]
        .as_str()
        .unwrap()
        .contains("404"));
    stack.poll_once().await.unwrap();
    let item = item(&stack, 200).await.unwrap();
    assert_eq!(item["recordingStatus"], "ARCHIVED", "{item}");
    assert!(item.get("recordingError").is_none());
    assert_eq!(stack.recordings.total_hits(), 3);
    assert_eq!(queue_depth(&stack, &stack.queues.queue_url).await, 0);
}

#[tokio::test]
async fn a_cut_connection_leaves_no_object_and_no_open_upload_and_is_retried() {
    let stack = stack().await;
    let url = stack
        .recordings
        .url("cut", 20 * MIB, &format!("cut={}", 10 * MIB));
    push(&stack, 300, &url).await;
    stack.poll_once().await.unwrap();
    assert!(keys(&stack, "recordings/").await.is_empty());
    assert_eq!(
        open_uploads(&stack).await,
        0,
        "the multipart upload was aborted"
    );
    let item = item(&stack, 300).await.unwrap();
    assert_eq!(item["recordingStatus"], "PENDING");
    assert!(
        item["recordingError"]
            .as_str()
            .unwrap()
            .contains("broke off"),
        "{item}"
    );
    assert_eq!(
        queue_depth(&stack, &stack.queues.queue_url).await,
        1,
        "the job is still queued"
    );
}

#[tokio::test]
async fn an_html_error_page_is_failed_and_nothing_is_stored() {
    let stack = stack().await;
    push(&stack, 400, &stack.recordings.url("html", 1024, "html=1")).await;
    push(
        &stack,
        401,
        &stack.recordings.url("xml", 1024, "ctype=application/xml"),
    )
    .await;
    while stack.poll_once().await.unwrap() > 0 {}
    for id in [400, 401] {
        let item = item(&stack, id).await.unwrap();
        assert_eq!(item["recordingStatus"], "FAILED");
        assert!(
            item["recordingError"]
                .as_str()
                .unwrap()
                .contains("not an audio file"),
            "{item}"
        );
    }
    assert!(keys(&stack, "recordings/").await.is_empty());
    assert_eq!(queue_depth(&stack, &stack.queues.queue_url).await, 0);
}

#[tokio::test]
async fn permanent_and_expired_failures_are_recorded_with_their_reason() {
    let mut options = options();
    options.archiver.max_bytes = 10_000;
    options.archiver.retry_grace = Duration::ZERO;
    let stack = LocalStack::start(options).await.unwrap();
    let cases = [
        (500, stack.recordings.url("big", 20_000, ""), "larger than"),
        (
            501,
            stack.recordings.url("gone", 10, "status=410"),
            "HTTP 410",
        ),
        (
            502,
            stack.recordings.url("forbidden", 10, "status=403"),
            "HTTP 403",
        ),
        (
            503,
            stack.recordings.url("never", 10, "status=404"),
            "still",
        ),
        (504, stack.recordings.url("empty", 0, ""), "empty"),
    ];
    for (id, url, why) in &cases {
        let job = pending(&stack, *id, url).await;
        let outcome = stack.archiver.archive(&job, None).await;
        assert!(
            matches!(&outcome, Outcome::Failed(r) if r.contains(why)),
            "{url}: {outcome:?}"
        );
    }
    // archive() decides; the batch handler writes the decision: run the jobs through it.
    let mut event = SqsEvent::default();
    for (id, url, _) in &cases {
        let mut message = SqsMessage::default();
        message.message_id = Some(format!("m{id}"));
        message.body = Some(
            serde_json::json!({"id": id, "url": url, "key": format!("recordings/x/{id}.mp3")})
                .to_string(),
        );
        event.records.push(message);
    }
    let response = stack.archiver.handle_batch(event, None).await;
    assert!(response.batch_item_failures.is_empty());
    for (id, _, why) in &cases {
        let item = item(&stack, *id).await.unwrap();
        assert_eq!(item["recordingStatus"], "FAILED");
        assert!(
            item["recordingError"].as_str().unwrap().contains(why),
            "{item}"
        );
    }
    assert!(keys(&stack, "recordings/").await.is_empty());
}

/// A loopback TCP listener that counts connections: the target an SSRF must never reach.
async fn canary() -> (u16, Arc<AtomicU32>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = Arc::new(AtomicU32::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        while let Ok((_socket, _)) = listener.accept().await {
            seen.fetch_add(1, Ordering::SeqCst);
        }
    });
    (port, count)
}

fn lookup() -> StaticLookup {
    let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
    StaticLookup(HashMap::from([
        ("private.nxcloud.com".into(), vec![ip("10.0.0.7")]),
        ("home.nxcloud.com".into(), vec![ip("192.168.1.20")]),
        ("loop.nxcloud.com".into(), vec![ip("127.0.0.1")]),
        ("metadata.nxcloud.com".into(), vec![ip("169.254.169.254")]),
        ("mapped.nxcloud.com".into(), vec![ip("::ffff:127.0.0.1")]),
        (
            "mixed.nxcloud.com".into(),
            vec![ip("8.8.8.8"), ip("10.1.1.1")],
        ),
    ]))
}

#[tokio::test]
async fn the_ssrf_corpus_is_refused_before_any_connection() {
    let stack = stack().await;
    let (port, connections) = canary().await;
    // Production policy: what runs on Lambda.
    let archiver = Archiver {
        store: stack.archiver.store.clone(),
        queue: stack.archiver.queue.clone(),
        objects: stack.archiver.objects.clone(),
        source: HttpRecordingSource::with_lookup(
            UrlPolicy::new(DEFAULT_RECORDING_HOSTS, UrlProfile::Production).unwrap(),
            HttpTimeouts::default(),
            lookup(),
            pns_cdr::adapters::tls::client_config().unwrap(),
        ),
        settings: stack.archiver.settings.clone(),
    };
    let corpus = [
        (
            format!("http://remote.record.nxcloud.com:{port}/a.mp3"),
            "scheme",
        ),
        (format!("http://127.0.0.1:{port}/a.mp3"), "scheme"),
        (format!("https://127.0.0.1:{port}/a.mp3"), "IP address"),
        (
            "https://127.0.0.1:9001/2018-06-01/runtime/invocation/next".into(),
            "IP address",
        ),
        (
            "https://169.254.169.254/latest/meta-data/iam/".into(),
            "IP address",
        ),
        (
            format!("https://[::ffff:127.0.0.1]:{port}/a.mp3"),
            "IP address",
        ),
        ("https://10.0.0.1/a.mp3".into(), "IP address"),
        ("https://192.168.0.1/a.mp3".into(), "IP address"),
        (format!("https://localhost:{port}/a.mp3"), "allow-list"),
        ("https://recordings.example.com/a.mp3".into(), "allow-list"),
        (
            "https://user:pass@remote.record.nxcloud.com/a.mp3".into(),
            "credentials",
        ),
        (
            "https://private.nxcloud.com/a.mp3".into(),
            "non-public address (10.0.0.7)",
        ),
        (
            "https://home.nxcloud.com/a.mp3".into(),
            "non-public address (192.168.1.20)",
        ),
        (
            "https://loop.nxcloud.com/a.mp3".into(),
            "non-public address (127.0.0.1)",
        ),
        (
            "https://metadata.nxcloud.com/a.mp3".into(),
            "non-public address (169.254.169.254)",
        ),
        (
            "https://mapped.nxcloud.com/a.mp3".into(),
            "non-public address (::ffff:127.0.0.1)",
        ),
        (
            "https://mixed.nxcloud.com/a.mp3".into(),
            "non-public address (10.1.1.1)",
        ),
    ];
    for (i, (url, why)) in corpus.iter().enumerate() {
        let job = pending(&stack, 600 + i as i64, url).await;
        let outcome = archiver.archive(&job, None).await;
        assert!(
            matches!(&outcome, Outcome::Failed(r) if r.contains(why)),
            "{url}: {outcome:?}"
        );
    }
    assert_eq!(
        connections.load(Ordering::SeqCst),
        0,
        "no connection reached the canary"
    );
    assert!(keys(&stack, "").await.is_empty());
}

#[tokio::test]
async fn redirects_are_checked_at_every_hop() {
    let mut options = options();
    options.lookup = Arc::new(lookup());
    let stack = LocalStack::start(options).await.unwrap();
    let (port, connections) = canary().await;
    let real = stack.recordings.url("real", 2048, "");
    let hop = |target: &str| {
        stack
            .recordings
            .url("hop", 1, &format!("redirect={}", urlencode(target)))
    };
    let cases = [
        (
            700,
            hop("https://home.nxcloud.com/a.mp3"),
            Some("non-public address (192.168.1.20)"),
        ),
        (
            701,
            hop("http://169.254.169.254/latest/meta-data/"),
            Some("scheme"),
        ),
        (
            702,
            hop(&format!("http://localhost:{port}/a.mp3")),
            Some("scheme"),
        ),
        (
            703,
            hop(&hop(&hop(&hop(&real)))),
            Some("more than 3 redirects"),
        ),
        (704, hop(&hop(&real)), None),
    ];
    for (id, url, why) in &cases {
        let job = pending(&stack, *id, url).await;
        let outcome = stack.archiver.archive(&job, None).await;
        match why {
            Some(why) => assert!(
                matches!(&outcome, Outcome::Failed(r) if r.contains(why)),
                "{url}: {outcome:?}"
            ),
            None => assert!(
                matches!(&outcome, Outcome::Archived { bytes: 2048, .. }),
                "{url}: {outcome:?}"
            ),
        }
    }
    assert_eq!(connections.load(Ordering::SeqCst), 0);
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test]
async fn a_batch_reports_exactly_its_failed_messages() {
    let stack = stack().await;
    let mut event = SqsEvent::default();
    let mut bad = HashSet::new();
    for i in 0..10 {
        let id = 800 + i;
        let url = match i {
            2 => stack.recordings.url("busy", 1024, "status=503"),
            5 => stack.recordings.url("cut", 4096, "cut=1000"),
            _ => stack.recordings.url(&format!("ok{i}"), 1024 + i as u64, ""),
        };
        let job = pending(&stack, id, &url).await;
        let mut message = SqsMessage::default();
        message.message_id = Some(format!("msg-{i}"));
        message.body = Some(if i == 8 {
            "{not json".into()
        } else {
            serde_json::to_string(&job).unwrap()
        });
        if [2, 5, 8].contains(&i) {
            bad.insert(format!("msg-{i}"));
        }
        event.records.push(message);
    }
    let response = stack.archiver.handle_batch(event, None).await;
    let failed: HashSet<String> = response
        .batch_item_failures
        .into_iter()
        .map(|f| f.item_identifier)
        .collect();
    assert_eq!(failed, bad);
    let archived = items(&stack)
        .await
        .into_iter()
        .filter(|i| i["recordingStatus"] == "ARCHIVED")
        .count();
    assert_eq!(archived, 7);
}

#[tokio::test]
async fn the_same_job_twice_at_once_ends_in_one_object() {
    let stack = stack().await;
    let size = 9 * MIB;
    let job = pending(&stack, 900, &stack.recordings.url("twice", size, "seed=9")).await;
    let (a, b) = tokio::join!(
        stack.archiver.archive(&job, None),
        stack.archiver.archive(&job, None)
    );
    let expected = SampleRecording::new(9, size).sha256();
    for outcome in [a, b] {
        assert!(
            matches!(&outcome, Outcome::Archived { sha256, .. } if *sha256 == expected)
                || outcome == Outcome::AlreadyArchived,
            "{outcome:?}"
        );
    }
    assert_eq!(keys(&stack, "recordings/").await, vec![job.key.clone()]);
    assert_eq!(sha256_hex(&object(&stack, &job.key).await), expected);
    let item = item(&stack, 900).await.unwrap();
    assert_eq!(item["recordingStatus"], "ARCHIVED");
    assert_eq!(item["recordingSha256"], expected.as_str());
    assert_eq!(open_uploads(&stack).await, 0);
    // And a third delivery afterwards does nothing.
    assert_eq!(
        stack.archiver.archive(&job, None).await,
        Outcome::AlreadyArchived
    );
}

#[tokio::test]
async fn an_object_stored_before_a_crash_is_adopted_without_downloading() {
    let stack = stack().await;
    let url = stack.recordings.url("crash", 5000, "");
    let job = pending(&stack, 950, &url).await;
    let recording = SampleRecording::new(1, 5000);
    let bytes: Vec<u8> = recording.chunks().flat_map(|c| c.to_vec()).collect();
    let meta = ObjectMeta {
        content_type: "audio/mpeg".into(),
        metadata: Vec::new(),
        sha256: Some(recording.sha256()),
    };
    stack
        .archiver
        .objects
        .put(&job.key, bytes.into(), &meta)
        .await
        .unwrap();
    let outcome = stack.archiver.archive(&job, None).await;
    assert_eq!(
        outcome,
        Outcome::Archived {
            bytes: 5000,
            sha256: recording.sha256()
        }
    );
    assert_eq!(stack.recordings.total_hits(), 0);
    assert_eq!(
        item(&stack, 950).await.unwrap()["recordingStatus"],
        "ARCHIVED"
    );
}

#[tokio::test]
async fn a_copy_cut_short_by_the_function_deadline_is_aborted_and_retried() {
    let stack = stack().await;
    let url = stack.recordings.url("slow", 20 * MIB, "delay_ms=50");
    let job = pending(&stack, 960, &url).await;
    // The archiver keeps 10 s back before the deadline: this leaves it about 1.5 s to copy.
    let deadline = std::time::SystemTime::now() + Duration::from_millis(11_500);
    let started = std::time::Instant::now();
    let outcome = stack.archiver.archive(&job, Some(deadline)).await;
    assert!(
        matches!(&outcome, Outcome::Retry(r) if r.contains("deadline")),
        "{outcome:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(keys(&stack, "recordings/").await.is_empty());
    assert_eq!(
        open_uploads(&stack).await,
        0,
        "the multipart upload was aborted"
    );
}

#[tokio::test]
async fn a_job_for_a_record_not_waiting_for_a_recording_changes_nothing() {
    let stack = stack().await;
    // The webhook refused this URL and recorded why; a stray job must not overwrite that.
    push(&stack, 970, "https://169.254.169.254/latest/meta-data/").await;
    let before = item(&stack, 970).await.unwrap();
    assert_eq!(before["recordingStatus"], "FAILED");
    let mut event = SqsEvent::default();
    let mut message = SqsMessage::default();
    message.message_id = Some("stray".into());
    message.body = Some(r#"{"id":970,"url":"https://remote.record.nxcloud.com/a.mp3","key":"recordings/a/970.mp3"}"#.into());
    event.records.push(message.clone());
    message.body = Some(r#"{"id":971,"url":"https://remote.record.nxcloud.com/a.mp3","key":"recordings/a/971.mp3"}"#.into());
    event.records.push(message);
    let response = stack.archiver.handle_batch(event, None).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(item(&stack, 970).await.unwrap(), before);
    assert!(item(&stack, 971).await.is_none());
}

#[tokio::test]
async fn exhausted_retries_mark_the_record_failed_with_the_reason_and_leave_no_job() {
    let stack = stack().await;
    push(
        &stack,
        990,
        &stack.recordings.url("down", 1024, "status=503"),
    )
    .await;
    // maxReceiveCount is 8: seven noted attempts, then the eighth delivery gives up on the
    // record, so the job ends here rather than in the DLQ.
    for _ in 0..10 {
        stack.poll_once().await.unwrap();
    }
    assert_eq!(queue_depth(&stack, &stack.queues.queue_url).await, 0);
    assert_eq!(
        queue_depth(&stack, &stack.queues.dead_letter_queue_url).await,
        0
    );
    let item = item(&stack, 990).await.unwrap();
    assert_eq!(item["recordingStatus"], "FAILED");
    assert_eq!(item["recordingAttempts"], 7);
    let reason = item["recordingError"].as_str().unwrap();
    assert!(
        reason.starts_with("gave up after 8 deliveries") && reason.contains("HTTP 503"),
        "{reason}"
    );
}

#[test]
fn peak_memory_does_not_grow_with_the_recording() {
    let run = |size: u64| -> u64 {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_pns-local"))
            .args(["archive-one", &size.to_string()])
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains(&format!("bytes={size} ")), "{stdout}");
        stdout
            .split("peak_rss_kib=")
            .nth(1)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    let small = run(1024);
    let large = run(100 * MIB);
    let growth_mib = large.saturating_sub(small) as f64 / 1024.0;
    println!("peak RSS: 1 KiB copy {small} KiB, 100 MiB copy {large} KiB (+{growth_mib:.1} MiB)");
    assert!(
        growth_mib < 24.0,
        "peak RSS grew by {growth_mib:.1} MiB for a 100 MiB copy"
    );
}

#[tokio::test]
async fn a_call_id_with_a_newline_and_non_ascii_is_archived_and_kept_header_safe() {
    let stack = stack().await;
    let url = stack.recordings.url("odd-call-id", 4096, "");
    let mut body: serde_json::Value = serde_json::from_str(&push_body(990, &url)).unwrap();
    body["callId"] = "1604763745\nbreak é".into();
    let response = reqwest::Client::new()
        .post(format!("{}?token={LOCAL_TOKEN}", stack.webhook_url))
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(stack.poll_once().await.unwrap(), 1);
    let item = item(&stack, 990).await.unwrap();
    assert_eq!(item["recordingStatus"], "ARCHIVED", "{item}");
    assert_eq!(
        item["callId"], "1604763745\nbreak é",
        "the record keeps it as pushed"
    );
    let key = item["recordingKey"].as_str().unwrap();
    let head = stack
        .clients
        .s3
        .head_object()
        .bucket(&stack.names.bucket)
        .key(key)
        .send()
        .await
        .unwrap();
    assert_eq!(
        head.metadata().unwrap()["call-id"],
        "1604763745%0Abreak %C3%A9"
    );
}

/// A stack whose AWS calls pass a fault proxy.
async fn stack_behind_proxy() -> (LocalStack, FaultProxy) {
    let proxy = FaultProxy::start(&emulator_endpoint()).await.unwrap();
    let mut options = options();
    options.endpoint_url = Some(proxy.endpoint.clone());
    (LocalStack::start(options).await.unwrap(), proxy)
}

#[tokio::test]
async fn a_403_on_head_object_means_nothing_to_adopt_and_the_copy_goes_on() {
    // What S3 answers for a missing key when the role may not ListBucket.
    let (stack, proxy) = stack_behind_proxy().await;
    proxy.inject(Some("HeadObject"), Fault::Status(403), 100);
    let url = stack.recordings.url("head-403", 4096, "");
    push(&stack, 995, &url).await;
    assert_eq!(stack.poll_once().await.unwrap(), 1);
    assert!(
        proxy.faults_applied() > 0,
        "the HeadObject was answered 403"
    );
    let item = item(&stack, 995).await.unwrap();
    assert_eq!(item["recordingStatus"], "ARCHIVED", "{item}");
}

#[tokio::test]
async fn a_real_denial_fails_loudly_at_the_upload() {
    let (stack, proxy) = stack_behind_proxy().await;
    proxy.inject(Some("PutObject"), Fault::Status(403), 100);
    let url = stack.recordings.url("put-403", 4096, "");
    push(&stack, 996, &url).await;
    assert_eq!(stack.poll_once().await.unwrap(), 1);
    let item = item(&stack, 996).await.unwrap();
    assert_eq!(item["recordingStatus"], "PENDING", "retried: {item}");
    let reason = item["recordingError"].as_str().unwrap();
    assert!(reason.starts_with("PutObject failed"), "{reason}");
    assert_eq!(item["recordingAttempts"], 1);
}

#[tokio::test]
async fn jobs_left_unstarted_at_the_deadline_go_back_as_new_messages() {
    let stack = stack().await;
    let waiting = pending(&stack, 997, &stack.recordings.url("late", 1024, "")).await;
    push(&stack, 998, "").await; // no recording: a stray job for it is done
    let mut event = SqsEvent::default();
    for (id, body) in [
        ("waiting", serde_json::to_string(&waiting).unwrap()),
        (
            "decided",
            r#"{"id":998,"url":"https://remote.record.nxcloud.com/a.mp3","key":"k"}"#.into(),
        ),
        ("unreadable", "{not json".into()),
    ] {
        let mut message = SqsMessage::default();
        message.message_id = Some(id.into());
        message.body = Some(body);
        message
            .attributes
            .insert("ApproximateReceiveCount".into(), "7".into());
        event.records.push(message);
    }
    // Less than the 10 s margin is left: nothing may start.
    let deadline = std::time::SystemTime::now() + Duration::from_secs(5);
    let response = stack.archiver.handle_batch(event, Some(deadline)).await;
    let returned: Vec<String> = response
        .batch_item_failures
        .into_iter()
        .map(|f| f.item_identifier)
        .collect();
    // Only what is no job goes back with its receive count; the waiting job is a new message.
    assert_eq!(returned, ["unreadable"]);
    assert_eq!(
        drain_bodies(&stack).await,
        vec![serde_json::to_value(&waiting).unwrap()]
    );
    let record = item(&stack, 997).await.unwrap();
    assert_eq!(record["recordingStatus"], "PENDING");
    assert!(
        record.get("recordingAttempts").is_none(),
        "nothing noted against it"
    );
    assert_eq!(stack.recordings.total_hits(), 0, "no download started");
}

#[tokio::test]
async fn a_multipart_object_left_by_a_crash_is_adopted_without_downloading() {
    let stack = stack().await;
    let size = 9 * MIB;
    let url = stack.recordings.url("parts", size, "seed=5");
    let job = pending(&stack, 999, &url).await;
    let expected = SampleRecording::new(5, size).sha256();
    let first = stack.archiver.archive(&job, None).await;
    assert_eq!(
        first,
        Outcome::Archived {
            bytes: size,
            sha256: expected.clone()
        }
    );
    assert_eq!(stack.recordings.total_hits(), 1);
    let noted = item(&stack, 999).await.unwrap();
    assert_eq!(noted["copySha256"], expected.as_str(), "{noted}");
    assert!(
        noted["copyEtag"].as_str().unwrap().ends_with("-2"),
        "two parts"
    );
    // The state a crash between the completion and the record's update leaves: the object
    // is there, the record PENDING (as pnsctl rearchive also leaves it).
    let records = DynamoRecordStore::new(stack.clients.dynamodb.clone(), &stack.names.table);
    assert!(records
        .reset_to_pending(999, &url, &job.key, job.queued_at)
        .await
        .unwrap());
    let again = stack.archiver.archive(&job, None).await;
    assert_eq!(
        again,
        Outcome::Archived {
            bytes: size,
            sha256: expected
        }
    );
    assert_eq!(stack.recordings.total_hits(), 1, "not downloaded again");
}
