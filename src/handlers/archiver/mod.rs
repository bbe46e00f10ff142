//! The archiver: SQS batch of recording jobs in, recordings in S3 and records marked out.
//!
//! Every message ends in exactly one of: acknowledged (archived, or failed for good with the
//! reason on the record) or reported failed (retried later with a growing delay, dead-lettered
//! after the queue's `maxReceiveCount`). A crash anywhere leaves either no object under the
//! key, or an object whose checksum metadata lets the next delivery finish without downloading.

mod audio;
mod copy;

use std::time::{Duration, SystemTime};

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use time::OffsetDateTime;
use tracing::{error, info, warn, Instrument};

pub use audio::{sniff_audio, NotAudio};
use copy::CopyError;

use crate::domain::recording::{RecordingJob, RecordingStatus, MAX_DELIVERIES};
use crate::metrics::{self, Function, Metric};
use crate::ports::{
    ArchivedRecording, FetchError, JobQueue, ObjectStore, RecordStore, RecordingSource,
};
use crate::telemetry::ErrorChain;

/// S3 multipart part size: recordings up to this size go up in one `PutObject`.
pub const PART_SIZE: usize = 8 * 1024 * 1024;
/// Time kept back before the Lambda deadline to abort an upload and answer.
pub const DEADLINE_MARGIN: Duration = Duration::from_secs(10);

/// Tunables of the archiver.
#[derive(Debug, Clone)]
pub struct ArchiverSettings {
    pub max_bytes: u64,
    /// After this long since the push was received, "not ready yet" answers become final.
    pub retry_grace: Duration,
    /// First retry delay; doubles per delivery up to `max_backoff`.
    pub backoff_base: Duration,
    pub max_backoff: Duration,
    pub part_size: usize,
    /// Time kept back before the invocation's deadline to abort an upload and answer.
    pub deadline_margin: Duration,
}

impl Default for ArchiverSettings {
    fn default() -> Self {
        Self {
            // 2 GiB: hours of audio at any bitrate NXCLOUD uses.
            max_bytes: 2 << 30,
            // NXCLOUD documents a recording as not downloadable for a short while after hangup.
            retry_grace: Duration::from_secs(30 * 60),
            backoff_base: Duration::from_secs(30),
            max_backoff: Duration::from_secs(15 * 60),
            part_size: PART_SIZE,
            deadline_margin: DEADLINE_MARGIN,
        }
    }
}

/// How one message ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Archived {
        bytes: u64,
        sha256: String,
    },
    AlreadyArchived,
    /// To be marked `FAILED` on the record; the message is done.
    Failed(String),
    /// Nothing to do or to write: the record is gone, or not waiting for a recording.
    Skipped(String),
    /// Try again later; the reason is noted on the record.
    Retry(String),
}

/// What becomes of one SQS message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Done with: deleted from the queue (archived, decided, or nothing to do).
    Acknowledge,
    /// Reported as a batch item failure: delivered again after its delay.
    Redeliver,
}

/// The archiver service, generic over its four ports.
pub struct Archiver<S, Q, O, R> {
    pub store: S,
    pub queue: Q,
    pub objects: O,
    pub source: R,
    pub settings: ArchiverSettings,
}

impl<S: RecordStore, Q: JobQueue, O: ObjectStore, R: RecordingSource> Archiver<S, Q, O, R> {
    /// Processes a batch; the response lists exactly the messages to deliver again.
    /// `deadline` is the Lambda invocation's deadline, when there is one.
    pub async fn handle_batch(
        &self,
        event: SqsEvent,
        deadline: Option<SystemTime>,
    ) -> SqsBatchResponse {
        let mut response = SqsBatchResponse::default();
        // One at a time: memory stays at one part buffer, and NXCLOUD's host sees one
        // connection per function instance.
        for message in event.records {
            let message_id = message.message_id.clone().unwrap_or_default();
            let left = deadline.map(|d| d.duration_since(SystemTime::now()).unwrap_or_default());
            let disposition = if left.is_some_and(|left| left <= self.settings.deadline_margin) {
                self.put_back_unstarted(&message).await
            } else {
                let span = tracing::info_span!("recording", message_id, id = tracing::field::Empty);
                self.handle_message(&message, deadline)
                    .instrument(span)
                    .await
            };
            if disposition == Disposition::Redeliver {
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = message_id;
                response.batch_item_failures.push(failure);
            }
        }
        response
    }

