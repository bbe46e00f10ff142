//! The retry storm after an outage, time-compressed.
//!
//! NXCLOUD pushes at a steady rate (Poisson arrivals), the stack goes down for D minutes
//! (every put fails: 503), then comes back. Each push that failed is retried every minute, at
//! its own phase within the minute, for up to 60 minutes, then given up. So after the outage
//! the retries of D minutes of pushes arrive within about a minute, on top of new traffic,
//! and meet the stage throttle (a token bucket: 429 beyond it). A push throttled until its
//! 60th minute is lost.
//!
//! The webhook is the real handler behind the local HTTP server with the throttle, over the
//! in-memory ports: what is measured is the throttle and the retry rule, not DynamoDB. One
//! NXCLOUD minute lasts `minute` of real time; rates are in NXCLOUD's time.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::time::Instant;

use pns_cdr::handlers::webhook::{MemoryWebhook, CALL_RESULT_ROUTE};

use super::SimError;
use crate::local::server;
use crate::local::throttle::TokenBucket;

/// Attempts of one push: the first, then one a minute for an hour.
const ATTEMPTS: u32 = 61;
const TOKEN: &str = "storm-token-0123456789";

/// One scenario.
#[derive(Debug, Clone)]
pub struct Storm {
    /// Pushes per second NXCLOUD sends.
    pub rate: f64,
    /// Minutes the stack is down.
    pub outage_minutes: u32,
    /// Minutes of steady traffic before the outage.
    pub before_minutes: u32,
    /// The stage throttle: requests per second, and burst.
    pub throttle_rate: f64,
    pub throttle_burst: f64,
    /// Real time of one NXCLOUD minute.
    pub minute: Duration,
    pub seed: u64,
}

/// `pns-sim storm`'s options.
#[derive(Debug, Clone, clap::Args)]
pub struct StormArgs {
    /// Pushes per second NXCLOUD sends before and after the outage.
    #[arg(long)]
    pub rate: f64,
    /// Minutes the stack is down.
    #[arg(long, default_value_t = 55)]
    pub outage_minutes: u32,
    /// Minutes of steady traffic before the outage.
    #[arg(long, default_value_t = 2)]
    pub before_minutes: u32,
    /// The stage throttle's rate (default: template.yaml's ApiThrottleRate).
    #[arg(long)]
    pub throttle_rate: Option<f64>,
    /// The stage throttle's burst (default: template.yaml's ApiThrottleBurst).
    #[arg(long)]
    pub throttle_burst: Option<f64>,
    /// Real time of one NXCLOUD minute.
    #[arg(long, default_value = "1s")]
    pub minute: humantime::Duration,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

impl StormArgs {
    pub fn into_storm(self) -> Result<Storm, SimError> {
        let template = || {
            crate::local::resources::Template::repo().map_err(|e| SimError::Settings(e.to_string()))
        };
        let default = |name| {
            template()?
                .parameter_default(name)
                .map_err(|e| SimError::Settings(e.to_string()))
        };
        if !(self.rate.is_finite() && self.rate > 0.0) || self.outage_minutes > 60 {
            return Err(SimError::Settings(
                "--rate must be above 0 and --outage-minutes at most 60".into(),
            ));
        }
        Ok(Storm {
            rate: self.rate,
            outage_minutes: self.outage_minutes,
            before_minutes: self.before_minutes,
            throttle_rate: self
                .throttle_rate
                .map_or_else(|| default("ApiThrottleRate"), Ok)?,
            throttle_burst: self
                .throttle_burst
                .map_or_else(|| default("ApiThrottleBurst"), Ok)?,
            minute: self.minute.into(),
            seed: self.seed,
        })
    }
}

/// What a scenario came to.
#[derive(Debug, Clone, PartialEq)]
pub struct StormReport {
    pub storm_rate: f64,
    pub pushes: usize,
    /// Pushes whose first attempt fell in the outage.
    pub backlog: usize,
    /// Pushes never answered 200 within their hour.
    pub lost: usize,
    /// Minutes after the stack came back until the last of the backlog was stored.
    pub cleared_after: Option<f64>,
    /// The most requests seen in one second.
    pub peak_rate: f64,
    /// Requests answered 429.
    pub throttled: usize,
    pub throttle_rate: f64,
    pub throttle_burst: f64,
    pub outage_minutes: u32,
}

impl std::fmt::Display for StormReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cleared = match self.cleared_after {
            Some(m) => format!("{m:.1} min after recovery"),
            None => "never".into(),
        };
        write!(
            f,
            "storm: rate {:.2}/s, outage {} min, throttle {}/s burst {}: {} pushes, backlog {}, \
             {} throttled (429), peak {:.0} requests/s, cleared {cleared}, lost {} -> {}",
            self.storm_rate,
            self.outage_minutes,
            self.throttle_rate,
            self.throttle_burst,
            self.pushes,
            self.backlog,
            self.throttled,
            self.peak_rate,
            self.lost,
            if self.lost == 0 { "PASS" } else { "FAIL" }
        )
    }
}

