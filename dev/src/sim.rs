//! The NXCLOUD simulator behind `pnsctl simulate`: pushes realistic call records at a webhook
//! the way NXCLOUD does, then checks that nothing was lost.
//!
//! NXCLOUD's rule: any answer but HTTP 200 (or no answer) is retried every minute for an hour,
//! then the record is given up. The simulator does exactly that, with the interval scalable so
//! tests can replay an hour in seconds. It sends each planned record once, plus a share of
//! exact duplicates (NXCLOUD retries whose 200 was lost) and of conflicting duplicates (the
//! same id with different content), in a shuffled order, at a chosen rate and concurrency.
//!
//! Verification reads the table, the bucket and both queues directly:
//! - every planned record exists once, holding one of the bodies sent for its id;
//! - every recording is `ARCHIVED` and its object's bytes hash to the SHA-256 the recording
//!   host served, or is `FAILED` with a reason where the plan says failure is correct;
//! - the queue and the dead-letter queue are empty, and no multipart upload is left open.
//!
//! Anything else counts as lost, and `pnsctl simulate` exits non-zero.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use futures_util::{stream, StreamExt};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use pns_cdr::domain::cdr::CallRecord;
use pns_cdr::domain::recording::RecordingStatus;
use pns_cdr::ops::Ops;

/// NXCLOUD's retry interval.
pub const NXCLOUD_RETRY_INTERVAL: Duration = Duration::from_secs(60);
/// How long NXCLOUD keeps retrying one push.
pub const NXCLOUD_RETRY_WINDOW: Duration = Duration::from_secs(3600);

/// Errors that stop a simulation before it can judge (not losses: those are in the report).
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("invalid simulation settings: {0}")]
    Settings(String),
    #[error("reading {what} failed: {message}")]
    Read { what: &'static str, message: String },
    #[error(transparent)]
    Ops(#[from] pns_cdr::ops::OpsError),
}

/// What the archiver must end with for one recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// `ARCHIVED`, with an object whose bytes hash to this SHA-256 (hex); `None`: not checked
    /// (a recording host the simulator does not control).
    Archived { sha256: Option<String> },
    /// `FAILED`, with a reason that contains this text: failure is the correct outcome.
    Failed { reason_contains: String },
}

/// A recording a planned record points at.
#[derive(Debug, Clone)]
pub struct PlannedRecording {
    pub url: String,
    pub expect: Expect,
}

/// One call record of the plan.
#[derive(Debug, Clone)]
pub struct PlannedRecord {
    pub id: i64,
    pub body: String,
    pub recording: Option<PlannedRecording>,
    /// Extra exact copies of `body` to send.
    pub duplicates: usize,
    /// A different body with the same id, sent too (whichever is stored first wins).
    pub conflict: Option<String>,
}

/// How records and recordings are generated.
#[derive(Debug, Clone)]
pub struct Workload {
    pub first_id: i64,
    pub count: usize,
    /// Extra exact duplicates, as a share of `count` (0.3: 30 duplicates per 100 records).
    pub duplicate_share: f64,
    /// Records that are also sent with different content under the same id.
    pub conflict_share: f64,
    /// Share of records that are answered calls with a recording.
    pub recording_share: f64,
    /// Recording sizes, used in turn.
    pub recording_sizes: Vec<u64>,
    pub seed: u64,
}

impl Default for Workload {
    fn default() -> Self {
        Self {
            first_id: 1,
            count: 100,
            duplicate_share: 0.3,
            conflict_share: 0.02,
            recording_share: 0.6,
            recording_sizes: vec![48 * 1024],
            seed: 1,
        }
    }
}

/// Where recordings come from: a URL and the digest the archiver must end with.
pub trait RecordingHost: Send + Sync {
    /// URL of a recording of `size` bytes for record `id`, and what archiving it must give.
    fn recording(&self, id: i64, size: u64, seed: u64) -> PlannedRecording;
}

/// The local fake NXCLOUD host (`crate::local::fake_nxcloud`): digests are known exactly.
impl RecordingHost for crate::local::fake_nxcloud::FakeNxcloud {
    fn recording(&self, id: i64, size: u64, seed: u64) -> PlannedRecording {
        let sample = crate::local::fake_nxcloud::SampleRecording::new(seed, size);
        PlannedRecording {
            url: self.url(&format!("sim-{id}"), size, &format!("seed={seed}")),
            expect: Expect::Archived {
                sha256: Some(sample.sha256()),
            },
        }
    }
}

