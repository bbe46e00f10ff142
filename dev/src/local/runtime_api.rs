//! A minimal Lambda Runtime API on 127.0.0.1, so a release function binary can be started and
//! invoked as Lambda would, without Lambda: the cold-start bench (`pns-bench cold-start`) and
//! its tests use it.
//!
//! It serves the calls a runtime makes (API version `2018-06-01`):
//! - `GET  /runtime/invocation/next`: hands out the next queued event with the real headers
//!   (`Lambda-Runtime-Aws-Request-Id`, `-Deadline-Ms`, `-Invoked-Function-Arn`, `-Trace-Id`);
//!   like Lambda, it holds the request open while nothing is queued;
//! - `POST /runtime/invocation/{id}/response` and `POST /runtime/invocation/{id}/error`: the
//!   answer to an event, handed to whoever queued it;
//! - `POST /runtime/init/error`: the function failed before asking for its first event.
//!
//! The first `next` marks the end of init, as it does for Lambda's `Init Duration`.
//! Everything stops when the [`RuntimeApi`] is dropped.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};

/// Path prefix of every Runtime API call.
pub const PREFIX: &str = "/2018-06-01/runtime";

/// Errors of the emulator.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeApiError {
    #[error("cannot listen on 127.0.0.1: {0}")]
    Bind(#[source] std::io::Error),
    /// The emulator was dropped before the function answered.
    #[error("the Runtime API emulator stopped before invocation {request_id} was answered")]
    Stopped { request_id: String },
}

/// How the function answered an invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// `POST …/{id}/response`: the handler's result.
    Response(Bytes),
    /// `POST …/{id}/error`: the handler failed.
    Error {
        /// `Lambda-Runtime-Function-Error-Type`, when sent.
        error_type: Option<String>,
        body: Bytes,
    },
    /// `POST …/init/error`: the function failed during init and will not answer.
    InitError {
        error_type: Option<String>,
        body: Bytes,
    },
}

/// An answer and when it arrived (its body fully read).
#[derive(Debug, Clone)]
pub struct Answer {
    pub at: Instant,
    pub outcome: Outcome,
}

/// A queued invocation; [`answer`](Self::answer) waits for the function's answer.
#[derive(Debug)]
pub struct PendingInvocation {
    pub request_id: String,
    answer: oneshot::Receiver<Answer>,
}

impl PendingInvocation {
    /// Waits for the answer (callers bound the wait with `tokio::time::timeout`).
    pub async fn answer(self) -> Result<Answer, RuntimeApiError> {
        self.answer.await.map_err(|_| RuntimeApiError::Stopped {
            request_id: self.request_id,
        })
    }
}

/// An event waiting for `next`.
struct Event {
    request_id: String,
    deadline_ms: u128,
    trace_id: String,
    payload: Bytes,
}

struct Shared {
    function_arn: String,
    /// Events for `next`. The receiver sits behind an async mutex so that concurrent `next`
    /// calls take events one at a time; `recv` is cancel-safe, so a dropped call loses none.
    events: tokio::sync::Mutex<mpsc::UnboundedReceiver<Event>>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    first_next: Option<Instant>,
    /// Invocations queued or handed out and not yet answered, by request id.
    waiting: HashMap<String, oneshot::Sender<Answer>>,
    init_error: Option<Answer>,
}

/// A running Runtime API emulator on `127.0.0.1`; it stops when dropped.
pub struct RuntimeApi {
    addr: SocketAddr,
    queue: mpsc::UnboundedSender<Event>,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl RuntimeApi {
    /// Starts on a free port; `function_arn` is what `Lambda-Runtime-Invoked-Function-Arn`
    /// carries.
    pub async fn start(function_arn: impl Into<String>) -> Result<Self, RuntimeApiError> {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(RuntimeApiError::Bind)?;
        let addr = listener.local_addr().map_err(RuntimeApiError::Bind)?;
        let (queue, events) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            function_arn: function_arn.into(),
            events: tokio::sync::Mutex::new(events),
            state: Mutex::default(),
        });
        let task = tokio::spawn(serve(listener, shared.clone()));
        tracing::debug!(%addr, "runtime API emulator listening");
        Ok(Self {
            addr,
            queue,
            shared,
            task,
        })
    }

    /// `host:port`, the form `AWS_LAMBDA_RUNTIME_API` takes.
    pub fn address(&self) -> String {
        self.addr.to_string()
    }

    /// Queues `payload` for the function, with `timeout` as its deadline.
    pub fn invoke(&self, payload: impl Into<Bytes>, timeout: Duration) -> PendingInvocation {
        let request_id = request_id();
        let (tx, rx) = oneshot::channel();
        let deadline = SystemTime::now() + timeout;
        let event = Event {
            request_id: request_id.clone(),
            deadline_ms: deadline
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis(),
            trace_id: trace_id(),
            payload: payload.into(),
        };
        let mut state = self.shared.state.lock().expect("not poisoned");
        match &state.init_error {
            // A function that failed init will never ask for it.
            Some(init_error) => {
                let _ = tx.send(init_error.clone());
            }
            None => {
                state.waiting.insert(request_id.clone(), tx);
                // The receiver lives in `shared`, which `self` holds: sending cannot fail.
                let _ = self.queue.send(event);
            }
        }
        PendingInvocation {
            request_id,
            answer: rx,
        }
    }

    /// When the first `next` arrived: the end of the function's init.
    pub fn init_done_at(&self) -> Option<Instant> {
        self.shared.state.lock().expect("not poisoned").first_next
    }

    /// The init error the function reported, if any.
    pub fn init_error(&self) -> Option<Answer> {
        self.shared
            .state
            .lock()
            .expect("not poisoned")
            .init_error
            .clone()
    }
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        // Aborting the accept loop drops its JoinSet, which aborts every connection, including
        // a `next` still held open.
        self.task.abort();
    }
}

