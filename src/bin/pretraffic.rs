//! The pre-traffic hook Lambda: CodeDeploy's lifecycle event -> `handlers::pretraffic`.

use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use pns_cdr::adapters::codedeploy::CodeDeployHooks;
use pns_cdr::adapters::lambda::LambdaFunction;
use pns_cdr::adapters::secrets::SecretsManagerSecret;
use pns_cdr::adapters::{aws::AwsClients, dynamodb::DynamoRecordStore};
use pns_cdr::config::{FromEnv, PreTrafficConfig};
use pns_cdr::handlers::pretraffic::PreTraffic;
use pns_cdr::ports::LifecycleHook;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let process = pns_cdr::telemetry::start();
    let config = PreTrafficConfig::from_env()?;
    let clients = AwsClients::load(&process.aws).await?;
    let hook = PreTraffic {
        secret: SecretsManagerSecret::new(clients.secrets, &config.secret_arn),
        webhook: LambdaFunction::new(
            aws_sdk_lambda::Client::new(&clients.config),
            &config.webhook_function,
        ),
        records: DynamoRecordStore::new(clients.dynamodb, &config.table),
        source_cidrs: config.source_cidrs,
    };
    let hooks = CodeDeployHooks::new(aws_sdk_codedeploy::Client::new(&clients.config));
    let (hook, hooks) = (&hook, &hooks);
    run(service_fn(
        move |event: LambdaEvent<LifecycleHook>| async move {
            hook.handle(hooks, &event.payload).await?;
            Ok::<(), Error>(())
        },
    ))
    .await
}
