//! CPU work per push (the webhook) and per event (the publisher), each against a floor, in the
//! same run, on the same input.
//!
//! Webhook floor: `serde_json::from_slice` of the body into a `serde_json::Value`.
//!
//! Webhook measured: all of `Webhook::handle` for a new push with a recording: token check, parse,
//! validation, canonical SHA-256 digest, URL policy, recording key, item, conditional put,
//! job, answer, and the push's EMF metrics line, built in full.
//!
//! Left out, because it is I/O: the storage ports are the in-memory ones (DynamoDB and SQS
//! are network round trips), and the metrics line is dropped once built instead of written
//! to stdout (`metrics::Output::Discard`; on Lambda, `metrics::Output::Stdout` writes it,
//! which the unit tests of `metrics` and the handler tests cover). The in-memory table and
//! queue are emptied between batches, outside the timing, as a Lambda holds one push at a
//! time; so dropping the stored item is not timed either. Over those ports the handler never
//! waits, so it is polled once without a runtime: no executor's work is timed.
//!
//! Not in the ratio: the `info!` log line. Without a subscriber (as here) it costs a
//! disabled-callsite check; on Lambda the JSON subscriber of `telemetry` formats it. The
//! second webhook case installs that formatter, writing to `io::sink`, to show its cost.
//!
//! The push cases run in batches of [`PUSH_BATCH`] pushes (why: see there).

use std::hint::black_box;
use std::sync::atomic::{AtomicI64, Ordering};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use pns_cdr::adapters::memory::{
    MemoryBindingErrorStore, MemoryJobQueue, MemoryObjectStore, MemoryRecordStore,
};
use pns_cdr::domain::auth::Authenticator;
use pns_cdr::domain::push::PushKind;
use pns_cdr::domain::url_policy::{UrlPolicy, UrlProfile, DEFAULT_RECORDING_HOSTS};
use pns_cdr::handlers::webhook::{Push, Webhook, WebhookSettings};
use pns_cdr::metrics;

const TOKEN: &str = "bench-token-0123456789";

/// Pushes per timed batch, in every case of the push group. Each batch keeps its outputs (and
/// the webhook its items) until it ends; with criterion's `SmallInput` a batch grew to
/// thousands of pushes, and the cases' times then followed glibc and the kernel (fresh heap
/// pages to zero, freed chunks to consolidate) more than their own work: the floor measured
/// anywhere from 1.03 to 1.81 µs from one build to the next. At 256 it repeats within 2 %.
const PUSH_BATCH: BatchSize = BatchSize::NumIterations(256);

type MemoryWebhook =
    Webhook<MemoryRecordStore, MemoryJobQueue, MemoryObjectStore, MemoryBindingErrorStore>;

fn body(id: i64) -> Vec<u8> {
    let example = include_str!("../events/bodies/call-result.json");
    example
        .replacen("\"id\": 45", &format!("\"id\": {id}"), 1)
        .into_bytes()
}

/// The output of a future that completes in its first poll, as the webhook's does over the
/// in-memory ports: no runtime is entered, so an executor's own work is not timed.
fn ready<F: std::future::Future>(future: F) -> F::Output {
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    match std::pin::pin!(future).poll(&mut context) {
        std::task::Poll::Ready(output) => output,
        std::task::Poll::Pending => panic!("the in-memory ports never wait"),
    }
}

/// A fresh body per push (a new id, so every push takes the "created" path); the previous
/// batch's records and jobs are dropped here, untimed.
fn setup(webhook: &MemoryWebhook, next: &AtomicI64) -> Vec<u8> {
    webhook.store.items.lock().unwrap().clear();
    webhook.queue.jobs.lock().unwrap().clear();
    body(next.fetch_add(1, Ordering::Relaxed))
}