/// One recording at a fixed URL for every answered call (a deployed stack, whose recording
/// hosts must be real HTTPS hosts on its allow-list).
pub struct FixedRecording {
    pub url: String,
    pub sha256: Option<String>,
}

impl RecordingHost for FixedRecording {
    fn recording(&self, _id: i64, _size: u64, _seed: u64) -> PlannedRecording {
        PlannedRecording {
            url: self.url.clone(),
            expect: Expect::Archived {
                sha256: self.sha256.clone(),
            },
        }
    }
}

/// A small deterministic generator (xorshift64*), so a seed replays the same run.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x2545_F491_4F6C_DD1D | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// Fisher–Yates.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i as u64 + 1) as usize);
        }
    }
}

/// A realistic push body: an answered call with a recording, or an unanswered one without.
pub fn push_body(id: i64, recording_url: Option<&str>, rng: &mut Rng) -> String {
    let start = 1_767_225_600 + rng.below(86_400 * 300) as i64;
    // Fictional numbers in Hong Kong's 5550xxxx range: never a real subscriber.
    let number = |rng: &mut Rng| format!("852555{:05}", rng.below(100_000));
    let mut body = json!({
        "id": id,
        "businessId": "sim_busi",
        "customerBindId": (1 + rng.below(50)).to_string(),
        "bindId": format!("{:016x}{:016x}", rng.next_u64(), rng.next_u64()),
        "callId": (1_604_763_745_256_000_000i64 + id).to_string(),
        "did": number(rng),
        "caller": number(rng),
        "callee": number(rng),
        "callStatusMsg": "",
        "startAt": start,
        "hangup": rng.below(2),
    });
    let fields = body.as_object_mut().expect("an object");
    match recording_url {
        Some(url) => {
            let ring = 1 + rng.below(20) as i64;
            let duration = 5 + rng.below(600) as i64;
            fields.insert("callStatus".into(), 1.into());
            fields.insert("duration".into(), duration.into());
            fields.insert("answerAt".into(), (start + ring).into());
            fields.insert("hangupAt".into(), (start + ring + duration).into());
            fields.insert("hangupCause".into(), "NORMAL_CLEARING".into());
            fields.insert("hangupCode".into(), 16.into());
            fields.insert("recordFile".into(), url.into());
        }
        None => {
            let (cause, code) = [("USER_BUSY", 17), ("NO_ANSWER", 19), ("CALL_REJECTED", 21)]
                [rng.below(3) as usize];
            fields.insert("callStatus".into(), 2.into());
            fields.insert("duration".into(), 0.into());
            fields.insert("answerAt".into(), 0.into());
            fields.insert("hangupAt".into(), (start + 1 + rng.below(40) as i64).into());
            fields.insert("hangupCause".into(), cause.into());
            fields.insert("hangupCode".into(), code.into());
            fields.insert("recordFile".into(), "".into());
        }
    }
    body.to_string()
}

/// The plan of a workload.
pub fn plan(workload: &Workload, host: Option<&dyn RecordingHost>) -> Vec<PlannedRecord> {
    let mut rng = Rng::new(workload.seed);
    let sizes = if workload.recording_sizes.is_empty() {
        vec![48 * 1024]
    } else {
        workload.recording_sizes.clone()
    };
    let mut records: Vec<PlannedRecord> = (0..workload.count)
        .map(|i| {
            let id = workload.first_id + i as i64;
            let recording = match host {
                Some(host) if rng.unit() < workload.recording_share => {
                    Some(host.recording(id, sizes[i % sizes.len()], rng.next_u64() >> 1))
                }
                _ => None,
            };
            let body = push_body(id, recording.as_ref().map(|r| r.url.as_str()), &mut rng);
            let conflict = (rng.unit() < workload.conflict_share).then(|| {
                let mut changed: Value = serde_json::from_str(&body).expect("generated JSON");
                changed["callStatusMsg"] = "re-rated".into();
                changed.to_string()
            });
            PlannedRecord {
                id,
                body,
                recording,
                duplicates: 0,
                conflict,
            }
        })
        .collect();
    let extra = (workload.count as f64 * workload.duplicate_share).round() as usize;
    for _ in 0..extra {
        let i = rng.below(records.len() as u64) as usize;
        records[i].duplicates += 1;
    }
    records
}

