//! Typed configuration: the one place that reads environment variables.

use std::time::Duration;

use crate::domain::auth::{AuthConfigError, Authenticator};
use crate::domain::url_policy::{UrlPolicy, UrlProfile, DEFAULT_RECORDING_HOSTS};

/// Default names, shared with `template.yaml` and the local stack.
pub const DEFAULT_TABLE: &str = "pns-calls";
pub const DEFAULT_QUEUE: &str = "pns-recordings";
pub const DEFAULT_DLQ: &str = "pns-recordings-dlq";
pub const DEFAULT_BUCKET: &str = "pns-recordings";
/// Default largest recording copied (2 GiB).
pub const DEFAULT_MAX_RECORDING_BYTES: u64 = 2 * 1024 * 1024 * 1024;
/// Default time after the push was received during which 404/425/429/5xx are retried.
pub const DEFAULT_RETRY_GRACE: Duration = Duration::from_secs(30 * 60);

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {0} is required")]
    Missing(&'static str),
    #[error("environment variable {name} is invalid: {reason}")]
    Invalid { name: &'static str, reason: String },
    #[error(transparent)]
    Auth(#[from] AuthConfigError),
}

/// Everything the functions read from their environment.
#[derive(Clone)]
pub struct Config {
    pub table_name: String,
    pub queue_url: String,
    pub bucket_name: String,
    /// `current[,previous]`; only the webhook needs it.
    pub webhook_tokens: Option<String>,
    /// Secrets Manager secret holding `current[,previous]` (deployments use this, not the above).
    pub webhook_tokens_secret_arn: Option<String>,
    /// Days a record is kept before DynamoDB's TTL removes it; 0 keeps it for ever.
    pub retention_days: u64,
    /// The reconciler re-queues records PENDING for longer than this.
    pub reconcile_after: Duration,
    /// At most this many records re-queued per reconciler run.
    pub reconcile_max_per_run: u64,
    /// Records PENDING for longer than this are reported as overdue (an alarm).
    pub pending_alarm_after: Duration,
    pub source_cidrs: String,
    pub recording_hosts: String,
    pub url_profile: UrlProfile,
    pub max_recording_bytes: u64,
    pub retry_grace: Duration,
    /// A duplicate push re-queues a still-PENDING record's job once the record is this old.
    pub requeue_pending_after: Duration,
    /// Another AWS endpoint (the emulator); `None` on Lambda.
    pub endpoint_url: Option<String>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("table_name", &self.table_name)
            .field("queue_url", &self.queue_url)
            .field("bucket_name", &self.bucket_name)
            .field(
                "webhook_tokens",
                &self.webhook_tokens.as_ref().map(|_| "<redacted>"),
            )
            .field("recording_hosts", &self.recording_hosts)
            .field("url_profile", &self.url_profile)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads configuration through `lookup` (tests pass a map).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let required = |name: &'static str| get(name).ok_or(ConfigError::Missing(name));
        let number = |name: &'static str, default: u64| -> Result<u64, ConfigError> {
            get(name).map_or(Ok(default), |v| {
                v.trim()
                    .parse()
                    .map_err(|e: std::num::ParseIntError| ConfigError::Invalid {
                        name,
                        reason: e.to_string(),
                    })
            })
        };
        let url_profile = match get("PNS_URL_PROFILE").as_deref().map(str::trim) {
            None | Some("production") => UrlProfile::Production,
            Some("local") => UrlProfile::Local,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    name: "PNS_URL_PROFILE",
                    reason: format!("`{other}` is not production|local"),
                })
            }
        };
        let config = Self {
            table_name: get("PNS_TABLE_NAME").unwrap_or_else(|| DEFAULT_TABLE.into()),
            queue_url: required("PNS_QUEUE_URL")?,
            bucket_name: required("PNS_BUCKET_NAME")?,
            webhook_tokens: get("PNS_WEBHOOK_TOKENS"),
            webhook_tokens_secret_arn: get("PNS_WEBHOOK_TOKENS_SECRET_ARN"),
            retention_days: number("PNS_RETENTION_DAYS", 0)?,
            reconcile_after: Duration::from_secs(number("PNS_RECONCILE_AFTER_SECONDS", 900)?),
            reconcile_max_per_run: number("PNS_RECONCILE_MAX_PER_RUN", 500)?,
            pending_alarm_after: Duration::from_secs(number("PNS_PENDING_ALARM_SECONDS", 3600)?),
            source_cidrs: get("PNS_SOURCE_CIDRS").unwrap_or_default(),
            recording_hosts: get("PNS_RECORDING_HOSTS")
                .unwrap_or_else(|| DEFAULT_RECORDING_HOSTS.into()),
            url_profile,
            max_recording_bytes: number("PNS_MAX_RECORDING_BYTES", DEFAULT_MAX_RECORDING_BYTES)?,
            retry_grace: Duration::from_secs(number(
                "PNS_RETRY_GRACE_SECONDS",
                DEFAULT_RETRY_GRACE.as_secs(),
            )?),
            requeue_pending_after: Duration::from_secs(number(
                "PNS_REQUEUE_PENDING_AFTER_SECONDS",
                30,
            )?),
            endpoint_url: get("AWS_ENDPOINT_URL"),
        };
        config.url_policy()?;
        Ok(config)
    }

    /// The webhook's authenticator; fails when no token is configured.
    pub fn authenticator(&self) -> Result<Authenticator, ConfigError> {
        let tokens = self
            .webhook_tokens
            .as_deref()
            .ok_or(ConfigError::Missing("PNS_WEBHOOK_TOKENS"))?;
        self.authenticator_for(tokens)
    }

    /// An authenticator for `tokens` (read from the secret) with the configured CIDR list.
    pub fn authenticator_for(&self, tokens: &str) -> Result<Authenticator, ConfigError> {
        Ok(Authenticator::new(tokens, &self.source_cidrs)?)
    }

    pub fn url_policy(&self) -> Result<UrlPolicy, ConfigError> {
        UrlPolicy::new(&self.recording_hosts, self.url_profile).map_err(|reason| {
            ConfigError::Invalid {
                name: "PNS_RECORDING_HOSTS",
                reason,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn defaults_are_production_safe() {
        let c = Config::from_lookup(lookup(&[("PNS_QUEUE_URL", "q"), ("PNS_BUCKET_NAME", "b")]))
            .unwrap();
        assert_eq!(c.table_name, DEFAULT_TABLE);
        assert_eq!(c.url_profile, UrlProfile::Production);
        assert_eq!(c.max_recording_bytes, DEFAULT_MAX_RECORDING_BYTES);
        assert_eq!(c.retry_grace, DEFAULT_RETRY_GRACE);
        assert!(matches!(
            c.authenticator(),
            Err(ConfigError::Missing("PNS_WEBHOOK_TOKENS"))
        ));
    }

    #[test]
    fn rejects_bad_values_and_hides_tokens() {
        let base = [("PNS_QUEUE_URL", "q"), ("PNS_BUCKET_NAME", "b")];
        assert!(matches!(
            Config::from_lookup(lookup(&[])),
            Err(ConfigError::Missing("PNS_QUEUE_URL"))
        ));
        for bad in [
            ("PNS_URL_PROFILE", "dev"),
            ("PNS_MAX_RECORDING_BYTES", "2GB"),
            ("PNS_RECORDING_HOSTS", "a.*.com"),
        ] {
            let mut pairs = base.to_vec();
            pairs.push(bad);
            assert!(
                matches!(
                    Config::from_lookup(lookup(&pairs)),
                    Err(ConfigError::Invalid { .. })
                ),
                "{bad:?}"
            );
        }
        let mut pairs = base.to_vec();
        pairs.push(("PNS_WEBHOOK_TOKENS", "a-very-secret-token-value"));
        let c = Config::from_lookup(lookup(&pairs)).unwrap();
        c.authenticator().unwrap();
        assert!(!format!("{c:?}").contains("a-very-secret"));
    }
}
