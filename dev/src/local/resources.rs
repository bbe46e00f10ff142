//! The stack's resources in the emulator, built from `template.yaml`'s own definitions: the
//! tables (keys, indexes, TTL, streams), the queues (visibility, retention, redrive), the
//! bucket (versioning), the token secret, the event bus and the lake rule. A change to the template changes the local stack.
//! Only the names are local (per-test suffixes), and a test may shorten the visibility.
//!
//! With `PNS_IAM_RESOURCES=<file>` set, each physical name is written there with the
//! template resource it stands for, for `dev/scripts/iam_check.py`.

use std::io::Write;
use std::path::Path;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, StreamSpecification, StreamViewType,
    TimeToLiveSpecification,
};
use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};
use aws_sdk_sqs::types::QueueAttributeName;
use pns_cdr::adapters::aws::AwsClients;
use serde_norway::Value;

use super::emulator::{EmulatorError, Queues, ResourceNames};

/// `template.yaml`, parsed (its `!Ref`-style tags kept as tagged values).
#[derive(Debug, Clone)]
pub struct Template(Value);

impl Template {
    /// The repository's `template.yaml`.
    pub fn repo() -> Result<Self, EmulatorError> {
        Self::load(&crate::repo_root().join("template.yaml"))
    }

    pub fn load(path: &Path) -> Result<Self, EmulatorError> {
        let text = std::fs::read_to_string(path).map_err(|e| invalid(e.to_string()))?;
        Self::parse(&text)
    }

    pub fn parse(text: &str) -> Result<Self, EmulatorError> {
        serde_norway::from_str(text)
            .map(Self)
            .map_err(|e| invalid(e.to_string()))
    }

    /// The `Default` of numeric parameter `name`.
    pub fn parameter_default(&self, name: &str) -> Result<f64, EmulatorError> {
        let default = &self.0["Parameters"][name]["Default"];
        default
            .as_f64()
            .or_else(|| default.as_str().and_then(|s| s.parse().ok()))
            .ok_or_else(|| invalid(format!("parameter {name} has no numeric Default")))
    }

    /// The `Properties` of resource `logical`.
    pub fn properties(&self, logical: &str) -> Result<&Value, EmulatorError> {
        self.0["Resources"]
            .get(logical)
            .map(|r| &r["Properties"])
            .ok_or_else(|| invalid(format!("no resource {logical}")))
    }
}

fn invalid(message: String) -> EmulatorError {
    EmulatorError::Setup {
        what: "the resources of template.yaml",
        message,
    }
}

fn setup(what: &'static str) -> impl Fn(String) -> EmulatorError {
    move |message| EmulatorError::Setup { what, message }
}

fn text<'a>(v: &'a Value, what: &str) -> Result<&'a str, EmulatorError> {
    v.as_str()
        .ok_or_else(|| invalid(format!("{what} is not a plain string")))
}

/// Names the template resource a physical name stands for (for the IAM check).
fn register(kind: &str, physical: &str, logical: &str) {
    let Ok(path) = std::env::var("PNS_IAM_RESOURCES") else {
        return;
    };
    let mut line =
        serde_json::json!({"kind": kind, "physical": physical, "logical": logical}).to_string();
    line.push('\n');
    // One write of the whole line to an O_APPEND file: tests register concurrently.
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(line.as_bytes()));
    if let Err(e) = written {
        tracing::warn!(path, error = %e, "could not register a resource for the IAM check");
    }
}

