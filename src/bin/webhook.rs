//! The webhook Lambda: API Gateway HTTP API -> `handlers::webhook`.

use lambda_http::{run, service_fn, Error, Request};
use pns_cdr::adapters::{
    aws::AwsClients, dynamodb::DynamoRecordStore, s3::S3ObjectStore, sqs::SqsJobQueue,
};
use pns_cdr::config::Config;
use pns_cdr::handlers::webhook::{Webhook, WebhookSettings};

#[tokio::main]
async fn main() -> Result<(), Error> {
    pns_cdr::telemetry::init();
    let config = Config::from_env()?;
    let clients = AwsClients::load(config.endpoint_url.as_deref()).await;
    let webhook = Webhook {
        store: DynamoRecordStore::new(clients.dynamodb, &config.table_name),
        queue: SqsJobQueue::new(clients.sqs, &config.queue_url),
        objects: S3ObjectStore::new(clients.s3, &config.bucket_name),
        auth: config.authenticator()?,
        policy: config.url_policy()?,
        settings: WebhookSettings {
            requeue_pending_after: config.requeue_pending_after,
        },
    };
    let webhook = &webhook;
    run(service_fn(move |request: Request| {
        webhook.handle_http(request)
    }))
    .await
}
