//! What the simulator sends: realistic call records, duplicates and conflicts, and the
//! recordings they point at, each with the outcome the archiver must reach.

use fastrand::Rng;
use serde_json::{json, Value};

use crate::local::fake_nxcloud::{FakeNxcloud, SampleRecording};

/// What the archiver must end with for one recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// `ARCHIVED`, with an object whose bytes hash to this SHA-256 (hex); `None`: not checked
    /// (a recording host the simulator does not control).
    Archived { sha256: Option<String> },
    /// `FAILED`, with a reason that contains this text: failure is the correct outcome.
    Failed { reason_contains: String },
}

/// A recording a planned record points at.
#[derive(Debug, Clone)]
pub struct PlannedRecording {
    pub url: String,
    pub expect: Expect,
}

/// One push of the plan: a call record, or (with `request_id`) a binding error.
#[derive(Debug, Clone)]
pub struct PlannedRecord {
    /// The call record's id; for a binding error, its place in the plan.
    pub id: i64,
    /// A binding error's `requestId`: where it is stored.
    pub request_id: Option<String>,
    pub body: String,
    pub recording: Option<PlannedRecording>,
    /// Extra exact copies of `body` to send.
    pub duplicates: usize,
    /// A different body with the same id, sent too (whichever is stored first wins).
    pub conflict: Option<String>,
}

/// How records and recordings are generated.
#[derive(Debug, Clone)]
pub struct Workload {
    pub first_id: i64,
    pub count: usize,
    /// Extra exact duplicates, as a share of `count` (0.3: 30 duplicates per 100 records).
    pub duplicate_share: f64,
    /// Records that are also sent with different content under the same id.
    pub conflict_share: f64,
    /// Share of records that are answered calls with a recording.
    pub recording_share: f64,
    /// Recording sizes, used in turn.
    pub recording_sizes: Vec<u64>,
    /// Binding-error pushes (unbound calls), as a share of `count`, sent besides.
    pub binding_error_share: f64,
    pub seed: u64,
}

impl Default for Workload {
    fn default() -> Self {
        Self {
            first_id: 1,
            count: 100,
            duplicate_share: 0.3,
            conflict_share: 0.02,
            recording_share: 0.6,
            recording_sizes: vec![48 * 1024],
            binding_error_share: 0.0,
            seed: 1,
        }
    }
}

/// Where recordings come from: a URL and the digest the archiver must end with.
pub trait RecordingHost: Send + Sync {
    /// URL of a recording of `size` bytes for record `id`, and what archiving it must give.
    fn recording(&self, id: i64, size: u64, seed: u64) -> PlannedRecording;
}

/// The local fake NXCLOUD host (`crate::local::fake_nxcloud`): digests are known exactly.
impl RecordingHost for FakeNxcloud {
    fn recording(&self, id: i64, size: u64, seed: u64) -> PlannedRecording {
        let sample = SampleRecording::new(seed, size);
        PlannedRecording {
            url: self.url(&format!("sim-{id}"), size, &format!("seed={seed}")),
            expect: Expect::Archived {
                sha256: Some(sample.sha256()),
            },
        }
    }
}

/// One recording at a fixed URL for every answered call (a deployed stack, whose recording
/// hosts must be real HTTPS hosts on its allow-list).
pub struct FixedRecording {
    pub url: String,
    pub sha256: Option<String>,
}

impl RecordingHost for FixedRecording {
    fn recording(&self, _id: i64, _size: u64, _seed: u64) -> PlannedRecording {
        PlannedRecording {
            url: self.url.clone(),
            expect: Expect::Archived {
                sha256: self.sha256.clone(),
            },
        }
    }
}

/// The masked numbers (DIDs) the simulated account rents, in the fictional 5559xxxx range.
pub const SIM_DIDS: [&str; 6] = [
    "85255590001",
    "85255590002",
    "85255590003",
    "85255590004",
    "85255590005",
    "85255590006",
];

/// A realistic push body: an answered call with a recording, or an unanswered one without.
pub fn push_body(id: i64, recording_url: Option<&str>, rng: &mut Rng) -> String {
    let start = 1_767_225_600 + rng.i64(0..86_400 * 300);
    // Fictional numbers in Hong Kong's 5550xxxx range: never a real subscriber.
    let number = |rng: &mut Rng| format!("852555{:05}", rng.u32(0..100_000));
    // A few businesses and masked numbers, as a real account has: the lake's per-business
    // and per-DID reports then have something to add up.
    let business = ["sim_busi_a", "sim_busi_b", "sim_busi_c"][rng.usize(0..3)];
    let did = SIM_DIDS[rng.usize(0..SIM_DIDS.len())];
    let mut body = json!({
        "id": id,
        "businessId": business,
        "customerBindId": rng.u32(1..=50).to_string(),
        "bindId": format!("{:032x}", rng.u128(..)),
        "callId": (1_604_763_745_256_000_000i64 + id).to_string(),
        "did": did,
        "caller": number(rng),
        "callee": number(rng),
        "callStatusMsg": "",
        "startAt": start,
        "hangup": rng.u8(0..2),
    });
    let fields = body.as_object_mut().expect("an object");
    match recording_url {
        Some(url) => {
            let ring = rng.i64(1..=20);
            let duration = rng.i64(5..605);
            fields.insert("callStatus".into(), 1.into());
            fields.insert("duration".into(), duration.into());
            fields.insert("answerAt".into(), (start + ring).into());
            fields.insert("hangupAt".into(), (start + ring + duration).into());
            fields.insert("hangupCause".into(), "NORMAL_CLEARING".into());
            fields.insert("hangupCode".into(), 16.into());
            fields.insert("recordFile".into(), url.into());
        }
        None => {
            let (cause, code) =
                [("USER_BUSY", 17), ("NO_ANSWER", 19), ("CALL_REJECTED", 21)][rng.usize(0..3)];
            fields.insert("callStatus".into(), 2.into());
            fields.insert("duration".into(), 0.into());
            fields.insert("answerAt".into(), 0.into());
            fields.insert("hangupAt".into(), (start + rng.i64(1..=40)).into());
            fields.insert("hangupCause".into(), cause.into());
            fields.insert("hangupCode".into(), code.into());
            fields.insert("recordFile".into(), "".into());
        }
    }
    body.to_string()
}

