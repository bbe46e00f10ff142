//! Recordings fetched over HTTP, through the URL policy.
//!
//! SSRF defence in depth: every URL (and every redirect hop) passes the static policy; every
//! host name is resolved here, every address it resolves to is checked, and the connection
//! goes to exactly those checked addresses (reqwest uses this resolver, never a second lookup).
//! IP-literal URLs never reach the resolver, so the static policy refuses them (the local
//! profile's `127.0.0.1` being the one exception).

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::redirect::Policy;
use url::Url;

use super::tls::{self, TlsError};
use crate::domain::url_policy::{UrlPolicy, UrlRefused};
use crate::ports::{Download, FetchError, RecordingSource};

/// Redirects followed at most (NXCLOUD answers recordings with one 302).
pub const MAX_REDIRECTS: usize = 3;

/// Name resolution, as a seam: the system resolver in production, a fixed map in tests.
pub trait Lookup: Send + Sync + 'static {
    fn lookup(
        &self,
        host: &str,
    ) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<IpAddr>>> + Send>>;
}

/// The operating system's resolver.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemLookup;

impl Lookup for SystemLookup {
    fn lookup(
        &self,
        host: &str,
    ) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<IpAddr>>> + Send>> {
        let host = host.to_owned();
        Box::pin(async move {
            Ok(tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .map(|a| a.ip())
                .collect())
        })
    }
}

/// A resolver that refuses a name if any of its addresses is not public.
struct CheckedResolver<L> {
    lookup: L,
    policy: UrlPolicy,
}

impl<L: Lookup> Resolve for CheckedResolver<L> {
    fn resolve(&self, name: Name) -> Resolving {
        let pending = self.lookup.lookup(name.as_str());
        let policy = self.policy.clone();
        Box::pin(async move {
            let ips = pending.await?;
            if ips.is_empty() {
                return Err(Box::new(UrlRefused::NoAddress) as _);
            }
            // One bad address refuses the name: a host answering both public and private
            // addresses is either misconfigured or a rebinding attempt.
            for ip in &ips {
                policy.check_ip(*ip)?;
            }
            let addrs: Addrs = Box::new(ips.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}

/// Timeouts of the recording download.
#[derive(Debug, Clone, Copy)]
pub struct HttpTimeouts {
    pub connect: Duration,
    /// Longest wait for the next bytes of a response.
    pub read: Duration,
    /// A body slower than this (bytes/s) over a whole `min_rate_window` is given up on: a host
    /// that trickles a byte at a time never trips `read`, and would hold the invocation (and
    /// the rest of its batch) until the function's deadline.
    pub min_rate: u64,
    pub min_rate_window: Duration,
}

impl Default for HttpTimeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(5),
            read: Duration::from_secs(30),
            // An MP3 at 128 kbit/s is 16 KiB per second of audio; a real host sends MB/s.
            min_rate: 16 * 1024,
            min_rate_window: Duration::from_secs(30),
        }
    }
}

/// Fetches recordings with reqwest, redirects followed by hand so each hop is checked.
#[derive(Clone)]
pub struct HttpRecordingSource {
    client: reqwest::Client,
    policy: UrlPolicy,
    timeouts: HttpTimeouts,
}

impl HttpRecordingSource {
    /// Over the process's shared TLS configuration.
    pub fn new(policy: UrlPolicy, timeouts: HttpTimeouts) -> Result<Self, TlsError> {
        Ok(Self::with_lookup(
            policy,
            timeouts,
            SystemLookup,
            tls::client_config()?,
        ))
    }

    pub fn with_lookup(
        policy: UrlPolicy,
        timeouts: HttpTimeouts,
        lookup: impl Lookup,
        tls: rustls::ClientConfig,
    ) -> Self {
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .dns_resolver(Arc::new(CheckedResolver {
                lookup,
                policy: policy.clone(),
            }))
            .redirect(Policy::none())
            .no_proxy()
            .connect_timeout(timeouts.connect)
            .read_timeout(timeouts.read)
            .user_agent(concat!("pns-cdr/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("the HTTP client configuration is valid");
        Self {
            client,
            policy,
            timeouts,
        }
    }
}

impl RecordingSource for HttpRecordingSource {
    async fn open(&self, url: &str) -> Result<Download, FetchError> {
        let mut url: Url = self.policy.check_url(url)?;
        for _ in 0..=MAX_REDIRECTS {
            let response = self
                .client
                .get(url.clone())
                .send()
                .await
                .map_err(fetch_error)?;
            let status = response.status();
            if status.is_redirection() {
                let location = response
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .ok_or(FetchError::BadRedirect)?;
                let next = url.join(location).map_err(|_| FetchError::BadRedirect)?;
                self.policy.check_parsed(&next)?;
                url = next;
                continue;
            }
            if status != reqwest::StatusCode::OK {
                return Err(FetchError::Status(status.as_u16()));
            }
            let content_type = response
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            return Ok(Download {
                content_type,
                content_length: response.content_length(),
                host: url.host_str().unwrap_or_default().to_owned(),
                body: Box::pin(response.bytes_stream().map({
                    let (min_rate, window) =
                        (self.timeouts.min_rate, self.timeouts.min_rate_window);
                    let mut window_start = tokio::time::Instant::now();
                    let mut window_bytes = 0u64;
                    move |chunk| {
                        let chunk = chunk.map_err(fetch_error)?;
                        window_bytes += chunk.len() as u64;
                        let elapsed = window_start.elapsed();
                        if elapsed >= window {
                            if (window_bytes as f64) < min_rate as f64 * elapsed.as_secs_f64() {
                                return Err(FetchError::TooSlow {
                                    bytes: window_bytes,
                                    seconds: elapsed.as_secs(),
                                    min_rate,
                                });
                            }
                            window_start = tokio::time::Instant::now();
                            window_bytes = 0;
                        }
                        Ok(chunk)
                    }
                })),
            });
        }
        Err(FetchError::TooManyRedirects(MAX_REDIRECTS))
    }
}

/// Maps a reqwest error, recovering a policy refusal raised inside the resolver.
fn fetch_error(e: reqwest::Error) -> FetchError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(err) = source {
        if let Some(refused) = err.downcast_ref::<UrlRefused>() {
            return FetchError::Refused(refused.clone());
        }
        source = err.source();
    }
    if e.is_timeout() {
        FetchError::Timeout
    } else if e.is_connect() {
        FetchError::Connect(error_chain(e))
    } else {
        FetchError::Body(error_chain(e))
    }
}

/// The error and its causes on one line, without the URL (it may carry a signed query).
fn error_chain(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

impl Lookup for Arc<dyn Lookup> {
    fn lookup(
        &self,
        host: &str,
    ) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<IpAddr>>> + Send>> {
        (**self).lookup(host)
    }
}

/// Fixed answers, for tests: names not in the map do not resolve.
#[derive(Debug, Clone, Default)]
pub struct StaticLookup(pub std::collections::HashMap<String, Vec<IpAddr>>);

impl Lookup for StaticLookup {
    fn lookup(
        &self,
        host: &str,
    ) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<IpAddr>>> + Send>> {
        let answer = self
            .0
            .get(&host.to_ascii_lowercase())
            .cloned()
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no such host"));
        Box::pin(async move { answer })
    }
}
