//! What to set or start, in one line, when a verb cannot reach AWS or the local stack: the
//! SDK's own errors ("dispatch failure", "Connection refused") do not say.

use std::error::Error;

use aws_sdk_sqs::config::ProvideCredentials;

/// Where pnsctl was pointed: the emulator (`AWS_ENDPOINT_URL`) or AWS.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub endpoint: Option<&'a str>,
}

const LOCAL: &str = "for the local stack (`make run`), set AWS_ENDPOINT_URL=http://127.0.0.1:4566";

/// A failure with what to do about it: printed instead of the SDK's chain of causes.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Hint(pub String);

/// Before any call to AWS: a region and credentials, each named when missing. The SDK
/// would otherwise try the instance metadata service first and fail the first call after
/// seconds of warnings.
pub async fn check_aws(config: &aws_config::SdkConfig) -> Result<(), Hint> {
    if config.region().is_none() {
        return Err(Hint(format!(
            "no AWS region: set AWS_DEFAULT_REGION (or AWS_REGION, or a profile's region with \
             AWS_PROFILE) for a deployed stack; {LOCAL}"
        )));
    }
    let provider = config.credentials_provider().ok_or_else(no_credentials)?;
    provider.provide_credentials().await.map(drop).map_err(|e| {
        tracing::debug!(error = %pns_cdr::telemetry::ErrorChain(&e), "no credentials");
        no_credentials()
    })
}

fn no_credentials() -> Hint {
    Hint(format!(
        "no AWS credentials: set AWS_PROFILE (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY) \
         for a deployed stack; {LOCAL}"
    ))
}

/// The one line for an error whose cause is known: nothing listening at the endpoint, or a
/// table, queue or bucket that does not exist under the configured name.
pub fn for_error(error: &anyhow::Error, target: Target<'_>) -> Option<String> {
    error.chain().find_map(|cause| for_cause(cause, target))
}

fn for_cause(cause: &(dyn Error + 'static), target: Target<'_>) -> Option<String> {
    if let Some(io) = cause.downcast_ref::<std::io::Error>() {
        if io.kind() == std::io::ErrorKind::ConnectionRefused {
            return Some(match target.endpoint {
                Some(endpoint) => format!(
                    "nothing answers at {endpoint} (AWS_ENDPOINT_URL): start the local stack \
                     with `make run` in another terminal, or unset AWS_ENDPOINT_URL for AWS"
                ),
                None => "the connection to AWS was refused: check the network, a proxy \
                         (HTTPS_PROXY) or AWS_ENDPOINT_URL"
                    .into(),
            });
        }
    }
    if let Some(e) =
        cause.downcast_ref::<aws_sdk_dynamodb::types::error::ResourceNotFoundException>()
    {
        return Some(format!(
            "a table was not found ({}): set PNS_TABLE_NAME and PNS_BINDING_ERRORS_TABLE to the \
             stack's tables, or name the stack with --stack{}",
            e.message().unwrap_or("no such table"),
            local_note(target),
        ));
    }
    if cause.is::<aws_sdk_sqs::types::error::QueueDoesNotExist>() {
        return Some(format!(
            "the queue does not exist: set PNS_QUEUE_URL and PNS_DLQ_URL (or PNS_QUEUE_NAME) to \
             the stack's queues, or name the stack with --stack{}",
            local_note(target),
        ));
    }
    if cause.is::<aws_sdk_s3::types::error::NoSuchBucket>() {
        return Some(format!(
            "the bucket does not exist: set PNS_BUCKET_NAME to the stack's bucket, or name the \
             stack with --stack{}",
            local_note(target),
        ));
    }
    None
}

/// Against the emulator, a missing resource usually means the stack was never created there.
fn local_note(target: Target<'_>) -> &'static str {
    if target.endpoint.is_some() {
        " (the local stack creates them with the default names when `make run` starts)"
    } else {
        ""
    }
}
