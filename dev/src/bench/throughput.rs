//! Local end-to-end throughput: NXCLOUD-style pushes through the real HTTP server, the
//! webhook and the emulator, beside the emulator's own rate for the same AWS requests sent
//! straight from the SDK (PutItem, plus SendMessage for a new record with a recording). The
//! emulator is the bottleneck; the ratio is what the receiver costs on top of it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
use futures_util::{stream, StreamExt};
use time::OffsetDateTime;

use crate::local::emulator::ResourceNames;
use crate::local::resources::{create_resources, Template};
use crate::local::{poller, LocalOptions, LocalStack, LOCAL_TOKEN};
use crate::sim::{self, Delivery, PlannedRecord, Workload};
use pns_cdr::domain::cdr::CallRecord;
use pns_cdr::domain::item::{record_item, RecordingPlan};
use pns_cdr::domain::recording::{recording_key, RecordingJob};

/// What one run measured.
#[derive(Debug, Clone)]
pub struct Throughput {
    pub pushes: usize,
    pub concurrency: usize,
    /// Pushes per second and (p50, p99) latency: the SDK straight to the emulator.
    pub raw: (f64, Duration, Duration),
    /// The same through HTTP and the webhook.
    pub webhook: (f64, Duration, Duration),
    /// The simulator's summary after archiving and verification.
    pub summary: String,
    pub lost: usize,
    pub passed: bool,
}

impl Throughput {
    pub fn ratio(&self) -> f64 {
        self.webhook.0 / self.raw.0.max(1e-9)
    }

    pub fn table(&self) -> String {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let row = |name: &str, (rate, p50, p99): (f64, Duration, Duration)| {
            format!("{name:<44} {rate:>9.0} {:>9.1} {:>9.1}\n", ms(p50), ms(p99))
        };
        format!(
            "{:<44} {:>9} {:>9} {:>9}\n",
            format!("{} pushes, {} concurrent", self.pushes, self.concurrency),
            "pushes/s",
            "p50 ms",
            "p99 ms"
        ) + &row("floor: SDK PutItem (+SendMessage) to emulator", self.raw)
            + &row("webhook over HTTP (pns-sim's sender)", self.webhook)
            + &format!(
                "ratio {:.2} of the floor (goal >= 0.80: {}); lost {} ({})\n",
                self.ratio(),
                if self.ratio() >= 0.8 { "met" } else { "missed" },
                self.lost,
                if self.passed {
                    "verified"
                } else {
                    "VERIFICATION FAILED"
                }
            )
    }
}

/// Runs both measurements against the emulator at `endpoint`.
pub async fn measure(
    endpoint: &str,
    pushes: usize,
    duplicate_share: f64,
    concurrency: usize,
) -> anyhow::Result<Throughput> {
    let unique = ((pushes as f64) * (1.0 - duplicate_share)).round().max(1.0) as usize;
    let options = LocalOptions {
        endpoint_url: Some(endpoint.to_owned()),
        names: ResourceNames::suffixed(&format!("bench-{}", std::process::id())),
        webhook_port: 0,
        recordings_port: 0,
        drain: false,
        // The webhook's rate against the emulator's: stream reads would share its one core.
        events: false,
        // The emulator's rate, not the stage throttle's, is what this compares against.
        throttle: false,
        ..LocalOptions::default()
    };

    let stack = LocalStack::start(options).await?;
    let workload = Workload {
        first_id: 1,
        count: unique,
        duplicate_share: (pushes - unique) as f64 / unique as f64,
        conflict_share: 0.0,
        recording_share: 0.6,
        recording_sizes: vec![4 * 1024],
        // The floor replays call records only (PutItem + SendMessage).
        binding_error_share: 0.0,
        seed: 11,
    };
    let records = sim::plan(&workload, Some(&stack.recordings));

    let raw = raw_floor(&stack, &records, concurrency).await?;

    let mut delivery = Delivery::new(format!("{}?token={LOCAL_TOKEN}", stack.webhook_url));
    delivery.concurrency = concurrency;
    delivery.retry_interval = Duration::from_secs(1);
    delivery.seed = 11;
    let sent = sim::send(&records, &delivery).await?;
    let webhook = (
        sent.pushes_per_second(),
        sent.percentile(50.0),
        sent.percentile(99.0),
    );
    // Shown before archiving and verification, which take far longer on the emulator.
    eprintln!(
        "measured: floor {:.0} pushes/s, webhook {:.0} pushes/s ({:.2}); archiving and verifying",
        raw.0,
        webhook.0,
        webhook.0 / raw.0.max(1e-9)
    );

    // Then archive everything and verify, outside the measured time.
    // Five archivers, as the template's ArchiverConcurrency.
    let drains = poller::spawn_drains(
        5,
        &stack.clients.sqs,
        &stack.queues.queue_url,
        &stack.archiver,
        poller::FUNCTION_TIMEOUT,
    );
    let verified = sim::verify(&stack.target(), &records, &sent, Duration::from_secs(900)).await?;
    drains.iter().for_each(|d| d.abort());
    Ok(Throughput {
        pushes: sent.pushes as usize,
        concurrency,
        raw,
        webhook,
        summary: sim::summary(&sent, &verified),
        lost: verified.lost(),
        passed: verified.passed(),
    })
}

