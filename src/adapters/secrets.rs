//! Webhook tokens from Secrets Manager: read at cold start, re-read at most every few minutes
//! so a rotation reaches warm functions without a redeploy. A failing or slow Secrets Manager
//! never holds a push up: each re-read is bounded by a timeout, failures back off, and the
//! tokens in use stay in use meanwhile.

use std::future::Future;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;
use tracing::warn;

use crate::domain::auth::{Authenticator, SharedAuthenticator};
use crate::ports::PortError;
use crate::telemetry::ErrorChain;

/// How long fetched tokens are trusted before the secret is read again.
pub const REFRESH_EVERY: Duration = Duration::from_secs(300);
/// Longest a re-read may hold a push up (well inside the webhook's 10 s timeout).
pub const REFRESH_TIMEOUT: Duration = Duration::from_secs(1);
/// First wait after a failed re-read; doubles per failure, up to [`REFRESH_EVERY`].
pub const RETRY_FIRST: Duration = Duration::from_secs(5);

/// Where the secret's value comes from.
pub trait TokenSecret: Send + Sync {
    /// The secret's current value (`current[,previous]`).
    fn fetch(&self) -> impl Future<Output = Result<String, PortError>> + Send;
}

/// The secret in Secrets Manager.
pub struct SecretsManagerSecret {
    client: aws_sdk_secretsmanager::Client,
    secret_id: String,
}

impl SecretsManagerSecret {
    pub fn new(client: aws_sdk_secretsmanager::Client, secret_id: impl Into<String>) -> Self {
        Self {
            client,
            secret_id: secret_id.into(),
        }
    }
}

impl TokenSecret for SecretsManagerSecret {
    async fn fetch(&self) -> Result<String, PortError> {
        let out = self
            .client
            .get_secret_value()
            .secret_id(&self.secret_id)
            .send()
            .await
            .map_err(|e| PortError::new("GetSecretValue", e))?;
        out.secret_string
            .ok_or_else(|| PortError::new("GetSecretValue", "the secret has no string value"))
    }
}

