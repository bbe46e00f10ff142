//! Cold start of the release `webhook` and `archiver` binaries against the in-repo Lambda
//! Runtime API emulator.
//!
//! Each run starts the binary afresh with a Lambda-like, otherwise empty environment, its
//! first event already queued (a cold start is triggered by an invocation), and measures:
//! - init: spawn → the first `GET …/invocation/next` (what Lambda reports as Init Duration,
//!   plus the exec);
//! - first answer: spawn → the answer to that event is in (its AWS calls go to moto);
//! - peak RSS: `VmHWM` of the child once it has answered, before it is killed.
//!
//! A run whose answer is not a success is an error, not a number.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, ensure, Context};
use bytes::Bytes;
use indicatif::ProgressBar;
use serde_json::Value;
use time::OffsetDateTime;
use tokio::io::AsyncReadExt;
use tokio::task::JoinHandle;

use crate::local::emulator::{Emulator, ResourceNames};
use crate::local::fake_nxcloud::FakeNxcloud;
use crate::local::resources::{create_downstream, create_resources, Template};
use crate::local::runtime_api::{Outcome, RuntimeApi};
use crate::local::{LOCAL_NUMBER_KEY, LOCAL_TOKEN};
use pns_cdr::adapters::aws::AwsClients;
use pns_cdr::adapters::dynamodb::DynamoRecordStore;
use pns_cdr::domain::cdr::CallRecord;
use pns_cdr::domain::item::{record_item, RecordingPlan};
use pns_cdr::domain::recording::{recording_key, RecordingJob, RecordingStatus};
use pns_cdr::ports::{PutOutcome, RecordStore};

/// The goals: the webhook's init ≤ 5.5 ms, the archiver's within 1 ms of it (the two share
/// one TLS setup), peak RSS ≤ 16 MiB.
const GOAL_INIT: Duration = Duration::from_micros(5500);
const GOAL_ARCHIVER_OVER_WEBHOOK: Duration = Duration::from_millis(1);
const GOAL_RSS_KIB: u64 = 16 * 1024;
/// Longest a run may take to answer before it counts as failed.
const RUN_TIMEOUT: Duration = Duration::from_secs(30);
/// The recording the archiver copies: small, so the copy does not hide the start.
const RECORDING_BYTES: u64 = 64 * 1024;
/// Bytes of a child's output kept for an error message.
const LOG_TAIL: usize = 4096;

/// `pns-bench cold-start`: time from process start to the first invocation answered, for the
/// release webhook and archiver against the in-repo Lambda Runtime API emulator.
#[derive(Debug, Clone, clap::Args)]
pub struct ColdStartArgs {
    /// Starts per binary.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..))]
    runs: u64,
    /// The release webhook binary.
    #[arg(long, default_value = "target/release/webhook")]
    webhook: PathBuf,
    /// The release archiver binary.
    #[arg(long, default_value = "target/release/archiver")]
    archiver: PathBuf,
    /// The release publisher binary.
    #[arg(long, default_value = "target/release/publisher")]
    publisher: PathBuf,
}

/// The functions measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Function {
    Webhook,
    Archiver,
    Publisher,
}

impl Function {
    fn name(self) -> &'static str {
        match self {
            Self::Webhook => "webhook",
            Self::Archiver => "archiver",
            Self::Publisher => "publisher",
        }
    }

    fn lambda_name(self) -> String {
        format!("pns-cdr-{}", self.name())
    }

    /// The function's timeout in `template.yaml`: the deadline its event carries (the
    /// archiver starts no copy it has too little time left for).
    fn timeout(self) -> Duration {
        match self {
            Self::Webhook => Duration::from_secs(10),
            Self::Archiver => Duration::from_secs(120),
            Self::Publisher => Duration::from_secs(60),
        }
    }
}

/// One start.
#[derive(Debug, Clone, Copy)]
struct Sample {
    init: Duration,
    first_answer: Duration,
    peak_rss_kib: u64,
}

/// What the driver set up once for all runs.
struct Bench {
    endpoint: String,
    names: ResourceNames,
    queue_url: String,
    store: DynamoRecordStore,
    recordings: FakeNxcloud,
    webhook_event: Value,
    sqs_event: Value,
    stream_event: Value,
    /// The functions' `RUST_LOG`.
    rust_log: String,
    /// Keep a child's whole output (else its last bytes, for an error message).
    keep_output: bool,
}

