//! The local stack: `pns-local run` (the default), `pns-local demo`, `pns-local archive-one`.

use anyhow::Context;
use bytesize::ByteSize;
use clap::{Parser, Subcommand};
use pns_cdr_dev::local::{demo, LocalOptions, LocalStack};

/// The whole pns-cdr system on this machine, on an embedded AWS emulator. AWS_ENDPOINT_URL
/// uses an emulator that is already running; PNS_TABLE_NAME, PNS_QUEUE_NAME and
/// PNS_BUCKET_NAME rename the resources.
#[derive(Parser)]
#[command(name = "pns-local")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve until Ctrl-C: webhook on 127.0.0.1:3000, emulator on 4566, recordings on 4567.
    Run,
    /// Start on free ports, push the samples in events/, show what landed, stop.
    Demo,
    /// Archive one generated recording of SIZE and print the time and peak RSS.
    ArchiveOne { size: ByteSize },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    pns_cdr::telemetry::start();
    let cli = Cli::parse();
    let mut options = LocalOptions::default();
    if let Ok(url) = std::env::var("AWS_ENDPOINT_URL") {
        options.endpoint_url = Some(url);
    }
    options.names = demo::names_from_env();
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => {
            let stack = LocalStack::start(options)
                .await
                .context("starting the local stack")?;
            demo::print_banner(&stack);
            tokio::signal::ctrl_c().await?;
            println!("stopping");
            drop(stack);
            Ok(())
        }
        Command::Demo => {
            options.webhook_port = 0;
            options.recordings_port = 0;
            let stack = LocalStack::start(options)
                .await
                .context("starting the local stack")?;
            demo::run(&stack).await
        }
        Command::ArchiveOne { size } => demo::archive_one(options, size.as_u64()).await,
    }
}
