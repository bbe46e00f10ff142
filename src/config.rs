//! Typed configuration: the one place that reads environment variables. Every process reads
//! a [`ProcessConfig`] (logging, metrics, the AWS endpoint); each function reads its own
//! settings struct, holding only what it uses. Defaults live in the settings' `Default`
//! impls and in the constants below, shared with `template.yaml` and the local stack.

use std::str::FromStr;
use std::time::Duration;

use crate::domain::auth::{AuthConfigError, Authenticator};
use crate::domain::binding::parse_utc_offset;
use crate::domain::events::PhoneNumbers;
use crate::domain::url_policy::{HostListError, UrlPolicy, UrlProfile, DEFAULT_RECORDING_HOSTS};
use crate::handlers::archiver::ArchiverSettings;
use crate::handlers::publisher::PublisherSettings;
use crate::handlers::reconciler::ReconcilerSettings;
use crate::handlers::webhook::WebhookSettings;
use crate::metrics;

/// Default names, shared with `template.yaml` and the local stack.
pub const DEFAULT_TABLE: &str = "pns-calls";
pub const DEFAULT_QUEUE: &str = "pns-recordings";
pub const DEFAULT_DLQ: &str = "pns-recordings-dlq";
pub const DEFAULT_BUCKET: &str = "pns-recordings";
pub const DEFAULT_BINDING_ERRORS_TABLE: &str = "pns-binding-errors";
pub const DEFAULT_EVENT_BUS: &str = "pns-cdr";
/// The local stack's number key secret (a deployed stack's has a generated name: its output
/// `NumberKeySecretArn`).
pub const LOCAL_NUMBER_KEY_SECRET: &str = "pns-number-key";

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

/// Settings read from environment variables.
pub trait FromEnv: Sized {
    /// Reads the settings through `lookup` (tests pass a map).
    fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError>;

    /// Reads the process environment.
    fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }
}

/// The environment, read through a lookup. A blank value is an unset one.
struct Env<'a>(&'a dyn Fn(&str) -> Option<String>);

impl Env<'_> {
    fn get(&self, name: &str) -> Option<String> {
        (self.0)(name).filter(|v| !v.trim().is_empty())
    }

    fn or(&self, name: &str, default: &str) -> String {
        self.get(name).unwrap_or_else(|| default.to_owned())
    }

    fn required(&self, name: &'static str) -> Result<String, ConfigError> {
        self.get(name).ok_or(ConfigError::Missing(name))
    }

    /// A value parsed as `T`, or `default` when unset.
    fn parsed<T: FromStr>(&self, name: &'static str, default: T) -> Result<T, ConfigError>
    where
        T::Err: std::fmt::Display,
    {
        match self.get(name) {
            None => Ok(default),
            Some(v) => v.trim().parse().map_err(|e: T::Err| ConfigError::Invalid {
                name,
                reason: e.to_string(),
            }),
        }
    }

    fn seconds(&self, name: &'static str, default: Duration) -> Result<Duration, ConfigError> {
        self.parsed(name, default.as_secs())
            .map(Duration::from_secs)
    }

    fn url_policy(&self) -> Result<UrlPolicy, ConfigError> {
        let profile = match self.get("PNS_URL_PROFILE").as_deref().map(str::trim) {
            None | Some("production") => UrlProfile::Production,
            Some("local") => UrlProfile::Local,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    name: "PNS_URL_PROFILE",
                    reason: format!("`{other}` is not production|local"),
                })
            }
        };
        let hosts = self.or("PNS_RECORDING_HOSTS", DEFAULT_RECORDING_HOSTS);
        UrlPolicy::new(&hosts, profile).map_err(ConfigError::RecordingHosts)
    }

    fn on_lambda(&self) -> bool {
        self.get("AWS_LAMBDA_FUNCTION_NAME").is_some()
    }
}

/// How a process logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// `RUST_LOG`: a target list (`info`, `pns_cdr=debug,aws_smithy_runtime=warn`).
    pub filter: Option<String>,
    /// JSON lines (on Lambda, or `PNS_LOG_FORMAT=json`); else readable text.
    pub json: bool,
    /// `NO_COLOR` is set: text without colour even on a terminal.
    pub no_color: bool,
}

/// Which AWS the clients talk to.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AwsConfig {
    /// `AWS_ENDPOINT_URL`: the emulator; `None` for AWS.
    pub endpoint_url: Option<String>,
    /// `AWS_REGION` against the emulator (the SDK reads its own chain on AWS).
    pub region: Option<String>,
    /// `AWS_ACCESS_KEY_ID` against the emulator, which records it as the caller of each call.
    pub caller: Option<String>,
}

