//! The publisher: the tables' stream changes become events on the bus.
//!
//! Lambda's DynamoDB event source hands over a batch of stream records of one shard, in order.
//! Each record's events (`domain::events`) are put in that order, in requests of at most ten
//! entries and 256 KiB; entries the bus refuses are put again with backoff. An event larger
//! than any request can carry is described in the failure queue instead, and the batch goes
//! on. If some still fail, or a record cannot be read,
//! the answer names that record as the batch's first failure: Lambda retries from it (the
//! records before it are done), bisects on repeated failure, and after its retries sends the
//! batch's description to the on-failure destination, which raises an alarm. Events of the
//! retried records may be put twice; their ids are the same, so consumers dedupe.

use std::time::Duration;

use aws_lambda_events::event::dynamodb::{Event as StreamEvent, EventRecord};
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use serde_json::{Map, Value};
use tracing::{error, info, warn};

use crate::domain::events::{
    add_number_hashes, events_for_change, Change, Event, PhoneNumbers, UnreadableChange,
};
use crate::domain::numbers::NumberKeys;
use crate::metrics::{self, Function, Metric};
use crate::ports::{EventBus, EventFailures, EVENTS_PER_PUT, PUT_EVENTS_MAX_BYTES};
use crate::telemetry::ErrorChain;

/// Tunables of the publisher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublisherSettings {
    /// How callers' and callees' numbers appear in events (`PNS_PHONE_NUMBERS`).
    pub phones: PhoneNumbers,
    /// The keys of the numbers' hashes in events (`PNS_NUMBER_KEY_SECRET_ARN`, read at cold
    /// start). `None`: events carry no hashes (tests that do not look at them).
    pub number_keys: Option<NumberKeys>,
    /// Puts of a refused entry within one invocation, the first included.
    pub attempts: u32,
    /// Wait before the second put; doubled for each one after.
    pub backoff: Duration,
}

impl Default for PublisherSettings {
    fn default() -> Self {
        Self {
            phones: PhoneNumbers::Masked,
            number_keys: None,
            attempts: 3,
            backoff: Duration::from_millis(100),
        }
    }
}

/// One stream record, read.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamChange {
    /// Its sequence number: how the answer names it.
    pub sequence: String,
    pub change: Result<Changed, RecordError>,
}

/// A change of an item, with its images as plain JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct Changed {
    pub change: Change,
    pub old: Option<Map<String, Value>>,
    pub new: Option<Map<String, Value>>,
}

/// A stream record that cannot become events.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("unknown eventName {0:?}")]
    EventName(String),
    #[error("an image is not a DynamoDB item: {0}")]
    Image(String),
    #[error(transparent)]
    Unreadable(#[from] UnreadableChange),
}

impl StreamChange {
    /// Reads a record of the Lambda event.
    pub fn read(record: EventRecord) -> Self {
        let sequence = record.change.sequence_number.clone().unwrap_or_default();
        let image = |item: serde_dynamo::Item| -> Result<Option<Map<String, Value>>, RecordError> {
            if item.is_empty() {
                return Ok(None);
            }
            serde_dynamo::from_item(item)
                .map(Some)
                .map_err(|e| RecordError::Image(e.to_string()))
        };
        let change = Change::parse(&record.event_name)
            .ok_or_else(|| RecordError::EventName(record.event_name.clone()))
            .and_then(|change| {
                Ok(Changed {
                    change,
                    old: image(record.change.old_image)?,
                    new: image(record.change.new_image)?,
                })
            });
        Self { sequence, change }
    }
}

/// What one invocation did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct PublishReport {
    pub records: usize,
    pub published: usize,
    /// Entries put again after the bus refused them.
    pub retried: usize,
    /// The sequence number of the first record not done: Lambda retries from it.
    pub failed_at: Option<String>,
}

impl PublishReport {
    /// The Lambda answer: the first record not done, if any.
    pub fn response(&self) -> DynamoDbEventResponse {
        let mut response = DynamoDbEventResponse::default();
        if let Some(sequence) = &self.failed_at {
            let mut failure = DynamoDbBatchItemFailure::default();
            failure.item_identifier = Some(sequence.clone());
            response.batch_item_failures.push(failure);
        }
        response
    }
}

pub struct Publisher<B, F> {
    pub bus: B,
    /// Where an event too large for any `PutEvents` is described.
    pub failures: F,
    pub settings: PublisherSettings,
}

/// An event to put, with the index of the stream record it comes from.
type Queued = (usize, Event);

