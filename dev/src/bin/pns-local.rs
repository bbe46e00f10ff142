//! The local stack: `pns-local run` (default), `pns-local demo`, `pns-local archive-one`.

use anyhow::Context;
use pns_cdr_dev::local::{demo, LocalOptions, LocalStack};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    pns_cdr::telemetry::init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut options = LocalOptions::default();
    if let Ok(url) = std::env::var("AWS_ENDPOINT_URL") {
        options.endpoint_url = Some(url);
    }
    options.names = demo::names_from_env();
    match args.first().map(String::as_str).unwrap_or("run") {
        "run" => {
            let stack = LocalStack::start(options)
                .await
                .context("starting the local stack")?;
            demo::print_banner(&stack);
            tokio::signal::ctrl_c().await?;
            println!("stopping");
            drop(stack);
            Ok(())
        }
        "demo" => {
            options.webhook_port = 0;
            options.recordings_port = 0;
            let stack = LocalStack::start(options)
                .await
                .context("starting the local stack")?;
            demo::run(&stack).await
        }
        "archive-one" => {
            let size: u64 = args
                .get(1)
                .and_then(|s| s.parse().ok())
                .context("usage: pns-local archive-one <bytes>")?;
            demo::archive_one(options, size).await
        }
        other => anyhow::bail!("unknown command `{other}`: use run, demo or archive-one"),
    }
}