/// How pushes are sent.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The webhook URL, token included.
    pub url: String,
    pub concurrency: usize,
    /// Pushes per second across all workers; `None`: as fast as answers come.
    pub rate: Option<f64>,
    pub retry_interval: Duration,
    pub retry_window: Duration,
    /// One request's time limit (NXCLOUD's own is not documented; 30 s is generous).
    pub request_timeout: Duration,
    pub seed: u64,
}

impl Delivery {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            concurrency: 8,
            rate: None,
            retry_interval: NXCLOUD_RETRY_INTERVAL,
            retry_window: NXCLOUD_RETRY_WINDOW,
            request_timeout: Duration::from_secs(30),
            seed: 1,
        }
    }

    /// Attempts per push: the first, then one per interval within the window.
    pub fn attempts(&self) -> u32 {
        let interval = self.retry_interval.as_secs_f64().max(1e-3);
        1 + (self.retry_window.as_secs_f64() / interval).floor() as u32
    }
}

/// One push as sent.
#[derive(Debug, Clone)]
struct Outgoing {
    id: i64,
    body: Arc<str>,
}

/// What the sending phase saw.
#[derive(Debug, Clone, Default)]
pub struct SendReport {
    /// Pushes (first attempts).
    pub pushes: u64,
    /// HTTP attempts in all, retries included.
    pub attempts: u64,
    pub retries: u64,
    /// Pushes finally answered 200.
    pub accepted: u64,
    /// Pushes NXCLOUD gave up on (no 200 within the window): lost unless stored anyway.
    pub given_up: Vec<i64>,
    /// Answers by status (`0`: no answer: timeout or connection error).
    pub statuses: BTreeMap<u16, u64>,
    /// Latency of each attempt, sorted.
    pub latencies: Vec<Duration>,
    pub elapsed: Duration,
    /// The bodies answered 200 per id (exact duplicates count once).
    accepted_bodies: HashMap<i64, HashSet<String>>,
}

impl SendReport {
    pub fn percentile(&self, p: f64) -> Duration {
        percentile(&self.latencies, p)
    }

    pub fn pushes_per_second(&self) -> f64 {
        self.pushes as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// The `p`th percentile (nearest rank) of sorted latencies; zero when there are none.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let Some(last) = sorted.len().checked_sub(1) else {
        return Duration::ZERO;
    };
    let rank = ((p / 100.0) * last as f64).round() as usize;
    sorted[rank.min(last)]
}

/// Sends every push of `records`, NXCLOUD-style; returns when each was accepted or given up.
pub async fn send(records: &[PlannedRecord], delivery: &Delivery) -> Result<SendReport, SimError> {
    if delivery.concurrency == 0 {
        return Err(SimError::Settings("concurrency must be at least 1".into()));
    }
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(delivery.request_timeout)
        .pool_max_idle_per_host(delivery.concurrency)
        .build()
        .map_err(|e| SimError::Settings(format!("HTTP client: {e}")))?;
    let mut sends: Vec<Outgoing> = Vec::new();
    for record in records {
        let body: Arc<str> = record.body.as_str().into();
        for _ in 0..=record.duplicates {
            sends.push(Outgoing {
                id: record.id,
                body: body.clone(),
            });
        }
        if let Some(conflict) = &record.conflict {
            sends.push(Outgoing {
                id: record.id,
                body: conflict.as_str().into(),
            });
        }
    }
    // Fisher–Yates: duplicates arrive interleaved, sometimes at once, as retries do.
    Rng::new(delivery.seed).shuffle(&mut sends);

    let started = Instant::now();
    let attempts = AtomicU64::new(0);
    let outcomes: Vec<(i64, Arc<str>, Attempts)> = stream::iter(sends.into_iter().enumerate())
        .map(|(n, push)| {
            let (client, attempts) = (&client, &attempts);
            async move {
                if let Some(rate) = delivery.rate.filter(|r| *r > 0.0) {
                    let due = started + Duration::from_secs_f64(n as f64 / rate);
                    tokio::time::sleep_until(due.into()).await;
                }
                let tries = deliver(client, delivery, &push.body).await;
                attempts.fetch_add(tries.len() as u64, Ordering::Relaxed);
                (push.id, push.body, tries)
            }
        })
        .buffer_unordered(delivery.concurrency)
        .collect()
        .await;

    let mut report = SendReport {
        elapsed: started.elapsed(),
        attempts: attempts.into_inner(),
        ..SendReport::default()
    };
    for (id, body, tries) in outcomes {
        report.pushes += 1;
        report.retries += tries.len() as u64 - 1;
        for (status, latency) in &tries {
            *report.statuses.entry(*status).or_default() += 1;
            report.latencies.push(*latency);
        }
        if tries.last().is_some_and(|(status, _)| *status == 200) {
            report.accepted += 1;
            report
                .accepted_bodies
                .entry(id)
                .or_default()
                .insert(body.to_string());
        } else {
            report.given_up.push(id);
        }
    }
    report.latencies.sort();
    report.given_up.sort_unstable();
    Ok(report)
}

