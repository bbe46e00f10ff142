//! The pre-traffic hook's check against the local stack: a healthy new version passes; a
//! version with a wrong table, a missing secret or a token the version does not take fails,
//! naming the step.

use pns_cdr::adapters::aws::AwsClients;
use pns_cdr::adapters::dynamodb::{DynamoBindingErrorStore, DynamoRecordStore};
use pns_cdr::adapters::s3::S3ObjectStore;
use pns_cdr::adapters::secrets::SecretsManagerSecret;
use pns_cdr::adapters::sqs::SqsJobQueue;
use pns_cdr::domain::auth::Authenticator;
use pns_cdr::domain::url_policy::{UrlPolicy, UrlProfile, DEFAULT_RECORDING_HOSTS};
use pns_cdr::handlers::pretraffic::{CheckFailed, PreTraffic};
use pns_cdr::handlers::webhook::{Webhook, WebhookSettings};
use pns_cdr_dev::local::invoke::InProcess;
use pns_cdr_dev::local::{LocalStack, LOCAL_TOKEN};
use time::OffsetDateTime;

use crate::common;

/// Who signs: a healthy check as the two functions; a deliberately broken one, whose calls name
/// resources the template does not have, as the harness (the IAM check holds functions' calls
/// to the template's resources).
#[derive(Clone, Copy)]
enum Signer {
    Functions,
    Harness,
}

impl Signer {
    fn name(self, function: &'static str) -> &'static str {
        match self {
            Self::Functions => function,
            Self::Harness => "harness",
        }
    }
}

type Version = InProcess<DynamoRecordStore, SqsJobQueue, S3ObjectStore, DynamoBindingErrorStore>;

/// A webhook version as the Lambda wires it, over the stack's resources but `table`.
async fn version(stack: &LocalStack, table: &str, token: &str, signer: Signer) -> Version {
    let clients = AwsClients::for_caller(&stack.endpoint, signer.name("webhook"))
        .await
        .unwrap();
    let bindings = &stack.names.binding_errors_table;
    InProcess(Webhook {
        store: DynamoRecordStore::new(clients.dynamodb.clone(), table),
        queue: SqsJobQueue::new(clients.sqs, &stack.queues.queue_url),
        objects: S3ObjectStore::new(clients.s3, &stack.names.bucket),
        bindings: DynamoBindingErrorStore::new(clients.dynamodb, bindings),
        auth: Authenticator::new(token, "").unwrap().into(),
        policy: UrlPolicy::new(DEFAULT_RECORDING_HOSTS, UrlProfile::Production).unwrap(),
        settings: WebhookSettings::default(),
    })
}

/// The hook's check of a version, given the secret it reads, the table the version writes
/// and the token the version takes.
async fn check(
    stack: &LocalStack,
    (secret, table, token): (&str, &str, &str),
    signer: Signer,
) -> Result<i64, CheckFailed> {
    let clients = AwsClients::for_caller(&stack.endpoint, signer.name("pretraffic"))
        .await
        .unwrap();
    let hook = PreTraffic {
        secret: SecretsManagerSecret::new(clients.secrets, secret),
        webhook: version(stack, table, token, signer).await,
        records: DynamoRecordStore::new(clients.dynamodb, &stack.names.table),
        source_cidrs: String::new(),
    };
    hook.check(OffsetDateTime::now_utc()).await
}

#[tokio::test]
async fn a_healthy_version_passes_and_each_broken_one_fails_its_step() {
    let stack = common::stack().await;
    let (secret, table) = (stack.names.secret.as_str(), stack.names.table.as_str());

    let id = check(&stack, (secret, table, LOCAL_TOKEN), Signer::Functions)
        .await
        .unwrap();
    let item = common::item(&stack, id)
        .await
        .expect("the canary is in the table");
    assert!(item["expiresAt"].is_i64(), "and expires: {item}");

    let typo = (secret, "pns-calls-typo", LOCAL_TOKEN);
    let wrong_table = check(&stack, typo, Signer::Harness).await.unwrap_err();
    let text = wrong_table.to_string();
    assert!(text.starts_with("step 2") && text.contains("503"), "{text}");

    let gone = ("pns-no-such-secret", table, LOCAL_TOKEN);
    let missing = check(&stack, gone, Signer::Harness).await.unwrap_err();
    assert!(missing.to_string().starts_with("step 1"), "{missing}");

    // The secret holds a token this version does not take (a rotation gone wrong).
    let rotated = (secret, table, "a-token-the-secret-lacks");
    let other = check(&stack, rotated, Signer::Functions).await.unwrap_err();
    let text = other.to_string();
    assert!(text.starts_with("step 2") && text.contains("401"), "{text}");
}
