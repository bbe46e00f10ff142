//! The archiver: SQS batch of recording jobs in, recordings in S3 and records marked out.
//!
//! Every message ends in exactly one of: acknowledged (archived, or failed for good with the
//! reason on the record) or reported failed (retried later with a growing delay, dead-lettered
//! after the queue's `maxReceiveCount`). A crash anywhere leaves either no object under the
//! key, or an object whose checksum metadata lets the next delivery finish without downloading.

use std::time::{Duration, SystemTime};

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use tracing::{error, info, warn, Instrument};

use crate::adapters::s3::SHA256_METADATA;
use crate::domain::recording::{RecordingJob, RecordingStatus, MAX_DELIVERIES};
use crate::metrics::{self, Unit};
use crate::ports::{
    ArchivedRecording, ByteStream, Download, FetchError, JobQueue, ObjectMeta, ObjectStore,
    PortError, RecordStore, RecordingSource, UploadedPart,
};

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
            max_bytes: crate::config::DEFAULT_MAX_RECORDING_BYTES,
            retry_grace: crate::config::DEFAULT_RETRY_GRACE,
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

/// Why a copy did not finish.
#[derive(Debug, thiserror::Error)]
enum CopyError {
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error(transparent)]
    Storage(#[from] PortError),
    #[error("not an audio file: {0}")]
    NotAudio(String),
    #[error("recording is larger than the {0}-byte limit")]
    TooLarge(u64),
    #[error("copy did not finish before the function deadline")]
    Deadline,
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
            if left.is_some_and(|left| left <= self.settings.deadline_margin) {
                // A job whose record is already decided (a duplicate job) is done: returning
                // it would only spend its deliveries and end it in the DLQ.
                if self.already_decided(&message).await {
                    continue;
                }
                // A slow neighbour used the invocation up. Not started, so nothing is noted
                // against this job: it comes back on its own.
                warn!(
                    message_id,
                    outcome = "not_started",
                    "no time left in this invocation"
                );
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = message_id;
                response.batch_item_failures.push(failure);
                continue;
            }
            let span = tracing::info_span!("recording", message_id, id = tracing::field::Empty);
            let retry = self
                .handle_message(&message, deadline)
                .instrument(span)
                .await;
            if retry {
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = message_id;
                response.batch_item_failures.push(failure);
            }
        }
        response
    }

    /// The job's record exists no more or is no longer PENDING (one quick read).
    async fn already_decided(&self, message: &SqsMessage) -> bool {
        let Some(Ok(job)) = message
            .body
            .as_deref()
            .map(serde_json::from_str::<RecordingJob>)
        else {
            return false;
        };
        match self.store.get(job.id).await {
            Ok(Some(stored)) => stored.status() != Some(RecordingStatus::Pending),
            Ok(None) => true,
            Err(_) => false,
        }
    }

    /// Returns `true` when the message must be delivered again.
    async fn handle_message(&self, message: &SqsMessage, deadline: Option<SystemTime>) -> bool {
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
                return true;
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
        let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
        match &outcome {
            Outcome::Archived { bytes, .. } => metrics::emit(
                "archiver",
                &[
                    ("RecordingArchived", 1.0, Unit::Count),
                    ("BytesArchived", *bytes as f64, Unit::Bytes),
                    ("ArchiveLatencyMs", elapsed_ms, Unit::Milliseconds),
                ],
            ),
            Outcome::Failed(_) => {
                metrics::emit("archiver", &[("RecordingFailed", 1.0, Unit::Count)])
            }
            Outcome::Retry(_) => {
                metrics::emit("archiver", &[("RecordingRetried", 1.0, Unit::Count)])
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
                if let Err(e) = self.store.note_attempt(job.id, reason).await {
                    warn!(id = job.id, error = %e, "could not note the failed attempt");
                }
                self.delay(message, self.backoff(receive_count)).await;
                true
            }
            Outcome::Failed(reason) => match self.store.mark_failed(job.id, reason).await {
                Ok(_) => false,
                Err(e) => {
                    // The decision is not written yet: deliver again rather than lose it.
                    warn!(id = job.id, error = %e, "could not mark the record failed");
                    self.delay(message, self.backoff(receive_count)).await;
                    true
                }
            },
            Outcome::Archived { .. } | Outcome::AlreadyArchived | Outcome::Skipped(_) => false,
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
                warn!(error = %e, "could not set the retry delay");
            }
        }
    }

    /// Archives one job; never returns an error, only an outcome.
    pub async fn archive(&self, job: &RecordingJob, deadline: Option<SystemTime>) -> Outcome {
        let stored = match self.store.get(job.id).await {
            Ok(Some(stored)) => stored,
            Ok(None) => return Outcome::Skipped("record not found".into()),
            Err(e) => return Outcome::Retry(e.to_string()),
        };
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

        // A previous delivery may have stored the object and stopped before marking the record.
        match self.objects.head(&key).await {
            Ok(Some(info)) if info.sha256.is_some() => {
                let archived = ArchivedRecording {
                    key: key.clone(),
                    bytes: info.size,
                    sha256: info.sha256.unwrap_or_default(),
                    content_type: content_type_for(&key).into(),
                };
                return self.mark_archived(job.id, archived).await;
            }
            Ok(_) => {}
            Err(e) => return Outcome::Retry(e.to_string()),
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
            Err(e) => Outcome::Retry(e.to_string()),
        }
    }

    /// Retry what can succeed later; fail for good (on the record) what cannot.
    fn classify(&self, error: CopyError, received_at_epoch: i64) -> Outcome {
        let reason = error.to_string();
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

    /// Downloads and uploads, hashing as bytes pass. On any error nothing is left under `key`
    /// and no multipart upload stays open.
    async fn copy(
        &self,
        job: &RecordingJob,
        url: &str,
        key: &str,
        call_id: Option<&str>,
        stop_at: Option<tokio::time::Instant>,
    ) -> Result<ArchivedRecording, CopyError> {
        let open = self.source.open(url);
        let download = match stop_at {
            Some(at) => tokio::time::timeout_at(at, open)
                .await
                .map_err(|_| CopyError::Deadline)?,
            None => open.await,
        };
        let Download {
            content_type,
            content_length,
            host,
            body,
        } = download?;
        let max = self.settings.max_bytes;
        if content_length.is_some_and(|l| l > max) {
            return Err(CopyError::TooLarge(max));
        }
        check_content_type(content_type.as_deref())?;

        // Read just enough to recognise the format before anything is written.
        let mut head = BytesMut::new();
        let mut copy = Copy {
            body,
            carry: Bytes::new(),
            stop_at,
            hasher: Sha256::new(),
            total: 0,
            max,
        };
        while head.len() < 12 {
            match copy.next_raw().await? {
                Some(chunk) => head.extend_from_slice(&chunk),
                None => break,
            }
        }
        let mut meta = self.object_meta(job, &head, call_id, &host)?;
        copy.carry = head.freeze();
        let part_size = self.settings.part_size as u64;
        match content_length {
            // Known and larger than a part: each part streams straight through, so memory
            // does not depend on the recording's size.
            Some(length) if length > part_size => {
                self.copy_streamed(&mut copy, key, length, &meta).await?
            }
            // Unknown length (chunked) or one part: buffer at most one part at a time.
            _ => self.copy_buffered(&mut copy, key, &mut meta).await?,
        }
        Ok(ArchivedRecording {
            key: key.to_owned(),
            bytes: copy.total,
            sha256: hex::encode(copy.hasher.finalize()),
            content_type: meta.content_type,
        })
    }

    async fn copy_streamed(
        &self,
        copy: &mut Copy,
        key: &str,
        length: u64,
        meta: &ObjectMeta,
    ) -> Result<(), CopyError> {
        let upload_id = self.objects.start_multipart(key, meta).await?;
        let result = async {
            let part_size = self.settings.part_size as u64;
            let mut parts = Vec::new();
            while copy.total < length {
                let part_length = part_size.min(length - copy.total);
                let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(4);
                let stream = futures_util::stream::unfold(rx, |mut rx| async move {
                    rx.recv().await.map(|item| (item, rx))
                });
                let number = parts.len() as i32 + 1;
                let upload = self.objects.upload_part_stream(
                    key,
                    &upload_id,
                    number,
                    part_length,
                    Box::pin(stream),
                );
                let (uploaded, pumped) = tokio::join!(upload, copy.pump(part_length, tx));
                pumped?;
                parts.push(uploaded?);
            }
            if copy.next_raw().await?.is_some_and(|c| !c.is_empty()) {
                return Err(CopyError::Fetch(FetchError::Body(
                    "body is longer than its Content-Length".into(),
                )));
            }
            self.objects
                .complete_multipart(key, &upload_id, &parts)
                .await?;
            Ok(())
        }
        .await;
        if result.is_err() {
            self.abort(key, &upload_id).await;
        }
        result
    }

    async fn copy_buffered(
        &self,
        copy: &mut Copy,
        key: &str,
        meta: &mut ObjectMeta,
    ) -> Result<(), CopyError> {
        let part_size = self.settings.part_size;
        let mut buffer = BytesMut::new();
        let mut upload: Option<(String, Vec<UploadedPart>)> = None;
        let result = async {
            while let Some(chunk) = copy.next_chunk().await? {
                buffer.extend_from_slice(&chunk);
                while buffer.len() >= part_size {
                    let part = buffer.split_to(part_size).freeze();
                    if upload.is_none() {
                        upload = Some((self.objects.start_multipart(key, meta).await?, Vec::new()));
                    }
                    let (upload_id, parts) = upload.as_mut().expect("started above");
                    let number = parts.len() as i32 + 1;
                    parts.push(
                        self.objects
                            .upload_part(key, upload_id, number, part)
                            .await?,
                    );
                }
            }
            match &mut upload {
                // One part: a single PutObject, which can carry the checksum in its metadata
                // (a crashed delivery's object is then adopted without downloading again).
                None => {
                    meta.metadata.push((
                        SHA256_METADATA.into(),
                        hex::encode(copy.hasher.clone().finalize()),
                    ));
                    self.objects.put(key, buffer.split().freeze(), meta).await?;
                }
                Some((upload_id, parts)) => {
                    if !buffer.is_empty() {
                        let number = parts.len() as i32 + 1;
                        parts.push(
                            self.objects
                                .upload_part(key, upload_id, number, buffer.split().freeze())
                                .await?,
                        );
                    }
                    self.objects
                        .complete_multipart(key, upload_id, parts)
                        .await?;
                }
            }
            Ok(())
        }
        .await;
        if let (Err(_), Some((upload_id, _))) = (&result, &upload) {
            self.abort(key, upload_id).await;
        }
        result
    }

    async fn abort(&self, key: &str, upload_id: &str) {
        if let Err(e) = self.objects.abort_multipart(key, upload_id).await {
            // The bucket's lifecycle rule removes it after a day; nothing is under `key`.
            warn!(error = %e, "could not abort the multipart upload");
        }
    }

    fn object_meta(
        &self,
        job: &RecordingJob,
        head: &[u8],
        call_id: Option<&str>,
        host: &str,
    ) -> Result<ObjectMeta, CopyError> {
        let content_type = sniff_audio(head).map_err(CopyError::NotAudio)?;
        let mut metadata = vec![
            ("record-id".to_owned(), job.id.to_string()),
            ("source-host".to_owned(), host.to_owned()),
        ];
        if let Some(call_id) = call_id {
            metadata.push(("call-id".to_owned(), call_id.to_owned()));
        }
        Ok(ObjectMeta {
            content_type: content_type.into(),
            metadata,
        })
    }
}

