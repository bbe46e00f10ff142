//! The few things the logic needs from the outside world. Adapters implement them over AWS and
//! HTTP; tests can implement them in memory to produce faults the emulator cannot.

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use futures_util::Stream;
use serde_json::{Map, Value};

use crate::domain::events::Event;
use crate::domain::item::{RecordItem, StoredRecord};
use crate::domain::recording::RecordingJob;
use crate::domain::url_policy::UrlRefused;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// An outside system did not do what was asked (after the SDK's own retries): try again later.
/// The cause is the error's source; reporters print the chain.
#[derive(Debug, thiserror::Error)]
#[error("{operation} failed")]
pub struct PortError {
    pub operation: &'static str,
    #[source]
    pub source: BoxError,
}

impl PortError {
    pub fn new(operation: &'static str, source: impl Into<BoxError>) -> Self {
        Self {
            operation,
            source: source.into(),
        }
    }
}

/// What a conditional put of a new record found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutOutcome {
    Created,
    /// The id was already stored; this is the stored item as it was (boxed: the rare case).
    Duplicate(Box<StoredRecord>),
    /// The store refuses the item as invalid, and would on every retry (DynamoDB's
    /// ValidationException): the body must be kept elsewhere, not retried.
    Refused(String),
}

/// A recording copied to the bucket, as recorded on the call record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchivedRecording {
    pub key: String,
    pub bytes: u64,
    pub sha256: String,
    pub content_type: String,
}

/// What a multipart copy completes with, noted on the record before it completes: crash
/// recovery adopts an object whose ETag matches without downloading it again (a multipart
/// object's metadata, fixed when the upload starts, cannot hold the digest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyChecksum {
    pub sha256: String,
    pub bytes: u64,
    /// The ETag the completed object will carry, quotes left out.
    pub etag: String,
}

/// The call record table.
pub trait RecordStore: Send + Sync {
    /// Puts the item unless its `id` exists; a duplicate returns the stored item.
    fn put_new(
        &self,
        item: RecordItem,
    ) -> impl Future<Output = Result<PutOutcome, PortError>> + Send;
    fn get(&self, id: i64) -> impl Future<Output = Result<Option<StoredRecord>, PortError>> + Send;
    /// Marks the recording archived. `false`: the record does not exist.
    fn mark_archived(
        &self,
        id: i64,
        archived: &ArchivedRecording,
    ) -> impl Future<Output = Result<bool, PortError>> + Send;
    /// Marks a PENDING recording failed for good, as `job` decided. `false`: no such record,
    /// not PENDING, or a newer job superseded `job` (the record was re-archived since).
    fn mark_failed(
        &self,
        job: &RecordingJob,
        reason: &str,
    ) -> impl Future<Output = Result<bool, PortError>> + Send;
    /// Records why `job`'s latest attempt failed while it is retried (status stays PENDING);
    /// nothing when a newer job superseded it.
    fn note_attempt(
        &self,
        job: &RecordingJob,
        reason: &str,
    ) -> impl Future<Output = Result<(), PortError>> + Send;
    /// Notes on a PENDING record what the multipart copy about to complete holds.
    fn note_copy(
        &self,
        id: i64,
        copy: &CopyChecksum,
    ) -> impl Future<Output = Result<(), PortError>> + Send;
    /// Puts a record's recording back to PENDING under `key` from `since` (epoch ms: jobs
    /// queued before it are superseded), provided the record still holds `url` and has no
    /// other key. `false`: the record changed (or does not exist).
    fn reset_to_pending(
        &self,
        id: i64,
        url: &str,
        key: &str,
        since: i64,
    ) -> impl Future<Output = Result<bool, PortError>> + Send;
}

/// Whole stored items, for people: `pnsctl show` and `show-call`.
pub trait RecordLookup: Send + Sync {
    /// The item of record `id` as stored (consistent read).
    fn item(
        &self,
        id: i64,
    ) -> impl Future<Output = Result<Option<Map<String, Value>>, PortError>> + Send;
    /// Every item with this NXCLOUD `callId`, by id.
    fn by_call_id(
        &self,
        call_id: &str,
    ) -> impl Future<Output = Result<Vec<Map<String, Value>>, PortError>> + Send;
}

/// The calls of one binding, for people: `pnsctl calls`.
pub trait CallsByBinding: Send + Sync {
    /// The calls of a binding, by the customer's id for it (`customerBindId`), oldest first:
    /// one index query.
    fn by_customer_bind_id(
        &self,
        customer_bind_id: &str,
    ) -> impl Future<Output = Result<Vec<Map<String, Value>>, PortError>> + Send;
    /// The calls of a binding, by NXCLOUD's id for it (`bindId`), oldest first. No index:
    /// a scan of the whole table, for the rare question that only has this id.
    fn by_bind_id(
        &self,
        bind_id: &str,
    ) -> impl Future<Output = Result<Vec<Map<String, Value>>, PortError>> + Send;
}