impl Bench {
    /// Resources in the emulator at `endpoint` under `names`, and the sample events.
    async fn set_up(endpoint: &str, names: ResourceNames) -> anyhow::Result<Self> {
        let clients = AwsClients::for_caller(endpoint, "harness").await?;
        let template = Template::repo()?;
        let queues = create_resources(&template, &clients, &names, None).await?;
        // The bus the publisher puts to.
        create_downstream(&template, &clients, &names).await?;
        Ok(Self {
            endpoint: endpoint.to_owned(),
            store: DynamoRecordStore::new(clients.dynamodb.clone(), &names.table),
            names,
            queue_url: queues.queue_url,
            recordings: FakeNxcloud::start(0).await?,
            webhook_event: sample_event("push-answered.json")?,
            sqs_event: sample_event("sqs-recording-job.json")?,
            stream_event: sample_event("dynamodb-stream-insert.json")?,
            // The template's default level.
            rust_log: "info".into(),
            keep_output: false,
        })
    }
}

/// Runs the webhook, archiver and publisher binaries once each, as Lambda would, with
/// `RUST_LOG` set to `rust_log`, against the emulator at `endpoint`; returns everything they
/// printed.
pub async fn logged_run(
    webhook: &Path,
    archiver: &Path,
    publisher: &Path,
    rust_log: &str,
    endpoint: &str,
    names: ResourceNames,
) -> anyhow::Result<String> {
    let mut bench = Bench::set_up(endpoint, names).await?;
    bench.rust_log = rust_log.to_owned();
    bench.keep_output = true;
    let mut printed = String::new();
    for (function, binary, id) in [
        (Function::Webhook, webhook, 300_000),
        (Function::Archiver, archiver, 300_001),
        (Function::Publisher, publisher, 300_002),
    ] {
        let (_, output) = bench.start_once(function, binary, id).await?;
        printed.push_str(&output);
    }
    Ok(printed)
}

/// `pns-bench cold-start [args]`.
pub async fn run(options: ColdStartArgs) -> anyhow::Result<()> {
    for path in [&options.webhook, &options.archiver, &options.publisher] {
        ensure!(
            path.is_file(),
            "{} not found; build it first: \
             cargo build --release --bin webhook --bin archiver --bin publisher",
            path.display()
        );
    }
    let emulator = tokio::task::spawn_blocking(|| Emulator::start(0))
        .await
        .context("starting the AWS emulator")??;
    let bench = Bench::set_up(&emulator.endpoint, ResourceNames::default()).await?;

    let mut rows = Vec::new();
    for (function, binary) in [
        (Function::Webhook, &options.webhook),
        (Function::Archiver, &options.archiver),
        (Function::Publisher, &options.publisher),
    ] {
        let mut samples = Vec::with_capacity(options.runs as usize);
        // Drawn on a terminal only.
        let progress = ProgressBar::new(options.runs).with_message(function.name());
        for n in 0..options.runs {
            // Ids apart per function, so no run meets another's record.
            let id = match function {
                Function::Webhook => 100_000,
                Function::Archiver => 200_000,
                Function::Publisher => 400_000,
            } + n as i64;
            let (sample, _) = bench
                .start_once(function, binary, id)
                .await
                .with_context(|| {
                    format!("{} run {} of {}", function.name(), n + 1, options.runs)
                })?;
            tracing::info!(
                function = function.name(),
                run = n + 1,
                init_us = sample.init.as_micros() as u64,
                first_answer_us = sample.first_answer.as_micros() as u64,
                peak_rss_kib = sample.peak_rss_kib,
                "cold start measured"
            );
            samples.push(sample);
            progress.inc(1);
        }
        progress.finish_and_clear();
        rows.push((function, samples));
    }
    print_table(&options, &rows);
    drop(emulator);
    Ok(())
}

