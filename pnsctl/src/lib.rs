//! The operator verbs behind `pnsctl`: redrive the DLQ, re-archive a record, show records,
//! replay a saved push body; re-publish events and run the lake's reports ([`lake`]). Each
//! takes the ports it needs, so the same verbs run against AWS, the local stack's emulator,
//! or in-memory ports.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Map, Value};
use time::OffsetDateTime;
use tracing::{info, warn};

use pns_cdr::domain::recording::{recording_key, RecordingJob, RecordingStatus};
use pns_cdr::ports::{
    BindingErrorLookup, CallsByBinding, DeadLetters, JobQueue, ObjectStore, PortError,
    RecordLookup, RecordStore,
};
use pns_cdr::telemetry::ErrorChain;

pub mod erase;
pub mod hint;
pub mod lake;
pub mod smoke;
pub mod stack;

/// How long a replayed push may take before we give up on the endpoint.
const REPLAY_TIMEOUT: Duration = Duration::from_secs(30);
/// Messages `pnsctl redrive` moves unless told otherwise.
pub const DEFAULT_REDRIVE_MAX: usize = 1000;

#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    #[error("record {0} not found")]
    NotFound(i64),
    #[error("binding error {0} not found")]
    BindingErrorNotFound(String),
    #[error("record {0} has no recording to archive")]
    NoRecording(i64),
    #[error(
        "record {id} is PENDING: its job is still being tried ({attempts} failed attempts{last}); \
         `pnsctl rearchive --force {id}` queues a new job that supersedes it"
    )]
    InFlight {
        id: i64,
        attempts: u32,
        /// `, the last: <reason>` or nothing.
        last: String,
    },
    #[error("record {0} changed while it was being re-archived; run the command again")]
    Changed(i64),
    #[error("record {id} is PENDING again but its job was not queued; run rearchive again")]
    NotQueued {
        id: i64,
        #[source]
        source: PortError,
    },
    #[error("redrive stopped after moving {moved} messages")]
    RedriveStopped {
        moved: usize,
        #[source]
        source: PortError,
    },
    #[error("object {0} not found in the bucket")]
    ObjectNotFound(String),
    #[error("cannot read {}", path.display())]
    ReadFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Carries no URL: the one given contains the webhook token.
    #[error("invalid endpoint URL: expected http(s)://host/path?token=...")]
    InvalidEndpoint,
    #[error("POST to {endpoint} failed")]
    Http {
        /// Without its query string.
        endpoint: String,
        #[source]
        source: reqwest::Error,
    },
    #[error(transparent)]
    Aws(#[from] PortError),
    #[error(transparent)]
    Tls(#[from] pns_cdr::adapters::tls::TlsError),
}

pub type Result<T, E = OpsError> = std::result::Result<T, E>;

/// Where a push body to replay comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodySource {
    File(PathBuf),
    /// A key in the bucket, e.g. `rejected/<sha>.json` or `conflicts/<id>/<sha>.json`.
    S3Key(String),
}

/// The endpoint's answer to a replayed push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replayed {
    pub status: u16,
    pub body: String,
}

/// Moves up to `max` messages from the dead letters back to the queue; returns how many
/// moved, and reports the running count to `progress`. Each message is deleted from the DLQ
/// only after the queue accepted its copy, so a failure can at worst duplicate a job (the
/// archiver is idempotent), never lose one. Bodies that are not jobs are moved too.
pub async fn redrive(
    queue: &impl JobQueue,
    dead_letters: &impl DeadLetters,
    max: usize,
    progress: impl Fn(usize),
) -> Result<usize> {
    let mut moved = 0;
    let stopped = |moved, source| OpsError::RedriveStopped { moved, source };
    while moved < max {
        let letters = dead_letters
            .receive(max - moved)
            .await
            .map_err(|e| stopped(moved, e))?;
        if letters.is_empty() {
            break;
        }
        // A message left unsent here becomes visible again in the DLQ after its timeout.
        for letter in letters {
            queue
                .send_raw(&letter.body)
                .await
                .map_err(|e| stopped(moved, e))?;
            dead_letters
                .delete(&letter.receipt_handle)
                .await
                .map_err(|e| stopped(moved, e))?;
            moved += 1;
            progress(moved);
        }
    }
    info!(
        outcome = "redriven",
        moved, "dead letters moved back to the queue"
    );
    Ok(moved)
}

