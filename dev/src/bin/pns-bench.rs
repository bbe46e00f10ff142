//! `pns-bench`: the whole-process measurements `make bench` runs.

use anyhow::{bail, ensure, Context};
use pns_cdr_dev::bench::requests::{self, RequestCounts};
use pns_cdr_dev::bench::{floors, throughput};
use pns_cdr_dev::local::emulator::{Emulator, ResourceNames};
use pns_cdr_dev::local::LocalOptions;

/// The emulator named by `AWS_ENDPOINT_URL`, or a new one that lives as long as the handle.
fn emulator() -> anyhow::Result<(Option<Emulator>, String)> {
    if let Ok(endpoint) = std::env::var("AWS_ENDPOINT_URL") {
        return Ok((None, endpoint));
    }
    let emulator = Emulator::start(0)?;
    let endpoint = emulator.endpoint.clone();
    Ok((Some(emulator), endpoint))
}

const USAGE: &str = "usage: pns-bench <command> [args]

  cold-start [args]     time from process start to the first invocation answered, release
                        webhook and archiver against the in-repo Lambda Runtime API emulator
  requests              AWS requests per push, counted at the emulator, against the floor
  throughput [--pushes N] [--duplicates F] [--concurrency N]
                        pushes/s and p50/p99 through the HTTP webhook, beside the emulator's
                        own PutItem+SendMessage rate (10000, 0.3, 32), then verification
  download <bytes>      floor: fetch a recording from the local host and drop it
  copy <bytes>          floor: fetch it and upload it plainly to AWS_ENDPOINT_URL

requests and throughput start their own emulator unless AWS_ENDPOINT_URL names one";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if std::env::var_os("RUST_LOG").is_none() {
        std::env::set_var("RUST_LOG", "warn");
    }
    pns_cdr::telemetry::init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("cold-start") => pns_cdr_dev::bench::cold_start::run(&args[1..]).await,
        Some("requests") => {
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
        Some("throughput") => {
            let flag = |name: &str, default: f64| -> anyhow::Result<f64> {
                match args.iter().position(|a| a == name) {
                    Some(i) => Ok(args.get(i + 1).context("a value")?.parse()?),
                    None => Ok(default),
                }
            };
            let (pushes, duplicates, concurrency) = (
                flag("--pushes", 10_000.0)? as usize,
                flag("--duplicates", 0.3)?,
                flag("--concurrency", 32.0)? as usize,
            );
            let (_emulator, endpoint) = emulator()?;
            let result = throughput::measure(&endpoint, pushes, duplicates, concurrency).await?;
            print!("{}\n{}", result.summary, result.table());
            ensure!(result.passed, "verification failed");
            Ok(())
        }
        Some(floor @ ("download" | "copy")) => {
            let size: u64 = args
                .get(1)
                .and_then(|s| s.parse().ok())
                .context("usage: pns-bench download|copy <bytes>")?;
            if floor == "download" {
                floors::download(size).await
            } else {
                floors::copy(size).await
            }
        }
        Some("-h" | "--help") | None => {
            println!("{USAGE}");
            Ok(())
        }
        Some(other) => bail!("unknown command `{other}`\n\n{USAGE}"),
    }
}
