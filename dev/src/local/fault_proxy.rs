//! A counting, fault-injecting proxy between the stack and the AWS emulator, on 127.0.0.1.
//!
//! Every request is named by its AWS operation (`PutItem`, `SendMessage`, `UploadPart`, …)
//! and counted; rules make chosen operations stall, answer an error status, lose the
//! connection before or after the emulator saw the request, or be swallowed (answered as a
//! success without reaching the emulator: a deliberately lost write, to prove the checks see
//! it). Tests use it for the request-count floor and the fault matrix.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// What a rule does to a matching request.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Wait this long, then forward.
    Stall(Duration),
    /// Answer this status (with an AWS-style JSON error) without forwarding.
    Status(u16),
    /// Close the connection without forwarding: the emulator never sees the request.
    ResetBefore,
    /// Forward, then close the connection instead of answering: the write happened, the
    /// caller cannot know.
    ResetAfter,
    /// Answer `200 {}` without forwarding: a write the caller believes happened and did not.
    Swallow,
    /// Hold the request unanswered (until the proxy stops) and wake whoever waits on the
    /// notify: the moment to kill a process between two calls.
    Hold(Arc<Notify>),
}

#[derive(Debug)]
struct Rule {
    /// `None` matches every operation.
    operation: Option<String>,
    fault: Fault,
    /// Requests still to affect.
    remaining: usize,
}

#[derive(Debug, Default)]
struct State {
    rules: Vec<Rule>,
    counts: BTreeMap<String, u64>,
    faults_applied: u64,
}

/// The running proxy; stops when dropped.
pub struct FaultProxy {
    /// `http://127.0.0.1:<port>`: use as the stack's AWS endpoint.
    pub endpoint: String,
    state: Arc<Mutex<State>>,
    task: JoinHandle<()>,
}

impl FaultProxy {
    /// Starts on a free port, forwarding to `upstream` (the emulator's endpoint).
    pub async fn start(upstream: &str) -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let state: Arc<Mutex<State>> = Arc::default();
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(std::io::Error::other)?;
        let upstream = upstream.trim_end_matches('/').to_owned();
        let shared = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (state, client, upstream) = (shared.clone(), client.clone(), upstream.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let (state, client, upstream) =
                            (state.clone(), client.clone(), upstream.clone());
                        async move { handle(req, &state, &client, &upstream).await }
                    });
                    // An `Err` from the service drops the connection without an answer.
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Self {
            endpoint,
            state,
            task,
        })
    }

    /// Applies `fault` to the next `times` requests for `operation` (`None`: any operation).
    pub fn inject(&self, operation: Option<&str>, fault: Fault, times: usize) {
        self.lock().rules.push(Rule {
            operation: operation.map(str::to_owned),
            fault,
            remaining: times,
        });
    }

    /// Removes every rule.
    pub fn clear(&self) {
        self.lock().rules.clear();
    }

    /// Requests seen per operation since the last reset.
    pub fn counts(&self) -> BTreeMap<String, u64> {
        self.lock().counts.clone()
    }

    pub fn reset_counts(&self) {
        self.lock().counts.clear();
    }

    /// How many requests a rule has affected in all.
    pub fn faults_applied(&self) -> u64 {
        self.lock().faults_applied
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("not poisoned")
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Why a connection is dropped without an answer.
#[derive(Debug, thiserror::Error)]
#[error("connection dropped by the fault proxy")]
struct Dropped;

async fn handle(
    req: Request<hyper::body::Incoming>,
    state: &Mutex<State>,
    client: &reqwest::Client,
    upstream: &str,
) -> Result<Response<Full<Bytes>>, Dropped> {
    let operation = operation(&req);
    let fault = {
        let mut state = state.lock().expect("not poisoned");
        *state.counts.entry(operation.clone()).or_default() += 1;
        let rule = state
            .rules
            .iter_mut()
            .find(|r| r.remaining > 0 && r.operation.as_deref().is_none_or(|op| op == operation));
        let fault = rule.map(|r| {
            r.remaining -= 1;
            r.fault.clone()
        });
        state.rules.retain(|r| r.remaining > 0);
        if fault.is_some() {
            state.faults_applied += 1;
        }
        fault
    };
    match &fault {
        Some(Fault::Stall(pause)) => tokio::time::sleep(*pause).await,
        Some(Fault::Status(status)) => {
            let body = format!(
                r#"{{"__type":"InternalFailure","message":"injected HTTP {status} for {operation}"}}"#
            );
            return Ok(answer(*status, "application/x-amz-json-1.0", body.into()));
        }
        Some(Fault::ResetBefore) => return Err(Dropped),
        Some(Fault::Swallow) => {
            return Ok(answer(200, "application/x-amz-json-1.0", "{}".into()));
        }
        Some(Fault::Hold(notify)) => {
            notify.notify_one();
            std::future::pending::<()>().await;
        }
        Some(Fault::ResetAfter) | None => {}
    }
    let response = forward(req, client, upstream).await;
    if matches!(fault, Some(Fault::ResetAfter)) {
        return Err(Dropped);
    }
    Ok(response)
}

async fn forward(
    req: Request<hyper::body::Incoming>,
    client: &reqwest::Client,
    upstream: &str,
) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return answer(400, "text/plain", "request body unreadable".into()),
    };
    let mut headers = parts.headers;
    headers.remove(hyper::header::HOST);
    let sent = client
        .request(parts.method, format!("{upstream}{path}"))
        .headers(headers)
        .body(body)
        .send()
        .await;
    let Ok(reply) = sent else {
        return answer(502, "text/plain", "emulator unreachable".into());
    };
    let status = reply.status();
    let headers = reply.headers().clone();
    let body = reply.bytes().await.unwrap_or_default();
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    for (name, value) in &headers {
        // hyper frames the body itself.
        if name != hyper::header::TRANSFER_ENCODING && name != hyper::header::CONNECTION {
            response.headers_mut().append(name, value.clone());
        }
    }
    response
}

