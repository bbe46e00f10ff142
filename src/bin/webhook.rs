//! The webhook Lambda: API Gateway HTTP API -> `handlers::webhook`.

use lambda_http::{run, service_fn, Error, Request};
use pns_cdr::adapters::secrets::SecretTokens;
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
    // Deployed: tokens from Secrets Manager, refreshed while warm. Locally: from the environment.
    // Tokens given directly win; the secret is then neither read nor refreshed.
    let secret = match &config.webhook_tokens {
        Some(_) => None,
        None => config
            .webhook_tokens_secret_arn
            .clone()
            .map(|arn| SecretTokens::new(clients.secrets.clone(), arn)),
    };
    let auth = match (&config.webhook_tokens, &secret) {
        (Some(_), _) | (None, None) => config.authenticator()?,
        (None, Some(secret)) => config.authenticator_for(&secret.fetch().await?)?,
    };
    let webhook = Webhook {
        store: DynamoRecordStore::new(clients.dynamodb, &config.table_name),
        queue: SqsJobQueue::new(clients.sqs, &config.queue_url),
        objects: S3ObjectStore::new(clients.s3, &config.bucket_name),
        auth: auth.into(),
        policy: config.url_policy()?,
        settings: WebhookSettings::from_config(&config),
    };
    let (webhook, secret, config) = (&webhook, &secret, &config);
    run(service_fn(move |request: Request| async move {
        if let Some(secret) = secret {
            secret.refresh_if_stale(&webhook.auth, config).await;
        }
        webhook.handle_http(request).await
    }))
    .await
}
