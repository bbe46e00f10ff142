//! The webhook: one NXCLOUD push in, one durable record (or a quarantined body) out.
//!
//! Order matters for "nothing lost": a 200 is only answered after the put (and, for a new
//! record with a recording, the enqueue) succeeded; an error answer leaves state that
//! NXCLOUD's next retry completes through the duplicate path.

use std::net::IpAddr;
use std::time::Duration;

use bytes::Bytes;
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use time::{OffsetDateTime, UtcOffset};

mod binding;
mod outcome;

pub use outcome::{PushOutcome, Quarantine};

use crate::domain::auth::{presented_token, SharedAuthenticator};
use crate::domain::canary::{is_canary_id, CANARY_TTL};
use crate::domain::cdr::ParsedCallRecord;
use crate::domain::item::{format_time, record_item, RecordingPlan, StoredRecord};
use crate::domain::numbers::{numbers_in_body, NumberKeys, NUMBER_INDEX_PREFIX};
use crate::domain::push::{self, InvalidPush, PushKind};
use crate::domain::recording::{
    conflict_key, recording_key, rejected_key, RecordingJob, RecordingStatus,
};
use crate::domain::sha256_hex;
use crate::domain::url_policy::UrlPolicy;
use crate::metrics::{self, Function, Metric};
use crate::ports::{
    BindingErrorStore, JobQueue, ObjectMeta, ObjectStore, PortError, PutOutcome, RecordStore,
};
use crate::telemetry::ErrorChain;

/// Largest push body accepted; real CDRs are well under 2 KiB.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The call-result route.
pub const CALL_RESULT_ROUTE: &str = "/pns/call-result";
/// The binding-error route (either route takes either push: the body's shape decides).
pub const BINDING_ERROR_ROUTE: &str = "/pns/binding-error";

/// The push a request path expects.
pub fn route_kind(path: &str) -> PushKind {
    if path.trim_end_matches('/').ends_with(BINDING_ERROR_ROUTE) {
        PushKind::BindingError
    } else {
        PushKind::CallRecord
    }
}

/// The HTTP request that carries a push, whatever delivered it (API Gateway or the local
/// server).
#[derive(Debug, Clone)]
pub struct PushRequest<'a> {
    /// What the route expects, for a body whose shape says neither.
    pub route: PushKind,
    pub method: &'a str,
    pub query_token: Option<&'a str>,
    pub authorization: Option<&'a str>,
    pub source_ip: Option<IpAddr>,
    pub body: &'a [u8],
}

/// Storage failed, for the reason its cause gives; NXCLOUD will retry.
fn unavailable(e: &PortError) -> PushOutcome {
    PushOutcome::Unavailable {
        error: ErrorChain(e).to_string(),
    }
}

/// Tunables of the webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookSettings {
    /// A duplicate of a record still `PENDING` re-enqueues its job only once the record is
    /// this old: NXCLOUD retries a failed push after about a minute, so a lost job is
    /// re-queued by the retry, while a burst of immediate duplicates queues nothing extra.
    pub requeue_pending_after: Duration,
    /// When set, items carry `expiresAt` so DynamoDB's TTL removes them after this long.
    pub retention: Option<Duration>,
    /// NXCLOUD's time zone, in which a binding error's `occurrenceTime` is written.
    pub nxcloud_offset: UtcOffset,
    /// The keys of the index of kept bodies by number (read at cold start). `None`: kept
    /// bodies are not indexed (tests that do not look at the index).
    pub number_keys: Option<NumberKeys>,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            requeue_pending_after: Duration::from_secs(30),
            retention: None,
            // NXCLOUD runs PNS from Hong Kong: UTC+8, no daylight saving.
            nxcloud_offset: UtcOffset::from_hms(8, 0, 0).expect("+08:00 is an offset"),
            number_keys: None,
        }
    }
}

/// The webhook service, generic over its four ports.
pub struct Webhook<S, Q, O, B> {
    pub store: S,
    pub queue: Q,
    pub objects: O,
    pub bindings: B,
    pub auth: SharedAuthenticator,
    pub policy: UrlPolicy,
    pub settings: WebhookSettings,
}