    /// A message a slow neighbour left no time for. Returned to the queue as it is, every
    /// such return would count as a receive and could send a job that never ran to the DLQ;
    /// so its job goes back as a new message (receive count zero) and this one is done.
    async fn put_back_unstarted(&self, message: &SqsMessage) -> Disposition {
        let Some(Ok(job)) = message
            .body
            .as_deref()
            .map(serde_json::from_str::<RecordingJob>)
        else {
            // Not a job: the queue's own count takes it to the DLQ for a person to read.
            return Disposition::Redeliver;
        };
        // A job whose record is already decided (a duplicate job) is simply done.
        match self.store.get(job.id).await {
            Ok(Some(stored)) if stored.status() == Some(RecordingStatus::Pending) => {}
            Ok(_) => return Disposition::Acknowledge,
            Err(_) => return Disposition::Redeliver,
        }
        match self.queue.send(&job).await {
            Ok(()) => {
                info!(
                    id = job.id,
                    outcome = "not_started",
                    "no time left in this invocation: job queued again"
                );
                Disposition::Acknowledge
            }
            Err(e) => {
                warn!(id = job.id, error = %ErrorChain(&e), outcome = "not_started", "no time left, and the job could not be queued again: returned");
                Disposition::Redeliver
            }
        }
    }

    async fn handle_message(
        &self,
        message: &SqsMessage,
        deadline: Option<SystemTime>,
    ) -> Disposition {
        let receive_count: u32 = message
            .attributes
            .get("ApproximateReceiveCount")
            .and_then(|c| c.parse().ok())
            .unwrap_or(1);
        let job: RecordingJob = match message.body.as_deref().map(serde_json::from_str) {
            Some(Ok(job)) => job,
            _ => {
                // Not ours to interpret: retry until the queue dead-letters it for a human.
                error!(
                    outcome = "unreadable",
                    "recording job is not valid JSON; leaving it for the DLQ"
                );
                self.delay(message, self.settings.max_backoff).await;
                return Disposition::Redeliver;
            }
        };
        tracing::Span::current().record("id", job.id);
        let started = std::time::Instant::now();
        let outcome = match self.archive(&job, deadline).await {
            // The last delivery: the record says why, instead of a job in the DLQ that a
            // person must read to learn it. `pnsctl rearchive` starts over when the host heals.
            Outcome::Retry(reason) if receive_count >= MAX_DELIVERIES => Outcome::Failed(format!(
                "gave up after {receive_count} deliveries: {reason}"
            )),
            outcome => outcome,
        };
        // Written before it is reported: a record re-archived meanwhile is not this job's to fail.
        let outcome = match outcome {
            Outcome::Failed(reason) => match self.store.mark_failed(&job, &reason).await {
                Ok(true) => Outcome::Failed(reason),
                Ok(false) => Outcome::Skipped(format!(
                    "not marked FAILED ({reason}): the record was decided or re-archived meanwhile"
                )),
                Err(e) => {
                    // The decision is not written yet: deliver again rather than lose it.
                    warn!(id = job.id, error = %ErrorChain(&e), "could not mark the record failed");
                    self.delay(message, self.backoff(receive_count)).await;
                    return Disposition::Redeliver;
                }
            },
            outcome => outcome,
        };
        let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
        match &outcome {
            Outcome::Archived { bytes, .. } => metrics::emit(
                Function::Archiver,
                &[
                    (Metric::RecordingArchived, 1.0),
                    (Metric::BytesArchived, *bytes as f64),
                    (Metric::ArchiveLatencyMs, elapsed_ms),
                ],
            ),
            Outcome::Failed(_) => {
                metrics::emit(Function::Archiver, &[(Metric::RecordingFailed, 1.0)])
            }
            Outcome::Retry(_) => {
                metrics::emit(Function::Archiver, &[(Metric::RecordingRetried, 1.0)])
            }
            Outcome::AlreadyArchived | Outcome::Skipped(_) => {}
        }
        match &outcome {
            Outcome::Archived { bytes, sha256 } => info!(
                id = job.id,
                bytes,
                sha256,
                outcome = "archived",
                "recording archived"
            ),
            Outcome::AlreadyArchived => {
                info!(id = job.id, outcome = "already_archived", "nothing to do")
            }
            Outcome::Skipped(reason) => {
                info!(id = job.id, outcome = "skipped", reason, "nothing to do")
            }
            Outcome::Failed(reason) => warn!(
                id = job.id,
                outcome = "failed",
                reason,
                "recording cannot be archived"
            ),
            Outcome::Retry(reason) => warn!(
                id = job.id,
                outcome = "retry",
                receive_count,
                reason,
                "recording will be retried"
            ),
        }
        match &outcome {
            Outcome::Retry(reason) => {
                if let Err(e) = self.store.note_attempt(&job, reason).await {
                    warn!(id = job.id, error = %ErrorChain(&e), "could not note the failed attempt");
                }
                self.delay(message, self.backoff(receive_count)).await;
                Disposition::Redeliver
            }
            Outcome::Archived { .. }
            | Outcome::AlreadyArchived
            | Outcome::Skipped(_)
            | Outcome::Failed(_) => Disposition::Acknowledge,
        }
    }

    /// `base × 2^(n-1)`, capped.
    pub fn backoff(&self, receive_count: u32) -> Duration {
        let factor = 1u32 << receive_count.saturating_sub(1).min(16);
        (self.settings.backoff_base * factor).min(self.settings.max_backoff)
    }

