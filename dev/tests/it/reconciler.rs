//! The reconciler against the emulator: lost jobs are found through the sparse pending index.

use crate::common;

use std::time::Duration;

use crate::common::*;
use pns_cdr::domain::cdr::CallRecord;
use pns_cdr::domain::item::{record_item, RecordingPlan};
use pns_cdr::domain::recording::{recording_key, RecordingJob};
use pns_cdr::handlers::reconciler::ReconcileReport;
use pns_cdr::ports::RecordStore;
use pns_cdr_dev::local::fake_nxcloud::SampleRecording;
use pns_cdr_dev::local::{LocalOptions, LocalStack};
use time::OffsetDateTime;

/// A PENDING record whose job was lost: stored, never queued.
/// Stores a PENDING record whose job was lost, and returns the job it would have had.
async fn orphan(
    stack: &LocalStack,
    id: i64,
    url: &str,
    received_at: OffsetDateTime,
) -> RecordingJob {
    let push = CallRecord::parse(push_body(id, url).as_bytes()).unwrap();
    let key = recording_key(id, push.record.start_at, received_at, url);
    stack
        .record_store()
        .put_new(record_item(
            push,
            received_at,
            &RecordingPlan::Pending { key: key.clone() },
        ))
        .await
        .unwrap();
    RecordingJob::new(id, url, key, received_at)
}

fn options(requeue_after: Duration, max_per_run: usize) -> LocalOptions {
    let mut options = common::options();
    options.reconciler.requeue_after = requeue_after;
    options.reconciler.max_per_run = max_per_run;
    options
}

#[tokio::test]
async fn a_pending_record_without_a_job_is_archived_after_one_run() {
    let stack = LocalStack::start(options(Duration::from_secs(600), 100))
        .await
        .unwrap();
    let long_ago = OffsetDateTime::now_utc() - Duration::from_secs(2 * 3600);
    orphan(&stack, 1, &stack.recordings.url("lost", 3000, ""), long_ago).await;
    // Young, and so presumably still queued: left alone.
    orphan(
        &stack,
        2,
        &stack.recordings.url("young", 3000, ""),
        OffsetDateTime::now_utc(),
    )
    .await;
    assert_eq!(queue_depth(&stack, &stack.queues.queue_url).await, 0);

    let report = stack
        .reconciler
        .run(OffsetDateTime::now_utc())
        .await
        .unwrap();
    assert_eq!(
        report,
        ReconcileReport {
            requeued: 1,
            overdue: 1,
            in_retry: 0,
            failed: 0
        }
    );
    assert_eq!(stack.poll_once().await.unwrap(), 1);
    let archived = item(&stack, 1).await.unwrap();
    assert_eq!(archived["recordingStatus"], "ARCHIVED");
    assert_eq!(
        archived["recordingSha256"],
        SampleRecording::new(1, 3000).sha256().as_str()
    );
    assert!(
        archived.get("pending").is_none(),
        "archived records leave the pending index"
    );
    assert_eq!(item(&stack, 2).await.unwrap()["recordingStatus"], "PENDING");

    // The next run finds nothing older than the threshold.
    let report = stack
        .reconciler
        .run(OffsetDateTime::now_utc())
        .await
        .unwrap();
    assert_eq!(report, ReconcileReport::default());
}

#[tokio::test]
async fn a_run_with_nothing_pending_writes_nothing() {
    let stack = LocalStack::start(options(Duration::ZERO, 100))
        .await
        .unwrap();
    // Records that are not waiting: no recording, refused URL, archived.
    let client = reqwest::Client::new();
    for (id, url) in [
        (10, String::new()),
        (11, "https://10.0.0.1/a.mp3".into()),
        (12, stack.recordings.url("done", 500, "")),
    ] {
        let status = client
            .post(format!(
                "{}?token={}",
                stack.webhook_url,
                pns_cdr_dev::local::LOCAL_TOKEN
            ))
            .body(push_body(id, &url))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 200);
    }
    stack.poll_once().await.unwrap();
    assert_eq!(
        item(&stack, 12).await.unwrap()["recordingStatus"],
        "ARCHIVED"
    );
    let before = items(&stack).await;

    let report = stack
        .reconciler
        .run(OffsetDateTime::now_utc())
        .await
        .unwrap();
    assert_eq!(report, ReconcileReport::default());
    assert_eq!(queue_depth(&stack, &stack.queues.queue_url).await, 0);
    assert_eq!(items(&stack).await, before);
}