/// One page of a table's items and where the next starts (`None`: the last page).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ItemPage {
    pub items: Vec<Map<String, Value>>,
    pub next: Option<Map<String, Value>>,
}

/// A table's items received since a time, page by page: what `pnsctl publish` re-publishes.
pub trait ReceivedSince: Send + Sync {
    /// Items whose `receivedAtEpoch` is at least `epoch`, from `start` (a page's `next`).
    fn received_since(
        &self,
        epoch: i64,
        start: Option<Map<String, Value>>,
    ) -> impl Future<Output = Result<ItemPage, PortError>> + Send;
}

/// The binding-error table: one item per NXCLOUD `requestId`.
pub trait BindingErrorStore: Send + Sync {
    /// Puts the item unless its `requestId` exists; a duplicate returns what the receiver
    /// acts on (its payload digest).
    fn put_new(
        &self,
        item: RecordItem,
    ) -> impl Future<Output = Result<PutOutcome, PortError>> + Send;
}

/// Binding errors, for people: `pnsctl binding-error` and `binding-errors`.
pub trait BindingErrorLookup: Send + Sync {
    fn item(
        &self,
        request_id: &str,
    ) -> impl Future<Output = Result<Option<Map<String, Value>>, PortError>> + Send;
    /// The errors of one DID, oldest first; with `day` (`YYYY-MM-DD`, UTC) that day's only.
    fn by_did(
        &self,
        did: &str,
        day: Option<&str>,
    ) -> impl Future<Output = Result<Vec<Map<String, Value>>, PortError>> + Send;
}

/// A record whose recording is still waiting, as the sparse pending index holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingRecording {
    pub id: i64,
    pub url: String,
    pub key: String,
}

/// How many PENDING records the reconciler leaves alone, and how many are overdue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PendingCounts {
    /// Received at or before the overdue cutoff, whatever their state.
    pub overdue: usize,
    /// Received at or before the re-queue cutoff, with a failed delivery after it: their
    /// job is alive, waiting out a backoff.
    pub in_retry: usize,
}

/// The work list of the reconciler.
pub trait PendingRecords: Send + Sync {
    /// Records still PENDING that were received at or before `received_before` (Unix
    /// seconds), whose last failed delivery (if any) is not later than that either, and
    /// that have not used up their deliveries: oldest first, at most `limit`. Records being
    /// retried do not count against the limit.
    fn pending_before(
        &self,
        received_before: i64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<PendingRecording>, PortError>> + Send;
    /// Counts PENDING records overdue (received at or before `overdue_before`) and in a
    /// retry (received at or before `received_before`, a delivery failed after it).
    fn count_pending(
        &self,
        overdue_before: i64,
        received_before: i64,
    ) -> impl Future<Output = Result<PendingCounts, PortError>> + Send;
}

/// The recording job queue.
pub trait JobQueue: Send + Sync {
    fn send(&self, job: &RecordingJob) -> impl Future<Output = Result<(), PortError>> + Send;
    /// Sends a message body as it is: a redriven dead letter, which need not be a valid job.
    fn send_raw(&self, body: &str) -> impl Future<Output = Result<(), PortError>> + Send;
    /// Makes a received message visible again after `delay_seconds` (backoff for a retry).
    fn retry_later(
        &self,
        receipt_handle: &str,
        delay_seconds: u32,
    ) -> impl Future<Output = Result<(), PortError>> + Send;
}

/// A message received from the dead-letter queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub body: String,
    pub receipt_handle: String,
}

/// The dead-letter queue of the recording jobs.
pub trait DeadLetters: Send + Sync {
    /// Up to `max` (at most 10) messages, hidden from other readers for a while.
    fn receive(
        &self,
        max: usize,
    ) -> impl Future<Output = Result<Vec<DeadLetter>, PortError>> + Send;
    fn delete(&self, receipt_handle: &str) -> impl Future<Output = Result<(), PortError>> + Send;
}

/// Metadata of an object already in the bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub size: u64,
    /// The SHA-256 the object was stored with (single-part recordings carry it).
    pub sha256: Option<String>,
    /// The object's ETag, quotes left out.
    pub etag: Option<String>,
}

/// One uploaded part of a multipart upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadedPart {
    pub number: i32,
    pub etag: String,
}

/// Object metadata and content type shared by single and multipart uploads.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObjectMeta {
    pub content_type: String,
    /// User metadata. Values are pushed data: the adapter makes them header-safe.
    pub metadata: Vec<(&'static str, String)>,
    /// The SHA-256 of the body, when known before the upload (read back by [`ObjectInfo`]).
    pub sha256: Option<String>,
}

/// A part body streamed while it downloads: exactly the announced length, or an error.
pub type PartStream = Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send + Sync>>;