/// The download side of one copy: hashes and counts every byte handed on.
struct Copy {
    body: ByteStream,
    /// Bytes read but not yet handed on.
    carry: Bytes,
    /// When reading must stop so the upload can still be aborted in time.
    stop_at: Option<tokio::time::Instant>,
    hasher: Sha256,
    total: u64,
    max: u64,
}

impl Copy {
    /// The next bytes read (first any carried over), `None` at the end of the body.
    async fn next_raw(&mut self) -> Result<Option<Bytes>, CopyError> {
        if !self.carry.is_empty() {
            return Ok(Some(std::mem::take(&mut self.carry)));
        }
        let next = match self.stop_at {
            Some(at) => tokio::time::timeout_at(at, self.body.next())
                .await
                .map_err(|_| CopyError::Deadline)?,
            None => self.body.next().await,
        };
        match next {
            Some(chunk) => Ok(Some(chunk?)),
            None => Ok(None),
        }
    }

    /// Counts and hashes bytes as they are handed to the bucket.
    fn account(&mut self, bytes: &[u8]) -> Result<(), CopyError> {
        self.total += bytes.len() as u64;
        if self.total > self.max {
            return Err(CopyError::TooLarge(self.max));
        }
        self.hasher.update(bytes);
        Ok(())
    }