/// What every process reads, whatever it does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessConfig {
    pub log: LogConfig,
    pub metrics: metrics::Output,
    pub aws: AwsConfig,
}

impl ProcessConfig {
    /// Reads the process environment (nothing here can be invalid).
    pub fn from_env() -> Self {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let env = Env(&lookup);
        let on_lambda = env.on_lambda();
        let emf = on_lambda || env.get("PNS_METRICS").as_deref() == Some("emf");
        Self {
            log: LogConfig {
                filter: env.get("RUST_LOG"),
                json: on_lambda || env.get("PNS_LOG_FORMAT").as_deref() == Some("json"),
                // no-color.org: set to anything but the empty string.
                no_color: (env.0)("NO_COLOR").is_some_and(|v| !v.is_empty()),
            },
            metrics: if emf {
                metrics::Output::Stdout
            } else {
                metrics::Output::Off
            },
            aws: AwsConfig {
                endpoint_url: env.get("AWS_ENDPOINT_URL"),
                region: env.get("AWS_REGION"),
                caller: env.get("AWS_ACCESS_KEY_ID"),
            },
        }
    }
}

/// Where a secret value comes from: the webhook's tokens, the numbers' hash keys.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// Given in the environment (`PNS_WEBHOOK_TOKENS`, `PNS_NUMBER_KEYS`): the local stack,
    /// tests, `cargo lambda watch`.
    Inline(String),
    /// A Secrets Manager secret's ARN (`PNS_WEBHOOK_TOKENS_SECRET_ARN`,
    /// `PNS_NUMBER_KEY_SECRET_ARN`): what the template sets.
    Secret(String),
}

impl std::fmt::Debug for SecretSource {
    // Never print the value.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Inline(_) => f.write_str("Inline(<redacted>)"),
            Self::Secret(arn) => f.debug_tuple("Secret").field(arn).finish(),
        }
    }
}

impl Env<'_> {
    /// The value in `inline` wins (the secret is then neither read nor refreshed); else the
    /// secret named in `arn`, which is required.
    fn secret_source(
        &self,
        inline: &'static str,
        arn: &'static str,
    ) -> Result<SecretSource, ConfigError> {
        match (self.get(inline), self.get(arn)) {
            (Some(value), _) => Ok(SecretSource::Inline(value)),
            (None, Some(arn)) => Ok(SecretSource::Secret(arn)),
            (None, None) => Err(ConfigError::Missing(arn)),
        }
    }
}

/// The webhook's settings.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub table: String,
    pub binding_errors_table: String,
    pub queue_url: String,
    pub bucket: String,
    pub tokens: SecretSource,
    /// Comma-separated CIDR blocks allowed to push; empty: any source.
    pub source_cidrs: String,
    pub url_policy: UrlPolicy,
    pub settings: WebhookSettings,
    /// The keys of the index of kept bodies by number.
    pub number_keys: SecretSource,
}

impl FromEnv for WebhookConfig {
    fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env(&lookup);
        let tokens = env.secret_source("PNS_WEBHOOK_TOKENS", "PNS_WEBHOOK_TOKENS_SECRET_ARN")?;
        let defaults = WebhookSettings::default();
        let retention_days: u64 = env.parsed("PNS_RETENTION_DAYS", 0)?;
        let nxcloud_offset = match env.get("PNS_NXCLOUD_UTC_OFFSET") {
            None => defaults.nxcloud_offset,
            Some(text) => parse_utc_offset(&text).ok_or_else(|| ConfigError::Invalid {
                name: "PNS_NXCLOUD_UTC_OFFSET",
                reason: format!("`{text}` is not an offset like +08:00"),
            })?,
        };
        Ok(Self {
            table: env.or("PNS_TABLE_NAME", DEFAULT_TABLE),
            binding_errors_table: env.or("PNS_BINDING_ERRORS_TABLE", DEFAULT_BINDING_ERRORS_TABLE),
            queue_url: env.required("PNS_QUEUE_URL")?,
            bucket: env.required("PNS_BUCKET_NAME")?,
            tokens,
            number_keys: env.secret_source("PNS_NUMBER_KEYS", "PNS_NUMBER_KEY_SECRET_ARN")?,
            source_cidrs: env.get("PNS_SOURCE_CIDRS").unwrap_or_default(),
            url_policy: env.url_policy()?,
            settings: WebhookSettings {
                requeue_pending_after: env.seconds(
                    "PNS_REQUEUE_PENDING_AFTER_SECONDS",
                    defaults.requeue_pending_after,
                )?,
                retention: (retention_days > 0)
                    .then(|| Duration::from_secs(retention_days * 86_400)),
                nxcloud_offset,
                // Read from `number_keys` at cold start.
                number_keys: None,
            },
        })
    }
}