    async fn delay(&self, message: &SqsMessage, delay: Duration) {
        if let Some(handle) = &message.receipt_handle {
            if let Err(e) = self.queue.retry_later(handle, delay.as_secs() as u32).await {
                // Not fatal: the message reappears after the queue's visibility timeout.
                warn!(error = %ErrorChain(&e), "could not set the retry delay");
            }
        }
    }

    /// Archives one job; never returns an error, only an outcome.
    pub async fn archive(&self, job: &RecordingJob, deadline: Option<SystemTime>) -> Outcome {
        let stored = match self.store.get(job.id).await {
            Ok(Some(stored)) => stored,
            Ok(None) => return Outcome::Skipped("record not found".into()),
            Err(e) => return Outcome::Retry(ErrorChain(&e).to_string()),
        };
        if job.is_superseded(stored.pending_since) {
            // `pnsctl rearchive` queued a newer job for this record: that one counts.
            return Outcome::Skipped(
                "superseded by a newer job (the record was re-archived)".into(),
            );
        }
        match stored.status() {
            Some(RecordingStatus::Archived) => return Outcome::AlreadyArchived,
            Some(RecordingStatus::Pending) => {}
            other => {
                let status = other.map_or("missing", RecordingStatus::as_str);
                // Decided earlier (or never needed): the record already says why.
                return Outcome::Skipped(format!("recording status is {status}, not PENDING"));
            }
        }
        // The record is the source of truth; the message only points at it.
        let url = stored
            .record_file
            .clone()
            .unwrap_or_else(|| job.url.clone());
        let key = stored
            .recording_key
            .clone()
            .unwrap_or_else(|| job.key.clone());
        let received_at = stored.received_at_epoch.unwrap_or_default();

        // A previous delivery may have stored the object and stopped before marking the
        // record: a single-part object carries its digest, a multipart one is the copy the
        // record noted when its ETag and size match.
        match self.objects.head(&key).await {
            Ok(Some(info)) => {
                let noted = info.etag.is_some()
                    && info.etag == stored.copy_etag
                    && Some(info.size) == stored.copy_bytes;
                let digest = info
                    .sha256
                    .or_else(|| noted.then(|| stored.copy_sha256.clone()).flatten());
                if let Some(sha256) = digest {
                    let archived = ArchivedRecording {
                        key: key.clone(),
                        bytes: info.size,
                        sha256,
                        content_type: audio::content_type_for(&key).into(),
                    };
                    return self.mark_archived(job.id, archived).await;
                }
            }
            Ok(None) => {}
            Err(e) => return Outcome::Retry(ErrorChain(&e).to_string()),
        }

        // Stop reading early enough to abort the upload and answer before Lambda's deadline.
        let stop_at = deadline.map(|d| {
            let left = d.duration_since(SystemTime::now()).unwrap_or_default();
            tokio::time::Instant::now() + left.saturating_sub(self.settings.deadline_margin)
        });
        match self
            .copy(job, &url, &key, stored.call_id.as_deref(), stop_at)
            .await
        {
            Ok(archived) => self.mark_archived(job.id, archived).await,
            Err(e) => self.classify(e, received_at),
        }
    }

    async fn mark_archived(&self, id: i64, archived: ArchivedRecording) -> Outcome {
        match self.store.mark_archived(id, &archived).await {
            Ok(true) => Outcome::Archived {
                bytes: archived.bytes,
                sha256: archived.sha256,
            },
            Ok(false) => {
                Outcome::Failed("record was deleted while its recording was copied".into())
            }
            Err(e) => Outcome::Retry(ErrorChain(&e).to_string()),
        }
    }

    /// Retry what can succeed later; fail for good (on the record) what cannot.
    fn classify(&self, error: CopyError, received_at_epoch: i64) -> Outcome {
        let reason = ErrorChain(&error).to_string();
        let retryable = match &error {
            CopyError::Storage(_) | CopyError::Deadline => true,
            CopyError::Fetch(
                FetchError::Timeout
                | FetchError::TooSlow { .. }
                | FetchError::Connect(_)
                | FetchError::Body(_),
            ) => true,
            CopyError::Fetch(FetchError::Status(code)) if not_ready_yet(*code) => {
                let age = OffsetDateTime::now_utc().unix_timestamp() - received_at_epoch;
                if age.max(0) as u64 >= self.settings.retry_grace.as_secs() {
                    let grace = self.settings.retry_grace.as_secs();
                    return Outcome::Failed(format!("{reason} (still, {grace} s after the push)"));
                }
                true
            }
            _ => false,
        };
        if retryable {
            Outcome::Retry(reason)
        } else {
            Outcome::Failed(reason)
        }
    }
}

/// 404 (not there yet), 425, 429 and 5xx are worth retrying while the grace period lasts.
fn not_ready_yet(code: u16) -> bool {
    matches!(code, 404 | 408 | 425 | 429) || (500..600).contains(&code)
}
