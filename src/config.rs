//! Typed configuration: the one place that reads environment variables, and maps them to each
//! handler's settings once. Defaults live in the settings' `Default` impls.

use std::time::Duration;

use crate::domain::auth::{AuthConfigError, Authenticator};
use crate::domain::binding::parse_utc_offset;
use crate::domain::events::{InvalidPhoneNumbers, PhoneNumbers};
use crate::domain::url_policy::{HostListError, UrlPolicy, UrlProfile, DEFAULT_RECORDING_HOSTS};
use crate::handlers::archiver::ArchiverSettings;
use crate::handlers::publisher::PublisherSettings;
use crate::handlers::reconciler::ReconcilerSettings;
use crate::handlers::webhook::WebhookSettings;

/// Default names, shared with `template.yaml` and the local stack.
pub const DEFAULT_TABLE: &str = "pns-calls";
pub const DEFAULT_QUEUE: &str = "pns-recordings";
pub const DEFAULT_DLQ: &str = "pns-recordings-dlq";
pub const DEFAULT_BUCKET: &str = "pns-recordings";
pub const DEFAULT_BINDING_ERRORS_TABLE: &str = "pns-binding-errors";
pub const DEFAULT_EVENT_BUS: &str = "pns-cdr";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {0} is required")]
    Missing(&'static str),
    #[error("environment variable {name} is invalid: {reason}")]
    Invalid { name: &'static str, reason: String },
    #[error("environment variable PNS_RECORDING_HOSTS is invalid")]
    RecordingHosts(#[source] HostListError),
    #[error("the webhook tokens are not valid")]
    Auth(#[from] AuthConfigError),
}

/// Where the webhook's tokens come from.
#[derive(Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// `PNS_WEBHOOK_TOKENS`: `current[,previous]` (local stack, tests, `cargo lambda watch`).
    Inline(String),
    /// `PNS_WEBHOOK_TOKENS_SECRET_ARN`: a Secrets Manager secret holding `current[,previous]`.
    Secret(String),
    None,
}

impl std::fmt::Debug for TokenSource {
    // Never print the tokens.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Inline(_) => f.write_str("Inline(<redacted>)"),
            Self::Secret(arn) => f.debug_tuple("Secret").field(arn).finish(),
            Self::None => f.write_str("None"),
        }
    }
}

/// Everything the functions read from their environment.
#[derive(Debug, Clone)]
pub struct Config {
    pub table_name: String,
    /// The binding-error table (only the webhook writes it).
    pub binding_errors_table: String,
    pub queue_url: String,
    pub bucket_name: String,
    pub tokens: TokenSource,
    /// Comma-separated CIDR blocks allowed to push; empty: any source.
    pub source_cidrs: String,
    pub url_policy: UrlPolicy,
    pub webhook: WebhookSettings,
    pub archiver: ArchiverSettings,
    pub reconciler: ReconcilerSettings,
    /// Another AWS endpoint (the emulator); `None` on Lambda.
    pub endpoint_url: Option<String>,
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
        let seconds = |name: &'static str, default: Duration| {
            number(name, default.as_secs()).map(Duration::from_secs)
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
        let hosts = get("PNS_RECORDING_HOSTS").unwrap_or_else(|| DEFAULT_RECORDING_HOSTS.into());
        let url_policy =
            UrlPolicy::new(&hosts, url_profile).map_err(ConfigError::RecordingHosts)?;
        let tokens = match (
            get("PNS_WEBHOOK_TOKENS"),
            get("PNS_WEBHOOK_TOKENS_SECRET_ARN"),
        ) {
            // Tokens given directly win: the secret is then neither read nor refreshed.
            (Some(tokens), _) => TokenSource::Inline(tokens),
            (None, Some(arn)) => TokenSource::Secret(arn),
            (None, None) => TokenSource::None,
        };

