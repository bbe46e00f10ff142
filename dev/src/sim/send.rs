//! How the simulator sends: NXCLOUD's retry rule (any answer but 200, or none, is sent again
//! every interval for the window, then given up), at a chosen rate and concurrency.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{stream, StreamExt};
use indicatif::ProgressBar;

use super::plan::PlannedRecord;
use super::SimError;

/// NXCLOUD's retry interval.
pub const NXCLOUD_RETRY_INTERVAL: Duration = Duration::from_secs(60);
/// How long NXCLOUD keeps retrying one push.
pub const NXCLOUD_RETRY_WINDOW: Duration = Duration::from_secs(3600);

/// How pushes are sent.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The webhook URL, token included.
    pub url: String,
    /// Where binding errors go (token included); `None`: to `url` as well, as NXCLOUD does
    /// for a customer who gave it one URL.
    pub binding_error_url: Option<String>,
    pub concurrency: usize,
    /// Pushes per second across all workers; `None`: as fast as answers come.
    pub rate: Option<f64>,
    pub retry_interval: Duration,
    pub retry_window: Duration,
    /// One request's time limit (NXCLOUD's own is not documented; 30 s is generous).
    pub request_timeout: Duration,
    pub seed: u64,
}

impl Delivery {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            binding_error_url: None,
            concurrency: 8,
            rate: None,
            retry_interval: NXCLOUD_RETRY_INTERVAL,
            retry_window: NXCLOUD_RETRY_WINDOW,
            request_timeout: Duration::from_secs(30),
            seed: 1,
        }
    }

    fn url_for(&self, record: &PlannedRecord) -> Arc<str> {
        match (&record.request_id, &self.binding_error_url) {
            (Some(_), Some(url)) => url.as_str().into(),
            _ => self.url.as_str().into(),
        }
    }

    /// Attempts per push: the first, then one per interval within the window.
    pub fn attempts(&self) -> u32 {
        let interval = self.retry_interval.as_secs_f64().max(1e-3);
        1 + (self.retry_window.as_secs_f64() / interval).floor() as u32
    }
}

/// One push as sent.
#[derive(Debug, Clone)]
struct Outgoing {
    id: i64,
    url: Arc<str>,
    body: Arc<str>,
}

/// What the sending phase saw.
#[derive(Debug, Clone, Default)]
pub struct SendReport {
    /// Pushes (first attempts).
    pub pushes: u64,
    /// HTTP attempts in all, retries included.
    pub attempts: u64,
    pub retries: u64,
    /// Pushes finally answered 200.
    pub accepted: u64,
    /// Pushes NXCLOUD gave up on (no 200 within the window): lost unless stored anyway.
    pub given_up: Vec<i64>,
    /// Answers by status (`0`: no answer: timeout or connection error).
    pub statuses: BTreeMap<u16, u64>,
    /// Latency of each attempt, sorted.
    pub latencies: Vec<Duration>,
    pub elapsed: Duration,
    /// The bodies answered 200 per id (exact duplicates count once).
    pub(super) accepted_bodies: HashMap<i64, HashSet<String>>,
}

impl SendReport {
    pub fn percentile(&self, p: f64) -> Duration {
        percentile(&self.latencies, p)
    }

    pub fn pushes_per_second(&self) -> f64 {
        self.pushes as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// The `p`th percentile (nearest rank) of sorted latencies; zero when there are none.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let Some(last) = sorted.len().checked_sub(1) else {
        return Duration::ZERO;
    };
    let rank = ((p / 100.0) * last as f64).round() as usize;
    sorted[rank.min(last)]
}

/// Sends every push of `records`, NXCLOUD-style; returns when each was accepted or given up.
pub async fn send(records: &[PlannedRecord], delivery: &Delivery) -> Result<SendReport, SimError> {
    if delivery.concurrency == 0 {
        return Err(SimError::Settings("concurrency must be at least 1".into()));
    }
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(delivery.request_timeout)
        .pool_max_idle_per_host(delivery.concurrency)
        .build()
        .map_err(|e| SimError::Settings(format!("HTTP client: {e}")))?;
    let mut sends: Vec<Outgoing> = Vec::new();
    for record in records {
        let body: Arc<str> = record.body.as_str().into();
        for _ in 0..=record.duplicates {
            sends.push(Outgoing {
                id: record.id,
                url: delivery.url_for(record),
                body: body.clone(),
            });
        }
        if let Some(conflict) = &record.conflict {
            sends.push(Outgoing {
                id: record.id,
                url: delivery.url_for(record),
                body: conflict.as_str().into(),
            });
        }
    }
    // Duplicates arrive interleaved, sometimes at once, as retries do.
    fastrand::Rng::with_seed(delivery.seed).shuffle(&mut sends);
    // Drawn on a terminal only.
    let progress = ProgressBar::new(sends.len() as u64);

    let started = Instant::now();
    let attempts = AtomicU64::new(0);
    let outcomes: Vec<(i64, Arc<str>, Attempts)> = stream::iter(sends.into_iter().enumerate())
        .map(|(n, push)| {
            let (client, attempts, progress) = (&client, &attempts, &progress);
            async move {
                if let Some(rate) = delivery.rate.filter(|r| *r > 0.0) {
                    let due = started + Duration::from_secs_f64(n as f64 / rate);
                    tokio::time::sleep_until(due.into()).await;
                }
                let tries = deliver(client, delivery, &push.url, &push.body).await;
                attempts.fetch_add(tries.len() as u64, Ordering::Relaxed);
                progress.inc(1);
                (push.id, push.body, tries)
            }
        })
        .buffer_unordered(delivery.concurrency)
        .collect()
        .await;
    progress.finish_and_clear();

    let mut report = SendReport {
        elapsed: started.elapsed(),
        attempts: attempts.into_inner(),
        ..SendReport::default()
    };
    for (id, body, tries) in outcomes {
        report.pushes += 1;
        report.retries += tries.len() as u64 - 1;
        for (status, latency) in &tries {
            *report.statuses.entry(*status).or_default() += 1;
            report.latencies.push(*latency);
        }
        if tries.last().is_some_and(|(status, _)| *status == 200) {
            report.accepted += 1;
            report
                .accepted_bodies
                .entry(id)
                .or_default()
                .insert(body.to_string());
        } else {
            report.given_up.push(id);
        }
    }
    report.latencies.sort();
    report.given_up.sort_unstable();
    Ok(report)
}

/// (HTTP status, latency) per attempt of one push; status 0: no answer.
type Attempts = Vec<(u16, Duration)>;

/// One push until a 200 or the end of the window.
async fn deliver(client: &reqwest::Client, delivery: &Delivery, url: &str, body: &str) -> Attempts {
    let mut tries = Vec::new();
    for attempt in 0..delivery.attempts() {
        if attempt > 0 {
            tokio::time::sleep(delivery.retry_interval).await;
        }
        let sent = Instant::now();
        let status = match client
            .post(url)
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await
        {
            Ok(response) => {
                let status = response.status().as_u16();
                // Read the answer so the connection can be reused.
                let _ = response.bytes().await;
                status
            }
            Err(_) => 0,
        };
        tries.push((status, sent.elapsed()));
        if status == 200 {
            break;
        }
    }
    tries
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nxcloud_retries_every_interval_for_the_window() {
        let mut delivery = Delivery::new("http://127.0.0.1:1/");
        assert_eq!(delivery.attempts(), 61);
        delivery.retry_interval = Duration::from_millis(200);
        delivery.retry_window = Duration::from_secs(12);
        assert_eq!(delivery.attempts(), 61);
    }
}
