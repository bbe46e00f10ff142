//! The lake's named queries against what the simulator knows it sent.
//!
//! From the plan alone (the bodies, which recordings must archive and which must fail, the
//! binding errors), each report's rows are computed here, then the query is run by
//! `pnsctl report`'s own code on this run's events in the lake, and the two must agree:
//! rows in the query's order, counts exact, rates and averages to the query's precision.
//! Recording failures are matched by the reason the plan expects to be contained.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use pns_cdr::domain::binding::BindingError;
use pns_cdr::domain::cdr::CallRecord;
use pns_cdr::domain::item::hangup_by;
use pns_cdr::domain::recording::LAKE_PREFIX;
use pnsctl::lake::{report_sql, run_duckdb, Table, REPORTS};
use serde_json::{json, Map, Value};
use time::{OffsetDateTime, UtcOffset};

use super::{Expect, PlannedRecord, SimError, Target};

/// What a report must answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Expected {
    /// These rows, in this order.
    Rows(Vec<Map<String, Value>>),
    /// `recording-coverage`: archived recordings, and failed ones by the text their reason
    /// contains.
    Coverage {
        archived: usize,
        failed: BTreeMap<String, usize>,
    },
}

fn row(pairs: Vec<(&str, Value)>) -> Map<String, Value> {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

fn round(value: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (value * scale).round() / scale
}

/// Each report's answer for `records`, binding errors dated with NXCLOUD's `offset`.
pub fn expected(records: &[PlannedRecord], offset: UtcOffset) -> BTreeMap<&'static str, Expected> {
    let calls: Vec<(&PlannedRecord, pns_cdr::domain::cdr::ParsedCallRecord)> = records
        .iter()
        .filter(|r| r.request_id.is_none())
        .filter_map(|r| CallRecord::parse(r.body.as_bytes()).ok().map(|p| (r, p)))
        .collect();

    // calls-per-business-per-day: (business, day) -> (calls, answered, talk seconds)
    let mut per_business: BTreeMap<(String, String), (i64, i64, i64)> = BTreeMap::new();
    // answer-rate-per-did: did -> (calls, answered, talk seconds)
    let mut per_did: BTreeMap<String, (i64, i64, i64)> = BTreeMap::new();
    let mut causes: HashMap<(String, i64, String), i64> = HashMap::new();
    for (_, push) in &calls {
        let r = &push.record;
        let answered = r.answered();
        let talk = if answered { r.duration.unwrap_or(0) } else { 0 };
        if let Some(start) = r.start_at {
            let day = OffsetDateTime::from_unix_timestamp(start)
                .map(|t| t.date().to_string())
                .unwrap_or_default();
            let entry = per_business
                .entry((r.business_id.clone().unwrap_or_default(), day))
                .or_default();
            *entry = (entry.0 + 1, entry.1 + i64::from(answered), entry.2 + talk);
        }
        let entry = per_did
            .entry(r.did.clone().unwrap_or_default())
            .or_default();
        *entry = (entry.0 + 1, entry.1 + i64::from(answered), entry.2 + talk);
        let cause = r
            .hangup_cause
            .clone()
            .filter(|c| !c.is_empty())
            .unwrap_or_else(|| "(none)".into());
        let by = r.hangup.map_or("UNKNOWN", hangup_by).to_owned();
        *causes
            .entry((cause, r.hangup_code.unwrap_or(-1), by))
            .or_default() += 1;
    }
    let mut reports = BTreeMap::new();
    reports.insert(
        "calls-per-business-per-day",
        Expected::Rows(
            per_business
                .into_iter()
                .map(|((business, day), (calls, answered, talk))| {
                    row(vec![
                        ("business_id", business.into()),
                        ("call_day", day.into()),
                        ("calls", calls.into()),
                        ("answered", answered.into()),
                        ("talk_seconds", talk.into()),
                    ])
                })
                .collect(),
        ),
    );
    reports.insert(
        "answer-rate-per-did",
        Expected::Rows(
            per_did
                .into_iter()
                .map(|(did, (calls, answered, talk))| {
                    let average = (answered > 0).then(|| round(talk as f64 / answered as f64, 1));
                    row(vec![
                        ("did", did.into()),
                        ("calls", calls.into()),
                        ("answered", answered.into()),
                        (
                            "answer_rate",
                            round(answered as f64 / calls as f64, 4).into(),
                        ),
                        ("avg_talk_seconds", json!(average)),
                    ])
                })
                .collect(),
        ),
    );
    let mut causes: Vec<_> = causes.into_iter().collect();
    causes.sort_by(|((c1, k1, b1), n1), ((c2, k2, b2), n2)| {
        n2.cmp(n1).then((c1, k1, b1).cmp(&(c2, k2, b2)))
    });
    reports.insert(
        "hangup-causes",
        Expected::Rows(
            causes
                .into_iter()
                .map(|((cause, code, by), calls)| {
                    row(vec![
                        ("hangup_cause", cause.into()),
                        ("hangup_code", code.into()),
                        ("hung_up_by", by.into()),
                        ("calls", calls.into()),
                    ])
                })
                .collect(),
        ),
    );
    let mut archived = 0;
    let mut failed: BTreeMap<String, usize> = BTreeMap::new();
    for (record, _) in &calls {
        match record.recording.as_ref().map(|r| &r.expect) {
            Some(Expect::Archived { .. }) => archived += 1,
            Some(Expect::Failed { reason_contains }) => {
                *failed.entry(reason_contains.clone()).or_default() += 1
            }
            None => {}
        }
    }
    reports.insert(
        "recording-coverage",
        Expected::Coverage { archived, failed },
    );
    let mut unbound: BTreeMap<(String, String), i64> = BTreeMap::new();
    for record in records.iter().filter(|r| r.request_id.is_some()) {
        let Ok(parsed) = BindingError::parse(record.body.as_bytes()) else {
            continue;
        };
        let e = parsed.error;
        let day = e
            .occurred_at(offset)
            .map(|t| t.date().to_string())
            .unwrap_or_default();
        *unbound.entry((e.did.unwrap_or_default(), day)).or_default() += 1;
    }
    reports.insert(
        "unbound-calls-per-did-per-day",
        Expected::Rows(
            unbound
                .into_iter()
                .map(|((did, day), n)| {
                    row(vec![
                        ("did", did.into()),
                        ("occurred_day", day.into()),
                        ("unbound_calls", n.into()),
                    ])
                })
                .collect(),
        ),
    );
    debug_assert_eq!(reports.len(), REPORTS.len());
    reports
}

