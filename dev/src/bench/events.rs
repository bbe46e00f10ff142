//! Events per second through the local path (the table's stream, read as Lambda's event
//! source does, `Publisher::handle`, `PutEvents`) beside the emulator's own `PutEvents` rate
//! for the same events, in the same run.
//!
//! Both put to the same bus, whose lake rule hands every event to a queue inside the
//! `PutEvents` call: an event counts once it is in that queue. The floor puts the events ten
//! per call, one call at a time, as one shard's publisher does; the path first writes the
//! items (untimed), then starts the stream reader and times until the queue holds them all.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use pns_cdr::adapters::aws::AwsClients;
use pns_cdr::adapters::dynamodb::DynamoRecordStore;
use pns_cdr::adapters::eventbridge::EventBridgeBus;
use pns_cdr::adapters::sqs::SqsEventFailures;
use pns_cdr::domain::cdr::CallRecord;
use pns_cdr::domain::events::{events_for_change, Change, PhoneNumbers, SOURCE};
use pns_cdr::domain::item::{record_item, RecordingPlan};
use pns_cdr::handlers::publisher::{Publisher, PublisherSettings};
use pns_cdr::ports::{RecordStore, EVENTS_PER_PUT};

use crate::local::emulator::ResourceNames;
use crate::local::queue_counts;
use crate::local::resources::{create_downstream, create_resources, Template};
use crate::local::streams;

/// One rate.
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    pub events: usize,
    pub elapsed: Duration,
}

impl Rate {
    pub fn per_second(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64()
    }
}

/// The two rates of one run.
#[derive(Debug, Clone, Copy)]
pub struct EventRates {
    pub floor: Rate,
    pub path: Rate,
}

impl EventRates {
    pub fn table(&self) -> String {
        let row = |name: &str, r: &Rate| {
            format!(
                "{name:<52} {:>8} {:>9.2} {:>9.0}\n",
                r.events,
                r.elapsed.as_secs_f64(),
                r.per_second()
            )
        };
        format!(
            "{:<52} {:>8} {:>9} {:>9}\n",
            "", "events", "seconds", "events/s"
        ) + &row(
            "floor: SDK PutEvents, 10 per call, to the emulator",
            &self.floor,
        ) + &row(
            "stream -> Publisher::handle -> PutEvents (local path)",
            &self.path,
        ) + &format!(
            "ratio {:.2} of the floor\n",
            self.path.per_second() / self.floor.per_second()
        )
    }
}

/// The documented push as stored, under `id`.
fn item(id: i64) -> anyhow::Result<pns_cdr::domain::item::RecordItem> {
    let body = include_str!("../../../events/bodies/call-result.json").replacen(
        "\"id\": 45",
        &format!("\"id\": {id}"),
        1,
    );
    let push = CallRecord::parse(body.as_bytes())?;
    let now = time::OffsetDateTime::now_utc();
    let key = format!("recordings/2022/12/19/{id}.mp3");
    Ok(record_item(push, now, &RecordingPlan::Pending { key }))
}

/// Waits until the lake queue holds `count` messages.
async fn until_queued(clients: &AwsClients, url: &str, count: u64) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let (waiting, in_flight) = queue_counts(&clients.sqs, url).await?;
        if waiting + in_flight >= count {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "{} of {count} events after 10 minutes",
            waiting + in_flight
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Measures both rates for `count` events against the emulator at `endpoint`.
pub async fn measure(endpoint: &str, count: usize) -> anyhow::Result<EventRates> {
    let names = ResourceNames::suffixed(&format!("events-{}", std::process::id()));
    let harness = AwsClients::for_caller(endpoint, "harness").await?;
    let template = Template::repo()?;
    create_resources(&template, &harness, &names, None).await?;
    let downstream = create_downstream(&template, &harness, &names).await?;

    // The floor: the same events, put straight from here.
    let mut events = Vec::with_capacity(count);
    for id in 1..=count as i64 {
        let image = item(id)?.to_json();
        events.extend(events_for_change(
            Change::Insert,
            None,
            Some(&image),
            PhoneNumbers::Masked,
        )?);
    }
    let started = Instant::now();
    for chunk in events.chunks(EVENTS_PER_PUT) {
        let entries = chunk
            .iter()
            .map(|e| {
                PutEventsRequestEntry::builder()
                    .event_bus_name(&names.event_bus)
                    .source(SOURCE)
                    .detail_type(e.detail_type.as_str())
                    .detail(serde_json::Value::Object(e.detail.clone()).to_string())
                    .build()
            })
            .collect();
        let out = harness
            .events()
            .put_events()
            .set_entries(Some(entries))
            .send()
            .await?;
        ensure!(out.failed_entry_count == 0, "the emulator refused events");
    }
    until_queued(&harness, &downstream.lake_queue_url, count as u64).await?;
    let floor = Rate {
        events: count,
        elapsed: started.elapsed(),
    };

    // The path: the items first, then the stream reader from the start of the stream.
    let store = DynamoRecordStore::new(harness.dynamodb.clone(), &names.table);
    for id in 1..=count as i64 {
        store.put_new(item(id)?).await?;
    }
    let publisher_clients = AwsClients::for_caller(endpoint, "publisher").await?;
    let publisher = std::sync::Arc::new(Publisher {
        bus: EventBridgeBus::new(publisher_clients.events(), &names.event_bus),
        failures: SqsEventFailures::new(
            publisher_clients.sqs.clone(),
            &downstream.publisher_failures_url,
        ),
        settings: PublisherSettings::default(),
    });
    let mapping = template.properties("PublisherCallsStream")?;
    let started = Instant::now();
    let reader = tokio::spawn(streams::drain(
        aws_sdk_dynamodbstreams::Client::new(&publisher_clients.config),
        publisher_clients.sqs.clone(),
        publisher,
        streams::Mapping {
            stream_arn: downstream.calls_stream.clone(),
            batch_size: mapping["BatchSize"]
                .as_i64()
                .context("the mapping's BatchSize")? as i32,
            max_retries: 10,
            pause: Duration::from_millis(20),
            failure_queue_url: downstream.publisher_failures_url.clone(),
        },
    ));
    until_queued(&harness, &downstream.lake_queue_url, 2 * count as u64).await?;
    let path = Rate {
        events: count,
        elapsed: started.elapsed(),
    };
    reader.abort();
    Ok(EventRates { floor, path })
}
