//! CPU per push (the webhook) and per stream record (the publisher), each beside a floor:
//! `serde_json::from_slice` of the same input into a `serde_json::Value`.
//!
//! `cargo bench --bench cpu` (`make bench-cpu`) prints both and fails when the webhook's CPU
//! per push exceeds [`GUARD`] × its floor: a guard against accidental quadratic work, not a
//! goal. A Lambda push waits milliseconds on DynamoDB and SQS; the microseconds here matter
//! only if they grow with the body. `cargo test --benches` runs it briefly and also shows the
//! guard failing on a stand-in that does the webhook's work twenty times over.
//!
//! The ports are the in-memory ones (their I/O is network round trips on Lambda); the metrics
//! line is built and dropped (`metrics::Output::Discard`).

use std::hint::black_box;
use std::time::{Duration, Instant};

use aws_lambda_events::event::dynamodb::Event as StreamEvent;
use pns_cdr::adapters::memory::{MemoryEventBus, MemoryEventFailures};
use pns_cdr::domain::push::PushKind;
use pns_cdr::handlers::publisher::{Publisher, PublisherSettings};
use pns_cdr::handlers::webhook::{MemoryWebhook, PushRequest};
use pns_cdr::metrics;

/// The webhook's CPU per push may be at most this many times its floor.
const GUARD: f64 = 8.0;

const TOKEN: &str = "bench-token-0123456789";

/// How long each case runs: `cargo bench` measures, `cargo test` only exercises.
struct Plan {
    rounds: usize,
    per_round: usize,
}

/// The median over `plan.rounds` of the time per call of `case` (called `plan.per_round`
/// times a round, with a fresh input from `setup` each, made outside the timing).
fn per_call<I>(plan: &Plan, mut setup: impl FnMut() -> I, mut case: impl FnMut(I)) -> Duration {
    let mut rounds: Vec<Duration> = (0..plan.rounds)
        .map(|_| {
            let inputs: Vec<I> = (0..plan.per_round).map(|_| setup()).collect();
            let started = Instant::now();
            for input in inputs {
                case(input);
            }
            started.elapsed() / plan.per_round as u32
        })
        .collect();
    rounds.sort();
    rounds[rounds.len() / 2]
}

fn body(id: i64) -> Vec<u8> {
    let example = include_str!("../events/bodies/call-result.json");
    example
        .replacen("\"id\": 45", &format!("\"id\": {id}"), 1)
        .into_bytes()
}

/// One new push with a recording, stored and its job queued, answered 200.
fn push(runtime: &tokio::runtime::Runtime, webhook: &MemoryWebhook, body: &[u8]) {
    let request = PushRequest {
        route: PushKind::CallRecord,
        method: "POST",
        query_token: Some(TOKEN),
        authorization: None,
        source_ip: None,
        body,
    };
    let outcome = runtime.block_on(webhook.handle(request));
    assert_eq!(outcome.status(), 200);
    black_box(outcome);
}

/// The webhook's time per push against its floor, with `repeat` pushes per measured call
/// (1 for the webhook itself).
fn webhook_ratio(
    plan: &Plan,
    runtime: &tokio::runtime::Runtime,
    repeat: usize,
) -> (Duration, Duration) {
    let mut next = 1;
    let mut fresh = || {
        next += 1;
        body(next)
    };
    let floor = per_call(plan, &mut fresh, |body| {
        black_box(serde_json::from_slice::<serde_json::Value>(&body).unwrap());
    });
    let webhook = MemoryWebhook::in_memory(TOKEN, "");
    let measured = per_call(plan, &mut fresh, |body| {
        for _ in 0..repeat {
            webhook.store.items.lock().unwrap().clear();
            push(runtime, &webhook, &body);
        }
    });
    (floor, measured)
}

/// Whether `measured` stays within [`GUARD`] × `floor`.
fn guard_holds(floor: Duration, measured: Duration) -> bool {
    measured.as_secs_f64() <= GUARD * floor.as_secs_f64()
}

/// A Lambda DynamoDB stream event of `count` INSERTs: the record of
/// `events/dynamodb-stream-insert.json` (the documented push as stored) repeated.
fn stream_event(count: i64) -> Vec<u8> {
    let sample: serde_json::Value =
        serde_json::from_str(include_str!("../events/dynamodb-stream-insert.json")).unwrap();
    let records: Vec<serde_json::Value> = (1..=count)
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

/// The publisher's time per stream record in a batch of 100 (the template's batch size),
/// against parsing the same event into a `Value`.
fn publisher_per_record(plan: &Plan, runtime: &tokio::runtime::Runtime) -> (Duration, Duration) {
    const BATCH: u32 = 100;
    let event = stream_event(BATCH.into());
    let publisher = Publisher {
        bus: MemoryEventBus::default(),
        failures: MemoryEventFailures::default(),
        settings: PublisherSettings::default(),
    };
    let floor = per_call(
        plan,
        || event.clone(),
        |event| {
            black_box(serde_json::from_slice::<serde_json::Value>(&event).unwrap());
        },
    );
    let measured = per_call(
        plan,
        || event.clone(),
        |event| {
            publisher.bus.accepted.lock().unwrap().clear();
            let event: StreamEvent = serde_json::from_slice(&event).unwrap();
            let response = runtime.block_on(publisher.handle(event));
            assert!(response.batch_item_failures.is_empty());
        },
    );
    (floor / BATCH, measured / BATCH)
}

fn main() {
    let measuring = std::env::args().any(|a| a == "--bench");
    let plan = match measuring {
        true => Plan {
            rounds: 21,
            per_round: 2_000,
        },
        false => Plan {
            rounds: 3,
            per_round: 50,
        },
    };
    metrics::set_output(metrics::Output::Discard).expect("set before the first push");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();

    let (floor, webhook) = webhook_ratio(&plan, &runtime, 1);
    let (event_floor, publisher) = publisher_per_record(&plan, &runtime);
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
    println!("| case | per call | floor | ratio |");
    println!("|---|---:|---:|---:|");
    println!(
        "| webhook: new push with recording | {webhook:.2?} | {floor:.2?} | {:.2} |",
        ratio(webhook, floor)
    );
    println!(
        "| publisher: stream record to events | {publisher:.2?} | {event_floor:.2?} | {:.2} |",
        ratio(publisher, event_floor)
    );
    if !measuring {
        // The guard can fail: twenty pushes per call break it.
        let (floor, twenty) = webhook_ratio(&plan, &runtime, 20);
        assert!(
            !guard_holds(floor, twenty),
            "the guard missed a webhook {:.1}× its floor",
            ratio(twenty, floor)
        );
        return;
    }
    if !guard_holds(floor, webhook) {
        eprintln!(
            "webhook CPU per push is {:.2}× the serde_json floor, over the {GUARD}× guard: \
             look for work that grows with the body",
            ratio(webhook, floor)
        );
        std::process::exit(1);
    }
    println!("guard: webhook within {GUARD}× its floor");
}
