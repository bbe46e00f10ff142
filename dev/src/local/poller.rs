//! Drains the recording queue the way Lambda's SQS event source does: batches of up to 10,
//! the same `Archiver::handle_batch`, delete what succeeded, leave the reported failures to
//! become visible again (and to be dead-lettered by the queue's redrive policy).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, MessageSystemAttributeName};
use tracing::warn;

use pns_cdr::handlers::archiver::Archiver;
use pns_cdr::ports::{JobQueue, ObjectStore, RecordStore, RecordingSource};

/// The function timeout the local stack simulates by default (as in `template.yaml`).
pub const FUNCTION_TIMEOUT: Duration = Duration::from_secs(120);

/// Polls until the task is aborted.
pub async fn drain<S, Q, O, R>(
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    archiver: Arc<Archiver<S, Q, O, R>>,
    function_timeout: Duration,
) where
    S: RecordStore,
    Q: JobQueue,
    O: ObjectStore,
    R: RecordingSource,
{
    loop {
        match poll_once(&sqs, &queue_url, &archiver, function_timeout).await {
            Ok(_) => {}
            Err(e) => {
                warn!(error = %e, "polling the recording queue failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Starts `count` pollers (at least one) on the queue, as Lambda runs several archivers at
/// once; each runs until its task is aborted.
pub fn spawn_drains<S, Q, O, R>(
    count: usize,
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    archiver: &Arc<Archiver<S, Q, O, R>>,
    function_timeout: Duration,
) -> Vec<tokio::task::JoinHandle<()>>
where
    S: RecordStore + 'static,
    Q: JobQueue + 'static,
    O: ObjectStore + 'static,
    R: RecordingSource + 'static,
{
    (0..count.max(1))
        .map(|_| {
            tokio::spawn(drain(
                sqs.clone(),
                queue_url.to_owned(),
                archiver.clone(),
                function_timeout,
            ))
        })
        .collect()
}

/// One receive + invoke + delete round; returns how many messages were received.
pub async fn poll_once<S, Q, O, R>(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    archiver: &Archiver<S, Q, O, R>,
    function_timeout: Duration,
) -> Result<usize, aws_sdk_sqs::Error>
where
    S: RecordStore,
    Q: JobQueue,
    O: ObjectStore,
    R: RecordingSource,
{
    let received = sqs
        .receive_message()
        .queue_url(queue_url)
        .max_number_of_messages(10)
        .wait_time_seconds(1)
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .send()
        .await?;
    let messages = received.messages.unwrap_or_default();
    if messages.is_empty() {
        return Ok(0);
    }
    let mut event = SqsEvent::default();
    for m in &messages {
        let mut record = SqsMessage::default();
        record.message_id = m.message_id.clone();
        record.receipt_handle = m.receipt_handle.clone();
        record.body = m.body.clone();
        record.md5_of_body = m.md5_of_body.clone();
        record.event_source = Some("aws:sqs".into());
        record.attributes = m
            .attributes
            .iter()
            .flatten()
            .map(|(k, v)| (k.as_str().to_owned(), v.clone()))
            .collect();
        event.records.push(record);
    }
    let response = archiver
        .handle_batch(event, Some(SystemTime::now() + function_timeout))
        .await;
    let failed: Vec<&str> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    let entries: Vec<_> = messages
        .iter()
        .filter(|m| !failed.contains(&m.message_id.as_deref().unwrap_or_default()))
        .enumerate()
        .map(|(i, m)| {
            DeleteMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .receipt_handle(m.receipt_handle.clone().unwrap_or_default())
                .build()
                .expect("complete entry")
        })
        .collect();
    if !entries.is_empty() {
        sqs.delete_message_batch()
            .queue_url(queue_url)
            .set_entries(Some(entries))
            .send()
            .await?;
    }
    Ok(messages.len())
}