/// (HTTP status, latency) per attempt of one push; status 0: no answer.
type Attempts = Vec<(u16, Duration)>;

/// One push until a 200 or the end of the window.
async fn deliver(client: &reqwest::Client, delivery: &Delivery, body: &str) -> Attempts {
    let mut tries = Vec::new();
    for attempt in 0..delivery.attempts() {
        if attempt > 0 {
            tokio::time::sleep(delivery.retry_interval).await;
        }
        let sent = Instant::now();
        let status = match client
            .post(&delivery.url)
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await
        {
            Ok(response) => {
                let status = response.status().as_u16();
                // Read the answer so the connection can be reused.
                let _ = response.bytes().await;
                status
            }
            Err(_) => 0,
        };
        tries.push((status, sent.elapsed()));
        if status == 200 {
            break;
        }
    }
    tries
}

/// What verification found.
#[derive(Debug, Clone, Default)]
pub struct Verification {
    pub records_expected: usize,
    pub records_found: usize,
    /// Planned ids with no record.
    pub records_missing: Vec<i64>,
    /// Records whose stored content is none of the bodies sent for the id.
    pub records_altered: Vec<i64>,
    pub recordings_expected: usize,
    pub recordings_archived: usize,
    /// `FAILED` where the plan says failure is correct.
    pub recordings_failed_as_expected: usize,
    /// (id, what is wrong).
    pub recordings_lost: Vec<(i64, String)>,
    pub queue_left: u64,
    pub dead_letters_left: u64,
    pub open_uploads: usize,
}

impl Verification {
    /// Records and recordings lost (a record never accepted and never stored is missing).
    pub fn lost(&self) -> usize {
        self.records_missing.len() + self.records_altered.len() + self.recordings_lost.len()
    }

    /// Nothing lost and nothing left behind.
    pub fn passed(&self) -> bool {
        self.lost() == 0
            && self.queue_left == 0
            && self.dead_letters_left == 0
            && self.open_uploads == 0
    }
}

/// The fields verification reads from a stored record.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct Stored {
    id: i64,
    payload_sha256: Option<String>,
    recording_status: Option<String>,
    recording_key: Option<String>,
    recording_sha256: Option<String>,
    recording_error: Option<String>,
}