/// Puts a record's recording back to PENDING and queues its job. Works from FAILED and
/// ARCHIVED alike (the operator's explicit choice); a record the webhook refused has no key
/// yet, so it gets the one the webhook would have given it. A PENDING record has a job in
/// flight: refused unless `force`. Either way the new job supersedes every older one (the
/// record's `pendingSince`), so an older job that gives up cannot mark the record FAILED.
pub async fn rearchive(
    records: &impl RecordStore,
    queue: &impl JobQueue,
    id: i64,
    force: bool,
) -> Result<RecordingJob> {
    let stored = records.get(id).await?.ok_or(OpsError::NotFound(id))?;
    if stored.status() == Some(RecordingStatus::Pending) && !force {
        return Err(OpsError::InFlight {
            id,
            attempts: stored.recording_attempts.unwrap_or(0),
            last: (stored.recording_error.as_deref())
                .map(|reason| format!(", the last: {reason}"))
                .unwrap_or_default(),
        });
    }
    let pushed_url = stored.record_file.clone().unwrap_or_default();
    let url = stored
        .record_file
        .as_deref()
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .ok_or(OpsError::NoRecording(id))?
        .to_owned();
    let key = match stored.recording_key {
        Some(key) => key,
        None => {
            let received_at = stored
                .received_at_epoch
                .and_then(|t| OffsetDateTime::from_unix_timestamp(t).ok())
                .unwrap_or_else(OffsetDateTime::now_utc);
            recording_key(id, stored.start_at, received_at, &url)
        }
    };
    let job = RecordingJob::new(id, url, key, OffsetDateTime::now_utc());
    if !(records.reset_to_pending(id, &pushed_url, &job.key, job.queued_at)).await? {
        return Err(OpsError::Changed(id));
    }
    if let Err(source) = queue.send(&job).await {
        warn!(id, outcome = "not_queued", error = %ErrorChain(&source), "record is PENDING without a job");
        return Err(OpsError::NotQueued { id, source });
    }
    info!(id, key = %job.key, outcome = "requeued", "recording re-archive queued");
    Ok(job)
}

/// The stored item of record `id`.
pub async fn show(records: &impl RecordLookup, id: i64) -> Result<Map<String, Value>> {
    records.item(id).await?.ok_or(OpsError::NotFound(id))
}

/// Every stored item with NXCLOUD `callId` `call_id` (through the `callIdLookup` index).
pub async fn show_call(
    records: &impl RecordLookup,
    call_id: &str,
) -> Result<Vec<Map<String, Value>>> {
    Ok(records.by_call_id(call_id).await?)
}

/// Which binding's calls: by the customer's own id for it, or by NXCLOUD's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Binding {
    /// `customerBindId`: through the table's index.
    Customer(String),
    /// `bindId`: a scan of the whole table.
    Nxcloud(String),
}

/// The calls of a binding, oldest first.
pub async fn calls(
    records: &impl CallsByBinding,
    binding: &Binding,
) -> Result<Vec<Map<String, Value>>> {
    Ok(match binding {
        Binding::Customer(id) => records.by_customer_bind_id(id).await?,
        Binding::Nxcloud(id) => records.by_bind_id(id).await?,
    })
}

/// The stored binding error with NXCLOUD `requestId` `request_id`.
pub async fn show_binding_error(
    errors: &impl BindingErrorLookup,
    request_id: &str,
) -> Result<Map<String, Value>> {
    errors
        .item(request_id)
        .await?
        .ok_or_else(|| OpsError::BindingErrorNotFound(request_id.to_owned()))
}

/// The binding errors of a masked number (DID), oldest first; with `day`, that UTC day's.
pub async fn binding_errors(
    errors: &impl BindingErrorLookup,
    did: &str,
    day: Option<time::Date>,
) -> Result<Vec<Map<String, Value>>> {
    let day = day.map(|d| {
        let (year, month, day) = (d.year(), u8::from(d.month()), d.day());
        format!("{year:04}-{month:02}-{day:02}")
    });
    Ok(errors.by_did(did, day.as_deref()).await?)
}