impl Bench {
    /// The environment Lambda gives a function, plus this stack's configuration.
    fn environment(&self, function: Function) -> Vec<(&'static str, String)> {
        let mut env = vec![
            ("AWS_LAMBDA_FUNCTION_NAME", function.lambda_name()),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256".into()),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
            (
                "AWS_LAMBDA_LOG_GROUP_NAME",
                format!("/aws/lambda/{}", function.lambda_name()),
            ),
            (
                "AWS_LAMBDA_LOG_STREAM_NAME",
                "2026/01/01/[$LATEST]cold".into(),
            ),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_DEFAULT_REGION", "us-east-1".into()),
            // The emulator records each call's access key id: the function's name.
            ("AWS_ACCESS_KEY_ID", function.name().into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
            ("AWS_SESSION_TOKEN", "test".into()),
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("RUST_LOG", self.rust_log.clone()),
            ("PNS_TABLE_NAME", self.names.table.clone()),
            ("PNS_QUEUE_URL", self.queue_url.clone()),
            ("PNS_BUCKET_NAME", self.names.bucket.clone()),
        ];
        match function {
            // Deployed, the tokens come from Secrets Manager (one more call during init);
            // given directly, the secret is not read.
            Function::Webhook => {
                env.push(("PNS_WEBHOOK_TOKENS", LOCAL_TOKEN.into()));
                env.push(("PNS_NUMBER_KEYS", LOCAL_NUMBER_KEY.into()));
            }
            // The local profile admits http://127.0.0.1:<port>, the fake recording host,
            // whatever PNS_RECORDING_HOSTS lists.
            Function::Archiver => env.push(("PNS_URL_PROFILE", "local".into())),
            Function::Publisher => {
                env.push(("PNS_EVENT_BUS_NAME", self.names.event_bus.clone()));
                env.push(("PNS_NUMBER_KEYS", LOCAL_NUMBER_KEY.into()));
                // Only read when an event is too large for PutEvents.
                env.push(("PNS_FAILURE_QUEUE_URL", self.queue_url.clone()));
            }
        }
        env
    }

    /// The event for run `id`, after preparing what it needs in the emulator.
    async fn event(&self, function: Function, id: i64) -> anyhow::Result<Value> {
        match function {
            Function::Webhook => {
                let mut event = self.webhook_event.clone();
                let mut push: Value =
                    serde_json::from_str(event["body"].as_str().context("event has a body")?)?;
                push["id"] = id.into();
                push["callId"] = format!("cold-start-{id}").into();
                let body = push.to_string();
                event["headers"]["content-length"] = body.len().to_string().into();
                event["body"] = body.into();
                event["requestContext"]["requestId"] = format!("cold-start-{id}").into();
                event["requestContext"]["timeEpoch"] = epoch_ms().into();
                Ok(event)
            }
            Function::Archiver => {
                // The job's record, PENDING, as the webhook would have stored it.
                // A signed URL and the numbers of the sample push, as a real record has them
                // (the log test looks for both in what the function prints).
                let url = self.recordings.url(
                    &format!("cold-{id}"),
                    RECORDING_BYTES,
                    "sig=never-logged-signature",
                );
                let body = format!(
                    r#"{{"id":{id},"callId":"cold-start-{id}","startAt":1671440452,"recordFile":"{url}",
                        "caller":"85235757583","callee":"85238533300","did":"85235757584"}}"#
                );
                let push = CallRecord::parse(body.as_bytes())?;
                let now = OffsetDateTime::now_utc();
                let key = recording_key(id, push.record.start_at, now, &url);
                let item = record_item(push, now, &RecordingPlan::Pending { key: key.clone() });
                let put = self.store.put_new(item).await?;
                ensure!(
                    matches!(put, PutOutcome::Created),
                    "record {id} already exists"
                );
                let job = RecordingJob::new(id, url, key, now);
                let mut event = self.sqs_event.clone();
                let record = &mut event["Records"][0];
                record["messageId"] = format!("cold-start-{id}").into();
                record["body"] = serde_json::to_string(&job)?.into();
                // Nothing checks it, and the body it summed is gone.
                record
                    .as_object_mut()
                    .context("an SQS record is an object")?
                    .remove("md5OfBody");
                record["attributes"]["SentTimestamp"] = epoch_ms().to_string().into();
                Ok(event)
            }
            Function::Publisher => {
                // The documented push as stored, under this run's id.
                let mut event = self.stream_event.clone();
                let change = &mut event["Records"][0]["dynamodb"];
                change["Keys"]["id"]["N"] = id.to_string().into();
                change["NewImage"]["id"]["N"] = id.to_string().into();
                change["SequenceNumber"] = id.to_string().into();
                Ok(event)
            }
        }
    }

    /// Checks that the answer is a success, as API Gateway or the SQS event source would.
    async fn check(&self, function: Function, id: i64, answer: &Value) -> anyhow::Result<()> {
        match function {
            Function::Webhook => {
                ensure!(answer["statusCode"] == 200, "webhook answered {answer}");
                let body: Value = serde_json::from_str(
                    answer["body"].as_str().context("the response has a body")?,
                )?;
                ensure!(
                    body["ok"] == true && body["duplicate"] == false && body["id"] == id,
                    "webhook answered {body}"
                );
            }
            Function::Archiver => {
                let failures = answer["batchItemFailures"]
                    .as_array()
                    .context("the archiver's answer lists batchItemFailures")?;
                ensure!(failures.is_empty(), "archiver answered {answer}");
                // A refused job is not retried, so no failure alone does not mean archived.
                let record = self.store.get(id).await?.context("the record exists")?;
                ensure!(
                    record.recording_status == Some(RecordingStatus::Archived)
                        && record.recording_bytes == Some(RECORDING_BYTES),
                    "record {id} is {:?} with {:?} bytes, not ARCHIVED",
                    record.recording_status,
                    record.recording_bytes
                );
            }
            Function::Publisher => {
                let failures = answer["batchItemFailures"]
                    .as_array()
                    .context("the publisher's answer lists batchItemFailures")?;
                ensure!(failures.is_empty(), "publisher answered {answer}");
            }
        }
        Ok(())
    }

    /// One cold start: a fresh process, one event, one answer; and the process's output when
    /// `keep_output` (else empty).
    async fn start_once(
        &self,
        function: Function,
        binary: &Path,
        id: i64,
    ) -> anyhow::Result<(Sample, String)> {
        let event = self.event(function, id).await?;
        let api = RuntimeApi::start(format!(
            "arn:aws:lambda:us-east-1:123456789012:function:{}",
            function.lambda_name()
        ))
        .await?;
        let pending = api.invoke(Bytes::from(event.to_string()), function.timeout());

        let mut command = tokio::process::Command::new(binary);
        command
            .env_clear()
            .envs(self.environment(function))
            .env("AWS_LAMBDA_RUNTIME_API", api.address())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Every early return below drops the child: it must die with it.
            .kill_on_drop(true);
        let started = Instant::now();
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let pid = child.id().context("the child has a pid")?;
        let keep = if self.keep_output {
            usize::MAX / 4
        } else {
            LOG_TAIL
        };
        let stdout = tail(child.stdout.take(), keep);
        let stderr = tail(child.stderr.take(), keep);

        let answered = tokio::select! {
            answer = tokio::time::timeout(RUN_TIMEOUT, pending.answer()) => answer,
            status = child.wait() => {
                let status = status?;
                bail!(
                    "{} exited ({status}) before answering\n{}",
                    function.name(),
                    output(stdout, stderr).await
                );
            }
        };
        // Read while the child lives (it is waiting for its next event).
        let peak_rss = peak_rss_kib(pid);
        child.kill().await?;
        let answer = match answered {
            Ok(answer) => answer?,
            Err(_) => bail!(
                "no answer within {RUN_TIMEOUT:?}\n{}",
                output(stdout, stderr).await
            ),
        };
        let body = match &answer.outcome {
            Outcome::Response(body) => body,
            other => bail!(
                "{} failed: {other:?}\n{}",
                function.name(),
                output(stdout, stderr).await
            ),
        };
        let checked = match serde_json::from_slice::<Value>(body) {
            Ok(body) => self.check(function, id, &body).await,
            Err(e) => Err(anyhow::Error::new(e).context("the answer is not JSON")),
        };
        if let Err(e) = checked {
            bail!("{e:#}\n{}", output(stdout, stderr).await);
        }
        let init_done = api
            .init_done_at()
            .context("the function answered without asking for an event")?;
        let sample = Sample {
            init: init_done - started,
            first_answer: answer.at - started,
            peak_rss_kib: peak_rss.context("reading the child's VmHWM")?,
        };
        let printed = if self.keep_output {
            output_kept(stdout, stderr, keep).await
        } else {
            String::new()
        };
        Ok((sample, printed))
    }
}

