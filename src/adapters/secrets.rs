//! Webhook tokens from Secrets Manager: read at cold start, re-read at most every few minutes
//! so a rotation reaches warm functions without a redeploy.

use std::time::{Duration, Instant};

use tokio::sync::Mutex;
use tracing::warn;

use crate::domain::auth::{Authenticator, SharedAuthenticator};
use crate::ports::PortError;
use crate::telemetry::ErrorChain;

/// How long fetched tokens are trusted before the secret is read again.
pub const REFRESH_EVERY: Duration = Duration::from_secs(300);

/// Why the secret gave no authenticator.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("could not read the webhook token secret")]
    Read(#[from] PortError),
    #[error("the webhook token secret holds invalid tokens")]
    Invalid(#[from] crate::domain::auth::AuthConfigError),
}

/// Keeps a [`SharedAuthenticator`] in step with the secret.
pub struct SecretTokens {
    client: aws_sdk_secretsmanager::Client,
    secret_id: String,
    /// The source allow-list every authenticator built from the secret carries.
    source_cidrs: String,
    fetched_at: Mutex<Instant>,
}

impl SecretTokens {
    pub fn new(
        client: aws_sdk_secretsmanager::Client,
        secret_id: impl Into<String>,
        source_cidrs: impl Into<String>,
    ) -> Self {
        Self {
            client,
            secret_id: secret_id.into(),
            source_cidrs: source_cidrs.into(),
            fetched_at: Mutex::new(Instant::now()),
        }
    }

    /// An authenticator for the secret's current value (at cold start).
    pub async fn authenticator(&self) -> Result<Authenticator, SecretError> {
        let tokens = self.fetch().await?;
        Ok(Authenticator::new(&tokens, &self.source_cidrs)?)
    }

    /// The secret's current value (`current[,previous]`).
    pub async fn fetch(&self) -> Result<String, PortError> {
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

    /// Re-reads the secret when the cached tokens are older than [`REFRESH_EVERY`]. A failed
    /// read keeps the tokens in use (a Secrets Manager hiccup must not refuse every push).
    pub async fn refresh_if_stale(&self, auth: &SharedAuthenticator) {
        let mut fetched_at = self.fetched_at.lock().await;
        if fetched_at.elapsed() < REFRESH_EVERY {
            return;
        }
        match self.authenticator().await {
            Ok(fresh) => {
                auth.replace(fresh);
                *fetched_at = Instant::now();
            }
            Err(e) => {
                warn!(error = %ErrorChain(&e), "could not refresh the webhook tokens; keeping the current ones")
            }
        }
    }
}
