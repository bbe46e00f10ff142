//! The webhook Lambda: API Gateway HTTP API -> `handlers::webhook`.

use lambda_http::{run, service_fn, Error, Request};
use pns_cdr::adapters::dynamodb::{DynamoBindingErrorStore, DynamoRecordStore};
use pns_cdr::adapters::secrets::{number_keys, SecretTokens, SecretsManagerSecret};
use pns_cdr::adapters::{aws::AwsClients, s3::S3ObjectStore, sqs::SqsJobQueue};
use pns_cdr::config::{FromEnv, SecretSource, WebhookConfig};
use pns_cdr::handlers::webhook::Webhook;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let process = pns_cdr::telemetry::start();
    let config = WebhookConfig::from_env()?;
    let clients = AwsClients::load(&process.aws).await?;
    // Both secrets at once: each read is a round trip on the cold start.
    let keys = number_keys(&config.number_keys, &clients.secrets);
    // Deployed: tokens from Secrets Manager, refreshed while warm. Locally: from the environment.
    let (auth, secret, keys) = match &config.tokens {
        SecretSource::Inline(tokens) => (config.authenticator_for(tokens)?, None, keys.await?),
        SecretSource::Secret(arn) => {
            let secret = SecretsManagerSecret::new(clients.secrets.clone(), arn);
            let secret = SecretTokens::new(secret, &config.source_cidrs);
            let (auth, keys) = tokio::join!(secret.authenticator(), keys);
            (auth?, Some(secret), keys?)
        }
    };
    let mut settings = config.settings;
    settings.number_keys = Some(keys);
    let webhook = Webhook {
        store: DynamoRecordStore::new(clients.dynamodb.clone(), &config.table),
        bindings: DynamoBindingErrorStore::new(clients.dynamodb, &config.binding_errors_table),
        queue: SqsJobQueue::new(clients.sqs, &config.queue_url),
        objects: S3ObjectStore::new(clients.s3, &config.bucket),
        auth: auth.into(),
        policy: config.url_policy,
        settings,
    };
    let (webhook, secret) = (&webhook, &secret);
    run(service_fn(move |request: Request| async move {
        if let Some(secret) = secret {
            secret.refresh_if_stale(&webhook.auth).await;
        }
        webhook.handle_http(request).await
    }))
    .await
}