        let webhook_defaults = WebhookSettings::default();
        let retention_days = number("PNS_RETENTION_DAYS", 0)?;
        let webhook = WebhookSettings {
            requeue_pending_after: seconds(
                "PNS_REQUEUE_PENDING_AFTER_SECONDS",
                webhook_defaults.requeue_pending_after,
            )?,
            retention: (retention_days > 0).then(|| Duration::from_secs(retention_days * 86_400)),
            nxcloud_offset: match get("PNS_NXCLOUD_UTC_OFFSET") {
                None => webhook_defaults.nxcloud_offset,
                Some(text) => parse_utc_offset(&text).ok_or_else(|| ConfigError::Invalid {
                    name: "PNS_NXCLOUD_UTC_OFFSET",
                    reason: format!("`{text}` is not an offset like +08:00"),
                })?,
            },
        };
        let archiver_defaults = ArchiverSettings::default();
        let archiver = ArchiverSettings {
            max_bytes: number("PNS_MAX_RECORDING_BYTES", archiver_defaults.max_bytes)?,
            retry_grace: seconds("PNS_RETRY_GRACE_SECONDS", archiver_defaults.retry_grace)?,
            ..archiver_defaults
        };
        let reconciler_defaults = ReconcilerSettings::default();
        let reconciler = ReconcilerSettings {
            requeue_after: seconds(
                "PNS_RECONCILE_AFTER_SECONDS",
                reconciler_defaults.requeue_after,
            )?,
            max_per_run: number(
                "PNS_RECONCILE_MAX_PER_RUN",
                reconciler_defaults.max_per_run as u64,
            )? as usize,
            overdue_after: seconds(
                "PNS_PENDING_ALARM_SECONDS",
                reconciler_defaults.overdue_after,
            )?,
        };
        Ok(Self {
            table_name: get("PNS_TABLE_NAME").unwrap_or_else(|| DEFAULT_TABLE.into()),
            binding_errors_table: get("PNS_BINDING_ERRORS_TABLE")
                .unwrap_or_else(|| DEFAULT_BINDING_ERRORS_TABLE.into()),
            queue_url: required("PNS_QUEUE_URL")?,
            bucket_name: required("PNS_BUCKET_NAME")?,
            tokens,
            source_cidrs: get("PNS_SOURCE_CIDRS").unwrap_or_default(),
            url_policy,
            webhook,
            archiver,
            reconciler,
            endpoint_url: get("AWS_ENDPOINT_URL"),
        })
    }

    /// An authenticator for `tokens` (`current[,previous]`) with the configured CIDR list.
    pub fn authenticator_for(&self, tokens: &str) -> Result<Authenticator, ConfigError> {
        Ok(Authenticator::new(tokens, &self.source_cidrs)?)
    }
}

/// A queue given by URL, or by name and looked up when first needed (the local stack's way).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueRef {
    Url(String),
    Name(String),
}

/// Where `pnsctl` acts, read from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpsConfig {
    /// `AWS_ENDPOINT_URL`: the emulator; `None` for AWS.
    pub endpoint_url: Option<String>,
    pub table: String,
    pub binding_errors_table: String,
    pub queue: QueueRef,
    pub dead_letter_queue: QueueRef,
    pub bucket: String,
    /// `PNS_EVENT_BUS_NAME`: where `pnsctl publish` puts events.
    pub event_bus: String,
    /// `PNS_PHONE_NUMBERS`, as the stack's `PhoneNumbersInEvents`; an unknown value is
    /// refused when `pnsctl publish` needs it.
    pub phone_numbers: Option<String>,
}