/// Creates the template's resources under `names`, idempotently; `visibility_seconds`
/// replaces the recording queue's visibility timeout (tests that scale time).
pub async fn create_resources(
    template: &Template,
    clients: &AwsClients,
    names: &ResourceNames,
    visibility_seconds: Option<u32>,
) -> Result<Queues, EmulatorError> {
    for (logical, name) in [
        ("CallsTable", &names.table),
        ("BindingErrorsTable", &names.binding_errors_table),
    ] {
        create_table(clients, template.properties(logical)?, name).await?;
        register("table", name, logical);
    }

    let dlq = template.properties("RecordingDeadLetterQueue")?;
    let mut attributes = vec![(
        QueueAttributeName::MessageRetentionPeriod,
        number(&dlq["MessageRetentionPeriod"], "the DLQ's retention")?,
    )];
    let dead_letter_queue_url = create_queue(clients, &names.dead_letter_queue, attributes).await?;
    register(
        "queue",
        &names.dead_letter_queue,
        "RecordingDeadLetterQueue",
    );
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

    let queue = template.properties("RecordingQueue")?;
    let visibility = match visibility_seconds {
        Some(seconds) => seconds.to_string(),
        None => number(&queue["VisibilityTimeout"], "the queue's visibility")?,
    };
    let redrive = serde_json::json!({
        "deadLetterTargetArn": dlq_arn,
        "maxReceiveCount": queue["RedrivePolicy"]["maxReceiveCount"]
            .as_u64()
            .ok_or_else(|| invalid("maxReceiveCount is not a number".into()))?,
    });
    attributes = vec![
        (QueueAttributeName::VisibilityTimeout, visibility),
        (
            QueueAttributeName::MessageRetentionPeriod,
            number(&queue["MessageRetentionPeriod"], "the queue's retention")?,
        ),
        (QueueAttributeName::RedrivePolicy, redrive.to_string()),
    ];
    let queue_url = create_queue(clients, &names.queue, attributes).await?;
    register("queue", &names.queue, "RecordingQueue");

    create_bucket(
        clients,
        template.properties("RecordingBucket")?,
        &names.bucket,
    )
    .await?;
    register("bucket", &names.bucket, "RecordingBucket");
    Ok(Queues {
        queue_url,
        dead_letter_queue_url,
    })
}

/// What the publisher and the lake need: the tables' streams and the queues around them.
#[derive(Debug, Clone)]
pub struct Downstream {
    pub calls_stream: String,
    pub binding_errors_stream: String,
    pub publisher_failures_url: String,
    /// Where the lake rule delivers: locally a queue, drained into `analytics/` as Firehose
    /// would write it.
    pub lake_queue_url: String,
}

/// Creates the bus, the lake rule (its pattern from `LakeRule`, its target a queue standing
/// in for Firehose) and the publisher's failure queue; returns them with the tables' streams.
pub async fn create_downstream(
    template: &Template,
    clients: &AwsClients,
    names: &ResourceNames,
) -> Result<Downstream, EmulatorError> {
    let failures = template.properties("PublisherFailureQueue")?;
    let publisher_failures_url = create_queue(
        clients,
        &names.publisher_failures,
        vec![(
            QueueAttributeName::MessageRetentionPeriod,
            number(
                &failures["MessageRetentionPeriod"],
                "the failure queue's retention",
            )?,
        )],
    )
    .await?;
    register("queue", &names.publisher_failures, "PublisherFailureQueue");
    let lake_queue_url = create_queue(clients, &names.lake_queue, Vec::new()).await?;
    let lake_queue_arn = queue_arn(clients, &lake_queue_url).await?;

    template.properties("EventBus")?;
    let events = setup("the event bus");
    let created = clients
        .events()
        .create_event_bus()
        .name(&names.event_bus)
        .send()
        .await;
    if let Err(e) = created {
        let exists = e
            .as_service_error()
            .is_some_and(|e| e.is_resource_already_exists_exception());
        if !exists {
            return Err(events(
                aws_sdk_eventbridge::error::DisplayErrorContext(e).to_string(),
            ));
        }
    }
    register("bus", &names.event_bus, "EventBus");
    let rule = template.properties("LakeRule")?;
    let pattern =
        serde_json::to_string(&rule["EventPattern"]).map_err(|e| invalid(e.to_string()))?;
    let rule_name = format!("{}-lake", names.event_bus);
    let rules = setup("the lake rule");
    clients
        .events()
        .put_rule()
        .name(&rule_name)
        .event_bus_name(&names.event_bus)
        .event_pattern(pattern)
        .send()
        .await
        .map_err(|e| rules(aws_sdk_eventbridge::error::DisplayErrorContext(e).to_string()))?;
    clients
        .events()
        .put_targets()
        .rule(&rule_name)
        .event_bus_name(&names.event_bus)
        .targets(
            aws_sdk_eventbridge::types::Target::builder()
                .id("lake")
                .arn(lake_queue_arn)
                .build()
                .expect("complete"),
        )
        .send()
        .await
        .map_err(|e| rules(aws_sdk_eventbridge::error::DisplayErrorContext(e).to_string()))?;

    let stream = |table: &str| {
        let table = table.to_owned();
        async move {
            clients
                .dynamodb
                .describe_table()
                .table_name(&table)
                .send()
                .await
                .map_err(|e| {
                    setup("a table's stream")(
                        aws_sdk_dynamodb::error::DisplayErrorContext(e).to_string(),
                    )
                })?
                .table
                .and_then(|t| t.latest_stream_arn)
                .ok_or_else(|| setup("a table's stream")(format!("{table} has no stream")))
        }
    };
    Ok(Downstream {
        calls_stream: stream(&names.table).await?,
        binding_errors_stream: stream(&names.binding_errors_table).await?,
        publisher_failures_url,
        lake_queue_url,
    })
}

