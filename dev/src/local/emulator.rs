//! The embedded AWS emulator (moto's server, from the project virtualenv) and the names of
//! the stack's resources in it (`resources` creates them from `template.yaml`).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    #[error("cannot start the AWS emulator with {python}: {source} (run `make venv` first)")]
    Spawn {
        python: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the AWS emulator exited before it was ready")]
    NotReady,
    #[error("creating {what} in the emulator failed: {message}")]
    Setup { what: &'static str, message: String },
}

/// A running emulator process. It exits when this handle is dropped, and also when this
/// process dies: its stdin is a pipe from us, and it stops at end-of-file.
pub struct Emulator {
    child: Child,
    pub endpoint: String,
}

impl Emulator {
    /// Starts moto's server on `127.0.0.1:port` (0 = any free port).
    pub fn start(port: u16) -> Result<Self, EmulatorError> {
        let python = std::env::var("PNS_EMULATOR_PYTHON")
            .map(PathBuf::from)
            .unwrap_or_else(|_| crate::repo_root().join(".venv/bin/python"));
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/emulator.py");
        let mut child = Command::new(&python)
            .arg(script)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|source| EmulatorError::Spawn {
                python: python.display().to_string(),
                source,
            })?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut lines = BufReader::new(stdout).lines();
        let endpoint = loop {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(url) = line.strip_prefix("READY ") {
                        break url.trim().to_owned();
                    }
                }
                _ => {
                    let _ = child.kill();
                    return Err(EmulatorError::NotReady);
                }
            }
        };
        Ok(Self { child, endpoint })
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Names of the stack's resources.
#[derive(Debug, Clone)]
pub struct ResourceNames {
    pub table: String,
    /// The webhook token secret.
    pub secret: String,
    /// The numbers' hash key secret (`NumberKeySecret`).
    pub number_key_secret: String,
    pub binding_errors_table: String,
    pub queue: String,
    pub dead_letter_queue: String,
    pub bucket: String,
    pub event_bus: String,
    /// The mappings' on-failure destination (`PublisherFailureQueue`).
    pub publisher_failures: String,
    /// Locally, the lake rule's target: the queue that stands in for Firehose.
    pub lake_queue: String,
}

impl Default for ResourceNames {
    fn default() -> Self {
        use pns_cdr::config::{
            DEFAULT_BINDING_ERRORS_TABLE, DEFAULT_BUCKET, DEFAULT_DLQ, DEFAULT_QUEUE, DEFAULT_TABLE,
        };
        Self {
            table: DEFAULT_TABLE.into(),
            secret: "pns-webhook-tokens".into(),
            number_key_secret: pns_cdr::config::LOCAL_NUMBER_KEY_SECRET.into(),
            binding_errors_table: DEFAULT_BINDING_ERRORS_TABLE.into(),
            queue: DEFAULT_QUEUE.into(),
            dead_letter_queue: DEFAULT_DLQ.into(),
            bucket: DEFAULT_BUCKET.into(),
            event_bus: pns_cdr::config::DEFAULT_EVENT_BUS.into(),
            publisher_failures: "pns-cdr-publisher-failures".into(),
            lake_queue: "pns-cdr-lake".into(),
        }
    }
}

impl ResourceNames {
    /// Names with a suffix, so tests can share one emulator without seeing each other.
    pub fn suffixed(suffix: &str) -> Self {
        let d = Self::default();
        Self {
            table: format!("{}-{suffix}", d.table),
            secret: format!("{}-{suffix}", d.secret),
            number_key_secret: format!("{}-{suffix}", d.number_key_secret),
            binding_errors_table: format!("{}-{suffix}", d.binding_errors_table),
            queue: format!("{}-{suffix}", d.queue),
            dead_letter_queue: format!("{}-{suffix}-dlq", d.queue),
            bucket: format!("{}-{suffix}", d.bucket),
            event_bus: format!("{}-{suffix}", d.event_bus),
            publisher_failures: format!("{}-{suffix}", d.publisher_failures),
            lake_queue: format!("{}-{suffix}", d.lake_queue),
        }
    }
}

/// Queue URLs of the created queues.
#[derive(Debug, Clone)]
pub struct Queues {
    pub queue_url: String,
    pub dead_letter_queue_url: String,
}