    /// The next bytes to hand on, accounted; `None` at the end of the body.
    async fn next_chunk(&mut self) -> Result<Option<Bytes>, CopyError> {
        let chunk = self.next_raw().await?;
        if let Some(chunk) = &chunk {
            self.account(chunk)?;
        }
        Ok(chunk)
    }

    /// Feeds exactly `length` bytes into a part upload.
    async fn pump(
        &mut self,
        length: u64,
        tx: tokio::sync::mpsc::Sender<std::io::Result<Bytes>>,
    ) -> Result<(), CopyError> {
        let mut remaining = length;
        while remaining > 0 {
            let next = match self.next_raw().await {
                Ok(Some(chunk)) => Ok(chunk),
                Ok(None) => Err(CopyError::Fetch(FetchError::Body(
                    "body ended before its Content-Length".into(),
                ))),
                Err(e) => Err(e),
            };
            let chunk = match next {
                Ok(chunk) => chunk,
                Err(e) => {
                    let _ = tx.send(Err(std::io::Error::other(e.to_string()))).await;
                    return Err(e);
                }
            };
            let take = remaining.min(chunk.len() as u64) as usize;
            // What lies past this part belongs to the next one.
            self.carry = chunk.slice(take..);
            let part = chunk.slice(..take);
            self.account(&part)?;
            remaining -= take as u64;
            if tx.send(Ok(part)).await.is_err() {
                // The upload stopped (its error comes back through `join!`).
                break;
            }
        }
        Ok(())
    }
}