impl<S: RecordStore, Q: JobQueue, O: ObjectStore, B: BindingErrorStore> Webhook<S, Q, O, B> {
    /// Handles one push. Never panics on input.
    pub async fn handle(&self, request: PushRequest<'_>) -> PushOutcome {
        let started = std::time::Instant::now();
        let outcome = self.answer(request, OffsetDateTime::now_utc()).await;
        let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
        let (metric, also) = outcome.metrics();
        let mut values = vec![
            (Metric::PushReceived, 1.0),
            (metric, 1.0),
            (Metric::PushLatencyMs, latency_ms),
        ];
        values.extend(also.map(|also| (also, 1.0)));
        metrics::emit(Function::Webhook, &values);
        outcome.log();
        outcome
    }

    async fn answer(&self, request: PushRequest<'_>, received_at: OffsetDateTime) -> PushOutcome {
        if !request.method.eq_ignore_ascii_case("POST") {
            return PushOutcome::MethodNotAllowed;
        }
        let token = presented_token(request.query_token, request.authorization);
        if let Err(e) = self.auth.check(token, request.source_ip) {
            return PushOutcome::Unauthorized(e);
        }
        let body = request.body;
        if body.len() > MAX_BODY_BYTES {
            let why = InvalidPush::TooLarge {
                size: body.len(),
                limit: MAX_BODY_BYTES,
            };
            let kind = (request.route, Quarantine::TooLarge);
            return self.quarantine(body, why, received_at, kind).await;
        }
        match push::parse(body, request.route) {
            Ok(push::Push::CallRecord(parsed)) => {
                self.store_call_record(body, parsed, received_at).await
            }
            Ok(push::Push::BindingError(parsed)) => {
                self.store_binding_error(body, parsed, received_at).await
            }
            Err((kind, why)) => {
                let kind = (kind, Quarantine::InvalidBody);
                self.quarantine(body, why, received_at, kind).await
            }
        }
    }

    async fn store_call_record(
        &self,
        body: &[u8],
        push: ParsedCallRecord,
        received_at: OffsetDateTime,
    ) -> PushOutcome {
        let record = &push.record;
        let id = record.id;
        let plan = match record.recording_url() {
            None => RecordingPlan::None,
            Some(url) => match self.policy.check_url(url) {
                Ok(_) => RecordingPlan::Pending {
                    key: recording_key(id, record.start_at, received_at, url),
                },
                Err(refused) => RecordingPlan::Refused {
                    reason: refused.to_string(),
                },
            },
        };
        let job = match &plan {
            RecordingPlan::Pending { key } => record
                .recording_url()
                .map(|url| RecordingJob::new(id, url, key, received_at)),
            _ => None,
        };
        let call_id = record.call_id.clone();
        let payload_sha256 = push.payload_sha256.clone();
        let mut item = record_item(push, received_at, &plan);
        if is_canary_id(id) {
            item.expire_after(received_at, CANARY_TTL);
        } else if let Some(retention) = self.settings.retention {
            item.expire_after(received_at, retention);
        }
        match self.store.put_new(item).await {
            Err(e) => unavailable(&e),
            Ok(PutOutcome::Created) => {
                if let Some(job) = &job {
                    if let Err(e) = self.queue.send(job).await {
                        // The record is stored as PENDING: the retry takes the duplicate path
                        // and enqueues again.
                        return unavailable(&e);
                    }
                }
                PushOutcome::Stored {
                    id,
                    call_id,
                    recording: plan.status(),
                }
            }
            Ok(PutOutcome::Refused(reason)) => {
                // Valid to the contract, unstorable as an item: a retry would be refused too,
                // so keep the body now and say why.
                let why = InvalidPush::Unstorable {
                    push: "record",
                    reason,
                };
                let kind = (PushKind::CallRecord, Quarantine::Unstorable);
                self.quarantine(body, why, received_at, kind).await
            }
            Ok(PutOutcome::Duplicate(stored)) => {
                let pushed = Pushed {
                    id,
                    call_id,
                    payload_sha256: &payload_sha256,
                };
                self.duplicate(body, pushed, *stored, received_at).await
            }
        }
    }