#[tokio::test]
async fn one_run_queues_at_most_its_limit_oldest_first() {
    let stack = LocalStack::start(options(Duration::ZERO, 3)).await.unwrap();
    let now = OffsetDateTime::now_utc();
    for id in 1..=5 {
        orphan(
            &stack,
            id,
            &stack.recordings.url(&format!("r{id}"), 100, ""),
            now - Duration::from_secs(100 * (10 - id as u64)),
        )
        .await;
    }
    let report = stack.reconciler.run(now).await.unwrap();
    assert_eq!(report.requeued, 3);
    let mut ids: Vec<i64> = drain_bodies(&stack)
        .await
        .iter()
        .map(|j| j["id"].as_i64().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, vec![1, 2, 3]);
}

#[tokio::test]
async fn records_whose_job_went_to_the_dead_letter_queue_are_left_to_a_person() {
    let stack = LocalStack::start(options(Duration::ZERO, 100))
        .await
        .unwrap();
    let now = OffsetDateTime::now_utc();
    let tried = orphan(&stack, 21, &stack.recordings.url("tried", 100, ""), now).await;
    let exhausted = orphan(&stack, 22, &stack.recordings.url("exhausted", 100, ""), now).await;
    for _ in 0..pns_cdr::domain::recording::MAX_DELIVERIES {
        stack
            .archiver
            .store
            .note_attempt(&exhausted, "HTTP 503")
            .await
            .unwrap();
    }
    stack
        .archiver
        .store
        .note_attempt(&tried, "HTTP 503")
        .await
        .unwrap();
    // Later than both attempts: neither is in a retry any more.
    let later = now + time::Duration::seconds(2);
    let report = stack.reconciler.run(later).await.unwrap();
    assert_eq!(report.requeued, 1);
    let jobs = drain_bodies(&stack).await;
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0]["id"], 21);
}

#[tokio::test]
async fn records_the_archiver_is_retrying_get_no_second_job() {
    let stack = LocalStack::start(options(Duration::from_secs(600), 100))
        .await
        .unwrap();
    let now = OffsetDateTime::now_utc();
    let long_ago = now - time::Duration::hours(2);
    let retrying = orphan(
        &stack,
        31,
        &stack.recordings.url("retrying", 100, ""),
        long_ago,
    )
    .await;
    orphan(
        &stack,
        32,
        &stack.recordings.url("lost-job", 100, ""),
        long_ago,
    )
    .await;
    // 31's job failed a delivery just now and waits out its backoff in the queue.
    stack
        .archiver
        .store
        .note_attempt(&retrying, "HTTP 503")
        .await
        .unwrap();
    let report = stack.reconciler.run(now).await.unwrap();
    assert_eq!(
        report,
        ReconcileReport {
            requeued: 1,
            overdue: 2,
            in_retry: 1,
            failed: 0
        }
    );
    let jobs = drain_bodies(&stack).await;
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0]["id"], 32);
}

#[tokio::test]
async fn records_being_retried_do_not_use_up_the_runs_limit() {
    let stack = LocalStack::start(options(Duration::from_secs(600), 2))
        .await
        .unwrap();
    let now = OffsetDateTime::now_utc();
    // The three oldest are being retried (a delivery failed just now); two lost jobs after.
    let mut jobs = Vec::new();
    for (id, age_hours) in [(41, 5), (42, 4), (43, 3), (44, 2), (45, 1)] {
        let received = now - time::Duration::hours(age_hours);
        let job = orphan(
            &stack,
            id,
            &stack.recordings.url(&format!("r{id}"), 100, ""),
            received,
        )
        .await;
        jobs.push(job);
    }
    for job in &jobs[..3] {
        stack
            .archiver
            .store
            .note_attempt(job, "HTTP 503")
            .await
            .unwrap();
    }
    let report = stack.reconciler.run(now).await.unwrap();
    assert_eq!(
        report,
        ReconcileReport {
            requeued: 2,
            overdue: 5,
            in_retry: 3,
            failed: 0
        }
    );
    let mut ids: Vec<i64> = drain_bodies(&stack)
        .await
        .iter()
        .map(|j| j["id"].as_i64().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, vec![44, 45]);
}
