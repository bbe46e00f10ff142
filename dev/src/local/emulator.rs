//! The embedded AWS emulator (moto's server, from the project virtualenv) and the resources
//! the stack needs in it.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType,
};
use aws_sdk_sqs::types::QueueAttributeName;

use pns_cdr::adapters::aws::AwsClients;
use pns_cdr::domain::binding::DID_INDEX;
use pns_cdr::domain::item::{BUSINESS_INDEX, CALL_ID_INDEX, PENDING_ATTRIBUTE, PENDING_INDEX};

/// Receives before a job goes to the dead-letter queue (the template uses the same).
pub const MAX_RECEIVE_COUNT: u32 = pns_cdr::domain::recording::MAX_DELIVERIES;

#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    #[error("cannot start the AWS emulator with {python}: {source} (run `make venv` first)")]
    Spawn {
        python: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the AWS emulator exited before it was ready")]
    NotReady,
    #[error("creating {what} in the emulator failed: {message}")]
    Setup { what: &'static str, message: String },
}

/// A running emulator process. It exits when this handle is dropped, and also when this
/// process dies: its stdin is a pipe from us, and it stops at end-of-file.
pub struct Emulator {
    child: Child,
    pub endpoint: String,
}

impl Emulator {
    /// Starts moto's server on `127.0.0.1:port` (0 = any free port).
    pub fn start(port: u16) -> Result<Self, EmulatorError> {
        let python = std::env::var("PNS_EMULATOR_PYTHON")
            .map(PathBuf::from)
            .unwrap_or_else(|_| crate::repo_root().join(".venv/bin/python"));
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/emulator.py");
        let mut child = Command::new(&python)
            .arg(script)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|source| EmulatorError::Spawn {
                python: python.display().to_string(),
                source,
            })?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut lines = BufReader::new(stdout).lines();
        let endpoint = loop {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(url) = line.strip_prefix("READY ") {
                        break url.trim().to_owned();
                    }
                }
                _ => {
                    let _ = child.kill();
                    return Err(EmulatorError::NotReady);
                }
            }
        };
        Ok(Self { child, endpoint })
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Names of the stack's resources.
#[derive(Debug, Clone)]
pub struct ResourceNames {
    pub table: String,
    pub binding_errors_table: String,
    pub queue: String,
    pub dead_letter_queue: String,
    pub bucket: String,
}

impl Default for ResourceNames {
    fn default() -> Self {
        use pns_cdr::config::{
            DEFAULT_BINDING_ERRORS_TABLE, DEFAULT_BUCKET, DEFAULT_DLQ, DEFAULT_QUEUE, DEFAULT_TABLE,
        };
        Self {
            table: DEFAULT_TABLE.into(),
            binding_errors_table: DEFAULT_BINDING_ERRORS_TABLE.into(),
            queue: DEFAULT_QUEUE.into(),
            dead_letter_queue: DEFAULT_DLQ.into(),
            bucket: DEFAULT_BUCKET.into(),
        }
    }
}

impl ResourceNames {
    /// Names with a suffix, so tests can share one emulator without seeing each other.
    pub fn suffixed(suffix: &str) -> Self {
        let d = Self::default();
        Self {
            table: format!("{}-{suffix}", d.table),
            binding_errors_table: format!("{}-{suffix}", d.binding_errors_table),
            queue: format!("{}-{suffix}", d.queue),
            dead_letter_queue: format!("{}-{suffix}-dlq", d.queue),
            bucket: format!("{}-{suffix}", d.bucket),
        }
    }
}

/// Queue URLs of the created queues.
#[derive(Debug, Clone)]
pub struct Queues {
    pub queue_url: String,
    pub dead_letter_queue_url: String,
}

fn attribute(name: &str, kind: ScalarAttributeType) -> AttributeDefinition {
    AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(kind)
        .build()
        .expect("complete")
}

fn key(name: &str, kind: KeyType) -> KeySchemaElement {
    KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(kind)
        .build()
        .expect("complete")
}

fn index(
    name: &str,
    hash: &str,
    range: Option<&str>,
    projection: Projection,
) -> GlobalSecondaryIndex {
    let mut schema = vec![key(hash, KeyType::Hash)];
    schema.extend(range.map(|r| key(r, KeyType::Range)));
    GlobalSecondaryIndex::builder()
        .index_name(name)
        .set_key_schema(Some(schema))
        .projection(projection)
        .build()
        .expect("complete")
}

fn setup(what: &'static str) -> impl Fn(String) -> EmulatorError {
    move |message| EmulatorError::Setup { what, message }
}

