//! The NXCLOUD simulator behind `pns-sim`: pushes realistic call records at a webhook
//! the way NXCLOUD does, then checks that nothing was lost.
//!
//! NXCLOUD's rule: any answer but HTTP 200 (or no answer) is retried every minute for an hour,
//! then the record is given up. The simulator does exactly that, with the interval scalable so
//! tests can replay an hour in seconds. It sends each planned record once, plus a share of
//! exact duplicates (NXCLOUD retries whose 200 was lost) and of conflicting duplicates (the
//! same id with different content), in a shuffled order, at a chosen rate and concurrency.
//!
//! Verification reads the table, the bucket and both queues directly:
//! - every planned record exists once, holding one of the bodies sent for its id;
//! - every recording is `ARCHIVED` and its object's bytes hash to the SHA-256 the recording
//!   host served, or is `FAILED` with a reason where the plan says failure is correct;
//! - the queue and the dead-letter queue are empty, and no multipart upload is left open.
//!
//! Anything else counts as lost, and `pns-sim` exits non-zero.

mod plan;
pub mod reports;
mod send;
pub mod storm;
mod verify;

use std::time::Duration;

use bytesize::ByteSize;
use pns_cdr::adapters::aws::AwsClients;
use pns_cdr::adapters::sqs::queue_url;
use pns_cdr::config::{AwsConfig, OpsConfig};
use pns_cdr::ports::PortError;

pub use plan::{
    plan, push_body, Expect, FixedRecording, PlannedRecord, PlannedRecording, RecordingHost,
    Workload, SIM_DIDS,
};
pub use send::{
    percentile, send, Delivery, SendReport, NXCLOUD_RETRY_INTERVAL, NXCLOUD_RETRY_WINDOW,
};
pub use verify::{summary, verify, Verification};

use crate::local::fake_nxcloud::FakeNxcloud;