/// 404 (not there yet), 425, 429 and 5xx are worth retrying while the grace period lasts.
fn not_ready_yet(code: u16) -> bool {
    matches!(code, 404 | 408 | 425 | 429) || (500..600).contains(&code)
}

/// An error page served with 200 is the failure this guards against.
fn check_content_type(content_type: Option<&str>) -> Result<(), CopyError> {
    let Some(ct) = content_type else {
        return Ok(());
    };
    let essence = ct
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let acceptable = essence.starts_with("audio/")
        || essence == "application/octet-stream"
        || essence == "binary/octet-stream"
        || essence.is_empty();
    if acceptable {
        Ok(())
    } else {
        Err(CopyError::NotAudio(format!("Content-Type is {essence}")))
    }
}

/// The content type from the first bytes: MP3 (ID3 tag or MPEG frame sync) or WAV (RIFF/WAVE).
pub fn sniff_audio(head: &[u8]) -> Result<&'static str, String> {
    match head {
        [b'I', b'D', b'3', ..] => Ok("audio/mpeg"),
        [0xFF, b1, ..] if b1 & 0xE0 == 0xE0 => Ok("audio/mpeg"),
        [b'R', b'I', b'F', b'F', _, _, _, _, b'W', b'A', b'V', b'E', ..] => Ok("audio/wav"),
        [] => Err("the body is empty".into()),
        _ => Err("the first bytes are neither MP3 nor WAV".into()),
    }
}

fn content_type_for(key: &str) -> &'static str {
    if key.ends_with(".wav") {
        "audio/wav"
    } else {
        "audio/mpeg"
    }
}
