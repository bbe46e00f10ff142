//! Logging: JSON lines on stdout on Lambda (CloudWatch Logs Insights can query the fields),
//! readable text on stderr elsewhere, so a tool's own output on stdout stays clean for pipes.
//! Level from `RUST_LOG` (default `info`).

use std::io::IsTerminal;

use tracing::Subscriber;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::prelude::*;

use crate::config::{LogConfig, ProcessConfig};

/// Reads the process's configuration and sets up its logs and metrics: the first lines of
/// every binary.
pub fn start() -> ProcessConfig {
    let process = ProcessConfig::from_env();
    init(&process.log);
    // Set once per process; a second call keeps the first choice.
    let _ = crate::metrics::set_output(process.metrics);
    process
}

/// Installs the global subscriber once; later calls are no-ops (tests call it repeatedly).
pub fn init(config: &LogConfig) {
    let filter = filter(config.filter.as_deref());
    let _ = if config.json {
        json_subscriber(filter, std::io::stdout).try_init()
    } else {
        // Colour only for a person: not into a file or a pipe, nor under NO_COLOR.
        let ansi = !config.no_color && std::io::stderr().is_terminal();
        tracing_subscriber::registry()
            .with(filter)
            .with(
                tracing_subscriber::fmt::layer()
                    .with_target(false)
                    .with_ansi(ansi)
                    .with_writer(std::io::stderr),
            )
            .try_init()
    };
}

/// The JSON lines Lambda writes. CloudWatch stamps each line itself; the Lambda request id
/// comes from the runtime's span.
pub fn json_subscriber<W>(filter: Targets, writer: W) -> impl Subscriber + Send + Sync
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let layer = tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .without_time()
        .with_writer(writer);
    tracing_subscriber::registry().with(filter).with(layer)
}

/// The targets of this project's own code: only these log at the levels `RUST_LOG` asks.
const OWN_TARGETS: [&str; 9] = [
    "pns_cdr",
    "webhook",
    "archiver",
    "reconciler",
    "publisher",
    "pnsctl",
    "pns_local",
    "pns_sim",
    "pns_bench",
];

/// Where the dependencies' logs stop, whatever `RUST_LOG` says. Their TRACE level prints
/// whole payloads: lambda_runtime the raw event (the push body with its phone numbers, the
/// query string with the token), the SDK's orchestrator request and response bodies (items
/// with phone numbers), aws_sigv4 the canonical request (with the session token).
const DEPENDENCY_CAP: LevelFilter = LevelFilter::DEBUG;

/// `RUST_LOG` as a target list (`info`, `pns_cdr=debug,aws_smithy_runtime=warn`; no regex
/// engine in the binary, which EnvFilter would bring), default `info`, with every target but
/// the project's own capped at [`DEPENDENCY_CAP`].
pub fn filter(rust_log: Option<&str>) -> Targets {
    let asked = rust_log
        .and_then(|v| v.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(LevelFilter::INFO));
    let default = asked.default_level().unwrap_or(LevelFilter::OFF);
    let mut capped = Targets::new().with_default(default.min(DEPENDENCY_CAP));
    for (target, level) in &asked {
        let own = OWN_TARGETS
            .iter()
            .any(|own| target == *own || target.starts_with(&format!("{own}::")));
        let level = if own {
            level
        } else {
            level.min(DEPENDENCY_CAP)
        };
        capped = capped.with_target(target, level);
    }
    // The project's own code logs at the level asked for it, or the default asked.
    for own in OWN_TARGETS {
        if !asked.iter().any(|(target, _)| target == own) {
            capped = capped.with_target(own, default);
        }
    }
    capped
}

/// An error with its sources, `: `-separated: how logs print an error. Errors here keep their
/// cause as `source` and out of their own message, so each cause shows once.
pub struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::Level;

    #[test]
    fn dependencies_stop_at_debug_whatever_is_asked() {
        for asked in [
            "trace",
            "info,aws_smithy_runtime=trace,lambda_runtime=trace",
        ] {
            let f = filter(Some(asked));
            for dependency in [
                "lambda_runtime::layers",
                "aws_smithy_runtime",
                "aws_sigv4",
                "hyper",
            ] {
                assert!(
                    !f.would_enable(dependency, &Level::TRACE),
                    "{asked}: {dependency}"
                );
            }
            assert!(f.would_enable("aws_smithy_runtime", &Level::DEBUG) || asked != "trace");
        }
        let f = filter(Some("trace"));
        assert!(f.would_enable("pns_cdr::handlers::webhook", &Level::TRACE));
        assert!(f.would_enable("webhook", &Level::TRACE));
        let f = filter(Some("warn,pns_cdr=debug,aws_smithy_runtime=error"));
        assert!(f.would_enable("pns_cdr::ops", &Level::DEBUG));
        assert!(
            !f.would_enable("aws_smithy_runtime", &Level::WARN),
            "lower asks stay"
        );
        assert!(!f.would_enable("hyper", &Level::INFO));
        let default = filter(None);
        assert!(default.would_enable("pns_cdr", &Level::INFO));
        assert!(!default.would_enable("pns_cdr", &Level::DEBUG));
    }
}
