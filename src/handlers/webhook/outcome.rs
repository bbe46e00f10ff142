//! How a push ended, and everything that follows from it: the HTTP status, the error code,
//! the metric and the JSON answer.

use lambda_http::{Body, Response};
use serde_json::{json, Value};

use crate::domain::auth::AuthError;
use crate::domain::push::InvalidPush;
use crate::domain::recording::RecordingStatus;
use crate::metrics::Metric;

/// Why a body was kept in the bucket instead of stored as a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quarantine {
    /// Not a valid push (400).
    InvalidBody,
    /// Over [`super::MAX_BODY_BYTES`] (413).
    TooLarge,
    /// Valid to the contract, refused by the table on every try (422).
    Unstorable,
}

/// How one push ended. The answer's status, error code and metric all follow from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushOutcome {
    /// A new record, stored (and its recording job queued when `recording` is PENDING;
    /// FAILED: its URL was refused).
    Stored {
        id: i64,
        recording: RecordingStatus,
    },
    /// The id was stored before; `conflict` when this body differs from the stored one.
    Duplicate {
        id: i64,
        conflict: bool,
    },
    /// A new binding error (an unbound call), stored.
    BindingErrorStored {
        request_id: String,
    },
    /// The requestId was stored before; `conflict` as for a call record.
    BindingErrorDuplicate {
        request_id: String,
        conflict: bool,
    },
    MethodNotAllowed,
    Unauthorized(AuthError),
    /// The body is kept under `key`; nothing else was written.
    Quarantined {
        kind: Quarantine,
        why: InvalidPush,
        key: String,
    },
    /// Storage failed: NXCLOUD retries.
    Unavailable,
}

impl PushOutcome {
    pub fn status(&self) -> u16 {
        match self {
            Self::Stored { .. }
            | Self::Duplicate { .. }
            | Self::BindingErrorStored { .. }
            | Self::BindingErrorDuplicate { .. } => 200,
            Self::MethodNotAllowed => 405,
            Self::Unauthorized(AuthError::BadToken) => 401,
            Self::Unauthorized(AuthError::SourceNotAllowed) => 403,
            Self::Quarantined { kind, .. } => match kind {
                Quarantine::InvalidBody => 400,
                Quarantine::TooLarge => 413,
                Quarantine::Unstorable => 422,
            },
            Self::Unavailable => 503,
        }
    }

    /// The answer's `error`; `None` for a 200.
    pub fn error_code(&self) -> Option<&'static str> {
        Some(match self {
            Self::Stored { .. }
            | Self::Duplicate { .. }
            | Self::BindingErrorStored { .. }
            | Self::BindingErrorDuplicate { .. } => return None,
            Self::MethodNotAllowed => "method_not_allowed",
            Self::Unauthorized(AuthError::BadToken) => "unauthorized",
            Self::Unauthorized(AuthError::SourceNotAllowed) => "forbidden",
            Self::Quarantined { kind, .. } => match kind {
                Quarantine::InvalidBody => "invalid_body",
                Quarantine::TooLarge => "payload_too_large",
                Quarantine::Unstorable => "unstorable_record",
            },
            Self::Unavailable => "unavailable",
        })
    }

    /// The metric that counts this outcome, and one more it also counts: a new record whose
    /// recording was refused at intake is a `RecordingFailed`, a new binding error an
    /// `UnboundCall`.
    pub fn metrics(&self) -> (Metric, Option<Metric>) {
        match self {
            Self::Stored { recording, .. } => (
                Metric::PushStored,
                (*recording == RecordingStatus::Failed).then_some(Metric::RecordingFailed),
            ),
            Self::BindingErrorStored { .. } => (Metric::PushStored, Some(Metric::UnboundCall)),
            Self::Duplicate { .. } | Self::BindingErrorDuplicate { .. } => {
                (Metric::PushDuplicate, None)
            }
            Self::MethodNotAllowed => (Metric::PushRejected, None),
            Self::Quarantined { .. } => (Metric::PushQuarantined, None),
            Self::Unauthorized(_) => (Metric::PushUnauthorized, None),
            Self::Unavailable => (Metric::PushFailed, None),
        }
    }

    /// The JSON answer.
    pub fn body(&self) -> Value {
        match self {
            Self::Stored { id, .. } => json!({"ok": true, "id": id, "duplicate": false}),
            Self::Duplicate { id, conflict } => {
                json!({"ok": true, "id": id, "duplicate": true, "conflict": conflict})
            }
            Self::BindingErrorStored { request_id } => {
                json!({"ok": true, "requestId": request_id, "duplicate": false})
            }
            Self::BindingErrorDuplicate {
                request_id,
                conflict,
            } => {
                json!({"ok": true, "requestId": request_id, "duplicate": true, "conflict": conflict})
            }
            Self::Quarantined { why, key, .. } => json!({
                "ok": false,
                "error": self.error_code(),
                "message": why.to_string(),
                "field": why.field(),
                "quarantineKey": key,
            }),
            Self::MethodNotAllowed => self.error("only POST is accepted"),
            Self::Unauthorized(e) => self.error(&e.to_string()),
            Self::Unavailable => self.error("storage is unavailable, retry later"),
        }
    }

    fn error(&self, message: &str) -> Value {
        json!({"ok": false, "error": self.error_code(), "message": message})
    }

    /// The JSON HTTP response.
    pub fn to_response(&self) -> Response<Body> {
        let mut builder = Response::builder()
            .status(self.status())
            .header(http::header::CONTENT_TYPE, "application/json");
        if *self == Self::MethodNotAllowed {
            builder = builder.header(http::header::ALLOW, "POST");
        }
        builder
            .body(Body::Text(self.body().to_string()))
            .expect("a static response is valid")
    }
}
