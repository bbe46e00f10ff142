//! Shared test set-up: one emulator process per test binary, one isolated stack per test.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use pns_cdr_dev::local::emulator::{Emulator, ResourceNames};
use pns_cdr_dev::local::{LocalOptions, LocalStack};
use serde_json::Value;

/// A binary of the shipped crate (`pnsctl`, `webhook`, ...), built beside this test binary
/// (`make test` builds the workspace's binaries before it runs the tests; Cargo gives a test
/// only the paths of its own package's binaries).
pub fn binary(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("the test binary has a path");
    // target/<profile>/deps/it-<hash> -> target/<profile>/<name>
    let binary = exe
        .parent()
        .and_then(std::path::Path::parent)
        .expect("the test binary sits in target/<profile>/deps")
        .join(name);
    assert!(
        binary.exists(),
        "{} is missing: run `cargo build --workspace --bins` (make test does)",
        binary.display()
    );
    binary
}

pub fn pnsctl_binary() -> std::path::PathBuf {
    binary("pnsctl")
}

/// The emulator every test in this binary shares; it exits with the test process (its stdin
/// is our pipe), so nothing outlives the run.
pub fn emulator_endpoint() -> String {
    static EMULATOR: OnceLock<Emulator> = OnceLock::new();
    EMULATOR
        .get_or_init(|| Emulator::start(0).expect("the emulator starts (make venv)"))
        .endpoint
        .clone()
}

/// Options for a stack with its own table, queues and bucket, on free ports, queue not drained.
pub fn options() -> LocalOptions {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let mut options = LocalOptions {
        endpoint_url: Some(emulator_endpoint()),
        names: ResourceNames::suffixed(&format!("t{}-{n}", std::process::id())),
        webhook_port: 0,
        recordings_port: 0,
        drain: false,
        // Streams and the lake only where a test looks at events (events.rs).
        events: false,
        // Loads here prove storage and retries; the throttle has its own test (storm).
        throttle: false,
        ..LocalOptions::default()
    };
    options.archiver.backoff_base = Duration::ZERO;
    options.archiver.max_backoff = Duration::ZERO;
    options
}

pub async fn stack() -> LocalStack {
    LocalStack::start(options())
        .await
        .expect("the local stack starts")
}

/// A stack whose streams, bus and lake run, with the archiver draining its queue.
pub async fn stack_with_events() -> LocalStack {
    let mut options = options();
    options.events = true;
    options.drain = true;
    LocalStack::start(options)
        .await
        .expect("the local stack starts")
}

/// Every item in the stack's table, as JSON, by id.
pub async fn items(stack: &LocalStack) -> Vec<Value> {
    stack.items().await.unwrap()
}

pub async fn item(stack: &LocalStack, id: i64) -> Option<Value> {
    items(stack).await.into_iter().find(|i| i["id"] == id)
}

/// Messages in a queue: visible + in flight.
pub async fn queue_depth(stack: &LocalStack, queue_url: &str) -> u64 {
    let (waiting, in_flight) = pns_cdr_dev::local::queue_counts(&stack.clients.sqs, queue_url)
        .await
        .unwrap();
    waiting + in_flight
}

/// Receives (and deletes) every visible message body.
pub async fn drain_bodies(stack: &LocalStack) -> Vec<Value> {
    let mut bodies = Vec::new();
    loop {
        let out = stack
            .clients
            .sqs
            .receive_message()
            .queue_url(&stack.queues.queue_url)
            .max_number_of_messages(10)
            .send()
            .await
            .unwrap();
        let messages = out.messages.unwrap_or_default();
        if messages.is_empty() {
            return bodies;
        }
        for m in messages {
            bodies.push(serde_json::from_str(m.body().unwrap()).unwrap());
            stack
                .clients
                .sqs
                .delete_message()
                .queue_url(&stack.queues.queue_url)
                .receipt_handle(m.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        }
    }
}

/// Keys in the stack's bucket under `prefix`.
pub async fn keys(stack: &LocalStack, prefix: &str) -> Vec<String> {
    let out = stack
        .clients
        .s3
        .list_objects_v2()
        .bucket(&stack.names.bucket)
        .prefix(prefix)
        .send()
        .await
        .unwrap();
    out.contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_owned))
        .collect()
}

/// Open multipart uploads in the stack's bucket.
pub async fn open_uploads(stack: &LocalStack) -> usize {
    let out = stack
        .clients
        .s3
        .list_multipart_uploads()
        .bucket(&stack.names.bucket)
        .send()
        .await
        .unwrap();
    out.uploads().len()
}

pub async fn object(stack: &LocalStack, key: &str) -> Vec<u8> {
    object_version(stack, key, None).await
}

/// The bytes of one version of an object (`None`: the current one).
pub async fn object_version(stack: &LocalStack, key: &str, version: Option<&str>) -> Vec<u8> {
    let out = stack
        .clients
        .s3
        .get_object()
        .bucket(&stack.names.bucket)
        .key(key)
        .set_version_id(version.map(str::to_owned))
        .send()
        .await
        .unwrap();
    out.body.collect().await.unwrap().into_bytes().to_vec()
}

/// A realistic push body with the given id and recording URL (empty = none).
pub fn push_body(id: i64, record_file: &str) -> String {
    serde_json::json!({
        "id": id, "businessId": "test_busi", "customerBindId": "1",
        "bindId": "69f1d1be1a82204c6049b4a2797ed0af", "callId": format!("16047637452567{id:05}"),
        "did": "85235757584", "caller": "85255501234", "callee": "85255509876",
        "callStatus": 1, "callStatusMsg": "", "duration": 6,
        "startAt": 1671440452, "answerAt": 1671440454, "hangupAt": 1671440460,
        "hangupCause": "NORMAL_CLEARING", "hangupCode": 16, "hangup": 0, "recordFile": record_file
    })
    .to_string()
}

/// Runs the real `pnsctl` binary against the stack's emulator, with the stack's names.
pub async fn pnsctl(stack: &LocalStack, args: &[&str]) -> std::process::Output {
    pnsctl_with(stack, args, &[]).await
}

/// As [`pnsctl`], with more environment variables.
pub async fn pnsctl_with(
    stack: &LocalStack,
    args: &[&str],
    env: &[(&str, &str)],
) -> std::process::Output {
    let python = pns_cdr_dev::repo_root().join(".venv/bin/python");
    tokio::process::Command::new(pnsctl_binary())
        .args(args)
        .env("AWS_ENDPOINT_URL", &stack.endpoint)
        .env("PNS_TABLE_NAME", &stack.names.table)
        .env(
            "PNS_BINDING_ERRORS_TABLE",
            &stack.names.binding_errors_table,
        )
        .env("PNS_QUEUE_NAME", &stack.names.queue)
        .env("PNS_BUCKET_NAME", &stack.names.bucket)
        .env("PNS_EVENT_BUS_NAME", &stack.names.event_bus)
        .env("PNS_NUMBER_KEY_SECRET", &stack.names.number_key_secret)
        .env("PNS_PYTHON", python)
        // The emulator records the caller of each call: the operator tool.
        .env("AWS_ACCESS_KEY_ID", "pnsctl")
        .env_remove("PNS_QUEUE_URL")
        .env_remove("PNS_DLQ_URL")
        .env_remove("PNS_PHONE_NUMBERS")
        .env_remove("RUST_LOG")
        .envs(env.iter().copied())
        .output()
        .await
        .unwrap()
}