impl WebhookConfig {
    /// An authenticator for `tokens` (`current[,previous]`) with the configured CIDR list.
    pub fn authenticator_for(&self, tokens: &str) -> Result<Authenticator, ConfigError> {
        Ok(Authenticator::new(tokens, &self.source_cidrs)?)
    }
}

/// The archiver's settings.
#[derive(Debug, Clone)]
pub struct ArchiverConfig {
    pub table: String,
    pub queue_url: String,
    pub bucket: String,
    pub url_policy: UrlPolicy,
    pub settings: ArchiverSettings,
}

impl FromEnv for ArchiverConfig {
    fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env(&lookup);
        let defaults = ArchiverSettings::default();
        Ok(Self {
            table: env.or("PNS_TABLE_NAME", DEFAULT_TABLE),
            queue_url: env.required("PNS_QUEUE_URL")?,
            bucket: env.required("PNS_BUCKET_NAME")?,
            url_policy: env.url_policy()?,
            settings: ArchiverSettings {
                max_bytes: env.parsed("PNS_MAX_RECORDING_BYTES", defaults.max_bytes)?,
                retry_grace: env.seconds("PNS_RETRY_GRACE_SECONDS", defaults.retry_grace)?,
                ..defaults
            },
        })
    }
}

/// The reconciler's settings.
#[derive(Debug, Clone)]
pub struct ReconcilerConfig {
    pub table: String,
    pub queue_url: String,
    pub settings: ReconcilerSettings,
}

impl FromEnv for ReconcilerConfig {
    fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env(&lookup);
        let defaults = ReconcilerSettings::default();
        Ok(Self {
            table: env.or("PNS_TABLE_NAME", DEFAULT_TABLE),
            queue_url: env.required("PNS_QUEUE_URL")?,
            settings: ReconcilerSettings {
                requeue_after: env
                    .seconds("PNS_RECONCILE_AFTER_SECONDS", defaults.requeue_after)?,
                max_per_run: env.parsed("PNS_RECONCILE_MAX_PER_RUN", defaults.max_per_run)?,
                overdue_after: env.seconds("PNS_PENDING_ALARM_SECONDS", defaults.overdue_after)?,
            },
        })
    }
}

/// The publisher's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublisherConfig {
    pub event_bus: String,
    /// `PNS_FAILURE_QUEUE_URL`: where an event too large for `PutEvents` is described.
    pub failure_queue_url: String,
    pub settings: PublisherSettings,
    /// The keys of the numbers' hashes in events.
    pub number_keys: SecretSource,
}

impl FromEnv for PublisherConfig {
    fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env(&lookup);
        Ok(Self {
            event_bus: env.required("PNS_EVENT_BUS_NAME")?,
            failure_queue_url: env.required("PNS_FAILURE_QUEUE_URL")?,
            number_keys: env.secret_source("PNS_NUMBER_KEYS", "PNS_NUMBER_KEY_SECRET_ARN")?,
            settings: PublisherSettings {
                phones: env.parsed("PNS_PHONE_NUMBERS", PhoneNumbers::default())?,
                ..PublisherSettings::default()
            },
        })
    }
}

/// The pre-traffic hook's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreTrafficConfig {
    /// `PNS_WEBHOOK_TOKENS_SECRET_ARN`: the webhook's token secret.
    pub secret_arn: String,
    /// `PNS_WEBHOOK_FUNCTION`: the new webhook version (the template gives its ARN).
    pub webhook_function: String,
    pub table: String,
    /// `PNS_SOURCE_CIDRS`, as the webhook has it.
    pub source_cidrs: String,
}

impl FromEnv for PreTrafficConfig {
    fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env(&lookup);
        Ok(Self {
            secret_arn: env.required("PNS_WEBHOOK_TOKENS_SECRET_ARN")?,
            webhook_function: env.required("PNS_WEBHOOK_FUNCTION")?,
            table: env.or("PNS_TABLE_NAME", DEFAULT_TABLE),
            source_cidrs: env.get("PNS_SOURCE_CIDRS").unwrap_or_default(),
        })
    }
}