async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let shared = shared.clone();
                connections.spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let shared = shared.clone();
                        async move { Ok::<_, Infallible>(route(req, &shared).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
            // Reap finished connections so the set does not grow over a long run.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn route(req: Request<Incoming>, shared: &Shared) -> Response<Full<Bytes>> {
    let path = req
        .uri()
        .path()
        .strip_prefix(PREFIX)
        .unwrap_or_default()
        .to_owned();
    match (req.method(), path.as_str()) {
        (&Method::GET, "/invocation/next") => next(shared).await,
        (&Method::POST, "/init/error") => {
            let (error_type, body) = read_body(req).await;
            let answer = Answer {
                at: Instant::now(),
                outcome: Outcome::InitError { error_type, body },
            };
            tracing::debug!("function reported an init error");
            let mut state = shared.state.lock().expect("not poisoned");
            for (_, waiter) in state.waiting.drain() {
                let _ = waiter.send(answer.clone());
            }
            state.init_error = Some(answer);
            accepted()
        }
        (&Method::POST, path) => {
            let Some((id, kind)) = path
                .strip_prefix("/invocation/")
                .and_then(|rest| rest.rsplit_once('/'))
                .filter(|(_, kind)| matches!(*kind, "response" | "error"))
            else {
                return error(
                    StatusCode::NOT_FOUND,
                    "UnknownPath",
                    "no such Runtime API call",
                );
            };
            let id = id.to_owned();
            let is_error = kind == "error";
            let (error_type, body) = read_body(req).await;
            let answer = Answer {
                at: Instant::now(),
                outcome: if is_error {
                    Outcome::Error { error_type, body }
                } else {
                    Outcome::Response(body)
                },
            };
            let waiter = shared
                .state
                .lock()
                .expect("not poisoned")
                .waiting
                .remove(&id);
            match waiter {
                Some(waiter) => {
                    tracing::debug!(request_id = %id, is_error, "invocation answered");
                    let _ = waiter.send(answer);
                    accepted()
                }
                // Unknown, or already answered: Lambda refuses both.
                None => error(
                    StatusCode::BAD_REQUEST,
                    "InvalidRequestID",
                    "no invocation with this id is waiting for an answer",
                ),
            }
        }
        _ => error(
            StatusCode::NOT_FOUND,
            "UnknownPath",
            "no such Runtime API call",
        ),
    }
}

/// `GET …/invocation/next`: blocks until an event is queued.
async fn next(shared: &Shared) -> Response<Full<Bytes>> {
    {
        let mut state = shared.state.lock().expect("not poisoned");
        state.first_next.get_or_insert_with(Instant::now);
    }
    let Some(event) = shared.events.lock().await.recv().await else {
        // Only when the emulator is going away.
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Stopped",
            "the Runtime API is stopping",
        );
    };
    tracing::debug!(request_id = %event.request_id, "event handed out");
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .header("lambda-runtime-aws-request-id", &event.request_id)
        .header("lambda-runtime-deadline-ms", event.deadline_ms.to_string())
        .header("lambda-runtime-invoked-function-arn", &shared.function_arn)
        .header("lambda-runtime-trace-id", &event.trace_id)
        .body(Full::new(event.payload))
        .expect("valid response")
}

/// An answer's error type (if sent) and its body, read to the end.
async fn read_body(req: Request<Incoming>) -> (Option<String>, Bytes) {
    let error_type = req
        .headers()
        .get("lambda-runtime-function-error-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    // A body cut short still answers (empty), so the waiter sees a failure instead of hanging.
    let body = match req.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => Bytes::new(),
    };
    (error_type, body)
}

fn accepted() -> Response<Full<Bytes>> {
    Response::builder()
        .status(StatusCode::ACCEPTED)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(br#"{"status":"OK"}"#)))
        .expect("valid response")
}

fn error(status: StatusCode, error_type: &str, message: &str) -> Response<Full<Bytes>> {
    let body = serde_json::json!({"errorType": error_type, "errorMessage": message});
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("valid response")
}

/// 128 unique bits: the time at first use plus a counter, mixed (splitmix64).
fn unique_bits() -> (u64, u64) {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64;
    let mix = |mut z: u64| {
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    (mix(now ^ n.rotate_left(32)), mix(n.wrapping_add(now)))
}

/// A UUID-shaped request id, as Lambda's are.
fn request_id() -> String {
    let (a, b) = unique_bits();
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        b >> 52,
        b & 0xffff_ffff_ffff
    )
}

/// An X-Ray trace header of the shape Lambda sends.
fn trace_id() -> String {
    let (a, b) = unique_bits();
    let epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    format!(
        "Root=1-{epoch:08x}-{a:016x}{:08x};Parent={b:016x};Sampled=0",
        b >> 32
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_shaped_like_lambdas() {
        let ids: std::collections::HashSet<String> = (0..1000).map(|_| request_id()).collect();
        assert_eq!(ids.len(), 1000);
        let id = ids.iter().next().unwrap();
        let groups: Vec<usize> = id.split('-').map(str::len).collect();
        assert_eq!(groups, [8, 4, 4, 4, 12], "{id}");
        assert!(trace_id().starts_with("Root=1-"));
    }
}
