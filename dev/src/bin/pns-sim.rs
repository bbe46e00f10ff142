//! `pns-sim`: NXCLOUD-style load against a webhook, then proof that nothing was lost.

use anyhow::bail;
use pns_cdr::ops::{Ops, OpsConfig};
use pns_cdr_dev::sim::{Simulation, SIMULATE_USAGE};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if std::env::var_os("RUST_LOG").is_none() {
        std::env::set_var("RUST_LOG", "warn");
    }
    pns_cdr::telemetry::init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("usage: pns-sim {SIMULATE_USAGE}");
        return Ok(());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let simulation = Simulation::from_args(&args)?;
    let ops = Ops::connect(OpsConfig::from_lookup(|name| std::env::var(name).ok())).await;
    let (summary, passed) = simulation.run(&ops).await?;
    print!("{summary}");
    if !passed {
        bail!("verification failed: a record or recording was lost, or work was left behind");
    }
    Ok(())
}