    async fn duplicate(
        &self,
        body: &[u8],
        pushed: Pushed<'_>,
        stored: StoredRecord,
        received_at: OffsetDateTime,
    ) -> PushOutcome {
        let Pushed {
            id,
            call_id,
            payload_sha256,
        } = pushed;
        let conflict = stored.payload_sha256.as_deref() != Some(payload_sha256);
        if conflict {
            let key = conflict_key(id, payload_sha256);
            let kept = ("record-id", id.to_string());
            if let Err(e) = self
                .keep_conflict(&key, body, kept, &stored, received_at)
                .await
            {
                return unavailable(&e);
            }
        }
        // A record still PENDING may have lost its job (enqueue failed, or it was dropped):
        // enqueue again from what was stored. The archiver is idempotent.
        let age = received_at.unix_timestamp() - stored.received_at_epoch.unwrap_or_default();
        let settled = age >= self.settings.requeue_pending_after.as_secs() as i64;
        if stored.status() == Some(RecordingStatus::Pending) && settled {
            if let (Some(url), Some(key)) = (stored.record_file, stored.recording_key) {
                if let Err(e) = self
                    .queue
                    .send(&RecordingJob::new(id, url, key, received_at))
                    .await
                {
                    return unavailable(&e);
                }
            }
        }
        PushOutcome::Duplicate {
            id,
            call_id,
            conflict,
        }
    }

    /// Keeps a body that reused a stored key with other content, beside the stored item.
    async fn keep_conflict(
        &self,
        key: &str,
        body: &[u8],
        stored_key: (&'static str, String),
        stored: &StoredRecord,
        received_at: OffsetDateTime,
    ) -> Result<(), PortError> {
        let meta = ObjectMeta {
            content_type: "application/json".into(),
            metadata: vec![
                stored_key,
                ("received-at", format_time(received_at)),
                (
                    "stored-payload-sha256",
                    stored.payload_sha256.clone().unwrap_or_default(),
                ),
            ],
            sha256: None,
        };
        self.keep(key, body, &meta).await
    }

    /// Keeps a quarantined or conflicting body under `key`, indexed first by the numbers it
    /// holds: an empty object `number-index/<keyed hash>/<key>` per number, so an erasure
    /// finds the bodies of a number by listing one prefix. A crash in between leaves an entry
    /// without a body (harmless), never a body the index misses.
    async fn keep(&self, key: &str, body: &[u8], meta: &ObjectMeta) -> Result<(), PortError> {
        if let Some(keys) = &self.settings.number_keys {
            self.index_numbers(keys, key, body).await?;
        }
        self.objects
            .put(key, Bytes::copy_from_slice(body), meta)
            .await
    }

    async fn index_numbers(
        &self,
        keys: &NumberKeys,
        key: &str,
        body: &[u8],
    ) -> Result<(), PortError> {
        let meta = ObjectMeta {
            content_type: "application/x-empty".into(),
            metadata: Vec::new(),
            sha256: None,
        };
        for number in numbers_in_body(body) {
            if let Some(hash) = keys.hash(&number) {
                let entry = format!("{NUMBER_INDEX_PREFIX}{hash}/{key}");
                self.objects.put(&entry, Bytes::new(), &meta).await?;
            }
        }
        Ok(())
    }

    /// Keeps a body that is not a valid push, keyed by its digest.
    async fn quarantine(
        &self,
        body: &[u8],
        why: InvalidPush,
        received_at: OffsetDateTime,
        (push, kind): (PushKind, Quarantine),
    ) -> PushOutcome {
        let key = rejected_key(&sha256_hex(body));
        let mut metadata = vec![
            ("reason", why.to_string()),
            ("received-at", format_time(received_at)),
            ("push", push.name().to_owned()),
        ];
        if let Some(field) = why.field() {
            metadata.push(("field", field.to_owned()));
        }
        let meta = ObjectMeta {
            content_type: "application/octet-stream".into(),
            metadata,
            sha256: None,
        };
        if let Err(e) = self.keep(&key, body, &meta).await {
            return unavailable(&e);
        }
        PushOutcome::Quarantined { kind, why, key }
    }

    /// The `lambda_http` entry point: API Gateway HTTP API (payload v2) in, response out.
    pub async fn handle_http(
        &self,
        request: Request,
    ) -> Result<Response<Body>, std::convert::Infallible> {
        let query = request.uri().query().unwrap_or_default();
        let query_token = url::form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == "token")
            .map(|(_, v)| v.into_owned());
        let authorization = request
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let source_ip = match request.request_context_ref() {
            Some(RequestContext::ApiGatewayV2(ctx)) => {
                ctx.http.source_ip.as_deref().and_then(|s| s.parse().ok())
            }
            _ => None,
        };
        let outcome = self
            .handle(PushRequest {
                route: route_kind(request.uri().path()),
                method: request.method().as_str(),
                query_token: query_token.as_deref(),
                authorization,
                source_ip,
                body: request.body().as_ref(),
            })
            .await;
        Ok(outcome.to_response())
    }
}

