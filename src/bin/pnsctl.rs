//! `pnsctl`: the operator tools of `pns_cdr::ops`, against AWS or the local stack.

use anyhow::{bail, Context};
use pns_cdr::adapters::aws::AwsClients;
use pns_cdr::ops::{BodySource, Ops, OpsConfig};

const USAGE: &str = "usage: pnsctl <command> [args]

  redrive [--max N]          move up to N (default 1000) DLQ messages back to the queue
  rearchive <id>             put a record's recording back to PENDING and queue its job
  show <id>                  print a record as JSON
  show-call <callId>         print the records of an NXCLOUD callId as a JSON array
  replay <url-with-token> (--file PATH | --s3-key KEY)
                             POST a saved push body to the webhook, print the answer

environment: PNS_TABLE_NAME, PNS_QUEUE_URL and PNS_DLQ_URL (or PNS_QUEUE_NAME), PNS_BUCKET_NAME,
AWS_ENDPOINT_URL (the local stack's emulator: http://127.0.0.1:4566)";

fn main() {
    // Results go to stdout (`pnsctl show 45 | jq`), so logs stay quiet unless RUST_LOG asks.
    if std::env::var_os("RUST_LOG").is_none() {
        std::env::set_var("RUST_LOG", "warn");
    }
    pns_cdr::telemetry::init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() || args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return;
    }
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime starts");
    if let Err(e) = runtime.block_on(run(&args)) {
        // Each cause once: an AWS error's message often repeats its source's.
        let mut message = e.to_string();
        for cause in e.chain().skip(1).map(ToString::to_string) {
            if !message.contains(&cause) {
                message = format!("{message}: {cause}");
            }
        }
        eprintln!("pnsctl: {message}");
        std::process::exit(1);
    }
}

async fn run(args: &[String]) -> anyhow::Result<()> {
    let config = OpsConfig::from_lookup(|name| std::env::var(name).ok());
    let ops = Ops::new(AwsClients::load(config.endpoint_url.as_deref()).await, config);
    let id = |s: &str| s.parse::<i64>().with_context(|| format!("`{s}` is not a record id"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["redrive"] => println!("moved {} messages back to the queue", ops.redrive(1000).await?),
        ["redrive", "--max", n] => {
            let max = n.parse().with_context(|| format!("`{n}` is not a count"))?;
            println!("moved {} messages back to the queue", ops.redrive(max).await?);
        }
        ["rearchive", s] => {
            let job = ops.rearchive(id(s)?).await?;
            println!("record {} is PENDING; job queued for {}", job.id, job.key);
        }
        ["show", s] => println!("{:#}", ops.show(id(s)?).await?),
        ["show-call", call_id] => println!("{:#}", serde_json::Value::from(ops.show_call(call_id).await?)),
        ["replay", url, "--file", path] => replay(&ops, url, BodySource::File(path.into())).await?,
        ["replay", url, "--s3-key", key] => replay(&ops, url, BodySource::S3Key(key.to_string())).await?,
        _ => bail!("unknown command or arguments: {}\n\n{USAGE}", args.first().unwrap_or(&"")),
    }
    Ok(())
}

async fn replay(ops: &Ops, url: &str, source: BodySource) -> anyhow::Result<()> {
    let answer = ops.replay(url, &source).await?;
    println!("POST {} -> {}\n{}", pns_cdr::ops::redact_url(url), answer.status, answer.body);
    Ok(())
}
