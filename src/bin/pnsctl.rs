//! `pnsctl`: the operator tools of `pns_cdr::ops`, against AWS or the local stack.

use anyhow::{bail, Context};
use pns_cdr::ops::{redact_url, BodySource, Ops, OpsConfig, DEFAULT_REDRIVE_MAX};
use serde_json::Value;

const USAGE: &str = "usage: pnsctl <command> [args]

  redrive [--max N]          move up to N (default 1000) DLQ messages back to the queue
  rearchive <id>             put a record's recording back to PENDING and queue its job
  show <id>                  print a record as JSON
  show-call <callId>         print the records of an NXCLOUD callId as a JSON array
  replay <url-with-token> (--file PATH | --s3-key KEY)
                             POST a saved push body to the webhook, print the answer";

const ENVIRONMENT: &str = "environment: PNS_TABLE_NAME, PNS_QUEUE_URL and PNS_DLQ_URL (or PNS_QUEUE_NAME), PNS_BUCKET_NAME,
AWS_ENDPOINT_URL (the local stack's emulator: http://127.0.0.1:4566)";

fn main() {
    // Results go to stdout (`pnsctl show 45 | jq`), so logs stay quiet unless RUST_LOG asks.
    if std::env::var_os("RUST_LOG").is_none() {
        std::env::set_var("RUST_LOG", "warn");
    }
    pns_cdr::telemetry::init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() || args.iter().any(|a| a == "--help" || a == "-h") {
        return println!("{USAGE}\n\n{ENVIRONMENT}");
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime starts");
    let result = runtime.block_on(run(&args));
    match result {
        Ok(output) => println!("{output}"),
        Err(e) => {
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
}

/// Runs one command; returns what to print.
async fn run(args: &[&str]) -> anyhow::Result<String> {
    let config = OpsConfig::from_lookup(|name| std::env::var(name).ok());
    let ops = Ops::connect(config).await;
    let id = |s: &str| {
        s.parse::<i64>()
            .with_context(|| format!("`{s}` is not a record id"))
    };
    let moved = |n: usize| format!("moved {n} messages from the DLQ back to the queue");
    Ok(match args {
        ["redrive"] => moved(ops.redrive(DEFAULT_REDRIVE_MAX).await?),
        ["redrive", "--max", n] => moved(
            ops.redrive(n.parse().context("--max takes a count")?)
                .await?,
        ),
        ["rearchive", s] => {
            let job = ops.rearchive(id(s)?).await?;
            format!("record {} is PENDING; job queued for {}", job.id, job.key)
        }
        ["show", s] => format!("{:#}", ops.show(id(s)?).await?),
        ["show-call", call_id] => format!("{:#}", Value::from(ops.show_call(call_id).await?)),
        ["replay", url, flag @ ("--file" | "--s3-key"), from] => {
            let source = match *flag {
                "--file" => BodySource::File(from.into()),
                _ => BodySource::S3Key(from.to_string()),
            };
            let answer = ops.replay(url, &source).await?;
            format!(
                "POST {} -> {}\n{}",
                redact_url(url),
                answer.status,
                answer.body
            )
        }
        _ => bail!(
            "unknown command or arguments: {}\n\n{USAGE}",
            args.join(" ")
        ),
    })
}