fn push_cost(c: &mut Criterion) {
    // Lambda writes the line to stdout; here it is built and dropped (see the module doc).
    metrics::set_output(metrics::Output::Discard).expect("set before the first push");
    let webhook = Webhook {
        store: MemoryRecordStore::default(),
        queue: MemoryJobQueue::default(),
        objects: MemoryObjectStore::default(),
        bindings: MemoryBindingErrorStore::default(),
        auth: Authenticator::new(TOKEN, "").unwrap().into(),
        policy: UrlPolicy::new(DEFAULT_RECORDING_HOSTS, UrlProfile::Production).unwrap(),
        settings: WebhookSettings::default(),
    };
    let next = AtomicI64::new(1);
    let handle = |body: Vec<u8>| {
        let push = Push {
            route: PushKind::CallRecord,
            method: "POST",
            query_token: Some(TOKEN),
            authorization: None,
            source_ip: None,
            body: &body,
        };
        let outcome = ready(webhook.handle(push));
        assert_eq!(outcome.status(), 200);
        black_box(outcome)
    };
    let mut group = c.benchmark_group("push");
    group.bench_function("floor: serde_json::from_slice to Value", |b| {
        b.iter_batched(
            || body(next.fetch_add(1, Ordering::Relaxed)),
            |body| black_box(serde_json::from_slice::<serde_json::Value>(&body).unwrap()),
            PUSH_BATCH,
        )
    });
    group.bench_function("webhook: new push with recording", |b| {
        b.iter_batched(|| setup(&webhook, &next), handle, PUSH_BATCH)
    });
    // As `telemetry::init` sets it up on Lambda, but writing to a sink.
    let json_logs = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .without_time()
        .with_writer(std::io::sink)
        .finish();
    tracing::subscriber::with_default(json_logs, || {
        group.bench_function(
            "webhook: same, with the JSON log line (not in the ratio)",
            |b| b.iter_batched(|| setup(&webhook, &next), handle, PUSH_BATCH),
        );
    });
    group.finish();
}

/// A Lambda DynamoDB stream event of `count` INSERTs, ids from `first`: the record of
/// `events/dynamodb-stream-insert.json` (the documented push as stored) repeated.
fn stream_event(first: i64, count: i64) -> Vec<u8> {
    let sample: serde_json::Value =
        serde_json::from_str(include_str!("../events/dynamodb-stream-insert.json")).unwrap();
    let records: Vec<serde_json::Value> = (first..first + count)
        .map(|id| {
            let mut record = sample["Records"][0].clone();
            let change = &mut record["dynamodb"];
            change["Keys"]["id"]["N"] = id.to_string().into();
            change["NewImage"]["id"]["N"] = id.to_string().into();
            change["SequenceNumber"] = format!("{}", 1_000_000 + id).into();
            record
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({ "Records": records })).unwrap()
}

/// The publisher's CPU per event: a batch of 100 stream records (Lambda's batch size in the
/// template) read, turned into events, put ten at a time. The bus is the in-memory one,
/// emptied between batches outside the timing; the floor parses the same event into a
/// `serde_json::Value`. Criterion reports both per record (`Throughput::Elements`).
fn event_cost(c: &mut Criterion) {
    use aws_lambda_events::event::dynamodb::Event as StreamEvent;
    use pns_cdr::adapters::memory::MemoryEventBus;
    use pns_cdr::handlers::publisher::{Publisher, PublisherSettings};

    const BATCH: i64 = 100;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let publisher = Publisher {
        bus: MemoryEventBus::default(),
        settings: PublisherSettings::default(),
    };
    let event = stream_event(1, BATCH);
    let mut group = c.benchmark_group("event");
    group.throughput(criterion::Throughput::Elements(BATCH as u64));
    group.bench_function("floor: serde_json::from_slice to Value", |b| {
        b.iter(|| black_box(serde_json::from_slice::<serde_json::Value>(&event).unwrap()))
    });
    group.bench_function("publisher: stream batch to events", |b| {
        b.iter_batched(
            || {
                publisher.bus.accepted.lock().unwrap().clear();
                event.clone()
            },
            |event| {
                let event: StreamEvent = serde_json::from_slice(&event).unwrap();
                let response = runtime.block_on(publisher.handle(event));
                assert!(response.batch_item_failures.is_empty());
                black_box(response)
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, push_cost, event_cost);
criterion_main!(benches);
