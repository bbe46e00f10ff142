//! `pns-sim`: NXCLOUD-style load against a webhook, then proof that nothing was lost.

use std::process::ExitCode;

use clap::Parser;
use pns_cdr::config::OpsConfig;
use pns_cdr::telemetry::ErrorChain;
use pns_cdr_dev::sim::storm::{self, StormArgs};
use pns_cdr_dev::sim::{SimulateArgs, Simulation, Target};

/// Push NXCLOUD-style call records at a webhook, then verify nothing was lost. The table,
/// queues and bucket to check are named by the pnsctl environment (PNS_TABLE_NAME,
/// PNS_QUEUE_NAME or PNS_QUEUE_URL and PNS_DLQ_URL, PNS_BUCKET_NAME, AWS_ENDPOINT_URL).
#[derive(Parser)]
#[command(name = "pns-sim")]
struct Cli {
    #[command(flatten)]
    args: SimulateArgs,
}

/// `pns-sim storm`: the retry storm after an outage, time-compressed, through the local API
/// with the stage throttle; prints one verdict line and exits 1 if a push was lost.
#[derive(Parser)]
#[command(name = "pns-sim storm")]
struct StormCli {
    #[command(flatten)]
    args: StormArgs,
}

#[tokio::main]
async fn main() -> ExitCode {
    let storm = std::env::args().nth(1).as_deref() == Some("storm");
    let mut process = pns_cdr::config::ProcessConfig::from_env();
    // The storm makes thousands of refused pushes on purpose: their warnings are noise.
    let quiet = if storm { "error" } else { "warn" };
    process.log.filter.get_or_insert_with(|| quiet.into());
    pns_cdr::telemetry::init(&process.log);
    if storm {
        let cli = StormCli::parse_from(std::env::args().skip(1));
        return match cli.args.into_storm() {
            Ok(storm) => match storm::run(&storm).await {
                Ok(report) => {
                    println!("{report}");
                    match report.lost {
                        0 => ExitCode::SUCCESS,
                        _ => ExitCode::FAILURE,
                    }
                }
                Err(e) => {
                    eprintln!("pns-sim storm: {}", ErrorChain(&e));
                    ExitCode::FAILURE
                }
            },
            Err(e) => {
                eprintln!("pns-sim storm: {}", ErrorChain(&e));
                ExitCode::FAILURE
            }
        };
    }
    let cli = Cli::parse();
    let result = async {
        let simulation = Simulation::try_from(cli.args)?;
        let target = Target::connect(&OpsConfig::from_env(), &process.aws).await?;
        simulation.run(&target).await
    }
    .await;
    match result {
        Ok((summary, passed)) => {
            print!("{summary}");
            if passed {
                return ExitCode::SUCCESS;
            }
            eprintln!(
                "pns-sim: verification failed: a record or recording was lost, or work was left behind"
            );
        }
        Err(e) => eprintln!("pns-sim: {}", ErrorChain(&e)),
    }
    ExitCode::FAILURE
}
