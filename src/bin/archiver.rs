//! The archiver Lambda: SQS batch -> `handlers::archiver`.

use std::time::{Duration, SystemTime};

use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use pns_cdr::adapters::http_source::{HttpRecordingSource, HttpTimeouts};
use pns_cdr::adapters::{
    aws::AwsClients, dynamodb::DynamoRecordStore, s3::S3ObjectStore, sqs::SqsJobQueue,
};
use pns_cdr::config::{ArchiverConfig, FromEnv};
use pns_cdr::handlers::archiver::Archiver;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let process = pns_cdr::telemetry::start();
    let config = ArchiverConfig::from_env()?;
    let clients = AwsClients::load(&process.aws).await?;
    let archiver = Archiver {
        store: DynamoRecordStore::new(clients.dynamodb, &config.table),
        queue: SqsJobQueue::new(clients.sqs, &config.queue_url),
        objects: S3ObjectStore::new(clients.s3, &config.bucket),
        source: HttpRecordingSource::new(config.url_policy, HttpTimeouts::default())?,
        settings: config.settings,
    };
    let archiver = &archiver;
    run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        let deadline = SystemTime::UNIX_EPOCH + Duration::from_millis(event.context.deadline);
        Ok::<_, Error>(archiver.handle_batch(event.payload, Some(deadline)).await)
    }))
    .await
}