fn answer(status: u16, content_type: &str, body: Bytes) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(body))
        .expect("valid response")
}

/// The AWS operation a request performs: the JSON protocols name it in `X-Amz-Target`
/// (`DynamoDB_20120810.PutItem`, `AmazonSQS.SendMessage`); S3 by method, key and query.
pub fn operation<B>(req: &Request<B>) -> String {
    if let Some(target) = req
        .headers()
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
    {
        return target.rsplit('.').next().unwrap_or(target).to_owned();
    }
    let query = req.uri().query().unwrap_or_default();
    let has = |name: &str| {
        query
            .split('&')
            .any(|pair| pair.split('=').next() == Some(name))
    };
    // Path-style addressing: `/<bucket>` or `/<bucket>/<key>`.
    let has_key = req.uri().path().trim_start_matches('/').contains('/');
    let method = req.method().as_str();
    let name = match (method, has_key) {
        ("PUT", true) if has("partNumber") => "UploadPart",
        ("PUT", true) => "PutObject",
        ("POST", true) if has("uploads") => "CreateMultipartUpload",
        ("POST", true) if has("uploadId") => "CompleteMultipartUpload",
        ("DELETE", true) if has("uploadId") => "AbortMultipartUpload",
        ("DELETE", true) => "DeleteObject",
        ("HEAD", true) => "HeadObject",
        ("GET", true) => "GetObject",
        ("GET", false) if has("uploads") => "ListMultipartUploads",
        ("GET", false) => "ListObjects",
        ("PUT", false) => "CreateBucket",
        ("HEAD", false) => "HeadBucket",
        ("POST", false) => "S3Post",
        _ => "Other",
    };
    name.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, uri: &str, target: Option<&str>) -> Request<()> {
        let mut builder = Request::builder().method(method).uri(uri);
        if let Some(t) = target {
            builder = builder.header("x-amz-target", t);
        }
        builder.body(()).unwrap()
    }

    #[test]
    fn requests_are_named_by_their_aws_operation() {
        let cases = [
            (
                req("POST", "/", Some("DynamoDB_20120810.PutItem")),
                "PutItem",
            ),
            (
                req("POST", "/", Some("AmazonSQS.SendMessage")),
                "SendMessage",
            ),
            (
                req("PUT", "/b/k.mp3?partNumber=2&uploadId=x", None),
                "UploadPart",
            ),
            (req("PUT", "/b/k.mp3", None), "PutObject"),
            (
                req("POST", "/b/k.mp3?uploads", None),
                "CreateMultipartUpload",
            ),
            (
                req("POST", "/b/k.mp3?uploadId=x", None),
                "CompleteMultipartUpload",
            ),
            (
                req("DELETE", "/b/k.mp3?uploadId=x", None),
                "AbortMultipartUpload",
            ),
            (req("HEAD", "/b/k.mp3", None), "HeadObject"),
            (req("GET", "/b?uploads", None), "ListMultipartUploads"),
        ];
        for (request, expected) in cases {
            assert_eq!(operation(&request), expected, "{}", request.uri());
        }
    }
}
