//! The reconciler: finds records whose recording has waited too long and queues them again.
//!
//! A job can be lost between the put and the enqueue (the webhook answered 503 and NXCLOUD
//! stopped retrying), or dropped by an operator; the sparse pending index still lists the
//! record. Re-queuing is safe: the archiver skips records that are no longer PENDING.

use std::time::Duration;

use time::OffsetDateTime;
use tracing::{info, warn};

use crate::domain::recording::RecordingJob;
use crate::metrics::{self, Function, Metric};
use crate::ports::{JobQueue, PendingRecords, PortError};
use crate::telemetry::ErrorChain;

/// Tunables of one reconciler run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconcilerSettings {
    /// Only records PENDING for at least this long are re-queued (younger ones have a job).
    pub requeue_after: Duration,
    /// At most this many jobs per run, so one run cannot flood the queue or NXCLOUD.
    pub max_per_run: usize,
    /// Records PENDING for longer than this are counted as overdue (the alarm's metric).
    pub overdue_after: Duration,
}

impl Default for ReconcilerSettings {
    fn default() -> Self {
        Self {
            requeue_after: Duration::from_secs(900),
            max_per_run: 500,
            overdue_after: Duration::from_secs(3600),
        }
    }
}

/// What one run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReconcileReport {
    pub requeued: usize,
    pub overdue: usize,
    /// Left alone: the archiver is retrying them (a delivery failed since the cutoff).
    pub in_retry: usize,
    /// Jobs that could not be sent (tried again next run).
    pub failed: usize,
}

pub struct Reconciler<P, Q> {
    pub pending: P,
    pub queue: Q,
    pub settings: ReconcilerSettings,
}

impl<P: PendingRecords, Q: JobQueue> Reconciler<P, Q> {
    pub async fn run(&self, now: OffsetDateTime) -> Result<ReconcileReport, PortError> {
        let queued_at = now;
        let now = now.unix_timestamp();
        let cutoff = now - self.settings.requeue_after.as_secs() as i64;
        let overdue_cutoff = now - self.settings.overdue_after.as_secs() as i64;
        // Records the archiver is retrying are left out here (their job is alive), so they
        // never use up the run's limit.
        let waiting = self
            .pending
            .pending_before(cutoff, self.settings.max_per_run)
            .await?;
        let counts = self.pending.count_pending(overdue_cutoff, cutoff).await?;
        let mut report = ReconcileReport {
            overdue: counts.overdue,
            in_retry: counts.in_retry,
            ..ReconcileReport::default()
        };
        for record in waiting {
            let job = RecordingJob::new(record.id, record.url, record.key, queued_at);
            match self.queue.send(&job).await {
                Ok(()) => report.requeued += 1,
                Err(e) => {
                    warn!(id = job.id, error = %ErrorChain(&e), "could not re-queue a pending recording");
                    report.failed += 1;
                }
            }
        }
        info!(
            requeued = report.requeued,
            overdue = report.overdue,
            in_retry = report.in_retry,
            failed = report.failed,
            "reconciler run finished"
        );
        metrics::emit(
            Function::Reconciler,
            &[
                (Metric::PendingRequeued, report.requeued as f64),
                (Metric::PendingOverdue, report.overdue as f64),
            ],
        );
        Ok(report)
    }
}