/// Reads an event from `events/`.
fn sample_event(name: &str) -> anyhow::Result<Value> {
    let path = crate::repo_root().join("events").join(name);
    let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    Ok(serde_json::from_slice(&bytes)?)
}

fn epoch_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

/// Drains a child's pipe (so it never blocks on a full pipe), keeping the last `keep` bytes.
fn tail<R>(pipe: Option<R>, keep: usize) -> JoinHandle<Vec<u8>>
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let mut kept = Vec::new();
        let Some(mut pipe) = pipe else { return kept };
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = pipe.read(&mut buf).await {
            kept.extend_from_slice(&buf[..n]);
            if kept.len() > 2 * keep {
                kept.drain(..kept.len() - keep);
            }
        }
        kept
    })
}

/// The child's output for an error message (its pipes close once it is dead).
async fn output(stdout: JoinHandle<Vec<u8>>, stderr: JoinHandle<Vec<u8>>) -> String {
    output_kept(stdout, stderr, LOG_TAIL).await
}

/// The child's output, its last `keep` bytes of each pipe.
async fn output_kept(
    stdout: JoinHandle<Vec<u8>>,
    stderr: JoinHandle<Vec<u8>>,
    keep: usize,
) -> String {
    let mut text = String::new();
    for (name, pipe) in [("stdout", stdout), ("stderr", stderr)] {
        let bytes = tokio::time::timeout(Duration::from_secs(2), pipe)
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        let start = bytes.len().saturating_sub(keep);
        text.push_str(&format!(
            "--- {name} (last {} bytes)\n{}\n",
            bytes.len() - start,
            String::from_utf8_lossy(&bytes[start..])
        ));
    }
    text
}

