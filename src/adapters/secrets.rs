//! Webhook tokens from Secrets Manager: read at cold start, re-read at most every few minutes
//! so a rotation reaches warm functions without a redeploy.

use std::time::{Duration, Instant};

use tokio::sync::Mutex;
use tracing::warn;

use crate::config::Config;
use crate::domain::auth::SharedAuthenticator;
use crate::ports::PortError;

/// How long fetched tokens are trusted before the secret is read again.
pub const REFRESH_EVERY: Duration = Duration::from_secs(300);

/// Keeps a [`SharedAuthenticator`] in step with the secret.
pub struct SecretTokens {
    client: aws_sdk_secretsmanager::Client,
    secret_id: String,
    fetched_at: Mutex<Instant>,
}

impl SecretTokens {
    pub fn new(client: aws_sdk_secretsmanager::Client, secret_id: impl Into<String>) -> Self {
        Self {
            client,
            secret_id: secret_id.into(),
            fetched_at: Mutex::new(Instant::now()),
        }
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
    pub async fn refresh_if_stale(&self, auth: &SharedAuthenticator, config: &Config) {
        let mut fetched_at = self.fetched_at.lock().await;
        if fetched_at.elapsed() < REFRESH_EVERY {
            return;
        }
        match self
            .fetch()
            .await
            .map(|tokens| config.authenticator_for(&tokens))
        {
            Ok(Ok(fresh)) => {
                auth.replace(fresh);
                *fetched_at = Instant::now();
            }
            Ok(Err(e)) => {
                warn!(error = %e, "the webhook token secret holds invalid tokens; keeping the current ones")
            }
            Err(e) => {
                warn!(error = %e, "could not re-read the webhook token secret; keeping the current ones")
            }
        }
    }
}
