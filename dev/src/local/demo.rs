//! What `make run` prints, what `make demo` does (pushes, what landed, the events, a lake
//! report), and the single-copy run `make bench-archiver` measures.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use serde_json::Value;
use time::OffsetDateTime;

use super::emulator::ResourceNames;
use super::{LocalOptions, LocalStack, LOCAL_TOKEN};
use pns_cdr::adapters::s3::S3ObjectStore;
use pns_cdr::domain::cdr::CallRecord;
use pns_cdr::domain::item::{record_item, RecordingPlan};
use pns_cdr::domain::recording::LAKE_PREFIX;
use pns_cdr::domain::recording::{recording_key, RecordingJob, RecordingStatus};
use pns_cdr::handlers::archiver::Outcome;
use pns_cdr::ports::RecordStore;
use pnsctl::lake::{copy_lake, report_sql, run_duckdb};

/// Resource names from the same variables the functions read, with the template's defaults.
pub fn names_from_env() -> ResourceNames {
    let defaults = ResourceNames::default();
    let var = |name: &str, default: String| {
        std::env::var(name)
            .ok()
            .filter(|v| !v.is_empty())
            .unwrap_or(default)
    };
    let queue = var("PNS_QUEUE_NAME", defaults.queue);
    ResourceNames {
        table: var("PNS_TABLE_NAME", defaults.table),
        binding_errors_table: var("PNS_BINDING_ERRORS_TABLE", defaults.binding_errors_table),
        dead_letter_queue: format!("{queue}-dlq"),
        queue,
        bucket: var("PNS_BUCKET_NAME", defaults.bucket),
        secret: defaults.secret,
        number_key_secret: defaults.number_key_secret,
        event_bus: var("PNS_EVENT_BUS_NAME", defaults.event_bus),
        publisher_failures: defaults.publisher_failures,
        lake_queue: defaults.lake_queue,
    }
}

pub fn print_banner(stack: &LocalStack) {
    println!("pns-cdr local stack is up");
    println!(
        "  webhook      POST {}?token={LOCAL_TOKEN}",
        stack.webhook_url
    );
    println!(
        "               POST {}?token={LOCAL_TOKEN}",
        stack.binding_error_url
    );
    println!("  AWS emulator {}", stack.endpoint);
    println!(
        "  tables       {}, {}",
        stack.names.table, stack.names.binding_errors_table
    );
    println!(
        "  queue        {} (dead letters: {})",
        stack.names.queue, stack.names.dead_letter_queue
    );
    println!("  bucket       {}", stack.names.bucket);
    println!(
        "  events       bus {}; lake s3://{}/{LAKE_PREFIX}",
        stack.names.event_bus, stack.names.bucket
    );
    println!(
        "  recordings   {}",
        stack.recordings.url("sample", 65536, "")
    );
    println!(
        "try: curl -s -XPOST '{}?token={LOCAL_TOKEN}' --data-binary @events/bodies/call-result.json",
        stack.webhook_url
    );
    println!(
        "then: AWS_ENDPOINT_URL={} cargo run --quiet -p pnsctl -- report calls-per-business-per-day",
        stack.endpoint
    );
    println!("Ctrl-C stops everything.");
}