/// The `PutEvents` requests that carry `events` in order: at most [`EVENTS_PER_PUT`] entries
/// and [`PUT_EVENTS_MAX_BYTES`] each. An event larger than a request on its own is set apart
/// (the second list), with its size.
fn requests(events: &[Queued]) -> (Vec<Vec<&Queued>>, Vec<(&Queued, usize)>) {
    let (mut requests, mut too_large) = (Vec::new(), Vec::new());
    let (mut request, mut bytes): (Vec<&Queued>, usize) = (Vec::new(), 0);
    for queued in events {
        let size = queued.1.entry_bytes();
        if size > PUT_EVENTS_MAX_BYTES {
            too_large.push((queued, size));
            continue;
        }
        if request.len() == EVENTS_PER_PUT || bytes + size > PUT_EVENTS_MAX_BYTES {
            requests.push(std::mem::take(&mut request));
            bytes = 0;
        }
        request.push(queued);
        bytes += size;
    }
    if !request.is_empty() {
        requests.push(request);
    }
    (requests, too_large)
}

impl<B: EventBus, F: EventFailures> Publisher<B, F> {
    /// The Lambda handler.
    pub async fn handle(&self, event: StreamEvent) -> DynamoDbEventResponse {
        let changes: Vec<StreamChange> =
            event.records.into_iter().map(StreamChange::read).collect();
        self.publish(&changes).await.response()
    }

    /// Publishes the events of `changes`, in order, until the first that cannot be done.
    pub async fn publish(&self, changes: &[StreamChange]) -> PublishReport {
        let mut report = PublishReport {
            records: changes.len(),
            ..PublishReport::default()
        };
        // Each event with the index of the record it comes from.
        let mut queued: Vec<(usize, Event)> = Vec::new();
        let mut stop = None;
        for (i, record) in changes.iter().enumerate() {
            let events = record.change.as_ref().map_err(Clone::clone).and_then(|c| {
                let mut events = events_for_change(
                    c.change,
                    c.old.as_ref(),
                    c.new.as_ref(),
                    self.settings.phones,
                )?;
                if let (Some(keys), Some(new)) = (&self.settings.number_keys, &c.new) {
                    add_number_hashes(&mut events, new, keys);
                }
                Ok(events)
            });
            match events {
                Ok(events) => queued.extend(events.into_iter().map(|e| (i, e))),
                Err(e) => {
                    error!(
                        sequence = %record.sequence,
                        error = %e,
                        outcome = "unreadable",
                        "a stream record cannot become events"
                    );
                    stop = Some(i);
                    break;
                }
            }
        }
        if let Err(first_failed) = self.put_in_requests(&queued, &mut report).await {
            stop = Some(stop.map_or(first_failed, |s: usize| s.min(first_failed)));
        }
        report.failed_at = stop.map(|i| changes[i].sequence.clone());
        let failed = u8::from(report.failed_at.is_some());
        metrics::emit(
            Function::Publisher,
            &[
                (Metric::EventsPublished, report.published as f64),
                (Metric::EventsRetried, report.retried as f64),
                (Metric::PublishFailed, f64::from(failed)),
            ],
        );
        match &report.failed_at {
            None => info!(
                records = report.records,
                published = report.published,
                retried = report.retried,
                outcome = "published",
                "stream batch published"
            ),
            Some(sequence) => warn!(
                records = report.records,
                published = report.published,
                retried = report.retried,
                failed_at = %sequence,
                outcome = "retry",
                "stream batch published up to a record; Lambda retries from it"
            ),
        }
        report
    }

    /// Puts `events` in order, again for the entries refused (`pnsctl publish`); `Err`: how
    /// many were accepted before one stayed refused.
    pub async fn put_all(&self, events: Vec<Event>) -> Result<usize, usize> {
        let queued: Vec<(usize, Event)> = events.into_iter().enumerate().collect();
        let mut report = PublishReport::default();
        match self.put_in_requests(&queued, &mut report).await {
            Ok(()) => Ok(report.published),
            Err(_) => Err(report.published),
        }
    }

    /// Puts the queued events in as few requests as the limits allow, and describes those
    /// too large for any; `Err`: the record index of the first event not done.
    async fn put_in_requests(
        &self,
        queued: &[(usize, Event)],
        report: &mut PublishReport,
    ) -> Result<(), usize> {
        let (requests, too_large) = requests(queued);
        let mut first_failed = None;
        for ((record, event), bytes) in too_large {
            let reason = format!(
                "the event is {bytes} bytes; a PutEvents request holds {PUT_EVENTS_MAX_BYTES}"
            );
            error!(event_id = %event.id, bytes, outcome = "too_large", "an event no request can carry");
            if let Err(e) = self.failures.describe(event, &reason).await {
                warn!(error = %ErrorChain(&e), "the event could not be described");
                first_failed = Some(first_failed.map_or(*record, |f: usize| f.min(*record)));
            }
        }
        for request in requests {
            if let Err(record) = self.put(&request, report).await {
                return Err(first_failed.map_or(record, |f| f.min(record)));
            }
        }
        first_failed.map_or(Ok(()), Err)
    }