/// Why the secret gave no authenticator.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("could not read the webhook token secret")]
    Read(#[from] PortError),
    #[error("reading the webhook token secret took over {0:?}")]
    Timeout(Duration),
    #[error("the webhook token secret holds invalid tokens")]
    Invalid(#[from] crate::domain::auth::AuthConfigError),
}

/// The numbers' hash keys could not be had.
#[derive(Debug, thiserror::Error)]
pub enum NumberKeyError {
    #[error("could not read the number key secret")]
    Read(#[from] PortError),
    #[error(transparent)]
    Invalid(#[from] crate::domain::numbers::NoNumberKey),
}

/// The keys of the numbers' hashes, read once (a function reads them at cold start; a new key
/// reaches it with its next cold start).
pub async fn number_keys(
    source: &crate::config::SecretSource,
    client: &aws_sdk_secretsmanager::Client,
) -> Result<crate::domain::numbers::NumberKeys, NumberKeyError> {
    use crate::config::SecretSource;
    let text = match source {
        SecretSource::Inline(keys) => keys.clone(),
        SecretSource::Secret(arn) => {
            SecretsManagerSecret::new(client.clone(), arn)
                .fetch()
                .await?
        }
    };
    Ok(crate::domain::numbers::NumberKeys::parse(&text)?)
}

/// When the secret is read next, and how many re-reads in a row failed.
struct Schedule {
    next_read: Instant,
    failures: u32,
}

/// Keeps a [`SharedAuthenticator`] in step with the secret.
pub struct SecretTokens<T> {
    secret: T,
    /// The source allow-list every authenticator built from the secret carries.
    source_cidrs: String,
    schedule: Mutex<Schedule>,
}

impl<T: TokenSecret> SecretTokens<T> {
    pub fn new(secret: T, source_cidrs: impl Into<String>) -> Self {
        Self {
            secret,
            source_cidrs: source_cidrs.into(),
            schedule: Mutex::new(Schedule {
                next_read: Instant::now() + REFRESH_EVERY,
                failures: 0,
            }),
        }
    }

    /// An authenticator for the secret's current value (at cold start: no tokens exist yet,
    /// so this one waits for Secrets Manager as long as the SDK does).
    pub async fn authenticator(&self) -> Result<Authenticator, SecretError> {
        let tokens = self.secret.fetch().await?;
        Ok(Authenticator::new(&tokens, &self.source_cidrs)?)
    }

    /// Re-reads the secret once the tokens are [`REFRESH_EVERY`] old, for at most
    /// [`REFRESH_TIMEOUT`]. A failed, slow or invalid re-read keeps the tokens in use and is
    /// tried again after a backoff, so pushes are never held up for long or turned away.
    pub async fn refresh_if_stale(&self, auth: &SharedAuthenticator) {
        let mut schedule = self.schedule.lock().await;
        if Instant::now() < schedule.next_read {
            return;
        }
        let read = tokio::time::timeout(REFRESH_TIMEOUT, self.authenticator()).await;
        match read.unwrap_or(Err(SecretError::Timeout(REFRESH_TIMEOUT))) {
            Ok(fresh) => {
                auth.replace(fresh);
                *schedule = Schedule {
                    next_read: Instant::now() + REFRESH_EVERY,
                    failures: 0,
                };
            }
            Err(e) => {
                schedule.failures += 1;
                let wait = RETRY_FIRST
                    .saturating_mul(1 << schedule.failures.min(16).saturating_sub(1))
                    .min(REFRESH_EVERY);
                schedule.next_read = Instant::now() + wait;
                warn!(
                    error = %ErrorChain(&e),
                    failures = schedule.failures,
                    retry_in_s = wait.as_secs(),
                    "could not refresh the webhook tokens; keeping the current ones"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex as StdMutex;

    use super::*;

    const OLD: &str = "old-token-0123456789";
    const NEW: &str = "new-token-0123456789";

    /// A secret whose answers the test sets: a value, an error, or a long wait.
    struct FakeSecret {
        value: StdMutex<Result<String, ()>>,
        delay: StdMutex<Duration>,
        reads: AtomicUsize,
    }

    impl TokenSecret for &FakeSecret {
        async fn fetch(&self) -> Result<String, PortError> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            let delay = *self.delay.lock().unwrap();
            tokio::time::sleep(delay).await;
            let value = self.value.lock().unwrap().clone();
            value.map_err(|()| PortError::new("GetSecretValue", "throttled"))
        }
    }

    fn fake(value: Result<&str, ()>) -> FakeSecret {
        FakeSecret {
            value: StdMutex::new(value.map(str::to_owned)),
            delay: StdMutex::new(Duration::ZERO),
            reads: AtomicUsize::new(0),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_secret_keeps_the_tokens_and_backs_off() {
        let secret = fake(Ok(OLD));
        let tokens = SecretTokens::new(&secret, "");
        let auth: SharedAuthenticator = tokens.authenticator().await.unwrap().into();
        *secret.value.lock().unwrap() = Err(());
        tokio::time::advance(REFRESH_EVERY).await;

        tokens.refresh_if_stale(&auth).await;
        assert_eq!(secret.reads.load(Ordering::SeqCst), 2);
        assert!(
            auth.check(Some(OLD), None).is_ok(),
            "the tokens in use stay"
        );
        // Every push meanwhile goes straight through: no read until the backoff ends.
        for _ in 0..10 {
            tokens.refresh_if_stale(&auth).await;
        }
        assert_eq!(secret.reads.load(Ordering::SeqCst), 2);
        tokio::time::advance(RETRY_FIRST).await;
        tokens.refresh_if_stale(&auth).await;
        assert_eq!(secret.reads.load(Ordering::SeqCst), 3);
        // The second failure waits twice as long.
        tokio::time::advance(RETRY_FIRST).await;
        tokens.refresh_if_stale(&auth).await;
        assert_eq!(secret.reads.load(Ordering::SeqCst), 3);

        *secret.value.lock().unwrap() = Ok(NEW.into());
        tokio::time::advance(RETRY_FIRST).await;
        tokens.refresh_if_stale(&auth).await;
        assert!(
            auth.check(Some(NEW), None).is_ok(),
            "healed: the new tokens"
        );
        assert!(auth.check(Some(OLD), None).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_secret_holds_a_push_up_for_the_timeout_only() {
        let secret = fake(Ok(OLD));
        let tokens = SecretTokens::new(&secret, "");
        let auth: SharedAuthenticator = tokens.authenticator().await.unwrap().into();
        *secret.delay.lock().unwrap() = Duration::from_secs(60);
        *secret.value.lock().unwrap() = Ok(NEW.into());
        tokio::time::advance(REFRESH_EVERY).await;

        let started = Instant::now();
        tokens.refresh_if_stale(&auth).await;
        assert_eq!(started.elapsed(), REFRESH_TIMEOUT);
        assert!(
            auth.check(Some(OLD), None).is_ok(),
            "the tokens in use stay"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn invalid_tokens_in_the_secret_are_not_taken() {
        let secret = fake(Ok(OLD));
        let tokens = SecretTokens::new(&secret, "");
        let auth: SharedAuthenticator = tokens.authenticator().await.unwrap().into();
        *secret.value.lock().unwrap() = Ok("short".into());
        tokio::time::advance(REFRESH_EVERY).await;
        tokens.refresh_if_stale(&auth).await;
        assert!(auth.check(Some(OLD), None).is_ok());
    }
}