/// Waits up to `settle` for every recording to reach a final state and both queues to empty,
/// then judges. `sent` adds the bodies that were accepted, so a stored conflicting body that
/// was answered 200 counts as the record.
pub async fn verify(
    ops: &Ops,
    records: &[PlannedRecord],
    sent: &SendReport,
    settle: Duration,
) -> Result<Verification, SimError> {
    let queue_url = ops.queue_url(&ops.queue).await?;
    let dead_letter_url = ops.queue_url(&ops.dead_letter_queue).await?;
    let deadline = Instant::now() + settle;
    let stored = loop {
        // Queue depth is one cheap call; the table scan is not, and polling it while the
        // archiver works would slow the emulator it shares. Scan once the queues are quiet.
        let queued = depth(ops, &queue_url).await? + depth(ops, &dead_letter_url).await?;
        if queued > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        }
        let stored = stored_records(ops, records).await?;
        let unsettled = records.iter().any(|r| {
            r.recording.is_some()
                && stored.get(&r.id).is_some_and(|s| {
                    s.recording_status.as_deref() == Some(RecordingStatus::Pending.as_str())
                })
        });
        let queued = depth(ops, &queue_url).await? + depth(ops, &dead_letter_url).await?;
        if (!unsettled && queued == 0) || Instant::now() >= deadline {
            break stored;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };

    let mut report = Verification {
        records_expected: records.len(),
        records_found: stored.len(),
        queue_left: depth(ops, &queue_url).await?,
        dead_letters_left: depth(ops, &dead_letter_url).await?,
        open_uploads: open_uploads(ops).await?,
        ..Verification::default()
    };
    let mut to_hash = Vec::new();
    for record in records {
        let Some(item) = stored.get(&record.id) else {
            report.records_missing.push(record.id);
            continue;
        };
        let mut bodies: HashSet<&str> = HashSet::from([record.body.as_str()]);
        bodies.extend(record.conflict.as_deref());
        if let Some(accepted) = sent.accepted_bodies.get(&record.id) {
            bodies.extend(accepted.iter().map(String::as_str));
        }
        let digests: HashSet<String> = bodies
            .iter()
            .filter_map(|b| CallRecord::parse(b.as_bytes()).ok())
            .map(|p| p.payload_sha256)
            .collect();
        if !item
            .payload_sha256
            .as_ref()
            .is_some_and(|d| digests.contains(d))
        {
            report.records_altered.push(record.id);
        }
        let Some(recording) = &record.recording else {
            continue;
        };
        report.recordings_expected += 1;
        let status = item.recording_status.as_deref().unwrap_or("missing");
        match (&recording.expect, status) {
            (Expect::Archived { sha256 }, "ARCHIVED") => {
                if item.recording_sha256.is_some() && item.recording_sha256 == *sha256
                    || sha256.is_none()
                {
                    to_hash.push((record.id, item.recording_key.clone(), sha256.clone()));
                } else {
                    report
                        .recordings_lost
                        .push((record.id, "archived digest differs".into()));
                }
            }
            (Expect::Failed { reason_contains }, "FAILED") => {
                let reason = item.recording_error.as_deref().unwrap_or_default();
                if reason.contains(reason_contains.as_str()) {
                    report.recordings_failed_as_expected += 1;
                } else {
                    report
                        .recordings_lost
                        .push((record.id, format!("FAILED for another reason: {reason}")));
                }
            }
            (_, status) => {
                let why = item
                    .recording_error
                    .as_deref()
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default();
                report
                    .recordings_lost
                    .push((record.id, format!("recording is {status}{why}")));
            }
        }
    }
    // The bytes themselves: the object must hash to what the recording host served.
    let checked: Vec<(i64, Result<String, String>, Option<String>)> = stream::iter(to_hash)
        .map(|(id, key, expected)| async move {
            let digest = match key {
                Some(key) => object_sha256(ops, &key).await,
                None => Err("no recordingKey on the record".into()),
            };
            (id, digest, expected)
        })
        .buffer_unordered(8)
        .collect()
        .await;
    for (id, digest, expected) in checked {
        match digest {
            Ok(digest) if expected.as_ref().is_none_or(|e| *e == digest) => {
                report.recordings_archived += 1;
            }
            Ok(_) => report
                .recordings_lost
                .push((id, "object bytes differ from the recording".into())),
            Err(e) => report.recordings_lost.push((id, e)),
        }
    }
    report.records_missing.sort_unstable();
    report.recordings_lost.sort();
    Ok(report)
}

/// The planned records present in the table (one paginated scan).
async fn stored_records(
    ops: &Ops,
    records: &[PlannedRecord],
) -> Result<HashMap<i64, Stored>, SimError> {
    let wanted: HashSet<i64> = records.iter().map(|r| r.id).collect();
    let mut found = HashMap::new();
    let mut start: Option<HashMap<String, AttributeValue>> = None;
    loop {
        let page = ops
            .clients
            .dynamodb
            .scan()
            .table_name(&ops.table)
            .consistent_read(true)
            .projection_expression(
                "id, payloadSha256, recordingStatus, recordingKey, recordingSha256, recordingError",
            )
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .map_err(|e| SimError::Read {
                what: "the table",
                message: aws_sdk_dynamodb::error::DisplayErrorContext(e).to_string(),
            })?;
        for item in page.items.unwrap_or_default() {
            let stored: Stored = serde_dynamo::from_item(item).map_err(|e| SimError::Read {
                what: "a record",
                message: e.to_string(),
            })?;
            if wanted.contains(&stored.id) {
                found.insert(stored.id, stored);
            }
        }
        match page.last_evaluated_key {
            Some(key) if !key.is_empty() => start = Some(key),
            _ => return Ok(found),
        }
    }
}