/// POSTs a saved push body to `endpoint` (the webhook URL with its `?token=`), as NXCLOUD
/// would, and returns the answer. The endpoint never reaches logs or errors with its token.
pub async fn replay(
    objects: &impl ObjectStore,
    endpoint: &str,
    source: &BodySource,
) -> Result<Replayed> {
    let parsed = url::Url::parse(endpoint).map_err(|_| OpsError::InvalidEndpoint)?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(OpsError::InvalidEndpoint);
    }
    let shown = redact_url(endpoint);
    let body = match source {
        BodySource::File(path) => {
            tokio::fs::read(path)
                .await
                .map_err(|source| OpsError::ReadFile {
                    path: path.clone(),
                    source,
                })?
        }
        BodySource::S3Key(key) => objects
            .get(key)
            .await?
            .ok_or_else(|| OpsError::ObjectNotFound(key.clone()))?
            .to_vec(),
    };
    let bytes = body.len();
    let http_error = |e: reqwest::Error| OpsError::Http {
        endpoint: shown.clone(),
        source: e.without_url(),
    };
    let tls = pns_cdr::adapters::tls::client_config()?;
    let response = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(REPLAY_TIMEOUT)
        .build()
        .map_err(http_error)?
        .post(parsed)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await
        .map_err(http_error)?;
    let status = response.status().as_u16();
    let body = response.text().await.map_err(http_error)?;
    info!(endpoint = %shown, bytes, status, outcome = "replayed", "push body replayed");
    Ok(Replayed { status, body })
}

/// `url` without its query string, fragment and credentials: safe to print and log.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            u.set_query(None);
            u.set_fragment(None);
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.to_string()
        }
        Err(_) => "<invalid URL>".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pns_cdr::adapters::memory::MemoryJobQueue;
    use pns_cdr::ports::DeadLetter;
    use std::sync::Mutex;

    #[test]
    fn printed_urls_keep_no_token() {
        assert_eq!(
            redact_url("https://u:p@api.example.com/pns/call-result?token=s3cret#x"),
            "https://api.example.com/pns/call-result"
        );
        assert_eq!(redact_url("not a url ?token=s3cret"), "<invalid URL>");
    }

    /// Dead letters in a vector; a delete removes by receipt handle.
    #[derive(Default)]
    struct Letters(Mutex<Vec<DeadLetter>>);

    impl DeadLetters for Letters {
        async fn receive(&self, max: usize) -> Result<Vec<DeadLetter>, PortError> {
            let letters = self.0.lock().unwrap();
            Ok(letters.iter().take(max.min(10)).cloned().collect())
        }
        async fn delete(&self, receipt_handle: &str) -> Result<(), PortError> {
            self.0
                .lock()
                .unwrap()
                .retain(|l| l.receipt_handle != receipt_handle);
            Ok(())
        }
    }

    #[tokio::test]
    async fn redrive_deletes_only_what_the_queue_accepted() {
        let letters = Letters::default();
        for id in 1..=3 {
            letters.0.lock().unwrap().push(DeadLetter {
                body: format!(r#"{{"id":{id},"url":"https://h/{id}.mp3","key":"k/{id}"}}"#),
                receipt_handle: format!("r{id}"),
            });
        }
        let queue = MemoryJobQueue::default();
        queue
            .fail_next
            .store(1, std::sync::atomic::Ordering::SeqCst);
        let e = redrive(&queue, &letters, 10, |_| {}).await.unwrap_err();
        assert!(
            matches!(e, OpsError::RedriveStopped { moved: 0, .. }),
            "{e:?}"
        );
        assert_eq!(letters.0.lock().unwrap().len(), 3, "nothing deleted unsent");
        let seen = Mutex::new(Vec::new());
        let moved = redrive(&queue, &letters, 2, |n| seen.lock().unwrap().push(n)).await;
        assert_eq!(moved.unwrap(), 2);
        assert_eq!(*seen.lock().unwrap(), [1, 2]);
        assert_eq!(queue.jobs.lock().unwrap().len(), 2);
        assert_eq!(letters.0.lock().unwrap().len(), 1);
    }
}