/// Two cells agree: numbers to the precision a query rounds to, the rest exactly.
fn same(expected: &Value, actual: &Value) -> bool {
    match (expected.as_f64(), actual.as_f64()) {
        (Some(e), Some(a)) if expected.is_f64() || actual.is_f64() => (e - a).abs() < 0.051,
        _ => expected == actual,
    }
}

/// `Ok` when the query's answer is the expected one; else what differs.
pub fn compare(expected: &Expected, actual: &Table) -> Result<(), String> {
    let rows = actual.objects();
    match expected {
        Expected::Rows(want) => {
            let agree = want.len() == rows.len()
                && want.iter().zip(&rows).all(|(w, r)| {
                    w.len() == r.len()
                        && w.iter().all(|(k, v)| r.get(k).is_some_and(|a| same(v, a)))
                });
            if agree {
                Ok(())
            } else {
                Err(format!(
                    "expected {:#}\n     got {:#}",
                    Value::from_iter(want.iter().cloned().map(Value::Object)),
                    Value::from_iter(rows.into_iter().map(Value::Object))
                ))
            }
        }
        Expected::Coverage { archived, failed } => {
            let mut got_archived = 0;
            let mut got_failed: BTreeMap<String, usize> = BTreeMap::new();
            for r in &rows {
                let n = r["recordings"].as_u64().unwrap_or(0) as usize;
                let reason = r["reason"].as_str().unwrap_or_default();
                match r["status"].as_str() {
                    Some("ARCHIVED") => got_archived += n,
                    Some("FAILED") => {
                        let class = failed
                            .keys()
                            .find(|c| reason.contains(c.as_str()))
                            .cloned()
                            .unwrap_or_else(|| format!("(unexpected) {reason}"));
                        *got_failed.entry(class).or_default() += n;
                    }
                    other => return Err(format!("{n} recordings {other:?}: {r:?}")),
                }
            }
            if (got_archived, &got_failed) == (*archived, failed) {
                Ok(())
            } else {
                Err(format!(
                    "expected {archived} archived, failed {failed:?}\n     got {got_archived} archived, failed {got_failed:?}"
                ))
            }
        }
    }
}