async fn depth(ops: &Ops, queue_url: &str) -> Result<u64, SimError> {
    let (waiting, in_flight) = crate::local::queue_counts(&ops.clients.sqs, queue_url)
        .await
        .map_err(|e| SimError::Read {
            what: "a queue",
            message: aws_sdk_sqs::error::DisplayErrorContext(e).to_string(),
        })?;
    Ok(waiting + in_flight)
}

async fn open_uploads(ops: &Ops) -> Result<usize, SimError> {
    let out = ops
        .clients
        .s3
        .list_multipart_uploads()
        .bucket(&ops.bucket)
        .send()
        .await
        .map_err(|e| SimError::Read {
            what: "the bucket's multipart uploads",
            message: aws_sdk_s3::error::DisplayErrorContext(e).to_string(),
        })?;
    Ok(out.uploads().len())
}

async fn object_sha256(ops: &Ops, key: &str) -> Result<String, String> {
    let out = ops
        .clients
        .s3
        .get_object()
        .bucket(&ops.bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| match e.as_service_error() {
            Some(e) if e.is_no_such_key() => format!("object {key} is not in the bucket"),
            _ => format!(
                "object {key}: {}",
                aws_sdk_s3::error::DisplayErrorContext(e)
            ),
        })?;
    let mut body = out.body;
    let mut hasher = Sha256::new();
    while let Some(chunk) = body
        .try_next()
        .await
        .map_err(|e| format!("object {key}: {e}"))?
    {
        hasher.update(&chunk);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// The summary `pnsctl simulate` prints.
pub fn summary(sent: &SendReport, verified: &Verification) -> String {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let statuses = sent
        .statuses
        .iter()
        .map(|(s, n)| {
            if *s == 0 {
                format!("no answer: {n}")
            } else {
                format!("{s}: {n}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ");
    let mut out = format!(
        "sent      {} pushes in {:.1} s ({:.0}/s), {} HTTP attempts, {} retried\n\
         answers   {statuses}\n\
         latency   p50 {:.1} ms, p99 {:.1} ms\n\
         accepted  {} pushes; {} given up after every retry\n\
         records   {} of {} stored ({} missing, {} altered)\n\
         recordings {} of {} archived and verified, {} failed where failure is correct, {} lost\n\
         left      queue {}, dead-letter queue {}, open multipart uploads {}\n\
         lost      {}\n",
        sent.pushes,
        sent.elapsed.as_secs_f64(),
        sent.pushes_per_second(),
        sent.attempts,
        sent.retries,
        ms(sent.percentile(50.0)),
        ms(sent.percentile(99.0)),
        sent.accepted,
        sent.given_up.len(),
        verified.records_found,
        verified.records_expected,
        verified.records_missing.len(),
        verified.records_altered.len(),
        verified.recordings_archived,
        verified.recordings_expected,
        verified.recordings_failed_as_expected,
        verified.recordings_lost.len(),
        verified.queue_left,
        verified.dead_letters_left,
        verified.open_uploads,
        verified.lost(),
    );
    let ids = |ids: &[i64]| {
        let shown: Vec<String> = ids.iter().take(20).map(i64::to_string).collect();
        let more = ids.len().saturating_sub(20);
        let more = if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        };
        format!("{}{more}", shown.join(", "))
    };
    if !verified.records_missing.is_empty() {
        out += &format!("MISSING records: {}\n", ids(&verified.records_missing));
    }
    if !verified.records_altered.is_empty() {
        out += &format!("ALTERED records: {}\n", ids(&verified.records_altered));
    }
    for (id, why) in verified.recordings_lost.iter().take(20) {
        out += &format!("LOST recording of {id}: {why}\n");
    }
    out += if verified.passed() {
        "verdict   PASS: every record and recording accounted for\n"
    } else {
        "verdict   FAIL\n"
    };
    out
}

/// Where `pnsctl simulate` takes recordings from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recordings {
    /// A fake NXCLOUD host the simulator starts on 127.0.0.1 (the local stack's allow-list
    /// takes 127.0.0.1 over plain HTTP; a deployed stack's does not).
    Local,
    /// Every answered call points at this URL; the archived bytes must hash to the digest.
    Fixed { url: String, sha256: Option<String> },
    /// Unanswered calls only.
    None,
}

/// A whole `pnsctl simulate` run, from its arguments.
#[derive(Debug, Clone)]
pub struct Simulation {
    pub workload: Workload,
    pub delivery: Delivery,
    pub recordings: Recordings,
    /// How long verification waits for recordings to settle and queues to drain.
    pub settle: Duration,
}

pub const SIMULATE_USAGE: &str = "simulate --url URL [options]   push NXCLOUD-style call records, then verify nothing was lost
    --url URL              the webhook, token included (http://127.0.0.1:3000/pns/call-result?token=...)
    --count N              call records (100)
    --duplicates F         extra exact duplicates as a share of the records (0.3)
    --conflicts F          share of records also sent with different content (0.02)
    --recordings F         share of answered calls with a recording (0.6)
    --recording-size S[,S] recording sizes, e.g. 48K,10M (48K)
    --recording-url URL    a real recording for every answered call (deployed stacks);
    --recording-sha256 HEX   its digest, checked against the archived object
    --no-recordings        unanswered calls only
    --concurrency N        pushes in flight (8)
    --rate R               pushes per second (unlimited)
    --retry-interval D     NXCLOUD's retry interval (60s; e.g. 200ms in tests)
    --retry-window D       how long NXCLOUD retries (60m)
    --first-id N           first record id (default: from the clock, so runs do not collide)
    --seed N               generator seed (1)
    --settle D             wait this long for archiving and empty queues (120s)
  exits 1 when a record or recording is lost or a queue is left non-empty";

impl Simulation {
    pub fn from_args(args: &[&str]) -> Result<Self, SimError> {
        let mut workload = Workload {
            first_id: time::OffsetDateTime::now_utc().unix_timestamp() * 1000,
            ..Workload::default()
        };
        let mut delivery = Delivery::new("");
        let mut recordings = Recordings::Local;
        let mut fixed_sha256 = None;
        let mut settle = Duration::from_secs(120);
        let mut rest = args.iter();
        let number = |flag: &str, v: &str| {
            v.parse::<f64>()
                .ok()
                .filter(|n| n.is_finite() && *n >= 0.0)
                .ok_or_else(|| SimError::Settings(format!("{flag} takes a number, not `{v}`")))
        };
        while let Some(flag) = rest.next() {
            if *flag == "--no-recordings" {
                recordings = Recordings::None;
                continue;
            }
            let value = rest
                .next()
                .ok_or_else(|| SimError::Settings(format!("{flag} takes a value")))?;
            match *flag {
                "--url" => delivery.url = (*value).to_owned(),
                "--count" => workload.count = number(flag, value)? as usize,
                "--duplicates" => workload.duplicate_share = number(flag, value)?,
                "--conflicts" => workload.conflict_share = number(flag, value)?,
                "--recordings" => workload.recording_share = number(flag, value)?,
                "--recording-size" => {
                    workload.recording_sizes =
                        value.split(',').map(parse_size).collect::<Result<_, _>>()?
                }
                "--recording-url" => {
                    recordings = Recordings::Fixed {
                        url: (*value).to_owned(),
                        sha256: None,
                    }
                }
                "--recording-sha256" => fixed_sha256 = Some(value.to_ascii_lowercase()),
                "--concurrency" => delivery.concurrency = number(flag, value)? as usize,
                "--rate" => delivery.rate = Some(number(flag, value)?),
                "--retry-interval" => delivery.retry_interval = parse_duration(value)?,
                "--retry-window" => delivery.retry_window = parse_duration(value)?,
                "--first-id" => {
                    workload.first_id = value.parse().map_err(|_| {
                        SimError::Settings(format!("--first-id takes an integer, not `{value}`"))
                    })?
                }
                "--seed" => {
                    workload.seed = number(flag, value)? as u64;
                    delivery.seed = workload.seed;
                }
                "--settle" => settle = parse_duration(value)?,
                other => return Err(SimError::Settings(format!("unknown option `{other}`"))),
            }
        }
        if delivery.url.is_empty() {
            return Err(SimError::Settings("--url is required".into()));
        }
        if let (Recordings::Fixed { sha256, .. }, Some(digest)) = (&mut recordings, fixed_sha256) {
            *sha256 = Some(digest);
        }
        if recordings == Recordings::None {
            workload.recording_share = 0.0;
        }
        Ok(Self {
            workload,
            delivery,
            recordings,
            settle,
        })
    }

    /// Plans, sends and verifies; returns the summary and whether it passed.
    pub async fn run(&self, ops: &Ops) -> Result<(String, bool), SimError> {
        let local_host;
        let fixed;
        let host: Option<&dyn RecordingHost> = match &self.recordings {
            Recordings::Local => {
                local_host = crate::local::fake_nxcloud::FakeNxcloud::start(0)
                    .await
                    .map_err(|e| SimError::Settings(format!("recording host: {e}")))?;
                Some(&local_host)
            }
            Recordings::Fixed { url, sha256 } => {
                fixed = FixedRecording {
                    url: url.clone(),
                    sha256: sha256.clone(),
                };
                Some(&fixed)
            }
            Recordings::None => None,
        };
        let records = plan(&self.workload, host);
        let sent = send(&records, &self.delivery).await?;
        let verified = verify(ops, &records, &sent, self.settle).await?;
        Ok((summary(&sent, &verified), verified.passed()))
    }
}

/// `200ms`, `1.5s`, `60s`, `1m`, `2h`, or plain seconds.
pub fn parse_duration(text: &str) -> Result<Duration, SimError> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| SimError::Settings(format!("`{text}` is not a duration")))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        _ => {
            return Err(SimError::Settings(format!(
                "`{text}`: unknown unit `{unit}`"
            )))
        }
    };
    Duration::try_from_secs_f64(seconds)
        .map_err(|_| SimError::Settings(format!("`{text}` is out of range")))
}

/// `1024`, `48K`, `10M`, `1G` (binary multiples).
pub fn parse_size(text: &str) -> Result<u64, SimError> {
    let text = text.trim();
    let (number, factor) = match text.chars().last() {
        Some('K' | 'k') => (&text[..text.len() - 1], 1u64 << 10),
        Some('M' | 'm') => (&text[..text.len() - 1], 1 << 20),
        Some('G' | 'g') => (&text[..text.len() - 1], 1 << 30),
        _ => (text, 1),
    };
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(factor))
        .ok_or_else(|| SimError::Settings(format!("`{text}` is not a size")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes_parse_as_written() {
        assert_eq!(parse_duration("200ms").unwrap(), Duration::from_millis(200));
        assert_eq!(parse_duration("60s").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_duration("1m").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert!(parse_duration("soon").is_err());
        assert_eq!(parse_size("48K").unwrap(), 48 * 1024);
        assert_eq!(parse_size("10M").unwrap(), 10 << 20);
        assert!(parse_size("-1").is_err());
    }

    #[test]
    fn nxcloud_retries_every_interval_for_the_window() {
        let mut delivery = Delivery::new("http://127.0.0.1:1/");
        assert_eq!(delivery.attempts(), 61);
        delivery.retry_interval = Duration::from_millis(200);
        delivery.retry_window = Duration::from_secs(12);
        assert_eq!(delivery.attempts(), 61);
    }

    #[test]
    fn a_plan_is_valid_pushes_with_the_asked_shares() {
        let workload = Workload {
            count: 1000,
            duplicate_share: 0.3,
            conflict_share: 0.05,
            recording_share: 0.0,
            ..Workload::default()
        };
        let records = plan(&workload, None);
        assert_eq!(records.len(), 1000);
        assert_eq!(records.iter().map(|r| r.duplicates).sum::<usize>(), 300);
        let conflicts = records.iter().filter(|r| r.conflict.is_some()).count();
        assert!((20..=80).contains(&conflicts), "{conflicts}");
        for record in &records {
            let parsed = CallRecord::parse(record.body.as_bytes()).unwrap();
            assert_eq!(parsed.record.id, record.id);
            if let Some(conflict) = &record.conflict {
                let other = CallRecord::parse(conflict.as_bytes()).unwrap();
                assert_ne!(other.payload_sha256, parsed.payload_sha256);
            }
        }
        // The same seed replays the same plan.
        let again = plan(&workload, None);
        assert!(records.iter().zip(&again).all(|(a, b)| a.body == b.body));
    }
}
