//! Push authentication: a shared secret in the URL NXCLOUD calls, optionally a source-IP list.
//!
//! NXCLOUD documents no signature, so the token embedded in the configured URL is the only
//! secret. Up to two tokens are valid at once so the secret can be rotated without losing a push.

use std::net::IpAddr;

use ipnet::IpNet;
use subtle::ConstantTimeEq;

/// Why a push was refused before anything was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing or invalid token")]
    BadToken,
    #[error("source address is not allowed")]
    SourceNotAllowed,
}

/// Configuration problems with the secrets or the CIDR list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthConfigError {
    #[error("no webhook token is configured")]
    NoToken,
    #[error("a webhook token must be at least {min} characters (got {len})")]
    TokenTooShort { min: usize, len: usize },
    #[error("at most two webhook tokens (current, previous) may be valid at once")]
    TooManyTokens,
    #[error("`{0}` is not a CIDR block or an IP address")]
    BadCidr(String),
}

/// Tokens shorter than this are refused outright (the template asks 16 of deployments; the
/// local stack's well-known `local-dev-token` is 15).
pub const MIN_TOKEN_LEN: usize = 12;

/// Decides whether a request may change anything.
#[derive(Clone)]
pub struct Authenticator {
    tokens: Vec<Vec<u8>>,
    sources: Vec<IpNet>,
}

impl std::fmt::Debug for Authenticator {
    // Never print the secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("tokens", &self.tokens.len())
            .field("sources", &self.sources)
            .finish()
    }
}

impl Authenticator {
    /// `tokens`: comma-separated `current[,previous]`; `cidrs`: comma-separated, empty = any.
    pub fn new(tokens: &str, cidrs: &str) -> Result<Self, AuthConfigError> {
        let tokens: Vec<Vec<u8>> = tokens
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(|t| t.as_bytes().to_vec())
            .collect();
        if tokens.is_empty() {
            return Err(AuthConfigError::NoToken);
        }
        if tokens.len() > 2 {
            return Err(AuthConfigError::TooManyTokens);
        }
        if let Some(short) = tokens.iter().find(|t| t.len() < MIN_TOKEN_LEN) {
            return Err(AuthConfigError::TokenTooShort {
                min: MIN_TOKEN_LEN,
                len: short.len(),
            });
        }
        let sources = cidrs
            .split(',')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(|c| {
                c.parse::<IpNet>()
                    .or_else(|_| c.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| AuthConfigError::BadCidr(c.to_owned()))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { tokens, sources })
    }

    /// The first token, the one NXCLOUD is given.
    pub fn current_token(&self) -> &str {
        std::str::from_utf8(&self.tokens[0]).expect("tokens are read from text")
    }

    /// An address the source list admits (any address when there is no list): where the
    /// stack's own canary pushes say they come from.
    pub fn admitted_source(&self) -> IpAddr {
        self.sources
            .first()
            .map_or(IpAddr::from([127, 0, 0, 1]), IpNet::network)
    }

    /// Checks the presented token (query `token` or `Authorization: Bearer`) and the source.
    pub fn check(&self, presented: Option<&str>, source: Option<IpAddr>) -> Result<(), AuthError> {
        if !self.sources.is_empty() {
            let allowed = source.is_some_and(|ip| self.sources.iter().any(|net| net.contains(&ip)));
            if !allowed {
                return Err(AuthError::SourceNotAllowed);
            }
        }
        let presented = presented.unwrap_or_default().as_bytes();
        // Compare against every token without stopping early: the time taken says nothing
        // about which token, or how much of one, matched.
        let mut ok = subtle::Choice::from(0);
        for token in &self.tokens {
            ok |= token.as_slice().ct_eq(presented);
        }
        if bool::from(ok) {
            Ok(())
        } else {
            Err(AuthError::BadToken)
        }
    }
}

/// An authenticator that can be replaced while requests are served (token rotation).
#[derive(Debug, Clone)]
pub struct SharedAuthenticator(std::sync::Arc<std::sync::RwLock<Authenticator>>);

impl From<Authenticator> for SharedAuthenticator {
    fn from(auth: Authenticator) -> Self {
        Self(std::sync::Arc::new(std::sync::RwLock::new(auth)))
    }
}

impl SharedAuthenticator {
    pub fn check(&self, presented: Option<&str>, source: Option<IpAddr>) -> Result<(), AuthError> {
        self.0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .check(presented, source)
    }

    pub fn replace(&self, auth: Authenticator) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = auth;
    }
}

/// The token a request presents: `?token=` wins over `Authorization: Bearer`.
pub fn presented_token<'a>(
    query_token: Option<&'a str>,
    authorization: Option<&'a str>,
) -> Option<&'a str> {
    query_token.or_else(|| {
        authorization.and_then(|h| {
            let (scheme, rest) = h.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CURRENT: &str = "current-token-0123456789";
    const PREVIOUS: &str = "previous-token-0123456789";

    #[test]
    fn accepts_current_and_previous_tokens_only() {
        let auth = Authenticator::new(&format!("{CURRENT},{PREVIOUS}"), "").unwrap();
        assert_eq!(auth.check(Some(CURRENT), None), Ok(()));
        assert_eq!(auth.check(Some(PREVIOUS), None), Ok(()));
        for bad in [
            None,
            Some(""),
            Some("current-token-012345678"),
            Some("current-token-01234567890"),
        ] {
            assert_eq!(auth.check(bad, None), Err(AuthError::BadToken), "{bad:?}");
        }
    }

    #[test]
    fn source_list_is_enforced_when_set() {
        let auth = Authenticator::new(CURRENT, "203.0.113.0/24, 2001:db8::1").unwrap();
        assert_eq!(
            auth.check(Some(CURRENT), "203.0.113.7".parse().ok()),
            Ok(())
        );
        assert_eq!(
            auth.check(Some(CURRENT), "2001:db8::1".parse().ok()),
            Ok(())
        );
        assert_eq!(
            auth.check(Some(CURRENT), "198.51.100.1".parse().ok()),
            Err(AuthError::SourceNotAllowed)
        );
        assert_eq!(
            auth.check(Some(CURRENT), None),
            Err(AuthError::SourceNotAllowed)
        );
    }

    #[test]
    fn refuses_weak_configuration() {
        assert_eq!(
            Authenticator::new(" , ", "").unwrap_err(),
            AuthConfigError::NoToken
        );
        assert!(matches!(
            Authenticator::new("eleven-char", ""),
            Err(AuthConfigError::TokenTooShort { .. })
        ));
        assert!(matches!(
            Authenticator::new(&format!("{CURRENT},{CURRENT},{CURRENT}"), ""),
            Err(AuthConfigError::TooManyTokens)
        ));
        assert!(matches!(
            Authenticator::new(CURRENT, "10.0.0.0/33"),
            Err(AuthConfigError::BadCidr(_))
        ));
        assert!(!format!("{:?}", Authenticator::new(CURRENT, "").unwrap()).contains(CURRENT));
    }

    #[test]
    fn bearer_header_is_a_fallback() {
        assert_eq!(presented_token(None, Some("Bearer abc")), Some("abc"));
        assert_eq!(presented_token(None, Some("bearer  abc ")), Some("abc"));
        assert_eq!(presented_token(Some("q"), Some("Bearer abc")), Some("q"));
        assert_eq!(presented_token(None, Some("Basic abc")), None);
    }
}