/// The same pushes as the AWS requests alone, prepared in advance, into a table and queue of
/// their own.
async fn raw_floor(
    stack: &LocalStack,
    records: &[PlannedRecord],
    concurrency: usize,
) -> anyhow::Result<(f64, Duration, Duration)> {
    let names = ResourceNames::suffixed(&format!("raw-{}", std::process::id()));
    let queues = create_resources(&Template::repo()?, &stack.clients, &names, None).await?;
    let now = OffsetDateTime::now_utc();
    let mut requests = Vec::new();
    for record in records {
        let push = CallRecord::parse(record.body.as_bytes())?;
        let url = push.record.recording_url().map(str::to_owned);
        let plan = match &url {
            Some(url) => RecordingPlan::Pending {
                key: recording_key(record.id, push.record.start_at, now, url),
            },
            None => RecordingPlan::None,
        };
        let item: std::collections::HashMap<String, AttributeValue> =
            serde_dynamo::to_item(record_item(push, now, &plan).to_json())?;
        let job = match (&plan, url) {
            (RecordingPlan::Pending { key }, Some(url)) => Some(serde_json::to_string(
                &RecordingJob::new(record.id, url, key.clone(), now),
            )?),
            _ => None,
        };
        let request = Arc::new((item, job));
        for _ in 0..=record.duplicates {
            requests.push(request.clone());
        }
    }
    fastrand::Rng::with_seed(11).shuffle(&mut requests);
    let (dynamodb, sqs) = (&stack.clients.dynamodb, &stack.clients.sqs);
    let (table, queue_url) = (&names.table, &queues.queue_url);
    let started = Instant::now();
    let results: Vec<anyhow::Result<Duration>> = stream::iter(requests)
        .map(|request| async move {
            let began = Instant::now();
            let (item, job) = &*request;
            let put = dynamodb
                .put_item()
                .table_name(table)
                .set_item(Some(item.clone()))
                .condition_expression("attribute_not_exists(id)")
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                )
                .send()
                .await;
            let created = match put {
                Ok(_) => true,
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
                {
                    false
                }
                Err(e) => {
                    anyhow::bail!(aws_sdk_dynamodb::error::DisplayErrorContext(e).to_string())
                }
            };
            if let (true, Some(job)) = (created, job) {
                sqs.send_message()
                    .queue_url(queue_url)
                    .message_body(job)
                    .send()
                    .await
                    .map_err(|e| {
                        anyhow::anyhow!(aws_sdk_sqs::error::DisplayErrorContext(e).to_string())
                    })?;
            }
            Ok(began.elapsed())
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let elapsed = started.elapsed();
    let mut latencies = results.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
    latencies.sort();
    Ok((
        latencies.len() as f64 / elapsed.as_secs_f64(),
        sim::percentile(&latencies, 50.0),
        sim::percentile(&latencies, 99.0),
    ))
}
