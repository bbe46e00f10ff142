//! The recording job queue over SQS.

use aws_sdk_sqs::Client;

use crate::domain::recording::RecordingJob;
use crate::ports::{JobQueue, PortError};

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
