//! Operator tools behind `pnsctl`: redrive the DLQ, re-archive a record, show records, replay a
//! saved push body. The same calls work against AWS and against the local stack's emulator.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_s3::operation::get_object::GetObjectError;
use serde::Deserialize;
use serde_json::Value;
use time::OffsetDateTime;
use tracing::{info, warn};

use crate::adapters::aws::AwsClients;
use crate::config::{DEFAULT_BUCKET, DEFAULT_QUEUE, DEFAULT_TABLE};
use crate::domain::item::{CALL_ID_INDEX, PENDING_ATTRIBUTE};
use crate::domain::recording::{recording_key, RecordingJob, RecordingStatus};
use crate::ports::PortError;

/// How long a replayed push may take before we give up on the endpoint.
const REPLAY_TIMEOUT: Duration = Duration::from_secs(30);
/// Messages `pnsctl redrive` moves unless told otherwise.
pub const DEFAULT_REDRIVE_MAX: usize = 1000;

#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    #[error("record {0} not found")]
    NotFound(i64),
    #[error("record {0} has no recording to archive")]
    NoRecording(i64),
    #[error("record {0} changed while it was being re-archived; run the command again")]
    Changed(i64),
    #[error("record {id} is PENDING again but its job was not queued; run rearchive again")]
    NotQueued {
        id: i64,
        #[source]
        source: PortError,
    },
    #[error("redrive stopped after moving {moved} messages")]
    RedriveStopped {
        moved: usize,
        #[source]
        source: PortError,
    },
    #[error("object {0} not found in the bucket")]
    ObjectNotFound(String),
    #[error("cannot read {}", path.display())]
    ReadFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Carries no URL: the one given contains the webhook token.
    #[error("invalid endpoint URL: expected http(s)://host/path?token=...")]
    InvalidEndpoint,
    #[error("POST to {endpoint} failed")]
    Http {
        /// Without its query string.
        endpoint: String,
        #[source]
        source: reqwest::Error,
    },
    #[error(transparent)]
    Aws(#[from] PortError),
}

pub type Result<T, E = OpsError> = std::result::Result<T, E>;

/// A queue given by URL, or by name and looked up when first needed (the local stack's way).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueRef {
    Url(String),
    Name(String),
}

/// Where the tools act, read from the environment (`lookup` is `std::env::var` in the binary).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpsConfig {
    /// `AWS_ENDPOINT_URL`: the emulator; `None` for AWS.
    pub endpoint_url: Option<String>,
    pub table: String,
    pub queue: QueueRef,
    pub dead_letter_queue: QueueRef,
    pub bucket: String,
}

impl OpsConfig {
    /// `PNS_TABLE_NAME`, `PNS_QUEUE_URL`, `PNS_DLQ_URL`, `PNS_BUCKET_NAME`, `AWS_ENDPOINT_URL`;
    /// a queue URL left unset is looked up from `PNS_QUEUE_NAME` (and `<name>-dlq`).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let queue_name = get("PNS_QUEUE_NAME").unwrap_or_else(|| DEFAULT_QUEUE.into());
        Self {
            endpoint_url: get("AWS_ENDPOINT_URL"),
            table: get("PNS_TABLE_NAME").unwrap_or_else(|| DEFAULT_TABLE.into()),
            queue: get("PNS_QUEUE_URL")
                .map_or_else(|| QueueRef::Name(queue_name.clone()), QueueRef::Url),
            dead_letter_queue: get("PNS_DLQ_URL").map_or_else(
                || QueueRef::Name(format!("{queue_name}-dlq")),
                QueueRef::Url,
            ),
            bucket: get("PNS_BUCKET_NAME").unwrap_or_else(|| DEFAULT_BUCKET.into()),
        }
    }
}

/// Where a push body to replay comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodySource {
    File(PathBuf),
    /// A key in the bucket, e.g. `rejected/<sha>.json` or `conflicts/<id>/<sha>.json`.
    S3Key(String),
}

/// The endpoint's answer to a replayed push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replayed {
    pub status: u16,
    pub body: String,
}

/// The fields re-archiving needs from a stored item.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct RecordingFields {
    record_file: Option<String>,
    recording_key: Option<String>,
    start_at: Option<i64>,
    received_at_epoch: Option<i64>,
}

/// The operator tools over one deployment (or the local stack).
#[derive(Debug, Clone)]
pub struct Ops {
    pub clients: AwsClients,
    pub table: String,
    pub queue: QueueRef,
    pub dead_letter_queue: QueueRef,
    pub bucket: String,
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

fn record_key(id: i64) -> AttributeValue {
    AttributeValue::N(id.to_string())
}

fn to_json(
    operation: &'static str,
    item: std::collections::HashMap<String, AttributeValue>,
) -> Result<Value> {
    serde_dynamo::from_item(item).map_err(|e| PortError::new(operation, e).into())
}

impl Ops {
    pub fn new(clients: AwsClients, config: OpsConfig) -> Self {
        Self {
            clients,
            table: config.table,
            queue: config.queue,
            dead_letter_queue: config.dead_letter_queue,
            bucket: config.bucket,
        }
    }