/// Whether the outage covers NXCLOUD time `t` (seconds).
fn down(storm: &Storm, t: f64) -> bool {
    let start = f64::from(storm.before_minutes) * 60.0;
    (start..start + f64::from(storm.outage_minutes) * 60.0).contains(&t)
}

/// Runs the scenario. Traffic lasts until an hour after the outage began, so new pushes
/// compete with the backlog for as long as any of it can still be retried.
pub async fn run(storm: &Storm) -> Result<StormReport, SimError> {
    let speedup = 60.0 / storm.minute.as_secs_f64();
    let throttle = Arc::new(TokenBucket::new(
        storm.throttle_rate * speedup,
        storm.throttle_burst,
    ));
    let webhook = Arc::new(MemoryWebhook::in_memory(TOKEN, ""));
    let listener = TcpListener::bind(("127.0.0.1", 0))
        .await
        .map_err(|e| SimError::Settings(format!("cannot listen: {e}")))?;
    let url = format!(
        "http://{}{CALL_RESULT_ROUTE}?token={TOKEN}",
        listener.local_addr().expect("bound")
    );
    let server = tokio::spawn(server::serve(listener, webhook.clone(), Some(throttle)));

    // Poisson arrivals, in NXCLOUD seconds.
    let mut rng = fastrand::Rng::with_seed(storm.seed);
    let end = f64::from(storm.before_minutes + 60) * 60.0;
    let mut arrivals = Vec::new();
    let mut t = 0.0;
    loop {
        t += -(1.0 - rng.f64()).ln() / storm.rate;
        if t >= end {
            break;
        }
        arrivals.push(t);
    }

    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(256)
        .build()
        .map_err(|e| SimError::Settings(e.to_string()))?;
    let start = Instant::now();
    let real = move |t: f64| start + Duration::from_secs_f64(t / speedup);
    // Every request's NXCLOUD time, for the peak rate.
    let sent = Arc::new(Mutex::new(Vec::new()));
    let throttled = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let outage = tokio::spawn({
        let (webhook, storm) = (webhook.clone(), storm.clone());
        async move {
            tokio::time::sleep_until(real(f64::from(storm.before_minutes) * 60.0)).await;
            webhook.store.fail_next.store(usize::MAX, Ordering::SeqCst);
            let back = f64::from(storm.before_minutes + storm.outage_minutes) * 60.0;
            tokio::time::sleep_until(real(back)).await;
            webhook.store.fail_next.store(0, Ordering::SeqCst);
        }
    });
    let pushes: Vec<_> = (arrivals.iter().enumerate())
        .map(|(i, &first)| {
            let (client, url, sent, throttled) =
                (client.clone(), url.clone(), sent.clone(), throttled.clone());
            let body = format!(
                r#"{{"id":{},"callId":"storm-{i}","startAt":1671440452}}"#,
                i + 1
            );
            tokio::spawn(async move {
                for attempt in 0..ATTEMPTS {
                    let at = first + 60.0 * f64::from(attempt);
                    tokio::time::sleep_until(real(at)).await;
                    sent.lock().expect("not poisoned").push(at);
                    let status = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(body.clone())
                        .send()
                        .await
                        .map(|r| r.status().as_u16());
                    match status {
                        Ok(200) => return Some(at),
                        Ok(429) => {
                            throttled.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => {}
                    }
                }
                None
            })
        })
        .collect();
    let mut stored_at = Vec::with_capacity(pushes.len());
    for push in pushes {
        stored_at.push(push.await.expect("a push task does not panic"));
    }
    outage.abort();
    server.abort();

    let back = f64::from(storm.before_minutes + storm.outage_minutes) * 60.0;
    let backlog: Vec<usize> = (0..arrivals.len())
        .filter(|&i| down(storm, arrivals[i]))
        .collect();
    let lost = stored_at.iter().filter(|s| s.is_none()).count();
    let cleared_after = (backlog.iter())
        .map(|&i| stored_at[i])
        .try_fold(0.0_f64, |latest, s| s.map(|s| latest.max(s)))
        .map(|last| ((last - back) / 60.0).max(0.0));
    let mut per_second = std::collections::HashMap::new();
    for t in sent.lock().expect("not poisoned").iter() {
        *per_second.entry(*t as u64).or_insert(0u32) += 1;
    }
    Ok(StormReport {
        storm_rate: storm.rate,
        pushes: arrivals.len(),
        backlog: backlog.len(),
        lost,
        cleared_after,
        peak_rate: per_second.values().copied().max().unwrap_or(0).into(),
        throttled: throttled.load(Ordering::Relaxed),
        throttle_rate: storm.throttle_rate,
        throttle_burst: storm.throttle_burst,
        outage_minutes: storm.outage_minutes,
    })
}
