//! Recording jobs: the queue message, the archive state machine and the S3 key rules.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// Where a record's recording stands. Stored as `recordingStatus` in upper case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum RecordingStatus {
    /// The push carried no recording.
    None,
    /// A job is queued (or will be re-queued) to copy the recording.
    Pending,
    /// The recording is in S3 with a verified checksum.
    Archived,
    /// The recording cannot be copied; `recordingError` says why.
    Failed,
}

impl RecordingStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "NONE",
            Self::Pending => "PENDING",
            Self::Archived => "ARCHIVED",
            Self::Failed => "FAILED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "NONE" => Some(Self::None),
            "PENDING" => Some(Self::Pending),
            "ARCHIVED" => Some(Self::Archived),
            "FAILED" => Some(Self::Failed),
            _ => None,
        }
    }
}

/// The SQS message body that asks the archiver to copy one recording.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordingJob {
    /// The call record id.
    pub id: i64,
    /// The recording URL exactly as pushed (untrusted: the archiver re-checks it).
    pub url: String,
    /// The S3 key the recording goes to.
    pub key: String,
    /// When the job was queued, in epoch milliseconds (0 in jobs sent before it existed).
    /// A record re-archived later counts only the jobs queued since (`pendingSince`).
    #[serde(default, rename = "queuedAt")]
    pub queued_at: i64,
}

impl RecordingJob {
    pub fn new(
        id: i64,
        url: impl Into<String>,
        key: impl Into<String>,
        queued_at: OffsetDateTime,
    ) -> Self {
        Self {
            id,
            url: url.into(),
            key: key.into(),
            queued_at: epoch_ms(queued_at),
        }
    }

    /// Whether a record re-archived at `pending_since` (epoch ms) has handed its recording to
    /// a newer job: this one must then neither copy nor decide anything.
    pub fn is_superseded(&self, pending_since: Option<i64>) -> bool {
        pending_since.is_some_and(|since| self.queued_at < since)
    }
}

/// Milliseconds since the Unix epoch.
pub fn epoch_ms(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

/// Deliveries of one job before the queue moves it to the dead-letter queue
/// (`maxReceiveCount` in `template.yaml`; the local stack uses the same).
pub const MAX_DELIVERIES: u32 = 8;

/// Prefix of every archived recording.
pub const RECORDINGS_PREFIX: &str = "recordings/";
/// Prefix of quarantined (invalid) push bodies.
pub const REJECTED_PREFIX: &str = "rejected/";
/// Prefix of push bodies that reused an id with different content.
pub const CONFLICTS_PREFIX: &str = "conflicts/";
/// Prefix of the lake: the events as Firehose delivers them.
pub const LAKE_PREFIX: &str = "analytics/events/";

/// The deterministic key of a record's recording: `recordings/<yyyy>/<mm>/<dd>/<id>.<ext>`,
/// dated by the call's start (UTC) or, when NXCLOUD sent none, by when the push arrived.
pub fn recording_key(
    id: i64,
    start_at: Option<i64>,
    received_at: OffsetDateTime,
    url: &str,
) -> String {
    let date = start_at
        .filter(|t| *t > 0)
        .and_then(|t| OffsetDateTime::from_unix_timestamp(t).ok())
        .unwrap_or(received_at);
    let (year, month, day) = (date.year(), u8::from(date.month()), date.day());
    let ext = extension(url);
    format!("{RECORDINGS_PREFIX}{year:04}/{month:02}/{day:02}/{id}.{ext}")
}

/// `wav` for WAV URLs, `mp3` otherwise (NXCLOUD's documented format).
fn extension(url: &str) -> &'static str {
    let path = url.split(['?', '#']).next().unwrap_or_default();
    let is_wav = (path.len().checked_sub(4))
        .and_then(|at| path.get(at..))
        .is_some_and(|ext| ext.eq_ignore_ascii_case(".wav"));
    if is_wav {
        "wav"
    } else {
        "mp3"
    }
}

/// Key of a quarantined body: its SHA-256, so sixty retries of one bad push make one object.
pub fn rejected_key(body_sha256: &str) -> String {
    format!("{REJECTED_PREFIX}{body_sha256}.json")
}

/// Key of a conflicting body for record `id`.
pub fn conflict_key(id: i64, payload_sha256: &str) -> String {
    format!("{}{payload_sha256}.json", conflicts_of(id))
}

/// The folder of record `id`'s conflicting bodies.
pub fn conflicts_of(id: i64) -> String {
    format!("{CONFLICTS_PREFIX}{id}/")
}

/// The folder of a binding error's conflicting bodies.
pub fn binding_conflicts_of(request_id: &str) -> String {
    let folder = crate::sha256_hex(request_id.as_bytes());
    format!("{CONFLICTS_PREFIX}binding-errors/{folder}/")
}

/// Key of a conflicting binding-error body: `requestId` is pushed text of up to 1 024 bytes,
/// so its folder is its SHA-256, and the key stays far under S3's 1 024-byte limit whatever
/// the id holds (the id itself is in the body, and in the object's metadata).
pub fn binding_conflict_key(request_id: &str, payload_sha256: &str) -> String {
    format!("{}{payload_sha256}.json", binding_conflicts_of(request_id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn key_is_dated_by_call_start_in_utc() {
        let received = datetime!(2030-01-01 0:00 UTC);
        let url = "https://remote.record.nxcloud.com/pns/20221219/x.mp3";
        assert_eq!(
            recording_key(45, Some(1671440452), received, url),
            "recordings/2022/12/19/45.mp3"
        );
        assert_eq!(
            recording_key(45, Some(0), received, url),
            "recordings/2030/01/01/45.mp3"
        );
        for (url, ext) in [
            ("https://h/a.WAV?sig=1", "wav"),
            ("https://h/a.wav#t=1", "wav"),
            ("https://h/a.mp3?x=.wav", "mp3"),
            ("https://h/a.mp3#.wav", "mp3"),
            ("https://h/a.wav/", "mp3"),
            ("https://h/é.wav", "wav"),
            (".wav", "wav"),
            ("wav", "mp3"),
        ] {
            let key = recording_key(7, None, received, url);
            assert_eq!(key, format!("recordings/2030/01/01/7.{ext}"), "{url}");
        }
    }

    #[test]
    fn binding_conflict_keys_are_one_bounded_folder_per_request_id() {
        let sha = "ab".repeat(32);
        assert_eq!(
            binding_conflict_key("1640920940635361280", &sha),
            format!(
                "conflicts/binding-errors/{}/{sha}.json",
                crate::sha256_hex(b"1640920940635361280")
            )
        );
        // The longest requestId accepted, of characters a key would have to escape.
        let long = "/é".repeat(crate::push::MAX_INDEXED_LEN / 3);
        let key = binding_conflict_key(&long, &sha);
        assert!(key.len() < 200, "{key}");
        assert_ne!(key, binding_conflict_key(&long[1..], &sha));
    }

    #[test]
    fn status_round_trips() {
        for s in [
            RecordingStatus::None,
            RecordingStatus::Pending,
            RecordingStatus::Archived,
            RecordingStatus::Failed,
        ] {
            assert_eq!(RecordingStatus::parse(s.as_str()), Some(s));
        }
    }
}
