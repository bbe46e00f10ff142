//! The reconciler Lambda: an EventBridge schedule -> `handlers::reconciler`.

use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use pns_cdr::adapters::{aws::AwsClients, dynamodb::DynamoRecordStore, sqs::SqsJobQueue};
use pns_cdr::config::{FromEnv, ReconcilerConfig};
use pns_cdr::handlers::reconciler::{ReconcileReport, Reconciler};
use pns_cdr::telemetry::ErrorChain;
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let process = pns_cdr::telemetry::start();
    let config = ReconcilerConfig::from_env()?;
    let clients = AwsClients::load(&process.aws).await?;
    let reconciler = Reconciler {
        pending: DynamoRecordStore::new(clients.dynamodb, &config.table),
        queue: SqsJobQueue::new(clients.sqs, &config.queue_url),
        settings: config.settings,
    };
    let reconciler = &reconciler;
    run(service_fn(move |_: LambdaEvent<Value>| async move {
        let report = reconciler
            .run(time::OffsetDateTime::now_utc())
            .await
            .inspect_err(|e| {
                tracing::error!(error = %ErrorChain(e), outcome = "failed", "reconciler run failed");
            })?;
        Ok::<ReconcileReport, Error>(report)
    }))
    .await
}
