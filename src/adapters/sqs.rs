//! The recording job queue and its dead-letter queue over SQS.

use aws_sdk_sqs::Client;

use crate::config::QueueRef;
use crate::domain::events::Event;
use crate::domain::recording::RecordingJob;
use crate::ports::{DeadLetter, DeadLetters, EventFailures, JobQueue, PortError};

/// The URL of a queue given by URL or by name (looked up).
pub async fn queue_url(client: &Client, queue: &QueueRef) -> Result<String, PortError> {
    match queue {
        QueueRef::Url(url) => Ok(url.clone()),
        QueueRef::Name(name) => client
            .get_queue_url()
            .queue_name(name)
            .send()
            .await
            .map_err(|e| PortError::new("GetQueueUrl", e))?
            .queue_url
            .ok_or_else(|| PortError::new("GetQueueUrl", "no queue URL in the answer")),
    }
}

/// The `pns-recordings` queue.
#[derive(Clone, Debug)]
pub struct SqsJobQueue {
    client: Client,
    queue_url: String,
}

impl SqsJobQueue {
    pub fn new(client: Client, queue_url: impl Into<String>) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
        }
    }
}

impl JobQueue for SqsJobQueue {
    async fn send(&self, job: &RecordingJob) -> Result<(), PortError> {
        let body = serde_json::to_string(job).expect("a job serialises");
        self.send_raw(&body).await
    }

    async fn send_raw(&self, body: &str) -> Result<(), PortError> {
        self.client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .send()
            .await
            .map_err(|e| PortError::new("SendMessage", e))?;
        Ok(())
    }

    async fn retry_later(&self, receipt_handle: &str, delay_seconds: u32) -> Result<(), PortError> {
        self.client
            .change_message_visibility()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt_handle)
            .visibility_timeout(delay_seconds.min(43_200) as i32)
            .send()
            .await
            .map_err(|e| PortError::new("ChangeMessageVisibility", e))?;
        Ok(())
    }
}

/// The `pns-recordings-dlq` queue.
#[derive(Clone, Debug)]
pub struct SqsDeadLetters {
    client: Client,
    queue_url: String,
}

impl SqsDeadLetters {
    pub fn new(client: Client, queue_url: impl Into<String>) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
        }
    }
}

impl DeadLetters for SqsDeadLetters {
    async fn receive(&self, max: usize) -> Result<Vec<DeadLetter>, PortError> {
        let out = self
            .client
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(max.clamp(1, 10) as i32)
            .wait_time_seconds(1)
            .send()
            .await
            .map_err(|e| PortError::new("ReceiveMessage", e))?;
        Ok(out
            .messages
            .unwrap_or_default()
            .into_iter()
            .filter_map(|m| {
                Some(DeadLetter {
                    body: m.body?,
                    receipt_handle: m.receipt_handle?,
                })
            })
            .collect())
    }

    async fn delete(&self, receipt_handle: &str) -> Result<(), PortError> {
        self.client
            .delete_message()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt_handle)
            .send()
            .await
            .map_err(|e| PortError::new("DeleteMessage", e))?;
        Ok(())
    }
}

/// The publisher's failure queue, where the stream mappings also describe the batches they
/// give up on: an event no `PutEvents` can carry is described there by the publisher.
#[derive(Clone, Debug)]
pub struct SqsEventFailures {
    client: Client,
    queue_url: String,
}

impl SqsEventFailures {
    pub fn new(client: Client, queue_url: impl Into<String>) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
        }
    }
}

impl EventFailures for SqsEventFailures {
    async fn describe(&self, event: &Event, reason: &str) -> Result<(), PortError> {
        // The event's identity, not the event: it is too large, and its item is in its table.
        let body = serde_json::json!({
            "reason": reason,
            "eventId": event.id,
            "detailType": event.detail_type.as_str(),
            "time": event.time,
        });
        self.client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body.to_string())
            .send()
            .await
            .map_err(|e| PortError::new("SendMessage", e))?;
        Ok(())
    }
}
