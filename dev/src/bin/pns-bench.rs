//! `pns-bench`: the whole-process measurements `make bench` runs.

use anyhow::ensure;
use bytesize::ByteSize;
use clap::{Parser, Subcommand};
use pns_cdr_dev::bench::cold_start::{self, ColdStartArgs};
use pns_cdr_dev::bench::requests::{self, RequestCounts};
use pns_cdr_dev::bench::{events, floors, throughput};
use pns_cdr_dev::local::emulator::{Emulator, ResourceNames};
use pns_cdr_dev::local::LocalOptions;

/// The whole-process measurements behind `make bench`. `requests` and `throughput` start
/// their own emulator unless AWS_ENDPOINT_URL names one.
#[derive(Parser)]
#[command(name = "pns-bench")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Time from process start to the first invocation answered, release webhook, archiver
    /// and publisher against the in-repo Lambda Runtime API emulator.
    ColdStart(ColdStartArgs),
    /// AWS requests per push, counted at the emulator, against the floor.
    Requests,
    /// Pushes/s and p50/p99 through the HTTP webhook beside the emulator's own
    /// PutItem+SendMessage rate, then verification.
    Throughput {
        #[arg(long, default_value_t = 10_000)]
        pushes: usize,
        /// Extra exact duplicates, as a share of the pushes.
        #[arg(long, default_value_t = 0.3)]
        duplicates: f64,
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
    },
    /// Events/s through the local path (stream -> publisher -> bus) beside the emulator's
    /// own PutEvents rate for the same events.
    Events {
        #[arg(long, default_value_t = 2_000)]
        count: usize,
    },
    /// Floor: fetch a recording of SIZE from the local host and drop it.
    Download { size: ByteSize },
    /// Floor: fetch it and upload it plainly to AWS_ENDPOINT_URL.
    Copy { size: ByteSize },
}

/// The emulator named by `AWS_ENDPOINT_URL`, or a new one that lives as long as the handle.
fn emulator() -> anyhow::Result<(Option<Emulator>, String)> {
    if let Ok(endpoint) = std::env::var("AWS_ENDPOINT_URL") {
        return Ok((None, endpoint));
    }
    let emulator = Emulator::start(0)?;
    let endpoint = emulator.endpoint.clone();
    Ok((Some(emulator), endpoint))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if std::env::var_os("RUST_LOG").is_none() {
        std::env::set_var("RUST_LOG", "warn");
    }
    pns_cdr::telemetry::start();
    match Cli::parse().command {
        Command::ColdStart(args) => cold_start::run(args).await,
        Command::Requests => {
            let (_emulator, endpoint) = emulator()?;
            let options = LocalOptions {
                endpoint_url: Some(endpoint),
                names: ResourceNames::suffixed(&format!("count-{}", std::process::id())),
                ..LocalOptions::default()
            };
            let counts = requests::measure(options).await?;
            print!("{}", counts.table());
            ensure!(counts == RequestCounts::floor(), "requests above the floor");
            Ok(())
        }
        Command::Throughput {
            pushes,
            duplicates,
            concurrency,
        } => {
            let (_emulator, endpoint) = emulator()?;
            let result = throughput::measure(&endpoint, pushes, duplicates, concurrency).await?;
            print!("{}\n{}", result.summary, result.table());
            ensure!(result.passed, "verification failed");
            Ok(())
        }
        Command::Events { count } => {
            let (_emulator, endpoint) = emulator()?;
            print!("{}", events::measure(&endpoint, count).await?.table());
            Ok(())
        }
        Command::Download { size } => floors::download(size.as_u64()).await,
        Command::Copy { size } => floors::copy(size.as_u64()).await,
    }
}