/// The bucket.
pub trait ObjectStore: Send + Sync {
    fn put(
        &self,
        key: &str,
        body: Bytes,
        meta: &ObjectMeta,
    ) -> impl Future<Output = Result<(), PortError>> + Send;
    /// The object's body; `None` when there is no such key.
    fn get(&self, key: &str) -> impl Future<Output = Result<Option<Bytes>, PortError>> + Send;
    /// Every key under `prefix`, in key order.
    fn list(&self, prefix: &str) -> impl Future<Output = Result<Vec<String>, PortError>> + Send;
    /// `None`: nothing to adopt under `key`.
    fn head(&self, key: &str)
        -> impl Future<Output = Result<Option<ObjectInfo>, PortError>> + Send;
    fn start_multipart(
        &self,
        key: &str,
        meta: &ObjectMeta,
    ) -> impl Future<Output = Result<String, PortError>> + Send;
    fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        body: Bytes,
    ) -> impl Future<Output = Result<UploadedPart, PortError>> + Send;
    /// Uploads a part of exactly `length` bytes from a stream, without holding it in memory.
    fn upload_part_stream(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        length: u64,
        body: PartStream,
    ) -> impl Future<Output = Result<UploadedPart, PortError>> + Send;
    fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[UploadedPart],
    ) -> impl Future<Output = Result<(), PortError>> + Send;
    fn abort_multipart(
        &self,
        key: &str,
        upload_id: &str,
    ) -> impl Future<Output = Result<(), PortError>> + Send;
}

/// Why a recording could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error(transparent)]
    Refused(#[from] UrlRefused),
    #[error("recording host answered HTTP {0}")]
    Status(u16),
    #[error("more than {0} redirects")]
    TooManyRedirects(usize),
    #[error("redirect without a valid Location")]
    BadRedirect,
    #[error("recording host timed out")]
    Timeout,
    #[error(
        "recording host sent {bytes} bytes in {seconds} s, under the {min_rate} bytes/s minimum"
    )]
    TooSlow {
        bytes: u64,
        seconds: u64,
        min_rate: u64,
    },
    /// The text is the connection error's chain, without the URL (it may carry a signature).
    #[error("could not connect to the recording host: {0}")]
    Connect(String),
    #[error("recording download broke off: {0}")]
    Body(String),
}

/// A response body, chunk by chunk.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, FetchError>> + Send>>;

/// An opened recording: headers read, body not yet.
pub struct Download {
    pub content_type: Option<String>,
    pub content_length: Option<u64>,
    /// The host that finally served the bytes (after redirects).
    pub host: String,
    pub body: ByteStream,
}

/// Where recordings come from (NXCLOUD's recording host, through the URL policy).
pub trait RecordingSource: Send + Sync {
    fn open(&self, url: &str) -> impl Future<Output = Result<Download, FetchError>> + Send;
}

/// Why the bus refused one event of a batch (EventBridge's per-entry error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct EntryRefused {
    pub code: String,
    pub message: String,
}

/// The event bus downstream systems subscribe to.
pub trait EventBus: Send + Sync {
    /// Puts up to [`EVENTS_PER_PUT`] events of at most [`PUT_EVENTS_MAX_BYTES`] in all (as
    /// `Event::entry_bytes` counts them); one answer per event, in order.
    fn put(
        &self,
        events: &[&Event],
    ) -> impl Future<Output = Result<Vec<Result<(), EntryRefused>>, PortError>> + Send;
}

/// A Lambda function version, invoked synchronously (the pre-traffic hook's way to reach the
/// version about to receive traffic).
pub trait FunctionInvoker: Send + Sync {
    /// The function's answer; an error also when the function itself failed.
    fn invoke(&self, payload: &Value) -> impl Future<Output = Result<Value, PortError>> + Send;
}

/// Where a deployment's lifecycle hook reports its verdict (CodeDeploy).
pub trait DeploymentHooks: Send + Sync {
    fn report(
        &self,
        hook: &LifecycleHook,
        passed: bool,
    ) -> impl Future<Output = Result<(), PortError>> + Send;
}

/// What CodeDeploy passes a lifecycle hook, and wants back with the verdict.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LifecycleHook {
    pub deployment_id: String,
    pub lifecycle_event_hook_execution_id: String,
}

/// EventBridge's limit of entries per `PutEvents`.
pub const EVENTS_PER_PUT: usize = 10;

/// EventBridge's limit of a `PutEvents` request's entries, in bytes.
pub const PUT_EVENTS_MAX_BYTES: usize = 256 * 1024;

/// Where an event that no `PutEvents` can carry is described for a person: the publisher's
/// failure queue, which raises an alarm.
pub trait EventFailures: Send + Sync {
    fn describe(
        &self,
        event: &Event,
        reason: &str,
    ) -> impl Future<Output = Result<(), PortError>> + Send;
}