    /// Puts one request's events, again for the entries refused; `Err`: the record index of
    /// the first event still not accepted.
    async fn put(
        &self,
        chunk: &[&(usize, Event)],
        report: &mut PublishReport,
    ) -> Result<(), usize> {
        let mut todo: Vec<usize> = (0..chunk.len()).collect();
        let mut wait = self.settings.backoff;
        for attempt in 0..self.settings.attempts.max(1) {
            if attempt > 0 {
                tokio::time::sleep(wait).await;
                wait *= 2;
                report.retried += todo.len();
            }
            let events: Vec<&Event> = todo.iter().map(|&k| &chunk[k].1).collect();
            match self.bus.put(&events).await {
                Ok(answers) => {
                    let mut refused = Vec::new();
                    for (k, answer) in todo.iter().zip(answers) {
                        match answer {
                            Ok(()) => report.published += 1,
                            Err(e) => {
                                warn!(event_id = %chunk[*k].1.id, error = %e, "the bus refused an event");
                                refused.push(*k);
                            }
                        }
                    }
                    todo = refused;
                }
                Err(e) => warn!(error = %ErrorChain(&e), "PutEvents failed"),
            }
            if todo.is_empty() {
                return Ok(());
            }
        }
        Err(chunk[todo[0]].0)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;
    use crate::adapters::memory::{MemoryEventBus, MemoryEventFailures};
    use serde_json::json;

    fn publisher() -> Publisher<MemoryEventBus, MemoryEventFailures> {
        Publisher {
            bus: MemoryEventBus::default(),
            failures: MemoryEventFailures::default(),
            settings: PublisherSettings {
                backoff: Duration::ZERO,
                ..PublisherSettings::default()
            },
        }
    }

    fn inserted(sequence: u32, id: i64) -> StreamChange {
        let new = json!({"id": id, "recordingStatus": "PENDING", "answered": true,
                         "callStatusText": "NORMAL_END", "receivedAt": "2026-11-30T00:00:00Z"});
        StreamChange {
            sequence: sequence.to_string(),
            change: Ok(Changed {
                change: Change::Insert,
                old: None,
                new: new.as_object().cloned(),
            }),
        }
    }

    #[tokio::test]
    async fn a_batch_is_published_in_order_ten_per_put() {
        let publisher = publisher();
        let changes: Vec<_> = (0..25).map(|i| inserted(i, i64::from(i) + 1)).collect();
        let report = publisher.publish(&changes).await;
        assert_eq!((report.published, report.failed_at.as_deref()), (25, None));
        assert_eq!(publisher.bus.puts.load(Ordering::SeqCst), 3);
        let expected: Vec<String> = (1..=25).map(|id| format!("CallRecorded:{id}")).collect();
        assert_eq!(publisher.bus.ids(), expected);
        assert!(report.response().batch_item_failures.is_empty());
    }

    /// An insert whose event carries a `callStatusMsg` of `filler` bytes (the switch's text:
    /// a push of up to 64 KiB can carry one of nearly that).
    fn large(sequence: u32, id: i64, filler: usize) -> StreamChange {
        let mut change = inserted(sequence, id);
        if let Ok(changed) = &mut change.change {
            let new = changed.new.as_mut().unwrap();
            new.insert("callStatusMsg".into(), "x".repeat(filler).into());
        }
        change
    }

    #[tokio::test]
    async fn requests_are_cut_by_size_as_well_as_by_count() {
        let publisher = publisher();
        // Ten events of 40 KiB: one request by count, 400 KiB by size.
        let changes: Vec<_> = (0..10)
            .map(|i| large(i, i64::from(i) + 1, 40 << 10))
            .collect();
        let report = publisher.publish(&changes).await;
        assert_eq!((report.published, report.failed_at.as_deref()), (10, None));
        assert_eq!(publisher.bus.puts.load(Ordering::SeqCst), 2);
        let expected: Vec<String> = (1..=10).map(|id| format!("CallRecorded:{id}")).collect();
        assert_eq!(publisher.bus.ids(), expected, "still in order");
    }

    #[tokio::test]
    async fn an_event_no_request_can_carry_is_described_and_the_batch_goes_on() {
        let publisher = publisher();
        let changes = [
            inserted(1, 1),
            large(2, 2, PUT_EVENTS_MAX_BYTES),
            inserted(3, 3),
        ];
        let report = publisher.publish(&changes).await;
        assert_eq!((report.published, report.failed_at.as_deref()), (2, None));
        assert_eq!(publisher.bus.ids(), ["CallRecorded:1", "CallRecorded:3"]);
        let described = publisher.failures.described.lock().unwrap();
        assert_eq!(described.len(), 1);
        assert_eq!(described[0].0, "CallRecorded:2");
        assert!(described[0].1.contains("bytes"), "{}", described[0].1);
    }

    #[tokio::test]
    async fn refused_entries_are_put_again() {
        let publisher = publisher();
        publisher.bus.refuse_entries.store(2, Ordering::SeqCst);
        let changes: Vec<_> = (0..5).map(|i| inserted(i, i64::from(i) + 1)).collect();
        let report = publisher.publish(&changes).await;
        assert_eq!((report.published, report.retried), (5, 2));
        assert_eq!(report.failed_at, None);
        let mut ids = publisher.bus.ids();
        ids.sort();
        assert_eq!(ids.len(), 5);
    }

    #[tokio::test]
    async fn an_event_still_refused_names_its_record_and_nothing_after_it_is_put() {
        let publisher = publisher();
        // Every put of the second chunk fails: records 10.. are not done.
        let changes: Vec<_> = (0..25)
            .map(|i| inserted(100 + i, i64::from(i) + 1))
            .collect();
        let report = {
            let first = publisher.publish(&changes[..10]).await;
            assert_eq!(first.failed_at, None);
            publisher.bus.fail_next.store(3, Ordering::SeqCst);
            publisher.publish(&changes[10..]).await
        };
        assert_eq!(report.failed_at.as_deref(), Some("110"));
        assert_eq!(publisher.bus.ids().len(), 10);
        let response = report.response();
        assert_eq!(
            response.batch_item_failures[0].item_identifier.as_deref(),
            Some("110")
        );
    }

    #[tokio::test]
    async fn an_unreadable_record_stops_the_batch_there() {
        let publisher = publisher();
        let mut changes: Vec<_> = (0..4).map(|i| inserted(i, i64::from(i) + 1)).collect();
        changes[2].change = Err(RecordError::EventName("TRUNCATE".into()));
        let report = publisher.publish(&changes).await;
        assert_eq!(report.failed_at.as_deref(), Some("2"));
        assert_eq!(publisher.bus.ids(), ["CallRecorded:1", "CallRecorded:2"]);
    }

    #[tokio::test]
    async fn a_retried_batch_publishes_the_same_ids() {
        let publisher = publisher();
        let changes: Vec<_> = (0..3).map(|i| inserted(i, i64::from(i) + 1)).collect();
        publisher.publish(&changes).await;
        publisher.publish(&changes).await;
        let ids = publisher.bus.ids();
        let unique: std::collections::BTreeSet<_> = ids.iter().collect();
        assert_eq!((ids.len(), unique.len()), (6, 3));
    }

    #[test]
    fn a_lambda_stream_record_is_read_with_its_images() {
        let event: StreamEvent = serde_json::from_value(json!({"Records": [{
            "eventID": "1", "eventName": "MODIFY", "eventVersion": "1.1",
            "eventSource": "aws:dynamodb", "awsRegion": "us-east-1",
            "dynamodb": {
                "ApproximateCreationDateTime": 1764460800.0,
                "Keys": {"id": {"N": "45"}},
                "OldImage": {"id": {"N": "45"}, "recordingStatus": {"S": "PENDING"}},
                "NewImage": {"id": {"N": "45"}, "recordingStatus": {"S": "ARCHIVED"},
                             "archivedAt": {"S": "2026-11-30T00:00:00Z"}},
                "SequenceNumber": "111", "SizeBytes": 26, "StreamViewType": "NEW_AND_OLD_IMAGES"
            }
        }]}))
        .unwrap();
        let change = StreamChange::read(event.records.into_iter().next().unwrap());
        assert_eq!(change.sequence, "111");
        let changed = change.change.unwrap();
        assert_eq!(changed.change, Change::Modify);
        assert_eq!(changed.new.unwrap()["id"], 45);
        assert_eq!(changed.old.unwrap()["recordingStatus"], "PENDING");
    }
}
