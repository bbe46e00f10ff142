//! How a push ended, and everything that follows from it: the HTTP status, the error code,
//! the metric and the JSON answer.

use lambda_http::{Body, Response};
use serde_json::{json, Value};
use tracing::{info, warn};

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
        call_id: Option<String>,
        recording: RecordingStatus,
    },
    /// The id was stored before; `conflict` when this body differs from the stored one (the
    /// body is then kept under `conflicts/`).
    Duplicate {
        id: i64,
        call_id: Option<String>,
        conflict: bool,
    },
    /// A new binding error (an unbound call), stored.
    BindingErrorStored {
        request_id: String,
        code: i64,
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
    /// Storage failed: NXCLOUD retries. `error` is the failure's chain of causes.
    Unavailable {
        error: String,
    },
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
            Self::Unavailable { .. } => 503,
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
            Self::Unavailable { .. } => "unavailable",
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
            Self::Duplicate { conflict, .. } | Self::BindingErrorDuplicate { conflict, .. } => {
                match conflict {
                    true => (Metric::PushConflict, None),
                    false => (Metric::PushDuplicate, None),
                }
            }
            Self::MethodNotAllowed => (Metric::PushRejected, None),
            Self::Quarantined { .. } => (Metric::PushQuarantined, None),
            Self::Unauthorized(_) => (Metric::PushUnauthorized, None),
            Self::Unavailable { .. } => (Metric::PushFailed, None),
        }
    }

    /// The JSON answer.
    pub fn body(&self) -> Value {
        match self {
            Self::Stored { id, .. } => json!({"ok": true, "id": id, "duplicate": false}),
            Self::Duplicate { id, conflict, .. } => {
                json!({"ok": true, "id": id, "duplicate": true, "conflict": conflict})
            }
            Self::BindingErrorStored { request_id, .. } => {
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
            Self::Unavailable { .. } => self.error("storage is unavailable, retry later"),
        }
    }

    fn error(&self, message: &str) -> Value {
        json!({"ok": false, "error": self.error_code(), "message": message})
    }

    /// The push's one log line, its `outcome` named as its metric: a count of the lines by
    /// outcome adds up to the pushes received.
    pub fn log(&self) {
        let outcome = self.metrics().0.name();
        let status = self.status();
        match self {
            Self::Stored {
                id,
                call_id,
                recording,
            } => info!(
                outcome,
                status,
                id,
                call_id,
                recording = recording.as_str(),
                "push stored"
            ),
            Self::Duplicate {
                id,
                call_id,
                conflict: false,
            } => info!(outcome, status, id, call_id, "push already stored"),
            Self::Duplicate {
                id,
                call_id,
                conflict: true,
            } => warn!(
                outcome,
                status, id, call_id, "same id, different payload: first record kept, body saved"
            ),
            Self::BindingErrorStored { request_id, code } => {
                info!(outcome, status, request_id, code, "binding error stored")
            }
            Self::BindingErrorDuplicate {
                request_id,
                conflict: false,
            } => info!(outcome, status, request_id, "binding error already stored"),
            Self::BindingErrorDuplicate {
                request_id,
                conflict: true,
            } => warn!(
                outcome,
                status, request_id, "same requestId, different payload: first kept, body saved"
            ),
            Self::MethodNotAllowed => info!(outcome, status, "not a POST"),
            Self::Unauthorized(e) => warn!(outcome, status, reason = %e, "push refused"),
            Self::Quarantined { why, key, .. } => warn!(
                outcome,
                status,
                key,
                field = why.field(),
                reason = %why,
                "invalid push quarantined"
            ),
            Self::Unavailable { error } => {
                warn!(outcome, status, error, "storage failed; NXCLOUD will retry")
            }
        }
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