async fn queue_arn(clients: &AwsClients, url: &str) -> Result<String, EmulatorError> {
    Ok(clients
        .sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| {
            setup("a queue's ARN")(aws_sdk_sqs::error::DisplayErrorContext(e).to_string())
        })?
        .attributes
        .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
        .unwrap_or_default())
}

/// Creates the secret the template calls `logical` under `name`, holding `value` (the
/// template generates it; locally it is given), and returns its ARN.
pub async fn create_secret(
    template: &Template,
    clients: &AwsClients,
    logical: &'static str,
    name: &str,
    value: &str,
) -> Result<String, EmulatorError> {
    template.properties(logical)?;
    let created = clients
        .secrets
        .create_secret()
        .name(name)
        .secret_string(value)
        .send()
        .await;
    let arn = match created {
        Ok(out) => out.arn,
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_resource_exists_exception()) =>
        {
            clients
                .secrets
                .put_secret_value()
                .secret_id(name)
                .secret_string(value)
                .send()
                .await
                .map_err(|e| {
                    setup("a secret")(
                        aws_sdk_secretsmanager::error::DisplayErrorContext(e).to_string(),
                    )
                })?
                .arn
        }
        Err(e) => {
            return Err(setup("a secret")(
                aws_sdk_secretsmanager::error::DisplayErrorContext(e).to_string(),
            ))
        }
    };
    register("secret", name, logical);
    arn.ok_or_else(|| setup("a secret")("no ARN in the answer".into()))
}

fn number(v: &Value, what: &str) -> Result<String, EmulatorError> {
    v.as_u64()
        .map(|n| n.to_string())
        .ok_or_else(|| invalid(format!("{what} is not a number")))
}

fn key_schema(v: &Value) -> Result<Vec<KeySchemaElement>, EmulatorError> {
    v.as_sequence()
        .ok_or_else(|| invalid("KeySchema is not a list".into()))?
        .iter()
        .map(|k| {
            let kind = match text(&k["KeyType"], "KeyType")? {
                "HASH" => KeyType::Hash,
                "RANGE" => KeyType::Range,
                other => return Err(invalid(format!("KeyType {other}"))),
            };
            Ok(KeySchemaElement::builder()
                .attribute_name(text(&k["AttributeName"], "AttributeName")?)
                .key_type(kind)
                .build()
                .expect("complete"))
        })
        .collect()
}