/// The webhook over the in-memory ports: tests, the bench and the harness.
#[cfg(any(test, feature = "memory"))]
pub type MemoryWebhook = Webhook<
    crate::adapters::memory::MemoryRecordStore,
    crate::adapters::memory::MemoryJobQueue,
    crate::adapters::memory::MemoryObjectStore,
    crate::adapters::memory::MemoryBindingErrorStore,
>;

#[cfg(any(test, feature = "memory"))]
impl MemoryWebhook {
    /// Empty in-memory stores, `tokens` (`current[,previous]`) from the sources `cidrs`
    /// (empty: any), NXCLOUD's production URL policy and the default settings.
    pub fn in_memory(tokens: &str, cidrs: &str) -> Self {
        use crate::domain::auth::Authenticator;
        use crate::domain::url_policy::{UrlProfile, DEFAULT_RECORDING_HOSTS};
        Self {
            store: Default::default(),
            queue: Default::default(),
            objects: Default::default(),
            bindings: Default::default(),
            auth: Authenticator::new(tokens, cidrs)
                .expect("valid test tokens")
                .into(),
            policy: UrlPolicy::new(DEFAULT_RECORDING_HOSTS, UrlProfile::Production)
                .expect("the default hosts are valid"),
            settings: WebhookSettings::default(),
        }
    }
}

