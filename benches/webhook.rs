//! Webhook CPU work per push (auth, parse, validate, build item, build answer; storage in
//! memory) against the floor: `serde_json::from_slice` of the same body into a `Value`.

use std::hint::black_box;
use std::sync::atomic::{AtomicI64, Ordering};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use pns_cdr::adapters::memory::{MemoryJobQueue, MemoryObjectStore, MemoryRecordStore};
use pns_cdr::domain::auth::Authenticator;
use pns_cdr::domain::url_policy::{UrlPolicy, UrlProfile, DEFAULT_RECORDING_HOSTS};
use pns_cdr::handlers::webhook::{Push, Webhook, WebhookSettings};

const TOKEN: &str = "bench-token-0123456789";

fn body(id: i64) -> Vec<u8> {
    let example = include_str!("../tests/data/example-push.json");
    example
        .replacen("\"id\": 45", &format!("\"id\": {id}"), 1)
        .into_bytes()
}

fn push_cost(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let webhook = Webhook {
        store: MemoryRecordStore::default(),
        queue: MemoryJobQueue::default(),
        objects: MemoryObjectStore::default(),
        auth: Authenticator::new(TOKEN, "").unwrap().into(),
        policy: UrlPolicy::new(DEFAULT_RECORDING_HOSTS, UrlProfile::Production).unwrap(),
        settings: WebhookSettings::default(),
    };
    let next = AtomicI64::new(1);
    let mut group = c.benchmark_group("push");
    group.bench_function("floor: serde_json::from_slice to Value", |b| {
        b.iter_batched(
            || body(next.fetch_add(1, Ordering::Relaxed)),
            |body| black_box(serde_json::from_slice::<serde_json::Value>(&body).unwrap()),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("webhook: new push with recording", |b| {
        b.iter_batched(
            || body(next.fetch_add(1, Ordering::Relaxed)),
            |body| {
                let push = Push {
                    method: "POST",
                    query_token: Some(TOKEN),
                    authorization: None,
                    source_ip: None,
                    body: &body,
                };
                let answer = runtime.block_on(webhook.handle(push));
                assert_eq!(answer.status, 200);
                black_box(answer)
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, push_cost);
criterion_main!(benches);
