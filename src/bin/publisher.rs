//! The publisher Lambda: the tables' DynamoDB stream -> `handlers::publisher` -> the event bus.

use aws_lambda_events::event::dynamodb::Event as StreamEvent;
use aws_lambda_events::event::streams::DynamoDbEventResponse;
use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use pns_cdr::adapters::secrets::number_keys;
use pns_cdr::adapters::sqs::SqsEventFailures;
use pns_cdr::adapters::{aws::AwsClients, eventbridge::EventBridgeBus};
use pns_cdr::config::{FromEnv, PublisherConfig};
use pns_cdr::handlers::publisher::Publisher;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let process = pns_cdr::telemetry::start();
    let config = PublisherConfig::from_env()?;
    let sdk = AwsClients::sdk_config(&process.aws).await?;
    let secrets = aws_sdk_secretsmanager::Client::new(&sdk);
    let mut settings = config.settings;
    settings.number_keys = Some(number_keys(&config.number_keys, &secrets).await?);
    let publisher = Publisher {
        bus: EventBridgeBus::new(aws_sdk_eventbridge::Client::new(&sdk), &config.event_bus),
        failures: SqsEventFailures::new(aws_sdk_sqs::Client::new(&sdk), &config.failure_queue_url),
        settings,
    };
    let publisher = &publisher;
    run(service_fn(
        move |event: LambdaEvent<StreamEvent>| async move {
            Ok::<DynamoDbEventResponse, Error>(publisher.handle(event.payload).await)
        },
    ))
    .await
}
