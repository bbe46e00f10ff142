//! Logging: JSON lines on Lambda (CloudWatch Logs Insights can query the fields), readable text
//! locally. Level from `RUST_LOG` (default `info`).

use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::prelude::*;

/// Installs the global subscriber once; later calls are no-ops (tests call it repeatedly).
pub fn init() {
    // `RUST_LOG` as a target list (`info`, `pns_cdr=debug,aws_smithy_runtime=warn`): no
    // regex engine in the binary, which EnvFilter would bring.
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| v.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(LevelFilter::INFO));
    let on_lambda = std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some();
    let json = on_lambda || std::env::var("PNS_LOG_FORMAT").is_ok_and(|f| f == "json");
    let registry = tracing_subscriber::registry().with(filter);
    let _ = if json {
        // CloudWatch stamps each line itself; the Lambda request id comes from the runtime's span.
        let layer = tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .without_time();
        registry.with(layer).try_init()
    } else {
        registry
            .with(tracing_subscriber::fmt::layer().with_target(false))
            .try_init()
    };
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