/// What the duplicate path needs of a call record already moved into its item.
struct Pushed<'a> {
    id: i64,
    call_id: Option<String>,
    payload_sha256: &'a str,
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;
    use serde_json::Value;

    const TOKEN: &str = "unit-test-token-0123";
    const RECORDING: &str = "https://remote.record.nxcloud.com/pns/20221219/a.mp3";

    fn webhook() -> MemoryWebhook {
        let mut webhook = MemoryWebhook::in_memory(TOKEN, "");
        webhook.settings.requeue_pending_after = Duration::ZERO;
        webhook
    }

    fn push(body: &[u8]) -> PushRequest<'_> {
        PushRequest {
            route: PushKind::CallRecord,
            method: "POST",
            query_token: Some(TOKEN),
            authorization: None,
            source_ip: None,
            body,
        }
    }

    fn body(id: i64, duration: i64) -> Vec<u8> {
        format!(
            r#"{{"id":{id},"duration":{duration},"startAt":1671440452,"recordFile":"{RECORDING}"}}"#
        )
        .into_bytes()
    }

    #[tokio::test]
    async fn a_failed_put_answers_503_and_writes_nothing() {
        let w = webhook();
        w.store.fail_next.store(1, Ordering::SeqCst);
        assert_eq!(w.handle(push(&body(1, 5))).await.status(), 503);
        assert!(w.store.items.lock().unwrap().is_empty());
        assert!(w.queue.jobs.lock().unwrap().is_empty());
        // NXCLOUD's retry then stores it.
        assert_eq!(w.handle(push(&body(1, 5))).await.status(), 200);
        assert_eq!(w.queue.jobs.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_record_the_table_refuses_is_quarantined_and_answered_422() {
        let w = webhook();
        w.store.refuse_next.store(1, Ordering::SeqCst);
        let answer = w.handle(push(&body(2, 5))).await;
        assert_eq!(answer.status(), 422, "{}", answer.body());
        assert_eq!(answer.body()["error"], "unstorable_record");
        let answered = answer.body();
        let key = answered["quarantineKey"].as_str().unwrap();
        let objects = w.objects.objects.lock().unwrap();
        assert_eq!(objects[key].0.as_ref(), body(2, 5).as_slice());
        assert!(w.queue.jobs.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_failed_enqueue_answers_503_and_the_retry_enqueues() {
        let w = webhook();
        w.queue.fail_next.store(1, Ordering::SeqCst);
        assert_eq!(w.handle(push(&body(2, 5))).await.status(), 503);
        assert_eq!(
            w.store.items.lock().unwrap().len(),
            1,
            "the record itself is durable"
        );
        let answer = w.handle(push(&body(2, 5))).await;
        assert_eq!(
            (answer.status(), answer.body()["duplicate"].clone()),
            (200, Value::Bool(true))
        );
        assert_eq!(w.queue.jobs.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_failed_quarantine_or_conflict_write_answers_503() {
        let w = webhook();
        w.objects.fail_next.store(1, Ordering::SeqCst);
        assert_eq!(
            w.handle(push(b"{not json")).await.status(),
            503,
            "a bad body is only refused once kept"
        );
        assert_eq!(w.handle(push(b"{not json")).await.status(), 400);
        assert_eq!(w.objects.objects.lock().unwrap().len(), 1);

        assert_eq!(w.handle(push(&body(3, 5))).await.status(), 200);
        w.objects.fail_next.store(1, Ordering::SeqCst);
        assert_eq!(
            w.handle(push(&body(3, 6))).await.status(),
            503,
            "a conflicting body is only answered once kept"
        );
        let answer = w.handle(push(&body(3, 6))).await;
        assert_eq!(
            (answer.status(), answer.body()["conflict"].clone()),
            (200, Value::Bool(true))
        );
        assert_eq!(
            w.store.items.lock().unwrap()[&3]["duration"],
            5,
            "the first record is kept"
        );
    }

    #[tokio::test]
    async fn bad_tokens_write_nothing_whatever_the_body() {
        let w = webhook();
        for body in [body(4, 5), b"{not json".to_vec(), vec![0xff; 70_000]] {
            let p = PushRequest {
                query_token: Some("wrong-token-0000000000"),
                ..push(&body)
            };
            assert_eq!(w.handle(p).await.status(), 401);
        }
        assert_eq!(w.store.writes.load(Ordering::SeqCst), 0);
        assert!(w.objects.objects.lock().unwrap().is_empty());
        assert!(w.queue.jobs.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn retention_sets_the_ttl_attribute() {
        let mut w = webhook();
        w.settings.retention = Some(Duration::from_secs(86_400));
        let before = OffsetDateTime::now_utc().unix_timestamp();
        assert_eq!(w.handle(push(&body(5, 5))).await.status(), 200);
        let expires = w.store.items.lock().unwrap()[&5][crate::domain::item::EXPIRES_AT_ATTRIBUTE]
            .as_i64()
            .unwrap();
        assert!((before + 86_400..=before + 86_402).contains(&expires));
    }

    const BINDING_ERROR: &[u8] = include_bytes!("../../../events/bodies/binding-error.json");

    #[tokio::test]
    async fn a_binding_error_is_stored_once_from_either_route() {
        let w = webhook();
        let routes = [
            PushKind::BindingError,
            PushKind::CallRecord,
            PushKind::BindingError,
        ];
        let mut outcomes = Vec::new();
        for route in routes {
            let outcome = w
                .handle(PushRequest {
                    route,
                    ..push(BINDING_ERROR)
                })
                .await;
            assert_eq!(outcome.status(), 200, "{}", outcome.body());
            outcomes.push(outcome);
        }
        let request_id = "1640920940635361280".to_owned();
        assert_eq!(
            outcomes[0],
            PushOutcome::BindingErrorStored {
                request_id: request_id.clone(),
                code: 10013
            }
        );
        assert_eq!(
            outcomes[0].metrics(),
            (Metric::PushStored, Some(Metric::UnboundCall))
        );
        for duplicate in &outcomes[1..] {
            assert_eq!(
                *duplicate,
                PushOutcome::BindingErrorDuplicate {
                    request_id: request_id.clone(),
                    conflict: false
                }
            );
            assert_eq!(duplicate.body()["requestId"], request_id.as_str());
        }
        let stored = w.bindings.items.lock().unwrap();
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[&request_id]["code"], 10013);
        assert!(w.store.items.lock().unwrap().is_empty());
        assert!(
            w.objects.objects.lock().unwrap().is_empty(),
            "nothing quarantined"
        );
        assert!(w.queue.jobs.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_conflicting_binding_error_keeps_the_first_and_saves_the_body() {
        let w = webhook();
        assert_eq!(w.handle(push(BINDING_ERROR)).await.status(), 200);
        let changed = String::from_utf8_lossy(BINDING_ERROR).replace("10013", "10012");
        let outcome = w.handle(push(changed.as_bytes())).await;
        assert_eq!(outcome.body()["conflict"], true);
        let objects = w.objects.objects.lock().unwrap();
        let key = objects.keys().next().unwrap();
        assert!(
            key.starts_with(&format!(
                "conflicts/binding-errors/{}/",
                sha256_hex(b"1640920940635361280")
            )),
            "{key}"
        );
        assert_eq!(
            w.bindings.items.lock().unwrap()["1640920940635361280"]["code"],
            10013,
            "the first is kept"
        );
    }

    /// Log lines written while it runs, as the JSON subscriber of Lambda writes them.
    #[derive(Clone, Default)]
    struct Lines(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn each_push_logs_one_outcome_named_as_its_metric() {
        let lines = Lines::default();
        let writer = {
            let lines = lines.clone();
            move || lines.clone()
        };
        let subscriber =
            crate::telemetry::json_subscriber(crate::telemetry::filter(Some("info")), writer);
        let _logging = tracing::subscriber::set_default(subscriber);
        // Other tests' threads, without a subscriber, may have cached the callsites as off.
        tracing::callsite::rebuild_interest_cache();
        let w = webhook();
        let mut expected = Vec::new();
        for (request, metric) in [
            (push(&body(1, 5)), Metric::PushStored),
            (push(&body(1, 5)), Metric::PushDuplicate),
            (push(&body(1, 6)), Metric::PushConflict),
            (push(BINDING_ERROR), Metric::PushStored),
            (push(b"{not json"), Metric::PushQuarantined),
            (
                PushRequest {
                    query_token: Some("wrong-token-0000000000"),
                    ..push(&body(2, 5))
                },
                Metric::PushUnauthorized,
            ),
            (
                PushRequest {
                    method: "GET",
                    ..push(b"")
                },
                Metric::PushRejected,
            ),
        ] {
            w.handle(request).await;
            expected.push(metric.name());
        }
        w.store.fail_next.store(1, Ordering::SeqCst);
        w.handle(push(&body(3, 5))).await;
        expected.push(Metric::PushFailed.name());

        let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        let outcomes: Vec<String> = (text.lines())
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter_map(|l| l["outcome"].as_str().map(str::to_owned))
            .collect();
        assert_eq!(outcomes, expected, "{text}");
    }

    #[tokio::test]
    async fn canaries_expire_within_the_hour_whatever_the_retention() {
        use crate::domain::canary::{canary_binding_error, canary_call_record, canary_id};
        use crate::domain::item::EXPIRES_AT_ATTRIBUTE;
        let w = webhook();
        let before = OffsetDateTime::now_utc().unix_timestamp();
        let id = canary_id(1);
        let body = canary_call_record(id, 1_764_460_800);
        assert_eq!(w.handle(push(body.as_bytes())).await.status(), 200);
        let (request_id, body) = canary_binding_error(1);
        assert_eq!(w.handle(push(body.as_bytes())).await.status(), 200);
        let record = w.store.items.lock().unwrap()[&id][EXPIRES_AT_ATTRIBUTE].as_i64();
        let error = w.bindings.items.lock().unwrap()[&request_id][EXPIRES_AT_ATTRIBUTE].as_i64();
        for expires in [record, error] {
            let expires = expires.expect("a canary always expires");
            assert!((before + 3600..=before + 3602).contains(&expires));
        }
        assert!(
            w.queue.jobs.lock().unwrap().is_empty(),
            "no recording, no job"
        );
    }

    #[tokio::test]
    async fn a_change_only_in_digits_beyond_64_bits_is_a_conflict() {
        let w = webhook();
        let body = |n: &str| format!(r#"{{"id":9,"duration":5,"vendorCounter":{n}}}"#);
        assert_eq!(
            w.handle(push(body("18446744073709551616").as_bytes()))
                .await
                .status(),
            200
        );
        let again = w
            .handle(push(body("18446744073709551616").as_bytes()))
            .await;
        assert_eq!(again.body()["conflict"], false, "an exact retry");
        let changed = w
            .handle(push(body("18446744073709551617").as_bytes()))
            .await;
        assert_eq!(changed.body()["conflict"], true, "{}", changed.body());
    }

    #[tokio::test]
    async fn a_conflicting_binding_error_with_the_longest_request_id_is_kept() {
        let w = webhook();
        let request_id = "/é".repeat(crate::domain::push::MAX_INDEXED_LEN / 3);
        let body = |code: i64| {
            serde_json::json!({"requestId": request_id, "code": code, "msg": "binding not exist"})
                .to_string()
        };
        assert_eq!(w.handle(push(body(10013).as_bytes())).await.status(), 200);
        let outcome = w.handle(push(body(10012).as_bytes())).await;
        assert_eq!(outcome.status(), 200, "{}", outcome.body());
        assert_eq!(outcome.body()["conflict"], true);
        let objects = w.objects.objects.lock().unwrap();
        let (_, meta) = objects.values().next().unwrap();
        assert!(meta.metadata.iter().any(|(k, _)| *k == "request-id"));
    }

    #[tokio::test]
    async fn an_invalid_binding_error_is_quarantined_as_one() {
        let w = webhook();
        let body = br#"{"requestId":"r-1","code":"ten"}"#;
        let outcome = w
            .handle(PushRequest {
                route: PushKind::CallRecord,
                ..push(body)
            })
            .await;
        assert_eq!(outcome.status(), 400);
        assert_eq!(outcome.body()["field"], "code");
        assert_eq!(outcome.metrics(), (Metric::PushQuarantined, None));
        let objects = w.objects.objects.lock().unwrap();
        let (_, meta) = &objects[outcome.body()["quarantineKey"].as_str().unwrap()];
        assert!(meta
            .metadata
            .contains(&("push", "binding-error".to_owned())));
        assert!(w.bindings.items.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_recording_refused_at_intake_counts_as_a_failed_recording() {
        let w = webhook();
        let refused = br#"{"id":7,"recordFile":"https://recordings.example.com/7.mp3"}"#;
        let outcome = w.handle(push(refused)).await;
        assert_eq!(
            outcome,
            PushOutcome::Stored {
                id: 7,
                call_id: None,
                recording: RecordingStatus::Failed
            }
        );
        assert_eq!(
            outcome.metrics(),
            (Metric::PushStored, Some(Metric::RecordingFailed))
        );
        let accepted = w.handle(push(&body(8, 5))).await;
        assert_eq!(accepted.metrics(), (Metric::PushStored, None));
    }
}