/// Errors that stop a simulation before it can judge (not losses: those are in the report).
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("invalid simulation settings: {0}")]
    Settings(String),
    #[error("reading {what} failed: {message}")]
    Read { what: &'static str, message: String },
    #[error(transparent)]
    Aws(#[from] PortError),
    #[error(transparent)]
    Tls(#[from] pns_cdr::adapters::tls::TlsError),
    #[error("cannot start the local recording host")]
    RecordingHost(#[source] std::io::Error),
}

/// The deployment (or local stack) under test, as verification reads it.
#[derive(Debug, Clone)]
pub struct Target {
    pub clients: AwsClients,
    pub table: String,
    pub binding_errors_table: String,
    pub queue_url: String,
    pub dead_letter_queue_url: String,
    pub bucket: String,
}

impl Target {
    /// The resources `config` names (the `pnsctl` environment), queue URLs looked up.
    pub async fn connect(config: &OpsConfig, aws: &AwsConfig) -> Result<Self, SimError> {
        let clients = AwsClients::load(aws).await?;
        Ok(Self {
            queue_url: queue_url(&clients.sqs, &config.queue).await?,
            dead_letter_queue_url: queue_url(&clients.sqs, &config.dead_letter_queue).await?,
            table: config.table.clone(),
            binding_errors_table: config.binding_errors_table.clone(),
            bucket: config.bucket.clone(),
            clients,
        })
    }
}

/// Where `pns-sim` takes recordings from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recordings {
    /// A fake NXCLOUD host the simulator starts on 127.0.0.1 (the local stack's allow-list
    /// takes 127.0.0.1 over plain HTTP; a deployed stack's does not).
    Local,
    /// Every answered call points at this URL; the archived bytes must hash to the digest.
    Fixed { url: String, sha256: Option<String> },
    /// Unanswered calls only.
    None,
}

/// `pns-sim`'s options: push NXCLOUD-style call records, then verify nothing was lost.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "Exits 1 when a record or recording is lost or a queue is left non-empty.")]
pub struct SimulateArgs {
    /// The webhook, token included (http://127.0.0.1:3000/pns/call-result?token=...).
    #[arg(long)]
    pub url: String,
    /// Call records to push.
    #[arg(long, default_value_t = 100)]
    pub count: usize,
    /// Extra exact duplicates, as a share of the records.
    #[arg(long, default_value_t = 0.3)]
    pub duplicates: f64,
    /// Share of records also sent with different content.
    #[arg(long, default_value_t = 0.02)]
    pub conflicts: f64,
    /// Share of answered calls with a recording.
    #[arg(long, default_value_t = 0.6)]
    pub recordings: f64,
    /// Binding-error pushes (unbound calls) besides, as a share of the records.
    #[arg(long, default_value_t = 0.0)]
    pub binding_errors: f64,
    /// Where to send binding errors, token included (default: --url, as with one URL).
    #[arg(long)]
    pub binding_error_url: Option<String>,
    /// Recording sizes, used in turn (e.g. 48KiB,10MiB).
    #[arg(long, value_delimiter = ',', default_value = "48KiB")]
    pub recording_size: Vec<ByteSize>,
    /// A real recording for every answered call (deployed stacks).
    #[arg(long)]
    pub recording_url: Option<String>,
    /// The digest of --recording-url, checked against the archived object.
    #[arg(long, requires = "recording_url")]
    pub recording_sha256: Option<String>,
    /// Unanswered calls only.
    #[arg(long, conflicts_with = "recording_url")]
    pub no_recordings: bool,
    /// Pushes in flight.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Pushes per second (unlimited when unset).
    #[arg(long)]
    pub rate: Option<f64>,
    /// NXCLOUD's retry interval (e.g. 200ms in tests).
    #[arg(long, default_value = "60s")]
    pub retry_interval: humantime::Duration,
    /// How long NXCLOUD retries.
    #[arg(long, default_value = "60m")]
    pub retry_window: humantime::Duration,
    /// First record id (default: from the clock, so runs do not collide).
    #[arg(long)]
    pub first_id: Option<i64>,
    /// Generator seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Wait this long for archiving and empty queues (and, with --reports, for the lake).
    #[arg(long, default_value = "120s")]
    pub settle: humantime::Duration,
    /// Then run every named query of the lake on this run's events (`pnsctl report`'s code,
    /// DuckDB from PNS_PYTHON or .venv) and check each answer against what was sent.
    #[arg(long)]
    pub reports: bool,
    /// NXCLOUD's zone for binding errors' occurrenceTime, as the stack's NxcloudUtcOffset.
    #[arg(long, default_value = "+08:00", value_parser = parse_offset)]
    pub nxcloud_utc_offset: time::UtcOffset,
}

fn parse_offset(text: &str) -> Result<time::UtcOffset, String> {
    pns_cdr::domain::binding::parse_utc_offset(text)
        .ok_or_else(|| format!("{text:?} is not an offset like +08:00"))
}

/// A whole `pns-sim` run.
#[derive(Debug, Clone)]
pub struct Simulation {
    pub workload: Workload,
    pub delivery: Delivery,
    pub recordings: Recordings,
    /// How long verification waits for recordings to settle and queues to drain.
    pub settle: Duration,
    /// Check the lake's named queries too, binding errors dated in this zone.
    pub reports: Option<time::UtcOffset>,
}

impl TryFrom<SimulateArgs> for Simulation {
    type Error = SimError;

    fn try_from(args: SimulateArgs) -> Result<Self, SimError> {
        for (flag, share) in [
            ("--duplicates", args.duplicates),
            ("--conflicts", args.conflicts),
            ("--recordings", args.recordings),
            ("--binding-errors", args.binding_errors),
        ] {
            if !(share.is_finite() && share >= 0.0) {
                return Err(SimError::Settings(format!(
                    "{flag} takes a share of at least 0, not {share}"
                )));
            }
        }
        if args.concurrency == 0 {
            return Err(SimError::Settings(
                "--concurrency must be at least 1".into(),
            ));
        }
        let recordings = match (args.recording_url, args.no_recordings) {
            (Some(url), _) => Recordings::Fixed {
                url,
                sha256: args.recording_sha256.map(|d| d.to_ascii_lowercase()),
            },
            (None, true) => Recordings::None,
            (None, false) => Recordings::Local,
        };
        let workload = Workload {
            first_id: args
                .first_id
                .unwrap_or_else(|| time::OffsetDateTime::now_utc().unix_timestamp() * 1000),
            count: args.count,
            duplicate_share: args.duplicates,
            conflict_share: args.conflicts,
            recording_share: if recordings == Recordings::None {
                0.0
            } else {
                args.recordings
            },
            recording_sizes: args.recording_size.iter().map(|s| s.as_u64()).collect(),
            binding_error_share: args.binding_errors,
            seed: args.seed,
        };
        let mut delivery = Delivery::new(args.url);
        delivery.binding_error_url = args.binding_error_url;
        delivery.concurrency = args.concurrency;
        delivery.rate = args.rate;
        delivery.retry_interval = args.retry_interval.into();
        delivery.retry_window = args.retry_window.into();
        delivery.seed = args.seed;
        Ok(Self {
            workload,
            delivery,
            recordings,
            settle: args.settle.into(),
            reports: args.reports.then_some(args.nxcloud_utc_offset),
        })
    }
}

impl Simulation {
    /// Plans, sends and verifies; returns the summary and whether it passed.
    pub async fn run(&self, target: &Target) -> Result<(String, bool), SimError> {
        let local_host;
        let fixed;
        let host: Option<&dyn RecordingHost> = match &self.recordings {
            Recordings::Local => {
                local_host = FakeNxcloud::start(0)
                    .await
                    .map_err(SimError::RecordingHost)?;
                Some(&local_host)
            }
            Recordings::Fixed { url, sha256 } => {
                fixed = FixedRecording {
                    url: url.clone(),
                    sha256: sha256.clone(),
                };
                Some(&fixed)
            }
            Recordings::None => None,
        };
        let records = plan(&self.workload, host);
        let sent = send(&records, &self.delivery).await?;
        let verified = verify(target, &records, &sent, self.settle).await?;
        let mut text = summary(&sent, &verified);
        let mut passed = verified.passed();
        if let Some(offset) = self.reports {
            let python = std::env::var("PNS_PYTHON").unwrap_or_else(|_| ".venv/bin/python".into());
            let verdicts = reports::check(target, &records, offset, &python, self.settle).await?;
            text += &reports::summary(&verdicts);
            passed &= verdicts.iter().all(|(_, v)| v.is_ok());
        }
        Ok((text, passed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: SimulateArgs,
    }

    fn simulation(args: &[&str]) -> Result<Simulation, SimError> {
        let cli = Cli::try_parse_from(std::iter::once("pns-sim").chain(args.iter().copied()))
            .map_err(|e| SimError::Settings(e.to_string()))?;
        Simulation::try_from(cli.args)
    }

    #[test]
    fn durations_and_sizes_parse_as_written() {
        let s = simulation(&[
            "--url",
            "http://127.0.0.1:1/",
            "--retry-interval",
            "200ms",
            "--retry-window",
            "1h",
            "--settle",
            "1m",
            "--recording-size",
            "48KiB,10MiB",
        ])
        .unwrap();
        assert_eq!(s.delivery.retry_interval, Duration::from_millis(200));
        assert_eq!(s.delivery.retry_window, Duration::from_secs(3600));
        assert_eq!(s.settle, Duration::from_secs(60));
        assert_eq!(s.workload.recording_sizes, [48 * 1024, 10 << 20]);
        let defaults = simulation(&["--url", "http://127.0.0.1:1/"]).unwrap();
        assert_eq!(defaults.delivery.retry_interval, NXCLOUD_RETRY_INTERVAL);
        assert_eq!(defaults.delivery.retry_window, NXCLOUD_RETRY_WINDOW);
        assert_eq!(defaults.workload.recording_sizes, [48 * 1024]);
        for bad in [
            &["--url", "u", "--retry-interval", "soon"][..],
            &["--url", "u", "--recording-size", "-1"],
            &["--url", "u", "--duplicates", "-0.5"],
            &["--count", "3"],
        ] {
            assert!(simulation(bad).is_err(), "{bad:?}");
        }
    }
}