    /// Builds the SDK clients for `config` (the emulator when `endpoint_url` is set).
    pub async fn connect(config: OpsConfig) -> Self {
        let clients = AwsClients::load(config.endpoint_url.as_deref()).await;
        Self::new(clients, config)
    }

    /// The URL of `queue`, looked up by name when only the name is known.
    pub async fn queue_url(&self, queue: &QueueRef) -> Result<String> {
        match queue {
            QueueRef::Url(url) => Ok(url.clone()),
            QueueRef::Name(name) => {
                let out = self
                    .clients
                    .sqs
                    .get_queue_url()
                    .queue_name(name)
                    .send()
                    .await
                    .map_err(|e| PortError::new("GetQueueUrl", e))?;
                out.queue_url.ok_or_else(|| {
                    PortError::new("GetQueueUrl", "no queue URL in the answer").into()
                })
            }
        }
    }

    /// Moves up to `max` messages from the DLQ back to the queue; returns how many moved.
    /// Each message is deleted from the DLQ only after the queue accepted its copy, so a failure
    /// can at worst duplicate a job (the archiver is idempotent), never lose one.
    pub async fn redrive(&self, max: usize) -> Result<usize> {
        let queue_url = self.queue_url(&self.queue).await?;
        let dlq_url = self.queue_url(&self.dead_letter_queue).await?;
        let sqs = &self.clients.sqs;
        let mut moved = 0;
        let stopped = |moved, source| OpsError::RedriveStopped { moved, source };
        while moved < max {
            let out = sqs
                .receive_message()
                .queue_url(&dlq_url)
                .max_number_of_messages((max - moved).min(10) as i32)
                .wait_time_seconds(1)
                .send()
                .await
                .map_err(|e| stopped(moved, PortError::new("ReceiveMessage", e)))?;
            let messages = out.messages.unwrap_or_default();
            if messages.is_empty() {
                break;
            }
            // A message left unsent here becomes visible again in the DLQ after its timeout.
            for message in messages {
                let (Some(body), Some(receipt)) = (message.body(), message.receipt_handle()) else {
                    continue;
                };
                sqs.send_message()
                    .queue_url(&queue_url)
                    .message_body(body)
                    .send()
                    .await
                    .map_err(|e| stopped(moved, PortError::new("SendMessage", e)))?;
                sqs.delete_message()
                    .queue_url(&dlq_url)
                    .receipt_handle(receipt)
                    .send()
                    .await
                    .map_err(|e| stopped(moved, PortError::new("DeleteMessage", e)))?;
                moved += 1;
            }
        }
        info!(
            outcome = "redriven",
            moved, "dead letters moved back to the queue"
        );
        Ok(moved)
    }

    /// Puts a record's recording back to PENDING and queues its job. Works from FAILED and
    /// ARCHIVED alike (the operator's explicit choice); a record the webhook refused has no key
    /// yet, so it gets the one the webhook would have given it.
    pub async fn rearchive(&self, id: i64) -> Result<RecordingJob> {
        // Resolved first: a wrong queue should fail before the record changes.
        let queue_url = self.queue_url(&self.queue).await?;
        let item = self.raw_item(id).await?;
        let fields: RecordingFields =
            serde_dynamo::from_item(item).map_err(|e| PortError::new("GetItem", e))?;
        let url = fields
            .record_file
            .as_deref()
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .ok_or(OpsError::NoRecording(id))?
            .to_owned();
        let key = match fields.recording_key {
            Some(key) => key,
            None => {
                let received_at = fields
                    .received_at_epoch
                    .and_then(|t| OffsetDateTime::from_unix_timestamp(t).ok())
                    .unwrap_or_else(OffsetDateTime::now_utc);
                recording_key(id, fields.start_at, received_at, &url)
            }
        };

        // The condition pins what was read, so the job we queue matches the stored record.
        let pending = s(RecordingStatus::Pending.as_str());
        let result = self
            .clients
            .dynamodb
            .update_item()
            .table_name(&self.table)
            .key("id", record_key(id))
            .update_expression(
                "SET recordingStatus = :pending, #pending = :pending, recordingKey = :key \
                 REMOVE recordingError, failedAt, recordingAttempts, lastAttemptAt",
            )
            .condition_expression(
                "attribute_exists(id) AND recordFile = :url \
                 AND (attribute_not_exists(recordingKey) OR recordingKey = :key)",
            )
            .expression_attribute_names("#pending", PENDING_ATTRIBUTE)
            .expression_attribute_values(":pending", pending)
            .expression_attribute_values(":key", s(&key))
            .expression_attribute_values(
                ":url",
                s(fields.record_file.as_deref().unwrap_or_default()),
            )
            .send()
            .await;
        match result {
            Ok(_) => {}
            Err(SdkError::ServiceError(e))
                if matches!(e.err(), UpdateItemError::ConditionalCheckFailedException(_)) =>
            {
                return Err(OpsError::Changed(id));
            }
            Err(e) => return Err(PortError::new("UpdateItem(rearchive)", e).into()),
        }

        let job = RecordingJob { id, url, key };
        let body = serde_json::to_string(&job).expect("a job serialises");
        if let Err(e) = self
            .clients
            .sqs
            .send_message()
            .queue_url(queue_url)
            .message_body(body)
            .send()
            .await
        {
            let source = PortError::new("SendMessage", e);
            warn!(id, outcome = "not_queued", error = %source, "record is PENDING without a job");
            return Err(OpsError::NotQueued { id, source });
        }
        info!(id, key = %job.key, outcome = "requeued", "recording re-archive queued");
        Ok(job)
    }

