//! The local stand-in for the lake's Firehose stream: the lake rule delivers every event to a
//! queue, and this writes them, as Firehose would, under `analytics/events/day=YYYY-MM-DD/` in
//! the bucket. Locally the files are JSON lines (one EventBridge event per line), which
//! `pnsctl report` reads with the Glue table's columns; on AWS, Firehose writes Parquet
//! against that table and Athena reads it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_sdk_sqs::types::DeleteMessageBatchRequestEntry;
use pns_cdr::domain::recording::LAKE_PREFIX;
use tracing::warn;

/// Drains the lake queue into the bucket until the task is aborted.
pub async fn deliver(
    sqs: aws_sdk_sqs::Client,
    s3: aws_sdk_s3::Client,
    queue_url: String,
    bucket: String,
) {
    loop {
        if let Err(e) = deliver_once(&sqs, &s3, &queue_url, &bucket).await {
            warn!(error = %e, "delivering events to the lake failed");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// One receive → write → delete round; returns how many events it wrote.
pub async fn deliver_once(
    sqs: &aws_sdk_sqs::Client,
    s3: &aws_sdk_s3::Client,
    queue_url: &str,
    bucket: &str,
) -> Result<usize, String> {
    static FILE: AtomicU64 = AtomicU64::new(0);
    let messages = sqs
        .receive_message()
        .queue_url(queue_url)
        .max_number_of_messages(10)
        .wait_time_seconds(1)
        .send()
        .await
        .map_err(|e| aws_sdk_sqs::error::DisplayErrorContext(e).to_string())?
        .messages
        .unwrap_or_default();
    if messages.is_empty() {
        return Ok(0);
    }
    // One file per round under the day it arrived (UTC), as Firehose's `!{timestamp:...}`
    // prefix names the day a record reached the stream, not the event's own time.
    let day = time::OffsetDateTime::now_utc().date();
    let mut lines = String::new();
    for message in &messages {
        lines.push_str(message.body().unwrap_or_default());
        lines.push('\n');
    }
    let key = format!(
        "{LAKE_PREFIX}day={day}/local-{}-{}.json",
        std::process::id(),
        FILE.fetch_add(1, Ordering::Relaxed)
    );
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .content_type("application/x-ndjson")
        .body(lines.into_bytes().into())
        .send()
        .await
        .map_err(|e| aws_sdk_s3::error::DisplayErrorContext(e).to_string())?;
    let entries = messages
        .iter()
        .enumerate()
        .map(|(i, m)| {
            DeleteMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .receipt_handle(m.receipt_handle().unwrap_or_default())
                .build()
                .expect("complete")
        })
        .collect();
    sqs.delete_message_batch()
        .queue_url(queue_url)
        .set_entries(Some(entries))
        .send()
        .await
        .map_err(|e| aws_sdk_sqs::error::DisplayErrorContext(e).to_string())?;
    Ok(messages.len())
}
