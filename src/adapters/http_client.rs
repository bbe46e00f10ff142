//! The AWS SDK's HTTP client, over reqwest: the SDK and the recording downloader then share
//! one HTTP stack and one TLS configuration ([`super::tls`]) instead of two.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;

use super::tls::{self, TlsError};

/// A connector's timeouts: connect, read.
type Timeouts = (Option<Duration>, Option<Duration>);

/// Hands the SDK one reqwest client per distinct connector settings (in practice one).
#[derive(Debug)]
pub struct ReqwestHttpClient {
    tls: rustls::ClientConfig,
    connectors: Mutex<HashMap<Timeouts, SharedHttpConnector>>,
}

impl ReqwestHttpClient {
    /// Over the process's shared TLS configuration.
    pub fn new() -> Result<Self, TlsError> {
        Ok(Self::with_tls(tls::client_config()?))
    }

    pub fn with_tls(tls: rustls::ClientConfig) -> Self {
        Self {
            tls,
            connectors: Mutex::new(HashMap::new()),
        }
    }
}

impl HttpClient for ReqwestHttpClient {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        _components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        let key = (settings.connect_timeout(), settings.read_timeout());
        let mut connectors = self.connectors.lock().unwrap_or_else(|e| e.into_inner());
        connectors
            .entry(key)
            .or_insert_with(|| {
                let mut builder = reqwest::Client::builder()
                    .tls_backend_preconfigured(self.tls.clone())
                    .no_proxy()
                    // The SDK follows no redirect itself; neither does its client.
                    .redirect(reqwest::redirect::Policy::none());
                if let Some(timeout) = key.0 {
                    builder = builder.connect_timeout(timeout);
                }
                if let Some(timeout) = key.1 {
                    builder = builder.read_timeout(timeout);
                }
                let client = builder.build().expect("a preconfigured TLS client builds");
                SharedHttpConnector::new(ReqwestConnector { client })
            })
            .clone()
    }
}

#[derive(Debug, Clone)]
struct ReqwestConnector {
    client: reqwest::Client,
}

impl HttpConnector for ReqwestConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let client = self.client.clone();
        HttpConnectorFuture::new(async move {
            let request = request
                .try_into_http1x()
                .map_err(|e| ConnectorError::user(e.into()))?;
            let request = request.map(reqwest::Body::wrap);
            let request =
                reqwest::Request::try_from(request).map_err(|e| ConnectorError::user(e.into()))?;
            let response = client.execute(request).await.map_err(connector_error)?;
            let response = http::Response::from(response).map(SdkBody::from_body_1_x);
            HttpResponse::try_from(response).map_err(|e| ConnectorError::other(e.into(), None))
        })
    }
}

/// Classifies a reqwest failure the way the SDK's retry strategy reads it: timeouts and I/O
/// are transient (retried), a request that could not be built is the caller's.
fn connector_error(e: reqwest::Error) -> ConnectorError {
    if e.is_timeout() {
        ConnectorError::timeout(e.into())
    } else if e.is_builder() {
        ConnectorError::user(e.into())
    } else if e.is_connect() {
        ConnectorError::io(e.into()).never_connected()
    } else {
        ConnectorError::io(e.into())
    }
}
