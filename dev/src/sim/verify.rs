//! How the simulator judges: it reads the table, the bucket and both queues directly, waits
//! for the recordings to settle, and counts anything not accounted for as lost.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use futures_util::{stream, StreamExt};
use sha2::{Digest, Sha256};

use pns_cdr::domain::push::{self, PushKind};
use pns_cdr::domain::recording::RecordingStatus;

use super::plan::{Expect, PlannedRecord};
use super::send::SendReport;
use super::{SimError, Target};

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
    target: &Target,
    records: &[PlannedRecord],
    sent: &SendReport,
    settle: Duration,
) -> Result<Verification, SimError> {
    let (queue_url, dead_letter_url) = (&target.queue_url, &target.dead_letter_queue_url);
    let deadline = Instant::now() + settle;
    let stored = loop {
        // Queue depth is one cheap call; the table scan is not, and polling it while the
        // archiver works would slow the emulator it shares. Scan once the queues are quiet.
        let queued = depth(target, queue_url).await? + depth(target, dead_letter_url).await?;
        if queued > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        }
        let stored = stored_records(target, records).await?;
        let unsettled = records.iter().any(|r| {
            r.recording.is_some()
                && stored.get(&r.id).is_some_and(|s| {
                    s.recording_status.as_deref() == Some(RecordingStatus::Pending.as_str())
                })
        });
        let queued = depth(target, queue_url).await? + depth(target, dead_letter_url).await?;
        if (!unsettled && queued == 0) || Instant::now() >= deadline {
            break stored;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };

    let mut report = Verification {
        records_expected: records.len(),
        records_found: stored.len(),
        queue_left: depth(target, queue_url).await?,
        dead_letters_left: depth(target, dead_letter_url).await?,
        open_uploads: open_uploads(target).await?,
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
            .filter_map(|b| push::parse(b.as_bytes(), PushKind::CallRecord).ok())
            .map(|p| match p {
                push::Push::CallRecord(p) => p.payload_sha256,
                push::Push::BindingError(p) => p.payload_sha256,
            })
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
                Some(key) => object_sha256(target, &key).await,
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

/// The planned pushes present in the tables: call records by id in the calls table,
/// binding errors by `requestId` in theirs (one paginated scan of each).
async fn stored_records(
    target: &Target,
    records: &[PlannedRecord],
) -> Result<HashMap<i64, Stored>, SimError> {
    let calls: HashSet<i64> = records
        .iter()
        .filter(|r| r.request_id.is_none())
        .map(|r| r.id)
        .collect();
    let bindings: HashMap<&str, i64> = records
        .iter()
        .filter_map(|r| Some((r.request_id.as_deref()?, r.id)))
        .collect();
    let mut found = HashMap::new();
    let projection =
        "id, payloadSha256, recordingStatus, recordingKey, recordingSha256, recordingError";
    for item in scan(target, &target.table, projection).await? {
        let stored: Stored = serde_dynamo::from_item(item).map_err(|e| SimError::Read {
            what: "a record",
            message: e.to_string(),
        })?;
        if calls.contains(&stored.id) {
            found.insert(stored.id, stored);
        }
    }
    if !bindings.is_empty() {
        let table = &target.binding_errors_table;
        for item in scan(target, table, "requestId, payloadSha256").await? {
            let request_id = item.get("requestId").and_then(|v| v.as_s().ok());
            if let Some(&id) = request_id.and_then(|r| bindings.get(r.as_str())) {
                let payload_sha256 = item
                    .get("payloadSha256")
                    .and_then(|v| v.as_s().ok())
                    .cloned();
                found.insert(
                    id,
                    Stored {
                        id,
                        payload_sha256,
                        ..Stored::default()
                    },
                );
            }
        }
    }
    Ok(found)
}

/// Every item of `table`, the attributes of `projection` only.
async fn scan(
    target: &Target,
    table: &str,
    projection: &str,
) -> Result<Vec<HashMap<String, AttributeValue>>, SimError> {
    let mut items = Vec::new();
    let mut start: Option<HashMap<String, AttributeValue>> = None;
    loop {
        let page = target
            .clients
            .dynamodb
            .scan()
            .table_name(table)
            .consistent_read(true)
            .projection_expression(projection)
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .map_err(|e| SimError::Read {
                what: "a table",
                message: aws_sdk_dynamodb::error::DisplayErrorContext(e).to_string(),
            })?;
        items.extend(page.items.unwrap_or_default());
        match page.last_evaluated_key {
            Some(key) if !key.is_empty() => start = Some(key),
            _ => return Ok(items),
        }
    }
}

async fn depth(target: &Target, queue_url: &str) -> Result<u64, SimError> {
    let (waiting, in_flight) = crate::local::queue_counts(&target.clients.sqs, queue_url)
        .await
        .map_err(|e| SimError::Read {
            what: "a queue",
            message: aws_sdk_sqs::error::DisplayErrorContext(e).to_string(),
        })?;
    Ok(waiting + in_flight)
}

async fn open_uploads(target: &Target) -> Result<usize, SimError> {
    let out = target
        .clients
        .s3
        .list_multipart_uploads()
        .bucket(&target.bucket)
        .send()
        .await
        .map_err(|e| SimError::Read {
            what: "the bucket's multipart uploads",
            message: aws_sdk_s3::error::DisplayErrorContext(e).to_string(),
        })?;
    Ok(out.uploads().len())
}

async fn object_sha256(target: &Target, key: &str) -> Result<String, String> {
    let out = target
        .clients
        .s3
        .get_object()
        .bucket(&target.bucket)
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

/// The summary `pns-sim` prints.
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