/// A queue given by URL, or by name and looked up when first needed (the local stack's way).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueRef {
    Url(String),
    Name(String),
}

/// Where the operator tool acts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpsConfig {
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
    /// `PNS_PYTHON`: the interpreter with DuckDB for `pnsctl report`.
    pub python: Option<String>,
    /// `PNS_WEBHOOK_URL`: the call-result URL, without the token (`pnsctl smoke`; default the
    /// local stack's, `http://127.0.0.1:3000/pns/call-result`).
    pub webhook_url: Option<String>,
    /// `PNS_WEBHOOK_TOKENS_SECRET_ARN`: where `pnsctl smoke` reads the token.
    pub token_secret: Option<String>,
    /// `SMOKE_TOKEN`: the token `pnsctl smoke` pushes with instead.
    pub smoke_token: Option<String>,
    /// `PNS_NUMBER_KEY_SECRET`: the numbers' hash key secret (name or ARN), for `pnsctl erase`.
    pub number_key_secret: Option<String>,
}

impl OpsConfig {
    /// Reads the process environment (nothing here can be invalid).
    pub fn from_env() -> Self {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// `PNS_TABLE_NAME`, `PNS_BINDING_ERRORS_TABLE`, `PNS_QUEUE_URL`, `PNS_DLQ_URL`,
    /// `PNS_BUCKET_NAME`, `PNS_EVENT_BUS_NAME`; a queue URL left unset is looked up from
    /// `PNS_QUEUE_NAME` (and `<name>-dlq`).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let env = Env(&lookup);
        let queue_name = env.or("PNS_QUEUE_NAME", DEFAULT_QUEUE);
        Self {
            table: env.or("PNS_TABLE_NAME", DEFAULT_TABLE),
            binding_errors_table: env.or("PNS_BINDING_ERRORS_TABLE", DEFAULT_BINDING_ERRORS_TABLE),
            queue: env
                .get("PNS_QUEUE_URL")
                .map_or_else(|| QueueRef::Name(queue_name.clone()), QueueRef::Url),
            dead_letter_queue: env.get("PNS_DLQ_URL").map_or_else(
                || QueueRef::Name(format!("{queue_name}-dlq")),
                QueueRef::Url,
            ),
            bucket: env.or("PNS_BUCKET_NAME", DEFAULT_BUCKET),
            event_bus: env.or("PNS_EVENT_BUS_NAME", DEFAULT_EVENT_BUS),
            phone_numbers: env.get("PNS_PHONE_NUMBERS"),
            python: env.get("PNS_PYTHON"),
            webhook_url: env.get("PNS_WEBHOOK_URL"),
            token_secret: env.get("PNS_WEBHOOK_TOKENS_SECRET_ARN"),
            smoke_token: env.get("SMOKE_TOKEN"),
            number_key_secret: env.get("PNS_NUMBER_KEY_SECRET"),
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

    const RESOURCES: [(&str, &str); 4] = [
        ("PNS_QUEUE_URL", "q"),
        ("PNS_BUCKET_NAME", "b"),
        ("PNS_WEBHOOK_TOKENS_SECRET_ARN", "arn:secret"),
        ("PNS_NUMBER_KEY_SECRET_ARN", "arn:key"),
    ];

    #[test]
    fn defaults_are_production_safe() {
        let w = WebhookConfig::from_lookup(lookup(&RESOURCES)).unwrap();
        assert_eq!(w.table, DEFAULT_TABLE);
        assert_eq!(w.url_policy.profile(), UrlProfile::Production);
        assert_eq!(w.settings.retention, None);
        let a = ArchiverConfig::from_lookup(lookup(&RESOURCES)).unwrap();
        assert_eq!(a.settings.max_bytes, 2 << 30);
        assert_eq!(a.settings.retry_grace, Duration::from_secs(1800));
        let r = ReconcilerConfig::from_lookup(lookup(&RESOURCES)).unwrap();
        assert_eq!(r.settings.max_per_run, 500);
        let p = ProcessConfig::from_lookup(lookup(&[]));
        assert_eq!(p.metrics, metrics::Output::Off);
        assert!(!p.log.json && !p.log.no_color);
        assert_eq!(p.aws, AwsConfig::default());
    }

    #[test]
    fn each_function_reads_only_what_it_uses() {
        // The reconciler has no bucket and the publisher no queue: neither is asked for.
        let queue_only = [("PNS_QUEUE_URL", "q")];
        ReconcilerConfig::from_lookup(lookup(&queue_only)).unwrap();
        let p = PublisherConfig::from_lookup(lookup(&[
            ("PNS_EVENT_BUS_NAME", "bus"),
            ("PNS_FAILURE_QUEUE_URL", "f"),
            ("PNS_NUMBER_KEY_SECRET_ARN", "arn:key"),
        ]))
        .unwrap();
        assert_eq!(p.number_keys, SecretSource::Secret("arn:key".into()));
        assert!(matches!(
            PublisherConfig::from_lookup(lookup(&[
                ("PNS_EVENT_BUS_NAME", "bus"),
                ("PNS_FAILURE_QUEUE_URL", "f"),
            ])),
            Err(ConfigError::Missing("PNS_NUMBER_KEY_SECRET_ARN"))
        ));
        assert!(matches!(
            ArchiverConfig::from_lookup(lookup(&queue_only)),
            Err(ConfigError::Missing("PNS_BUCKET_NAME"))
        ));
        assert!(matches!(
            WebhookConfig::from_lookup(lookup(&[("PNS_QUEUE_URL", "q"), ("PNS_BUCKET_NAME", "b")])),
            Err(ConfigError::Missing("PNS_WEBHOOK_TOKENS_SECRET_ARN"))
        ));
    }

    #[test]
    fn values_are_mapped_to_the_settings() {
        let mut pairs = RESOURCES.to_vec();
        pairs.extend([
            ("PNS_RETENTION_DAYS", "2"),
            ("PNS_RETRY_GRACE_SECONDS", "60"),
            ("PNS_RECONCILE_MAX_PER_RUN", "7"),
            ("PNS_NXCLOUD_UTC_OFFSET", "-03:30"),
            ("AWS_LAMBDA_FUNCTION_NAME", "pns-webhook"),
            ("NO_COLOR", "1"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:4566"),
        ]);
        let w = WebhookConfig::from_lookup(lookup(&pairs)).unwrap();
        assert_eq!(w.settings.retention, Some(Duration::from_secs(2 * 86_400)));
        let offset = time::UtcOffset::from_hms(-3, -30, 0).unwrap();
        assert_eq!(w.settings.nxcloud_offset, offset);
        assert_eq!(w.tokens, SecretSource::Secret("arn:secret".into()));
        let a = ArchiverConfig::from_lookup(lookup(&pairs)).unwrap();
        assert_eq!(a.settings.retry_grace, Duration::from_secs(60));
        let r = ReconcilerConfig::from_lookup(lookup(&pairs)).unwrap();
        assert_eq!(r.settings.max_per_run, 7);
        let p = ProcessConfig::from_lookup(lookup(&pairs));
        assert_eq!(p.metrics, metrics::Output::Stdout);
        assert!(p.log.json && p.log.no_color);
        assert_eq!(p.aws.endpoint_url.as_deref(), Some("http://127.0.0.1:4566"));
    }

    #[test]
    fn rejects_bad_values_and_hides_tokens() {
        for bad in [
            ("PNS_URL_PROFILE", "dev"),
            ("PNS_MAX_RECORDING_BYTES", "2GB"),
            ("PNS_RECORDING_HOSTS", "a.*.com"),
        ] {
            let mut pairs = RESOURCES.to_vec();
            pairs.push(bad);
            assert!(
                matches!(
                    ArchiverConfig::from_lookup(lookup(&pairs)),
                    Err(ConfigError::Invalid { .. } | ConfigError::RecordingHosts(_))
                ),
                "{bad:?}"
            );
        }
        let mut pairs = RESOURCES.to_vec();
        pairs.push(("PNS_NXCLOUD_UTC_OFFSET", "Asia/Hong_Kong"));
        assert!(WebhookConfig::from_lookup(lookup(&pairs)).is_err());
        assert!(PublisherConfig::from_lookup(lookup(&[
            ("PNS_EVENT_BUS_NAME", "bus"),
            ("PNS_FAILURE_QUEUE_URL", "f"),
            ("PNS_PHONE_NUMBERS", "sometimes")
        ]))
        .is_err());
        let mut pairs = RESOURCES.to_vec();
        pairs.push(("PNS_WEBHOOK_TOKENS", "a-very-secret-token-value"));
        pairs.push((
            "PNS_NUMBER_KEYS",
            "a-very-secret-number-key-of-32-characters",
        ));
        let c = WebhookConfig::from_lookup(lookup(&pairs)).unwrap();
        let SecretSource::Inline(tokens) = &c.tokens else {
            panic!("inline tokens win")
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
