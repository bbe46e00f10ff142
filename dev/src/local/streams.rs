//! Reads a table's stream the way Lambda's DynamoDB event source does for the publisher:
//! batches in shard order, handed to the same `Publisher::handle` as a Lambda event; a
//! partial batch failure is retried from the record it names, and after the mapping's
//! `MaximumRetryAttempts` the batch is described in the on-failure queue and skipped.

use std::collections::HashMap;
use std::time::Duration;

use aws_lambda_events::event::dynamodb::Event as StreamEvent;
use aws_sdk_dynamodbstreams::types::{Record, ShardIteratorType};
use pns_cdr::handlers::publisher::Publisher;
use pns_cdr::ports::{EventBus, EventFailures};
use serde_json::{json, Value};
use tracing::warn;

/// How the local mapping behaves (the template's values for `PublisherCallsStream`).
#[derive(Debug, Clone)]
pub struct Mapping {
    pub stream_arn: String,
    pub batch_size: i32,
    pub max_retries: u32,
    /// The wait between retries of a failed batch, and between empty polls.
    pub pause: Duration,
    pub failure_queue_url: String,
}

/// A batch of stream records as Lambda's event.
pub fn lambda_event(stream_arn: &str, records: &[Record]) -> StreamEvent {
    let records: Vec<Value> = records
        .iter()
        .map(|r| {
            let change = r.dynamodb();
            let image = |image: Option<
                &HashMap<String, aws_sdk_dynamodbstreams::types::AttributeValue>,
            >| {
                image.map(|i| {
                    serde_json::to_value(serde_dynamo::Item::from(i.clone()))
                        .expect("an item is JSON")
                })
            };
            let mut dynamodb = json!({
                "ApproximateCreationDateTime": change
                    .and_then(|c| c.approximate_creation_date_time())
                    .map_or(0.0, |t| t.as_secs_f64()),
                "Keys": image(change.and_then(|c| c.keys.as_ref())),
                "SequenceNumber": change.and_then(|c| c.sequence_number()),
                "SizeBytes": change.and_then(|c| c.size_bytes()).unwrap_or_default(),
                "StreamViewType": "NEW_AND_OLD_IMAGES",
            });
            for (name, value) in [
                ("NewImage", image(change.and_then(|c| c.new_image.as_ref()))),
                ("OldImage", image(change.and_then(|c| c.old_image.as_ref()))),
            ] {
                if let Some(value) = value {
                    dynamodb[name] = value;
                }
            }
            json!({
                "eventID": r.event_id(),
                "eventName": r.event_name().map(|n| n.as_str()),
                "eventSource": "aws:dynamodb",
                "eventVersion": "1.1",
                "awsRegion": "us-east-1",
                "eventSourceARN": stream_arn,
                "dynamodb": dynamodb,
            })
        })
        .collect();
    serde_json::from_value(json!({ "Records": records })).expect("a Lambda stream event")
}

/// Reads the stream from its start until the task is aborted.
pub async fn drain<B: EventBus, F: EventFailures>(
    streams: aws_sdk_dynamodbstreams::Client,
    sqs: aws_sdk_sqs::Client,
    publisher: std::sync::Arc<Publisher<B, F>>,
    mapping: Mapping,
) {
    loop {
        if let Err(e) = drain_shards(&streams, &sqs, &publisher, &mapping).await {
            warn!(error = %e, stream = %mapping.stream_arn, "reading the stream failed");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

async fn drain_shards<B: EventBus, F: EventFailures>(
    streams: &aws_sdk_dynamodbstreams::Client,
    sqs: &aws_sdk_sqs::Client,
    publisher: &Publisher<B, F>,
    mapping: &Mapping,
) -> Result<(), String> {
    let shards = streams
        .describe_stream()
        .stream_arn(&mapping.stream_arn)
        .send()
        .await
        .map_err(|e| aws_sdk_dynamodbstreams::error::DisplayErrorContext(e).to_string())?
        .stream_description
        .and_then(|d| d.shards)
        .unwrap_or_default();
    // The emulator keeps one shard per table; on AWS, Lambda reads each shard in order.
    let Some(shard) = shards.first().and_then(|s| s.shard_id.clone()) else {
        tokio::time::sleep(mapping.pause).await;
        return Ok(());
    };
    let mut iterator = streams
        .get_shard_iterator()
        .stream_arn(&mapping.stream_arn)
        .shard_id(&shard)
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await
        .map_err(|e| aws_sdk_dynamodbstreams::error::DisplayErrorContext(e).to_string())?
        .shard_iterator
        .ok_or("no shard iterator")?;
    loop {
        let out = streams
            .get_records()
            .shard_iterator(&iterator)
            .limit(mapping.batch_size)
            .send()
            .await
            .map_err(|e| aws_sdk_dynamodbstreams::error::DisplayErrorContext(e).to_string())?;
        let records = out.records.unwrap_or_default();
        if records.is_empty() {
            tokio::time::sleep(mapping.pause).await;
        } else {
            publish_batch(sqs, publisher, mapping, &shard, &records).await;
        }
        match out.next_shard_iterator {
            Some(next) => iterator = next,
            None => return Ok(()), // the shard is closed
        }
    }
}

/// Hands one batch to the publisher as Lambda would, retrying from the failed record.
async fn publish_batch<B: EventBus, F: EventFailures>(
    sqs: &aws_sdk_sqs::Client,
    publisher: &Publisher<B, F>,
    mapping: &Mapping,
    shard: &str,
    records: &[Record],
) {
    let mut from = 0;
    for attempt in 0..=mapping.max_retries {
        let response = publisher
            .handle(lambda_event(&mapping.stream_arn, &records[from..]))
            .await;
        let Some(failed) = response
            .batch_item_failures
            .first()
            .and_then(|f| f.item_identifier.clone())
        else {
            return;
        };
        from += records[from..]
            .iter()
            .position(|r| r.dynamodb().and_then(|d| d.sequence_number()) == Some(failed.as_str()))
            .unwrap_or(0);
        if attempt < mapping.max_retries {
            tokio::time::sleep(mapping.pause).await;
        }
    }
    // Retries exhausted: describe the batch where Lambda would, and move on.
    let sequence = |r: Option<&Record>| {
        r.and_then(|r| r.dynamodb()?.sequence_number.clone())
            .unwrap_or_default()
    };
    let description = json!({
        "requestContext": {"condition": "RetryAttemptsExhausted",
                           "approximateInvokeCount": mapping.max_retries + 1},
        "DDBStreamBatchInfo": {
            "shardId": shard,
            "startSequenceNumber": sequence(records.get(from)),
            "endSequenceNumber": sequence(records.last()),
            "batchSize": records.len() - from,
            "streamArn": mapping.stream_arn,
        },
    });
    warn!(stream = %mapping.stream_arn, "stream batch given up; described in the failure queue");
    let sent = sqs
        .send_message()
        .queue_url(&mapping.failure_queue_url)
        .message_body(description.to_string())
        .send()
        .await;
    if let Err(e) = sent {
        warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(e), "could not describe a failed batch");
    }
}