/// Creates the table, queue + DLQ and bucket (as `template.yaml` defines them), idempotently.
pub async fn create_resources(
    clients: &AwsClients,
    names: &ResourceNames,
    visibility_timeout_seconds: u32,
) -> Result<Queues, EmulatorError> {
    let table = clients
        .dynamodb
        .create_table()
        .table_name(&names.table)
        .set_attribute_definitions(Some(vec![
            attribute("id", ScalarAttributeType::N),
            attribute("businessId", ScalarAttributeType::S),
            attribute("startAt", ScalarAttributeType::N),
            attribute("callId", ScalarAttributeType::S),
            attribute(PENDING_ATTRIBUTE, ScalarAttributeType::S),
            attribute("receivedAtEpoch", ScalarAttributeType::N),
        ]))
        .key_schema(key("id", KeyType::Hash))
        .global_secondary_indexes(index(
            BUSINESS_INDEX,
            "businessId",
            Some("startAt"),
            Projection::builder()
                .projection_type(ProjectionType::All)
                .build(),
        ))
        .global_secondary_indexes(index(
            CALL_ID_INDEX,
            "callId",
            None,
            Projection::builder()
                .projection_type(ProjectionType::All)
                .build(),
        ))
        .global_secondary_indexes(index(
            PENDING_INDEX,
            PENDING_ATTRIBUTE,
            Some("receivedAtEpoch"),
            Projection::builder()
                .projection_type(ProjectionType::Include)
                .non_key_attributes("recordFile")
                .non_key_attributes("recordingKey")
                .non_key_attributes("recordingAttempts")
                .non_key_attributes("lastAttemptAt")
                .build(),
        ))
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await;
    if let Err(e) = table {
        let already = e
            .as_service_error()
            .is_some_and(|e| e.is_resource_in_use_exception());
        if !already {
            return Err(setup("the table")(
                aws_sdk_dynamodb::error::DisplayErrorContext(e).to_string(),
            ));
        }
    }
    let bindings = clients
        .dynamodb
        .create_table()
        .table_name(&names.binding_errors_table)
        .set_attribute_definitions(Some(vec![
            attribute("requestId", ScalarAttributeType::S),
            attribute("did", ScalarAttributeType::S),
            attribute("occurredAt", ScalarAttributeType::S),
        ]))
        .key_schema(key("requestId", KeyType::Hash))
        .global_secondary_indexes(index(
            DID_INDEX,
            "did",
            Some("occurredAt"),
            Projection::builder()
                .projection_type(ProjectionType::All)
                .build(),
        ))
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await;
    if let Err(e) = bindings {
        let already = e
            .as_service_error()
            .is_some_and(|e| e.is_resource_in_use_exception());
        if !already {
            return Err(setup("the binding-error table")(
                aws_sdk_dynamodb::error::DisplayErrorContext(e).to_string(),
            ));
        }
    }
    let dlq = clients
        .sqs
        .create_queue()
        .queue_name(&names.dead_letter_queue)
        .attributes(QueueAttributeName::MessageRetentionPeriod, "1209600")
        .send()
        .await
        .map_err(|e| {
            setup("the dead-letter queue")(aws_sdk_sqs::error::DisplayErrorContext(e).to_string())
        })?;
    let dead_letter_queue_url = dlq.queue_url.unwrap_or_default();
    let dlq_arn = clients
        .sqs
        .get_queue_attributes()
        .queue_url(&dead_letter_queue_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| {
            setup("the dead-letter queue")(aws_sdk_sqs::error::DisplayErrorContext(e).to_string())
        })?
        .attributes
        .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
        .unwrap_or_default();
    let redrive =
        serde_json::json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": MAX_RECEIVE_COUNT})
            .to_string();
    let queue = clients
        .sqs
        .create_queue()
        .queue_name(&names.queue)
        .attributes(
            QueueAttributeName::VisibilityTimeout,
            visibility_timeout_seconds.to_string(),
        )
        .attributes(QueueAttributeName::RedrivePolicy, redrive)
        .send()
        .await
        .map_err(|e| setup("the queue")(aws_sdk_sqs::error::DisplayErrorContext(e).to_string()))?;
    let bucket = clients
        .s3
        .create_bucket()
        .bucket(&names.bucket)
        .send()
        .await;
    if let Err(e) = bucket {
        let already = e
            .as_service_error()
            .is_some_and(|e| e.is_bucket_already_owned_by_you() || e.is_bucket_already_exists());
        if !already {
            return Err(setup("the bucket")(
                aws_sdk_s3::error::DisplayErrorContext(e).to_string(),
            ));
        }
    }
    Ok(Queues {
        queue_url: queue.queue_url.unwrap_or_default(),
        dead_letter_queue_url,
    })
}