/// A process's peak resident set (`VmHWM`), in KiB.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The median of a non-empty list (the mean of the middle two for an even count).
fn median(values: &[u64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let mid = sorted.len() / 2;
    if sorted.len().is_multiple_of(2) {
        (sorted[mid - 1] + sorted[mid]) as f64 / 2.0
    } else {
        sorted[mid] as f64
    }
}

/// (median, min, max) in milliseconds.
fn stats_ms(values: impl Iterator<Item = Duration>) -> (f64, f64, f64) {
    let micros: Vec<u64> = values.map(|d| d.as_micros() as u64).collect();
    let ms = |us: u64| us as f64 / 1000.0;
    (
        median(&micros) / 1000.0,
        micros.iter().copied().min().map_or(0.0, ms),
        micros.iter().copied().max().map_or(0.0, ms),
    )
}

fn print_table(options: &ColdStartArgs, rows: &[(Function, Vec<Sample>)]) {
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    println!(
        "cold start: {} starts per binary, {cpus} CPUs; Runtime API emulator on 127.0.0.1, \
         AWS calls to moto",
        options.runs
    );
    println!("  webhook  = {}", options.webhook.display());
    println!("  archiver = {}", options.archiver.display());
    println!("  publisher = {}", options.publisher.display());
    println!(
        "\n{:<9} {:<26}   {:<26}   peak RSS",
        "", "init (ms)", "first answer (ms)"
    );
    println!(
        "{:<9} {:>8} {:>8} {:>8}   {:>8} {:>8} {:>8}   {:>10}   {:<31} verdict",
        "binary", "median", "min", "max", "median", "min", "max", "median KiB", "goal"
    );
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mut webhook_init = None;
    for (function, samples) in rows {
        let (init, init_min, init_max) = stats_ms(samples.iter().map(|s| s.init));
        let (answer, answer_min, answer_max) = stats_ms(samples.iter().map(|s| s.first_answer));
        let rss = median(&samples.iter().map(|s| s.peak_rss_kib).collect::<Vec<_>>());
        // The webhook is measured first; the archiver's bar is the webhook's init, the
        // publisher's the webhook's own.
        let goal_ms = match (function, webhook_init) {
            (Function::Archiver, Some(webhook)) => webhook + ms(GOAL_ARCHIVER_OVER_WEBHOOK),
            _ => ms(GOAL_INIT),
        };
        if *function == Function::Webhook {
            webhook_init = Some(init);
        }
        let goal = format!(
            "init <= {goal_ms:.2} ms, RSS <= {} MiB",
            GOAL_RSS_KIB / 1024
        );
        let mut missed = Vec::new();
        if init > goal_ms {
            missed.push(format!("init +{:.2} ms", init - goal_ms));
        }
        if rss > GOAL_RSS_KIB as f64 {
            missed.push(format!("RSS +{:.0} KiB", rss - GOAL_RSS_KIB as f64));
        }
        let verdict = if missed.is_empty() {
            "met".to_owned()
        } else {
            format!("missed ({})", missed.join(", "))
        };
        println!(
            "{:<9} {init:>8.2} {init_min:>8.2} {init_max:>8.2}   {answer:>8.2} {answer_min:>8.2} \
             {answer_max:>8.2}   {rss:>10.0}   {goal:<31} {verdict}",
            function.name(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3, 1, 2]), 2.0);
        assert_eq!(median(&[4, 1, 3, 2]), 2.5);
        let (med, min, max) = stats_ms([1500, 500, 2500].into_iter().map(Duration::from_micros));
        assert_eq!((med, min, max), (1.5, 0.5, 2.5));
    }

    #[test]
    fn options_default_and_reject_unknown() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            args: ColdStartArgs,
        }
        let parse = |args: &[&str]| Cli::try_parse_from([&["cold-start"], args].concat());
        let defaults = parse(&[]).unwrap().args;
        assert_eq!(defaults.runs, 20);
        assert_eq!(defaults.webhook, PathBuf::from("target/release/webhook"));
        let err = parse(&["--bogus"]).err().unwrap();
        assert!(err.to_string().contains("unexpected argument"), "{err}");
        let err = parse(&["--runs", "0"]).err().unwrap();
        assert!(err.to_string().contains("not in 1.."), "{err}");
    }
}