    /// The item of record `id` as DynamoDB returns it (consistent read).
    async fn raw_item(&self, id: i64) -> Result<HashMap<String, AttributeValue>> {
        let item = self
            .clients
            .dynamodb
            .get_item()
            .table_name(&self.table)
            .key("id", record_key(id))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| PortError::new("GetItem", e))?
            .item
            .ok_or(OpsError::NotFound(id))?;
        Ok(item)
    }

    /// The stored item of record `id`.
    pub async fn show(&self, id: i64) -> Result<Value> {
        let item = self.raw_item(id).await?;
        to_json("GetItem", item)
    }

    /// Every stored item with NXCLOUD `callId` `call_id` (through the `callIdLookup` index).
    pub async fn show_call(&self, call_id: &str) -> Result<Vec<Value>> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .clients
                .dynamodb
                .query()
                .table_name(&self.table)
                .index_name(CALL_ID_INDEX)
                .key_condition_expression("callId = :call_id")
                .expression_attribute_values(":call_id", s(call_id))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| PortError::new("Query(callIdLookup)", e))?;
            for item in page.items.unwrap_or_default() {
                items.push(to_json("Query(callIdLookup)", item)?);
            }
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => break,
            }
        }
        items.sort_by_key(|i| i["id"].as_i64());
        Ok(items)
    }

    /// POSTs a saved push body to `endpoint` (the webhook URL with its `?token=`), as NXCLOUD
    /// would, and returns the answer. The endpoint never reaches logs or errors with its token.
    pub async fn replay(&self, endpoint: &str, source: &BodySource) -> Result<Replayed> {
        let parsed = url::Url::parse(endpoint).map_err(|_| OpsError::InvalidEndpoint)?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(OpsError::InvalidEndpoint);
        }
        let shown = redact_url(endpoint);
        let body = self.body(source).await?;
        let bytes = body.len();
        let http_error = |e: reqwest::Error| OpsError::Http {
            endpoint: shown.clone(),
            source: e.without_url(),
        };
        let response = reqwest::Client::builder()
            .timeout(REPLAY_TIMEOUT)
            .build()
            .map_err(http_error)?
            .post(parsed)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(http_error)?;
        let status = response.status().as_u16();
        let body = response.text().await.map_err(http_error)?;
        info!(endpoint = %shown, bytes, status, outcome = "replayed", "push body replayed");
        Ok(Replayed { status, body })
    }

    async fn body(&self, source: &BodySource) -> Result<Vec<u8>> {
        match source {
            BodySource::File(path) => {
                tokio::fs::read(path)
                    .await
                    .map_err(|source| OpsError::ReadFile {
                        path: path.clone(),
                        source,
                    })
            }
            BodySource::S3Key(key) => {
                let out = match self
                    .clients
                    .s3
                    .get_object()
                    .bucket(&self.bucket)
                    .key(key)
                    .send()
                    .await
                {
                    Ok(out) => out,
                    Err(aws_sdk_s3::error::SdkError::ServiceError(e))
                        if matches!(e.err(), GetObjectError::NoSuchKey(_)) =>
                    {
                        return Err(OpsError::ObjectNotFound(key.clone()))
                    }
                    Err(e) => return Err(PortError::new("GetObject", e).into()),
                };
                let body = out
                    .body
                    .collect()
                    .await
                    .map_err(|e| PortError::new("GetObject", e))?;
                Ok(body.into_bytes().to_vec())
            }
        }
    }
}

/// `url` without its query string, fragment and credentials: safe to print and log.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            u.set_query(None);
            u.set_fragment(None);
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.to_string()
        }
        Err(_) => "<invalid URL>".into(),
    }
}
