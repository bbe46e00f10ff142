//! The fault matrix: NXCLOUD-style load through the real HTTP webhook while the AWS emulator
//! stalls, fails or drops connections (a fault proxy sits between the stack and it), while the
//! process dies between the put and the enqueue, and while recording hosts misbehave. Each
//! scenario ends with the simulator's verification: no record or recording lost (or the
//! record `FAILED` with the right reason), queues empty, no multipart upload left open.
//!
//! `PNS_FAULTS_SCALE` multiplies the load (`make test-faults` runs 10×; `make test` 1×).

use crate::common;

use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use pns_cdr::adapters::aws::AwsClients;
use pns_cdr_dev::bench::requests::{self, RequestCounts};
use pns_cdr_dev::local::fake_nxcloud::{FakeNxcloud, SampleRecording};
use pns_cdr_dev::local::fault_proxy::{Fault, FaultProxy};
use pns_cdr_dev::local::{LocalOptions, LocalStack, LOCAL_TOKEN};
use pns_cdr_dev::sim::{
    plan, send, summary, verify, Delivery, Expect, PlannedRecord, PlannedRecording, RecordingHost,
    SendReport, Target, Verification, Workload,
};

fn scale() -> usize {
    std::env::var("PNS_FAULTS_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(1)
}

/// Every time scaled down together: NXCLOUD's minute becomes 300 ms, and the settings that
/// are tied to it (re-enqueue age, backoff, reconciler) shrink with it.
fn scaled_settings(options: &mut LocalOptions) {
    options.drain = true;
    options.webhook.requeue_pending_after = Duration::from_secs(1);
    options.archiver.backoff_base = Duration::from_secs(1);
    options.archiver.max_backoff = Duration::from_secs(2);
    options.archiver.max_bytes = 4 << 20;
    options.archiver.deadline_margin = Duration::from_secs(1);
    options.function_timeout = Duration::from_secs(4);
    // As deployed, the reconciler runs as often as a record must wait before it re-queues it.
    options.reconciler.requeue_after = Duration::from_secs(10);
    options.reconcile_every = Duration::from_secs(10);
    // As the template's ArchiverConcurrency.
    options.pollers = 5;
    options.http_timeouts.min_rate_window = Duration::from_secs(1);
    // A job taken by a process that died reappears after this (the template: 6 × timeout).
    options.visibility_timeout_seconds = Some(12);
}

fn delivery(stack: &LocalStack) -> Delivery {
    let mut delivery = Delivery::new(format!("{}?token={LOCAL_TOKEN}", stack.webhook_url));
    delivery.concurrency = 8;
    delivery.retry_interval = Duration::from_millis(300);
    delivery.retry_window = Duration::from_secs(18);
    delivery.request_timeout = Duration::from_secs(15);
    delivery
}

/// Verification reads the emulator directly, not through the proxy's faults.
async fn target_for(stack: &LocalStack) -> Target {
    Target {
        clients: AwsClients::for_caller(&common::emulator_endpoint(), "harness")
            .await
            .unwrap(),
        ..stack.target()
    }
}

struct Rig {
    proxy: FaultProxy,
    stack: LocalStack,
    target: Target,
}

async fn rig() -> Rig {
    let proxy = FaultProxy::start(&common::emulator_endpoint())
        .await
        .unwrap();
    let mut options = common::options();
    options.endpoint_url = Some(proxy.endpoint.clone());
    scaled_settings(&mut options);
    let stack = LocalStack::start(options).await.unwrap();
    let target = target_for(&stack).await;
    Rig {
        proxy,
        stack,
        target,
    }
}

fn workload(count: usize) -> Workload {
    Workload {
        count: count * scale(),
        duplicate_share: 0.3,
        conflict_share: 0.05,
        recording_share: 0.5,
        recording_sizes: vec![16 * 1024, 40 * 1024],
        ..Workload::default()
    }
}

/// Prints a scenario's figures under its name: the scenarios run in parallel, and
/// `make test-faults` shows their output.
fn report(text: &str) {
    // libtest names each test's thread after the test.
    let scenario = std::thread::current()
        .name()
        .unwrap_or("scenario")
        .to_owned();
    println!("=== {scenario}\n{text}");
}

async fn finish(
    target: &Target,
    records: &[PlannedRecord],
    sent: &SendReport,
) -> (Verification, String) {
    let settle = Duration::from_secs(60 + 30 * scale() as u64);
    let verified = verify(target, records, sent, settle).await.unwrap();
    let text = summary(sent, &verified);
    report(&text);
    (verified, text)
}

/// Load while `faults` are armed; the verification must pass.
async fn survives(faults: &[(Option<&str>, Fault, usize)]) -> (SendReport, Verification) {
    let rig = rig().await;
    let host = FakeNxcloud::start(0).await.unwrap();
    // Unbound calls too: NXCLOUD's second push, through the same URL, under the same faults.
    let load = Workload {
        binding_error_share: 0.2,
        ..workload(30)
    };
    let records = plan(&load, Some(&host));
    for (operation, fault, times) in faults {
        rig.proxy
            .inject(*operation, fault.clone(), *times * scale());
    }
    let sent = send(&records, &delivery(&rig.stack)).await.unwrap();
    let (verified, text) = finish(&rig.target, &records, &sent).await;
    assert!(rig.proxy.faults_applied() > 0, "no fault was injected");
    assert!(verified.passed(), "{text}");
    (sent, verified)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emulator_stalls_for_five_seconds_during_load() {
    // Stalls aimed at the pushes' own writes: aimed at any request, the archivers' ever-running
    // ReceiveMessage polls could take all four, and no push would wait (a flaky test).
    let (sent, _) = survives(&[(Some("PutItem"), Fault::Stall(Duration::from_secs(5)), 4)]).await;
    assert!(sent.percentile(100.0) >= Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emulator_answers_500_during_load() {
    survives(&[(None, Fault::Status(500), 40)]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emulator_resets_connections_during_load() {
    survives(&[
        (None, Fault::ResetBefore, 20),
        // The write happened, its answer is lost: the SDK's retry meets its own record.
        (Some("PutItem"), Fault::ResetAfter, 3),
        (Some("SendMessage"), Fault::ResetAfter, 3),
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqs_send_fails_after_a_successful_put() {
    // More failures in a row than the SDK retries: the webhook must answer 503.
    let (sent, _) = survives(&[(Some("SendMessage"), Fault::Status(500), 60)]).await;
    assert!(
        sent.statuses.get(&503).is_some_and(|n| *n > 0),
        "{:?}",
        sent.statuses
    );
}

/// A stack running on a runtime of its own, which `kill` shuts down: every task of it,
/// in-flight requests included, stops at its next await, as if the process died.
struct Process {
    runtime: Option<tokio::runtime::Runtime>,
    stack: Option<LocalStack>,
}

impl Process {
    fn start(options: LocalOptions) -> Self {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let stack = runtime.block_on(LocalStack::start(options)).unwrap();
        Self {
            runtime: Some(runtime),
            stack: Some(stack),
        }
    }

    fn kill(mut self) {
        self.runtime.take().unwrap().shutdown_background();
        drop(self.stack.take());
    }
}

#[test]
fn the_process_is_killed_between_the_put_and_the_send() {
    let test_runtime = tokio::runtime::Runtime::new().unwrap();
    let proxy = test_runtime
        .block_on(FaultProxy::start(&common::emulator_endpoint()))
        .unwrap();
    let mut options = common::options();
    options.endpoint_url = Some(proxy.endpoint.clone());
    scaled_settings(&mut options);
    let names = options.names.clone();
    let first = Process::start(options);
    let stack = first.stack.as_ref().unwrap();
    let port: u16 = stack.webhook_url.split(':').nth(2).unwrap()[..]
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let target = test_runtime.block_on(target_for(stack));
    let delivery = delivery(stack);

    let held = Arc::new(tokio::sync::Notify::new());
    proxy.inject(Some("SendMessage"), Fault::Hold(held.clone()), 1);
    let host = test_runtime.block_on(FakeNxcloud::start(0)).unwrap();
    let workload = Workload {
        recording_share: 1.0,
        ..workload(20)
    };
    let records = plan(&workload, Some(&host));
    let (sent_tx, sent_rx) = mpsc::channel();
    let pushes = records.clone();
    test_runtime.spawn(async move {
        sent_tx
            .send(send(&pushes, &delivery).await.unwrap())
            .unwrap();
    });

    // The first SendMessage is held: its record is stored, its job not yet sent. Kill.
    test_runtime.block_on(async {
        tokio::time::timeout(Duration::from_secs(30), held.notified())
            .await
            .expect("a SendMessage reached the proxy")
    });
    first.kill();
    std::thread::sleep(Duration::from_millis(500));
    // Restart on the same port, as a new instance behind the same URL.
    let mut options = common::options();
    options.endpoint_url = Some(proxy.endpoint.clone());
    options.names = names;
    options.webhook_port = port;
    scaled_settings(&mut options);
    let second = Process::start(options);

    let sent = sent_rx.recv_timeout(Duration::from_secs(120)).unwrap();
    let (verified, text) = test_runtime.block_on(finish(&target, &records, &sent));
    assert!(verified.passed(), "{text}");
    assert!(
        sent.statuses.get(&0).is_some_and(|n| *n > 0),
        "the kill was not seen by NXCLOUD: {:?}",
        sent.statuses
    );
    second.kill();
}

/// Recording hosts that misbehave, one behaviour per record in turn, each with the outcome
/// that is correct for it.
struct Misbehaving {
    host: FakeNxcloud,
}

const BEHAVIOURS: [(&str, Option<&str>); 7] = [
    ("", None),
    // Trickles 1 byte/s: each delivery stops at the minimum rate; the last one gives up.
    // (Or at the deadline, when slower neighbours in its batch used the time up.)
    ("bps=1", Some("gave up after 8 deliveries")),
    // Cut mid-body once, whole the next time.
    ("cut=20000&cut_first=1", None),
    // Not there for the first 3 s (NXCLOUD's "not yet downloadable"), then served.
    ("fail_for_ms=3000", None),
    ("loop=1", Some("redirects")),
    ("ctype=text/html", Some("Content-Type is text/html")),
    // Chunked and endless: the 4 MiB limit stops it.
    ("endless=1", Some("larger than")),
];

impl RecordingHost for Misbehaving {
    fn recording(&self, id: i64, size: u64, seed: u64) -> PlannedRecording {
        let (query, failure) = BEHAVIOURS[id as usize % BEHAVIOURS.len()];
        let seeded = format!("seed={seed}&{query}");
        PlannedRecording {
            url: self
                .host
                .url(&format!("m-{id}"), size, seeded.trim_end_matches('&')),
            expect: match failure {
                None => Expect::Archived {
                    sha256: Some(SampleRecording::new(seed, size).sha256()),
                },
                Some(reason) => Expect::Failed {
                    reason_contains: reason.into(),
                },
            },
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misbehaving_recording_hosts_end_archived_or_failed_with_the_reason() {
    let rig = rig().await;
    let host = Misbehaving {
        host: FakeNxcloud::start(0).await.unwrap(),
    };
    let workload = Workload {
        count: BEHAVIOURS.len() * 2 * scale(),
        recording_share: 1.0,
        recording_sizes: vec![48 * 1024],
        ..workload(0)
    };
    let records = plan(&workload, Some(&host));
    let sent = send(&records, &delivery(&rig.stack)).await.unwrap();
    let (verified, text) = finish(&rig.target, &records, &sent).await;
    assert!(verified.passed(), "{text}");
    assert_eq!(verified.recordings_expected, records.len());
    let failing = BEHAVIOURS.iter().filter(|b| b.1.is_some()).count();
    assert_eq!(
        verified.recordings_failed_as_expected,
        records.len() / BEHAVIOURS.len() * failing
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulator_exits_non_zero_when_one_record_is_lost() {
    let rig = rig().await;
    // The proxy answers one PutItem with success without storing it: a lost record.
    rig.proxy.inject(Some("PutItem"), Fault::Swallow, 1);
    let url = format!("{}?token={LOCAL_TOKEN}", rig.stack.webhook_url);
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_pns-sim"))
        .args(["--url", &url, "--count", "12", "--first-id", "500"])
        .args([
            "--duplicates",
            "0",
            "--conflicts",
            "0",
            "--recordings",
            "0.5",
        ])
        .args([
            "--retry-interval",
            "200ms",
            "--retry-window",
            "4s",
            "--settle",
            "30s",
        ])
        .env("AWS_ENDPOINT_URL", common::emulator_endpoint())
        .env("PNS_TABLE_NAME", &rig.stack.names.table)
        .env("PNS_QUEUE_URL", &rig.stack.queues.queue_url)
        .env("PNS_DLQ_URL", &rig.stack.queues.dead_letter_queue_url)
        .env("PNS_BUCKET_NAME", &rig.stack.names.bucket)
        .env("RUST_LOG", "warn")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    report(&format!("{stdout}{stderr}"));
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stdout.contains("MISSING records: "), "{stdout}");
    assert!(stdout.contains("lost      1\n"), "{stdout}");
    assert!(stdout.contains("verdict   FAIL"), "{stdout}");
    assert!(stderr.contains("verification failed"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verification_notices_one_lost_recording() {
    let rig = rig().await;
    let host = FakeNxcloud::start(0).await.unwrap();
    let workload = Workload {
        count: 6,
        duplicate_share: 0.0,
        recording_share: 1.0,
        ..workload(0)
    };
    let records = plan(&workload, Some(&host));
    let sent = send(&records, &delivery(&rig.stack)).await.unwrap();
    let (verified, text) = finish(&rig.target, &records, &sent).await;
    assert!(verified.passed(), "{text}");
    // Lose one archived recording behind the stack's back.
    let key = common::keys(&rig.stack, "recordings/").await.remove(0);
    rig.target
        .clients
        .s3
        .delete_object()
        .bucket(&rig.stack.names.bucket)
        .key(&key)
        .send()
        .await
        .unwrap();
    let (verified, text) = finish(&rig.target, &records, &sent).await;
    assert!(!verified.passed(), "{text}");
    assert_eq!(verified.lost(), 1, "{text}");
    assert!(
        text.contains("LOST recording of") && text.contains("is not in the bucket"),
        "{text}"
    );
}

/// The design's floor, counted at the emulator: a new push with a recording costs PutItem +
/// SendMessage, a duplicate or a push without a recording one PutItem.
#[tokio::test]
async fn aws_requests_per_push_are_the_floor() {
    let counts = requests::measure(common::options()).await.unwrap();
    report(&counts.table());
    assert_eq!(counts, RequestCounts::floor(), "{}", counts.table());
}