fn event_body(name: &str) -> anyhow::Result<(String, String)> {
    let path = crate::repo_root().join("events").join(name);
    let event: Value = serde_json::from_slice(
        &std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
    )?;
    let body = event["body"]
        .as_str()
        .context("event has a body")?
        .to_owned();
    let query = event["rawQueryString"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    Ok((body, query))
}

/// Pushes the samples, waits for the recording, prints what landed, and returns.
pub async fn run(stack: &LocalStack) -> anyhow::Result<()> {
    print_banner(stack);
    let http = reqwest::Client::new();
    let (answered, query) = event_body("push-answered.json")?;
    // NXCLOUD's real recording host is not reachable from here: serve the recording locally.
    let mut answered: Value = serde_json::from_str(&answered)?;
    answered["recordFile"] = stack.recordings.url("demo-45", 250_000, "").into();
    let answered = answered.to_string();
    let binding_error = event_body("push-binding-error.json")?.0;
    let (calls, bindings) = (&stack.webhook_url, &stack.binding_error_url);
    let pushes = [
        (
            "answered call with recording",
            calls,
            answered.clone(),
            query.clone(),
        ),
        (
            "unanswered call",
            calls,
            event_body("push-unanswered.json")?.0,
            query.clone(),
        ),
        (
            "the same push again (duplicate)",
            calls,
            answered,
            query.clone(),
        ),
        (
            "binding error (unbound call)",
            bindings,
            binding_error.clone(),
            query.clone(),
        ),
        (
            "the same, to the call-result URL",
            calls,
            binding_error,
            query.clone(),
        ),
        (
            "invalid body",
            calls,
            event_body("push-invalid.json")?.0,
            query,
        ),
        (
            "wrong token",
            calls,
            event_body("push-wrong-token.json")?.0,
            event_body("push-wrong-token.json")?.1,
        ),
    ];
    println!("\n== pushes");
    for (what, url, body, query) in pushes {
        let response = http
            .post(format!("{url}?{query}"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await?;
        let status = response.status().as_u16();
        println!("{what:<34} -> {status} {}", response.text().await?);
    }

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let record = stack.archiver.store.get(45).await?;
        if record.as_ref().and_then(|r| r.recording_status) != Some(RecordingStatus::Pending)
            || Instant::now() > deadline
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    println!("\n== DynamoDB table {}", stack.names.table);
    for item in stack.items().await? {
        let pick = |k: &str| item.get(k).cloned().unwrap_or(Value::Null);
        println!(
            "id={} callId={} status={} answered={} recordingStatus={} recordingKey={} recordingSha256={}",
            pick("id"), pick("callId"), pick("callStatusText"), pick("answered"), pick("recordingStatus"), pick("recordingKey"), pick("recordingSha256")
        );
    }
    println!("\n== DynamoDB table {}", stack.names.binding_errors_table);
    for item in stack.binding_errors().await? {
        let pick = |k: &str| item.get(k).cloned().unwrap_or(Value::Null);
        println!(
            "requestId={} code={} msg={} action={} occurrenceTime={} occurredAt={}",
            pick("requestId"),
            pick("code"),
            pick("msg"),
            pick("action"),
            pick("occurrenceTime"),
            pick("occurredAt")
        );
    }
    println!("\n== SQS");
    for (name, url) in [
        (&stack.names.queue, &stack.queues.queue_url),
        (
            &stack.names.dead_letter_queue,
            &stack.queues.dead_letter_queue_url,
        ),
    ] {
        let (waiting, in_flight) = super::queue_counts(&stack.clients.sqs, url).await?;
        println!("{name}: {waiting} waiting, {in_flight} in flight");
    }
    println!("\n== S3 bucket {}", stack.names.bucket);
    let objects = stack
        .clients
        .s3
        .list_objects_v2()
        .bucket(&stack.names.bucket)
        .send()
        .await?;
    for object in objects.contents() {
        println!(
            "{} ({} bytes)",
            object.key().unwrap_or_default(),
            object.size().unwrap_or_default()
        );
    }

    // Four events: two calls recorded, the recording archived, the unbound call.
    println!(
        "\n== events on bus {} (the lake under {LAKE_PREFIX})",
        stack.names.event_bus
    );
    let objects = S3ObjectStore::new(stack.clients.s3.clone(), &stack.names.bucket);
    let lake = tempfile::tempdir()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let events = loop {
        let copied = copy_lake(&objects, lake.path()).await?;
        let sql = "SELECT detail_type, detail.eventId AS event_id FROM events ORDER BY \"time\", 2";
        let table = run_duckdb(&python(), sql, lake.path())?;
        if table.rows.len() >= 4 || (copied > 0 && Instant::now() > deadline) {
            break table;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    print!("{}", events.text());
    println!("\n== pnsctl report recording-coverage");
    print!(
        "{}",
        run_duckdb(&python(), report_sql("recording-coverage")?, lake.path())?.text()
    );
    Ok(())
}

/// The interpreter with DuckDB: `PNS_PYTHON`, else the project's virtualenv.
fn python() -> String {
    std::env::var("PNS_PYTHON").unwrap_or_else(|_| {
        crate::repo_root()
            .join(".venv/bin/python")
            .display()
            .to_string()
    })
}

/// Archives one generated recording of `size` bytes through the real archiver and prints the
/// outcome with this process's peak RSS (the emulator runs in its own process).
pub async fn archive_one(mut options: LocalOptions, size: u64) -> anyhow::Result<()> {
    options.webhook_port = 0;
    options.recordings_port = 0;
    options.emulator_port = 0;
    options.drain = false;
    options.events = false;
    let stack = LocalStack::start(options).await?;
    let url = stack.recordings.url("bench", size, "");
    // A fresh id per run, so runs can share one emulator.
    let id = i64::from(std::process::id());
    let body =
        format!(r#"{{"id":{id},"callId":"{id}","startAt":1671440452,"recordFile":"{url}"}}"#);
    let push = CallRecord::parse(body.as_bytes())?;
    let now = OffsetDateTime::now_utc();
    let key = recording_key(id, push.record.start_at, now, &url);
    let item = record_item(push, now, &RecordingPlan::Pending { key: key.clone() });
    stack.record_store().put_new(item).await?;
    let started = Instant::now();
    let outcome = stack
        .archiver
        .archive(&RecordingJob::new(id, url, key, now), None)
        .await;
    let elapsed = started.elapsed();
    let Outcome::Archived { bytes, sha256 } = outcome else {
        anyhow::bail!("copy did not archive: {outcome:?}");
    };
    ensure!(bytes == size, "copied {bytes} of {size} bytes");
    println!(
        "archived bytes={bytes} sha256={sha256} seconds={:.3} peak_rss_kib={}",
        elapsed.as_secs_f64(),
        peak_rss_kib().unwrap_or_default()
    );
    Ok(())
}

/// This process's peak resident set (VmHWM), in KiB.
pub fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}
