//! AWS SDK clients, built once per process.

use aws_config::{BehaviorVersion, Region};

use super::http_client::ReqwestHttpClient;
use super::tls::TlsError;
use crate::config::{AwsConfig, ProcessConfig};

/// The clients every function lends to its adapters.
#[derive(Clone, Debug)]
pub struct AwsClients {
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub s3: aws_sdk_s3::Client,
    pub secrets: aws_sdk_secretsmanager::Client,
    /// What the clients were built from: for a client of another service.
    pub config: aws_config::SdkConfig,
}

impl AwsClients {
    /// An EventBridge client: built on demand, so only what publishes links it.
    pub fn events(&self) -> aws_sdk_eventbridge::Client {
        aws_sdk_eventbridge::Client::new(&self.config)
    }

    /// On Lambda (no endpoint) the standard provider chain; against an emulator, its
    /// endpoint with test credentials and path-style S3 addressing. Every client shares one
    /// HTTP client, over the process's one TLS configuration.
    pub async fn load(aws: &AwsConfig) -> Result<Self, TlsError> {
        Ok(Self::with_http_client(aws, ReqwestHttpClient::new()?).await)
    }

    /// Clients of the emulator at `endpoint` that sign as `caller` (the access key id): the
    /// emulator records who made each call, and the IAM check holds each function's calls
    /// against its own role. The region is the environment's, as for any other process.
    pub async fn for_caller(endpoint: &str, caller: &str) -> Result<Self, TlsError> {
        let aws = AwsConfig {
            endpoint_url: Some(endpoint.to_owned()),
            caller: Some(caller.to_owned()),
            ..ProcessConfig::from_env().aws
        };
        Self::load(&aws).await
    }

    /// As [`load`](Self::load), over the given HTTP client (tests give their own CA).
    pub async fn with_http_client(aws: &AwsConfig, http: ReqwestHttpClient) -> Self {
        let shared = Self::shared_config(aws, http).await;
        let s3_config = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(aws.endpoint_url.is_some())
            .build();
        Self {
            dynamodb: aws_sdk_dynamodb::Client::new(&shared),
            sqs: aws_sdk_sqs::Client::new(&shared),
            s3: aws_sdk_s3::Client::from_conf(s3_config),
            secrets: aws_sdk_secretsmanager::Client::new(&shared),
            config: shared,
        }
    }

    /// Only the shared configuration, for a function that needs no other client (the
    /// publisher): the clients it would not use are then not linked into it.
    pub async fn sdk_config(aws: &AwsConfig) -> Result<aws_config::SdkConfig, TlsError> {
        Ok(Self::shared_config(aws, ReqwestHttpClient::new()?).await)
    }

    async fn shared_config(aws: &AwsConfig, http: ReqwestHttpClient) -> aws_config::SdkConfig {
        let mut loader = aws_config::defaults(BehaviorVersion::latest()).http_client(http);
        if let Some(endpoint) = &aws.endpoint_url {
            // The emulator records the access key id as the caller of each call.
            let caller = aws.caller.as_deref().unwrap_or("test");
            loader = loader
                .endpoint_url(endpoint)
                .region(Region::new(
                    aws.region.clone().unwrap_or_else(|| "us-east-1".into()),
                ))
                .credentials_provider(aws_sdk_s3::config::Credentials::new(
                    caller, "test", None, None, "emulator",
                ));
        }
        loader.load().await
    }
}