/// A binding-error push: a caller dialled one of the fictional masked numbers unbound.
pub fn binding_error_body(request_id: &str, rng: &mut Rng) -> String {
    let number = |rng: &mut Rng| format!("852555{:05}", rng.u32(0..100_000));
    let (code, msg) = [
        (10013, "binding not exist"),
        (10001, "empty binding number"),
    ][usize::from(rng.u8(0..10) == 0)];
    let (day, hour, minute, second) = (rng.u8(1..29), rng.u8(0..24), rng.u8(0..60), rng.u8(0..60));
    json!({
        "code": code,
        "msg": msg,
        "requestId": request_id,
        "data": {
            "action": "queryAXB",
            "requestParams": {"caller": number(rng), "did": SIM_DIDS[rng.usize(0..SIM_DIDS.len())]},
            "occurrenceTime": format!("2026-03-{day:02} {hour:02}:{minute:02}:{second:02}"),
        }
    })
    .to_string()
}

/// The plan of a workload.
pub fn plan(workload: &Workload, host: Option<&dyn RecordingHost>) -> Vec<PlannedRecord> {
    let mut rng = Rng::with_seed(workload.seed);
    let sizes = if workload.recording_sizes.is_empty() {
        vec![48 * 1024]
    } else {
        workload.recording_sizes.clone()
    };
    let mut records: Vec<PlannedRecord> = (0..workload.count)
        .map(|i| {
            let id = workload.first_id + i as i64;
            let recording = match host {
                Some(host) if rng.f64() < workload.recording_share => {
                    Some(host.recording(id, sizes[i % sizes.len()], rng.u64(..) >> 1))
                }
                _ => None,
            };
            let body = push_body(id, recording.as_ref().map(|r| r.url.as_str()), &mut rng);
            let conflict = (rng.f64() < workload.conflict_share).then(|| {
                let mut changed: Value = serde_json::from_str(&body).expect("generated JSON");
                changed["callStatusMsg"] = "re-rated".into();
                changed.to_string()
            });
            PlannedRecord {
                id,
                request_id: None,
                body,
                recording,
                duplicates: 0,
                conflict,
            }
        })
        .collect();
    let binding_errors = (workload.count as f64 * workload.binding_error_share).round() as usize;
    for n in 0..binding_errors {
        // Ids after the call records', request ids from the same clock-based range.
        let id = workload.first_id + (workload.count + n) as i64;
        let request_id = (1_640_920_940_635_000_000 + id).to_string();
        let body = binding_error_body(&request_id, &mut rng);
        let conflict = (rng.f64() < workload.conflict_share).then(|| {
            let mut changed: Value = serde_json::from_str(&body).expect("generated JSON");
            changed["msg"] = "binding not exist (again)".into();
            changed.to_string()
        });
        records.push(PlannedRecord {
            id,
            request_id: Some(request_id),
            body,
            recording: None,
            duplicates: 0,
            conflict,
        });
    }
    let extra = (workload.count as f64 * workload.duplicate_share).round() as usize;
    for _ in 0..extra {
        let i = rng.usize(0..records.len());
        records[i].duplicates += 1;
    }
    records
}

#[cfg(test)]
mod tests {
    use super::*;
    use pns_cdr::domain::cdr::CallRecord;

    #[test]
    fn a_plan_is_valid_pushes_with_the_asked_shares() {
        let workload = Workload {
            count: 1000,
            duplicate_share: 0.3,
            conflict_share: 0.05,
            recording_share: 0.0,
            ..Workload::default()
        };
        let records = plan(&workload, None);
        assert_eq!(records.len(), 1000);
        assert_eq!(records.iter().map(|r| r.duplicates).sum::<usize>(), 300);
        let conflicts = records.iter().filter(|r| r.conflict.is_some()).count();
        assert!((20..=80).contains(&conflicts), "{conflicts}");
        for record in &records {
            let parsed = CallRecord::parse(record.body.as_bytes()).unwrap();
            assert_eq!(parsed.record.id, record.id);
            if let Some(conflict) = &record.conflict {
                let other = CallRecord::parse(conflict.as_bytes()).unwrap();
                assert_ne!(other.payload_sha256, parsed.payload_sha256);
            }
        }
        // The same seed replays the same plan.
        let again = plan(&workload, None);
        assert!(records.iter().zip(&again).all(|(a, b)| a.body == b.body));
    }

    #[test]
    fn binding_errors_are_planned_beside_the_call_records() {
        let workload = Workload {
            count: 100,
            binding_error_share: 0.1,
            recording_share: 0.0,
            ..Workload::default()
        };
        let records = plan(&workload, None);
        let bindings: Vec<&PlannedRecord> =
            records.iter().filter(|r| r.request_id.is_some()).collect();
        assert_eq!((records.len(), bindings.len()), (110, 10));
        for record in bindings {
            let parsed =
                pns_cdr::domain::binding::BindingError::parse(record.body.as_bytes()).unwrap();
            assert_eq!(Some(&parsed.error.request_id), record.request_id.as_ref());
            assert!(parsed.error.occurred_at(time::UtcOffset::UTC).is_some());
        }
    }
}
