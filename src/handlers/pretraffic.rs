//! The pre-traffic hook: before CodeDeploy shifts any push to a new webhook version, the
//! version is proven end to end with its own code and role. The hook reads the token secret,
//! pushes a canary call record to the new version exactly as API Gateway would deliver it,
//! reads the record back from the table, and reports the verdict to CodeDeploy. A failure
//! names its step; CodeDeploy then rolls back and NXCLOUD never meets the version.
//!
//! The canary (`domain::canary`) is an ordinary push in a reserved id range: it expires
//! within the hour, makes no recording job, and its events carry a source of their own.

use serde_json::{json, Value};
use time::OffsetDateTime;
use tracing::{error, info};

use crate::adapters::secrets::TokenSecret;
use crate::domain::auth::{AuthConfigError, Authenticator};
use crate::domain::canary::{canary_call_record, canary_id};
use crate::handlers::webhook::CALL_RESULT_ROUTE;
use crate::ports::{DeploymentHooks, FunctionInvoker, LifecycleHook, PortError, RecordLookup};
use crate::telemetry::ErrorChain;

/// Why the new version failed its check, by step.
#[derive(Debug, thiserror::Error)]
pub enum CheckFailed {
    #[error("step 1 (read the token secret) failed")]
    Secret(#[source] PortError),
    #[error("step 1 (read the token secret) failed: the secret holds no valid tokens")]
    Tokens(#[source] AuthConfigError),
    #[error("step 2 (push a canary call record to the new version) failed")]
    Invoke(#[source] PortError),
    #[error("step 2 (push a canary call record to the new version) failed: it answered {status}: {body}")]
    Answer { status: u64, body: String },
    #[error("step 3 (read the canary record back from the table) failed")]
    Read(#[source] PortError),
    #[error("step 3 (read the canary record back from the table) failed: record {0} is not there")]
    NotStored(i64),
}

/// The hook, generic over its ports.
pub struct PreTraffic<T, I, R> {
    /// The webhook's token secret.
    pub secret: T,
    /// The new webhook version.
    pub webhook: I,
    /// The calls table.
    pub records: R,
    /// `SourceCidrs`: the canary says it comes from an address the list admits.
    pub source_cidrs: String,
}

impl<T: TokenSecret, I: FunctionInvoker, R: RecordLookup> PreTraffic<T, I, R> {
    /// Proves the new version; the canary's id when it passed.
    pub async fn check(&self, now: OffsetDateTime) -> Result<i64, CheckFailed> {
        let tokens = self.secret.fetch().await.map_err(CheckFailed::Secret)?;
        let auth = Authenticator::new(&tokens, &self.source_cidrs).map_err(CheckFailed::Tokens)?;
        let millis = (now.unix_timestamp_nanos() / 1_000_000) as u64;
        let id = canary_id(millis);
        let body = canary_call_record(id, now.unix_timestamp());
        let event = api_gateway_event(
            auth.current_token(),
            &auth.admitted_source().to_string(),
            &body,
            now,
        );
        let answer = self
            .webhook
            .invoke(&event)
            .await
            .map_err(CheckFailed::Invoke)?;
        let status = answer["statusCode"].as_u64().unwrap_or_default();
        if status != 200 {
            // The webhook's answer carries no token and no phone number.
            let body = answer["body"].as_str().unwrap_or_default().to_owned();
            return Err(CheckFailed::Answer { status, body });
        }
        match self.records.item(id).await.map_err(CheckFailed::Read)? {
            Some(_) => Ok(id),
            None => Err(CheckFailed::NotStored(id)),
        }
    }

    /// The Lambda handler: checks, and tells CodeDeploy. Err only when the verdict could not
    /// be reported (CodeDeploy then times the hook out, which fails the deployment too).
    pub async fn handle<D: DeploymentHooks>(
        &self,
        hooks: &D,
        hook: &LifecycleHook,
    ) -> Result<bool, PortError> {
        let passed = match self.check(OffsetDateTime::now_utc()).await {
            Ok(id) => {
                info!(deployment = %hook.deployment_id, canary = id, outcome = "passed", "the new webhook version stored its canary");
                true
            }
            Err(e) => {
                error!(deployment = %hook.deployment_id, error = %ErrorChain(&e), outcome = "failed", "the new webhook version failed its check");
                false
            }
        };
        hooks.report(hook, passed).await?;
        Ok(passed)
    }
}

/// A push to the call-result route as API Gateway's HTTP API (payload 2.0) hands it to the
/// function.
pub fn api_gateway_event(token: &str, source_ip: &str, body: &str, now: OffsetDateTime) -> Value {
    let route_key = format!("ANY {CALL_RESULT_ROUTE}");
    json!({
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": CALL_RESULT_ROUTE,
        "rawQueryString": format!("token={token}"),
        "queryStringParameters": {"token": token},
        "headers": {"content-type": "application/json", "user-agent": "pns-cdr pre-traffic hook"},
        "requestContext": {
            "accountId": "pre-traffic", "apiId": "pre-traffic", "domainName": "pre-traffic",
            "http": {
                "method": "POST", "path": CALL_RESULT_ROUTE, "protocol": "HTTP/1.1",
                "sourceIp": source_ip, "userAgent": "pns-cdr pre-traffic hook"
            },
            "requestId": "pre-traffic", "routeKey": route_key, "stage": "$default",
            "timeEpoch": now.unix_timestamp() * 1000
        },
        "body": body,
        "isBase64Encoded": false
    })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::sync::Mutex;

    use super::*;
    use crate::handlers::webhook::MemoryWebhook;

    const TOKEN: &str = "pre-traffic-test-token";

    /// The secret, as a fixed value or a failure.
    struct Secret(Option<&'static str>);

    impl TokenSecret for Secret {
        async fn fetch(&self) -> Result<String, PortError> {
            self.0
                .map(str::to_owned)
                .ok_or_else(|| PortError::new("GetSecretValue", "ResourceNotFoundException"))
        }
    }

    /// The new version: a webhook in this process, handed the event as Lambda would.
    struct InProcess(MemoryWebhook);

    impl FunctionInvoker for InProcess {
        async fn invoke(&self, payload: &Value) -> Result<Value, PortError> {
            let request = lambda_http::request::from_str(&payload.to_string())
                .map_err(|e| PortError::new("Invoke", e))?;
            let Ok(response) = self.0.handle_http(request).await;
            let body = String::from_utf8_lossy(response.body().as_ref()).into_owned();
            Ok(json!({"statusCode": response.status().as_u16(), "body": body}))
        }
    }

    impl RecordLookup for &InProcess {
        async fn item(&self, id: i64) -> Result<Option<serde_json::Map<String, Value>>, PortError> {
            self.0.store.item(id).await
        }
        async fn by_call_id(
            &self,
            _: &str,
        ) -> Result<Vec<serde_json::Map<String, Value>>, PortError> {
            Ok(Vec::new())
        }
    }

    #[derive(Default)]
    struct Hooks(Mutex<Vec<bool>>);

    impl DeploymentHooks for Hooks {
        async fn report(&self, _: &LifecycleHook, passed: bool) -> Result<(), PortError> {
            self.0.lock().unwrap().push(passed);
            Ok(())
        }
    }

    const CIDRS: &str = "203.0.113.0/24";

    impl FunctionInvoker for &InProcess {
        async fn invoke(&self, payload: &Value) -> Result<Value, PortError> {
            (**self).invoke(payload).await
        }
    }

    /// A version that answers 200 and stores nothing.
    struct Careless;

    impl FunctionInvoker for Careless {
        async fn invoke(&self, _: &Value) -> Result<Value, PortError> {
            Ok(json!({"statusCode": 200, "body": "{\"ok\":true}"}))
        }
    }

    async fn check<I: FunctionInvoker>(
        secret: Option<&'static str>,
        version: I,
        table: &InProcess,
    ) -> Result<i64, CheckFailed> {
        let hook = PreTraffic {
            secret: Secret(secret),
            webhook: version,
            records: table,
            source_cidrs: CIDRS.into(),
        };
        hook.check(OffsetDateTime::now_utc()).await
    }

    fn version() -> InProcess {
        InProcess(MemoryWebhook::in_memory(TOKEN, CIDRS))
    }

    #[tokio::test]
    async fn a_healthy_version_stores_its_canary_and_is_reported_passed() {
        let v = version();
        let id = check(Some(TOKEN), &v, &v).await.unwrap();
        assert!(crate::domain::canary::is_canary_id(id));
        let hook = PreTraffic {
            secret: Secret(Some(TOKEN)),
            webhook: &v,
            records: &v,
            source_cidrs: CIDRS.into(),
        };
        let hooks = Hooks::default();
        let event = LifecycleHook {
            deployment_id: "d-1".into(),
            lifecycle_event_hook_execution_id: "e-1".into(),
        };
        assert!(hook.handle(&hooks, &event).await.unwrap());
        assert_eq!(*hooks.0.lock().unwrap(), [true]);
    }

    #[tokio::test]
    async fn each_broken_part_fails_its_own_step() {
        let v = version();
        let missing = check(None, &v, &v).await.unwrap_err();
        assert!(missing.to_string().starts_with("step 1"), "{missing}");
        let broken = check(Some("short"), &v, &v).await.unwrap_err();
        assert!(matches!(broken, CheckFailed::Tokens(_)), "{broken}");
        let other = check(Some("another-token-entirely"), &v, &v)
            .await
            .unwrap_err();
        let text = other.to_string();
        assert!(text.starts_with("step 2") && text.contains("401"), "{text}");
        v.0.store.fail_next.store(1, Ordering::SeqCst);
        let down = check(Some(TOKEN), &v, &v).await.unwrap_err();
        assert!(down.to_string().contains("503"), "{down}");
        let unstored = check(Some(TOKEN), Careless, &v).await.unwrap_err();
        assert!(matches!(unstored, CheckFailed::NotStored(_)), "{unstored}");
    }
}
