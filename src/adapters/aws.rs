//! AWS SDK clients, built once per process.

use aws_config::{BehaviorVersion, Region};

use super::http_client::ReqwestHttpClient;
use super::tls::TlsError;

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

    /// On Lambda (`endpoint_url` = `None`) the standard provider chain; against an emulator,
    /// its endpoint with test credentials and path-style S3 addressing. Every client shares
    /// one HTTP client, over the process's one TLS configuration.
    pub async fn load(endpoint_url: Option<&str>) -> Result<Self, TlsError> {
        Ok(Self::with_http_client(endpoint_url, ReqwestHttpClient::new()?).await)
    }

    /// Clients of the emulator at `endpoint` that sign as `caller` (the access key id): the
    /// emulator records who made each call, and the IAM check holds each function's calls
    /// against its own role.
    pub async fn for_caller(endpoint: &str, caller: &str) -> Result<Self, TlsError> {
        Ok(Self::build(Some((endpoint, caller)), ReqwestHttpClient::new()?).await)
    }

    /// As [`load`](Self::load), over the given HTTP client (tests give their own CA).
    pub async fn with_http_client(endpoint_url: Option<&str>, http: ReqwestHttpClient) -> Self {
        // Against an emulator the access key id names the caller; `AWS_ACCESS_KEY_ID` lets a
        // process started by the harness say which function it is.
        let caller = std::env::var("AWS_ACCESS_KEY_ID").unwrap_or_else(|_| "test".into());
        Self::build(endpoint_url.map(|e| (e, caller.as_str())), http).await
    }

    /// Only the shared configuration, for a function that needs no other client (the
    /// publisher): the clients it would not use are then not linked into it.
    pub async fn sdk_config(endpoint_url: Option<&str>) -> Result<aws_config::SdkConfig, TlsError> {
        let caller = std::env::var("AWS_ACCESS_KEY_ID").unwrap_or_else(|_| "test".into());
        let emulator = endpoint_url.map(|e| (e, caller.as_str()));
        Ok(Self::shared_config(emulator, ReqwestHttpClient::new()?).await)
    }

    async fn shared_config(
        emulator: Option<(&str, &str)>,
        http: ReqwestHttpClient,
    ) -> aws_config::SdkConfig {
        let mut loader = aws_config::defaults(BehaviorVersion::latest()).http_client(http);
        if let Some((endpoint, caller)) = emulator {
            loader = loader
                .endpoint_url(endpoint)
                .region(Region::new(
                    std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into()),
                ))
                .credentials_provider(aws_sdk_s3::config::Credentials::new(
                    caller, "test", None, None, "emulator",
                ));
        }
        loader.load().await
    }

    async fn build(emulator: Option<(&str, &str)>, http: ReqwestHttpClient) -> Self {
        let endpoint_url = emulator.map(|(endpoint, _)| endpoint);
        let shared = Self::shared_config(emulator, http).await;
        let s3_config = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(endpoint_url.is_some())
            .build();
        Self {
            dynamodb: aws_sdk_dynamodb::Client::new(&shared),
            sqs: aws_sdk_sqs::Client::new(&shared),
            s3: aws_sdk_s3::Client::from_conf(s3_config),
            secrets: aws_sdk_secretsmanager::Client::new(&shared),
            config: shared,
        }
    }
}
