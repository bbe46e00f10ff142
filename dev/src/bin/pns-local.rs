//! The local stack: `pns-local run` (the default), `pns-local demo`, `pns-local archive-one`.

use std::net::TcpListener;

use anyhow::Context;
use bytesize::ByteSize;
use clap::{Args, Parser, Subcommand};
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
    /// Serve until Ctrl-C; the fake recording host listens on EMULATOR_PORT + 1.
    Run(Ports),
    /// Start on free ports (the emulator's too), push the samples in events/, show what
    /// landed, stop. Runs beside `pns-local run`.
    Demo,
    /// Archive one generated recording of SIZE and print the time and peak RSS.
    ArchiveOne { size: ByteSize },
}

#[derive(Args)]
struct Ports {
    /// The webhook's port.
    #[arg(long, env = "WEBHOOK_PORT", default_value_t = 3000)]
    webhook_port: u16,
    /// The AWS emulator's port; the fake recording host takes the next one.
    #[arg(long, env = "EMULATOR_PORT", default_value_t = 4566)]
    emulator_port: u16,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    pns_cdr::telemetry::start();
    // `pns-local` alone is `pns-local run`, ports from the environment included.
    let args: Vec<String> = std::env::args().collect();
    let cli = match args.len() {
        1 => Cli::parse_from(args.into_iter().chain(["run".to_owned()])),
        _ => Cli::parse_from(args),
    };
    let mut options = LocalOptions::default();
    let external_emulator = std::env::var("AWS_ENDPOINT_URL").ok();
    options.names = demo::names_from_env();
    match cli.command.expect("run is the default") {
        Command::Run(ports) => {
            let recordings_port = ports.emulator_port.checked_add(1).unwrap_or(0);
            // Checked up front: moto's own message on a busy port names no variable.
            let mut wanted = vec![(ports.webhook_port, "WEBHOOK_PORT")];
            if external_emulator.is_none() {
                wanted.push((ports.emulator_port, "EMULATOR_PORT"));
            }
            wanted.push((
                recordings_port,
                "EMULATOR_PORT (the recording host takes it + 1)",
            ));
            for (port, variable) in wanted {
                ensure_free(port, variable)?;
            }
            options.webhook_port = ports.webhook_port;
            options.emulator_port = ports.emulator_port;
            options.recordings_port = recordings_port;
            options.endpoint_url = external_emulator;
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
            options.emulator_port = 0;
            options.endpoint_url = external_emulator;
            let stack = LocalStack::start(options)
                .await
                .context("starting the local stack")?;
            demo::run(&stack).await
        }
        Command::ArchiveOne { size } => {
            options.endpoint_url = external_emulator;
            demo::archive_one(options, size.as_u64()).await
        }
    }
}

/// Fails with the variable that moves `port` when something already listens there.
fn ensure_free(port: u16, variable: &str) -> anyhow::Result<()> {
    if port == 0 {
        return Ok(());
    }
    TcpListener::bind(("127.0.0.1", port))
        .map(drop)
        .map_err(|e| {
            anyhow::anyhow!(
                "port {port} is in use ({e}): set {variable} to a free port, e.g. \
             `make run WEBHOOK_PORT=3001 EMULATOR_PORT=4576`"
            )
        })
}