/// The events `records` must produce: each call recorded and its recording's outcome, each
/// binding error.
pub fn expected_event_count(records: &[PlannedRecord]) -> usize {
    records
        .iter()
        .map(|r| 1 + usize::from(r.recording.is_some()))
        .sum()
}

/// Copies this run's events from the lake into `dir` (other runs' stay out of its reports),
/// and returns how many distinct events that is.
async fn copy_run(
    target: &Target,
    records: &[PlannedRecord],
    dir: &Path,
) -> Result<usize, SimError> {
    let ids: BTreeSet<i64> = records
        .iter()
        .filter(|r| r.request_id.is_none())
        .map(|r| r.id)
        .collect();
    let requests: BTreeSet<&str> = records
        .iter()
        .filter_map(|r| r.request_id.as_deref())
        .collect();
    let objects =
        pns_cdr::adapters::s3::S3ObjectStore::new(target.clients.s3.clone(), &target.bucket);
    use pns_cdr::ports::ObjectStore;
    let read = |e: pns_cdr::ports::PortError| SimError::Read {
        what: "the lake",
        message: pns_cdr::telemetry::ErrorChain(&e).to_string(),
    };
    let mut seen = BTreeSet::new();
    for key in objects.list(LAKE_PREFIX).await.map_err(read)? {
        let Some(body) = objects.get(&key).await.map_err(read)? else {
            continue;
        };
        let mut kept = String::new();
        for line in String::from_utf8_lossy(&body).lines() {
            let event: Value = serde_json::from_str(line).unwrap_or_default();
            let detail = &event["detail"];
            let ours = detail["id"].as_i64().is_some_and(|id| ids.contains(&id))
                || detail["requestId"]
                    .as_str()
                    .is_some_and(|r| requests.contains(r));
            if ours {
                seen.insert(detail["eventId"].as_str().unwrap_or_default().to_owned());
                kept.push_str(line);
                kept.push('\n');
            }
        }
        if !kept.is_empty() {
            let path = dir.join(key.trim_start_matches(LAKE_PREFIX));
            let written = path
                .parent()
                .map_or(Ok(()), std::fs::create_dir_all)
                .and_then(|()| std::fs::write(&path, kept));
            written.map_err(|e| SimError::Read {
                what: "a lake copy",
                message: e.to_string(),
            })?;
        }
    }
    Ok(seen.len())
}

/// Waits (up to `settle`) until the lake holds every event of `records`, then runs each named
/// query on them with `python`'s DuckDB; one verdict per report, in name order.
pub async fn check(
    target: &Target,
    records: &[PlannedRecord],
    offset: UtcOffset,
    python: &str,
    settle: Duration,
) -> Result<Vec<(String, Result<(), String>)>, SimError> {
    let want = expected_event_count(records);
    let deadline = Instant::now() + settle;
    let dir = loop {
        let dir = tempfile::tempdir().map_err(|e| SimError::Read {
            what: "a lake copy",
            message: e.to_string(),
        })?;
        let found = copy_run(target, records, dir.path()).await?;
        if found >= want || Instant::now() >= deadline {
            break dir;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let expected = expected(records, offset);
    Ok(REPORTS
        .iter()
        .map(|(name, _)| {
            let verdict = report_sql(name)
                .map_err(|e| e.to_string())
                .and_then(|sql| run_duckdb(python, sql, dir.path()).map_err(|e| e.to_string()))
                .and_then(|table| compare(&expected[name], &table));
            ((*name).to_owned(), verdict)
        })
        .collect())
}

/// One line per report: `report <name>  PASS` or what differs.
pub fn summary(verdicts: &[(String, Result<(), String>)]) -> String {
    verdicts
        .iter()
        .map(|(name, verdict)| match verdict {
            Ok(()) => format!("report    {name}: PASS, as sent\n"),
            Err(why) => format!("report    {name}: FAIL\n          {why}\n"),
        })
        .collect()
}