/// A table as its `AWS::DynamoDB::Table` properties define it, named `name`.
async fn create_table(
    clients: &AwsClients,
    table: &Value,
    name: &str,
) -> Result<(), EmulatorError> {
    let attributes = table["AttributeDefinitions"]
        .as_sequence()
        .ok_or_else(|| invalid("AttributeDefinitions is not a list".into()))?
        .iter()
        .map(|a| {
            Ok(AttributeDefinition::builder()
                .attribute_name(text(&a["AttributeName"], "AttributeName")?)
                .attribute_type(ScalarAttributeType::from(text(
                    &a["AttributeType"],
                    "AttributeType",
                )?))
                .build()
                .expect("complete"))
        })
        .collect::<Result<Vec<_>, EmulatorError>>()?;
    let indexes = table["GlobalSecondaryIndexes"]
        .as_sequence()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|i| {
            let projection = &i["Projection"];
            let included = projection["NonKeyAttributes"].as_sequence().map(|names| {
                names
                    .iter()
                    .filter_map(|n| n.as_str().map(str::to_owned))
                    .collect()
            });
            Ok(GlobalSecondaryIndex::builder()
                .index_name(text(&i["IndexName"], "IndexName")?)
                .set_key_schema(Some(key_schema(&i["KeySchema"])?))
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::from(text(
                            &projection["ProjectionType"],
                            "ProjectionType",
                        )?))
                        .set_non_key_attributes(included)
                        .build(),
                )
                .build()
                .expect("complete"))
        })
        .collect::<Result<Vec<_>, EmulatorError>>()?;
    let created = clients
        .dynamodb
        .create_table()
        .table_name(name)
        .set_attribute_definitions(Some(attributes))
        .set_key_schema(Some(key_schema(&table["KeySchema"])?))
        .set_global_secondary_indexes((!indexes.is_empty()).then_some(indexes))
        .set_stream_specification(table["StreamSpecification"]["StreamViewType"].as_str().map(
            |view| {
                StreamSpecification::builder()
                    .stream_enabled(true)
                    .stream_view_type(StreamViewType::from(view))
                    .build()
                    .expect("complete")
            },
        ))
        .billing_mode(BillingMode::from(text(
            &table["BillingMode"],
            "BillingMode",
        )?))
        .send()
        .await;
    if let Err(e) = created {
        let already = e
            .as_service_error()
            .is_some_and(|e| e.is_resource_in_use_exception());
        if !already {
            return Err(setup("a table")(
                aws_sdk_dynamodb::error::DisplayErrorContext(e).to_string(),
            ));
        }
        return Ok(());
    }
    // TTL as the template sets it; a conditional `Enabled` (RetentionDays) is off by default.
    let ttl = &table["TimeToLiveSpecification"];
    if ttl["Enabled"].as_bool() == Some(true) {
        clients
            .dynamodb
            .update_time_to_live()
            .table_name(name)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .attribute_name(text(&ttl["AttributeName"], "the TTL attribute")?)
                    .enabled(true)
                    .build()
                    .expect("complete"),
            )
            .send()
            .await
            .map_err(|e| {
                setup("a table's TTL")(aws_sdk_dynamodb::error::DisplayErrorContext(e).to_string())
            })?;
    }
    Ok(())
}

async fn create_queue(
    clients: &AwsClients,
    name: &str,
    attributes: Vec<(QueueAttributeName, String)>,
) -> Result<String, EmulatorError> {
    let mut request = clients.sqs.create_queue().queue_name(name);
    for (attribute, value) in attributes {
        request = request.attributes(attribute, value);
    }
    let out = request
        .send()
        .await
        .map_err(|e| setup("a queue")(aws_sdk_sqs::error::DisplayErrorContext(e).to_string()))?;
    Ok(out.queue_url.unwrap_or_default())
}

async fn create_bucket(
    clients: &AwsClients,
    bucket: &Value,
    name: &str,
) -> Result<(), EmulatorError> {
    let created = clients.s3.create_bucket().bucket(name).send().await;
    if let Err(e) = created {
        let already = e
            .as_service_error()
            .is_some_and(|e| e.is_bucket_already_owned_by_you() || e.is_bucket_already_exists());
        if !already {
            return Err(setup("the bucket")(
                aws_sdk_s3::error::DisplayErrorContext(e).to_string(),
            ));
        }
    }
    if bucket["VersioningConfiguration"]["Status"].as_str() == Some("Enabled") {
        clients
            .s3
            .put_bucket_versioning()
            .bucket(name)
            .versioning_configuration(
                VersioningConfiguration::builder()
                    .status(BucketVersioningStatus::Enabled)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| {
                setup("the bucket's versioning")(
                    aws_sdk_s3::error::DisplayErrorContext(e).to_string(),
                )
            })?;
    }
    Ok(())
}