impl OpsConfig {
    /// `PNS_TABLE_NAME`, `PNS_QUEUE_URL`, `PNS_DLQ_URL`, `PNS_BUCKET_NAME`, `AWS_ENDPOINT_URL`;
    /// a queue URL left unset is looked up from `PNS_QUEUE_NAME` (and `<name>-dlq`).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let queue_name = get("PNS_QUEUE_NAME").unwrap_or_else(|| DEFAULT_QUEUE.into());
        Self {
            endpoint_url: get("AWS_ENDPOINT_URL"),
            table: get("PNS_TABLE_NAME").unwrap_or_else(|| DEFAULT_TABLE.into()),
            binding_errors_table: get("PNS_BINDING_ERRORS_TABLE")
                .unwrap_or_else(|| DEFAULT_BINDING_ERRORS_TABLE.into()),
            queue: get("PNS_QUEUE_URL")
                .map_or_else(|| QueueRef::Name(queue_name.clone()), QueueRef::Url),
            dead_letter_queue: get("PNS_DLQ_URL").map_or_else(
                || QueueRef::Name(format!("{queue_name}-dlq")),
                QueueRef::Url,
            ),
            bucket: get("PNS_BUCKET_NAME").unwrap_or_else(|| DEFAULT_BUCKET.into()),
            event_bus: get("PNS_EVENT_BUS_NAME").unwrap_or_else(|| DEFAULT_EVENT_BUS.into()),
            phone_numbers: get("PNS_PHONE_NUMBERS"),
        }
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
        assert_eq!(c.url_policy.profile(), UrlProfile::Production);
        assert_eq!(c.archiver.max_bytes, ArchiverSettings::default().max_bytes);
        assert_eq!(c.archiver.max_bytes, 2 << 30);
        assert_eq!(c.archiver.retry_grace, Duration::from_secs(1800));
        assert_eq!(c.webhook.retention, None);
        assert_eq!(c.reconciler.max_per_run, 500);
        assert_eq!(c.tokens, TokenSource::None);
    }

    #[test]
    fn values_are_mapped_to_the_settings() {
        let c = Config::from_lookup(lookup(&[
            ("PNS_QUEUE_URL", "q"),
            ("PNS_BUCKET_NAME", "b"),
            ("PNS_RETENTION_DAYS", "2"),
            ("PNS_RETRY_GRACE_SECONDS", "60"),
            ("PNS_RECONCILE_MAX_PER_RUN", "7"),
            ("PNS_NXCLOUD_UTC_OFFSET", "-03:30"),
            ("PNS_WEBHOOK_TOKENS_SECRET_ARN", "arn:secret"),
        ]))
        .unwrap();
        assert_eq!(c.webhook.retention, Some(Duration::from_secs(2 * 86_400)));
        assert_eq!(c.archiver.retry_grace, Duration::from_secs(60));
        assert_eq!(c.reconciler.max_per_run, 7);
        let offset = time::UtcOffset::from_hms(-3, -30, 0).unwrap();
        assert_eq!(c.webhook.nxcloud_offset, offset);
        assert_eq!(c.tokens, TokenSource::Secret("arn:secret".into()));
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
            ("PNS_NXCLOUD_UTC_OFFSET", "Asia/Hong_Kong"),
        ] {
            let mut pairs = base.to_vec();
            pairs.push(bad);
            assert!(
                matches!(
                    Config::from_lookup(lookup(&pairs)),
                    Err(ConfigError::Invalid { .. } | ConfigError::RecordingHosts(_))
                ),
                "{bad:?}"
            );
        }
        let mut pairs = base.to_vec();
        pairs.push(("PNS_WEBHOOK_TOKENS", "a-very-secret-token-value"));
        let c = Config::from_lookup(lookup(&pairs)).unwrap();
        let TokenSource::Inline(tokens) = &c.tokens else {
            panic!("inline tokens")
        };
        c.authenticator_for(tokens).unwrap();
        assert!(!format!("{c:?}").contains("a-very-secret"));
    }

    #[test]
    fn ops_queues_are_looked_up_by_name_unless_given() {
        let env = |name: &str| match name {
            "PNS_QUEUE_NAME" => Some("jobs".to_owned()),
            "PNS_DLQ_URL" => Some("http://q/dlq".to_owned()),
            "PNS_TABLE_NAME" => Some(" ".to_owned()),
            _ => None,
        };
        let config = OpsConfig::from_lookup(env);
        assert_eq!(config.table, "pns-calls", "blank means unset");
        assert_eq!(config.bucket, "pns-recordings");
        assert_eq!(config.endpoint_url, None);
        assert_eq!(config.queue, QueueRef::Name("jobs".into()));
        assert_eq!(
            config.dead_letter_queue,
            QueueRef::Url("http://q/dlq".into())
        );
        let defaults = OpsConfig::from_lookup(|_| None);
        assert_eq!(
            defaults.dead_letter_queue,
            QueueRef::Name("pns-recordings-dlq".into())
        );
    }
}

/// What the publisher reads: `PNS_EVENT_BUS_NAME` (required), `PNS_PHONE_NUMBERS`
/// (`masked` by default, `full` or `omitted`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublisherConfig {
    pub event_bus: String,
    pub settings: PublisherSettings,
    /// Another AWS endpoint (the emulator); `None` on Lambda.
    pub endpoint_url: Option<String>,
}

impl PublisherConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let phones = match get("PNS_PHONE_NUMBERS") {
            None => PhoneNumbers::default(),
            Some(text) => {
                text.trim()
                    .parse()
                    .map_err(|e: InvalidPhoneNumbers| ConfigError::Invalid {
                        name: "PNS_PHONE_NUMBERS",
                        reason: e.to_string(),
                    })?
            }
        };
        Ok(Self {
            event_bus: get("PNS_EVENT_BUS_NAME")
                .ok_or(ConfigError::Missing("PNS_EVENT_BUS_NAME"))?,
            settings: PublisherSettings {
                phones,
                ..PublisherSettings::default()
            },
            endpoint_url: get("AWS_ENDPOINT_URL"),
        })
    }
}
