//! `pnsctl`: the operator verbs of the `pnsctl` library, against AWS or the local stack.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use indicatif::ProgressBar;
use pns_cdr::adapters::aws::AwsClients;
use pns_cdr::adapters::dynamodb::{DynamoBindingErrorStore, DynamoRecordStore};
use pns_cdr::adapters::eventbridge::EventBridgeBus;
use pns_cdr::adapters::s3::S3ObjectStore;
use pns_cdr::adapters::secrets;
use pns_cdr::adapters::secrets::{SecretsManagerSecret, TokenSecret};
use pns_cdr::adapters::sqs::{queue_url, SqsDeadLetters, SqsJobQueue};
use pns_cdr::config::{AwsConfig, OpsConfig};
use pns_cdr::config::{SecretSource, LOCAL_NUMBER_KEY_SECRET};
use pns_cdr::domain::events::PhoneNumbers;
use pns_cdr::domain::numbers::NumberKeys;
use pns_cdr::handlers::publisher::{Publisher, PublisherSettings};
use pnsctl::{erase, hint, lake, redact_url, BodySource, DEFAULT_REDRIVE_MAX};
use serde_json::Value;

/// The operator tool of pns-cdr: redrive, re-archive, show, replay, publish, report and smoke.
#[derive(Parser)]
#[command(
    name = "pnsctl",
    override_usage = "pnsctl <COMMAND>
       pnsctl redrive [--max N]
       pnsctl rearchive [--force] <id>
       pnsctl show <id>
       pnsctl show-call <callId>
       pnsctl calls (--customer-bind-id ID | --bind-id ID)
       pnsctl binding-error <requestId>
       pnsctl binding-errors --did <did> [--day YYYY-MM-DD]
       pnsctl replay <url-with-token> (--file PATH | --s3-key KEY)
       pnsctl erase (--number N | --customer-bind-id ID | --id ID) [--dry-run] [--yes]
       pnsctl publish --since <RFC3339 time>
       pnsctl report <query> [--json]
       pnsctl smoke
       pnsctl --stack <name> <COMMAND>",
    after_help = "Environment: PNS_TABLE_NAME, PNS_BINDING_ERRORS_TABLE, PNS_QUEUE_URL and \
PNS_DLQ_URL (or PNS_QUEUE_NAME), PNS_BUCKET_NAME, PNS_EVENT_BUS_NAME, PNS_PHONE_NUMBERS, \
PNS_PYTHON, AWS_ENDPOINT_URL (the local stack's emulator: http://127.0.0.1:4566); for smoke also \
PNS_WEBHOOK_URL and SMOKE_TOKEN. With --stack, the stack's outputs name every resource."
)]
struct Cli {
    /// A deployed stack: its resources are read from its CloudFormation outputs (in
    /// AWS_REGION, with your credentials) instead of the environment.
    #[arg(long, global = true, value_name = "NAME")]
    stack: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Move dead-lettered jobs back to the recording queue.
    Redrive {
        /// Move at most this many messages.
        #[arg(long, default_value_t = DEFAULT_REDRIVE_MAX)]
        max: usize,
    },
    /// Put a record's recording back to PENDING and queue its job. A record still PENDING
    /// is refused: its job is being tried.
    Rearchive {
        /// The NXCLOUD record id.
        id: i64,
        /// Re-archive a PENDING record too: the new job supersedes the one being tried, so
        /// only the new job's outcome counts.
        #[arg(long)]
        force: bool,
    },
    /// Print a record as JSON.
    Show {
        /// The NXCLOUD record id.
        id: i64,
    },
    /// Print the records of an NXCLOUD callId as a JSON array.
    ShowCall {
        /// NXCLOUD's callId.
        call_id: String,
    },
    /// Print the calls of a binding as a JSON array, oldest first.
    Calls {
        #[command(flatten)]
        binding: BindingArgs,
    },
    /// Print a binding error (a call to a masked number without a binding) as JSON.
    BindingError {
        /// NXCLOUD's requestId.
        request_id: String,
    },
    /// Print the binding errors of a masked number as a JSON array, oldest first.
    BindingErrors {
        /// The masked number (DID) dialled.
        #[arg(long)]
        did: String,
        /// Only this UTC day's, as YYYY-MM-DD.
        #[arg(long, value_name = "YYYY-MM-DD", value_parser = parse_day)]
        day: Option<time::Date>,
    },
    /// POST a saved push body to the webhook, as NXCLOUD would, and print the answer; exits
    /// non-zero unless the webhook answered 200.
    Replay {
        /// The webhook URL with its `?token=`; printed without the query.
        url: String,
        #[command(flatten)]
        body: ReplayBody,
    },
    /// Erase a phone number, a binding's calls or one record from every store: numbers in the
    /// items replaced by ERASED, recordings and kept bodies deleted with every version, an
    /// audit object written. Prints what it did (or would do) as JSON.
    Erase {
        #[command(flatten)]
        target: EraseTarget,
        /// Print what would be changed, store by store, and change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
    /// Publish again the events of every call record and binding error received since a
    /// time (same event ids: consumers that dedupe see only what they missed).
    Publish {
        /// RFC 3339, e.g. 2026-11-30T08:00:00Z.
        #[arg(long, value_parser = parse_time)]
        since: time::OffsetDateTime,
    },
    /// Prove the stack end to end: canary pushes through the public URL with the real token,
    /// stored, their event on the bus, a duplicate answered as one, a wrong token refused.
    /// Without --stack: the local stack that `make run` serves.
    Smoke,
    /// Run one of the lake's named queries on the local stack's lake with DuckDB.
    Report {
        #[arg(value_parser = clap::builder::PossibleValuesParser::new(
            lake::REPORTS.iter().map(|r| r.0)
        ))]
        query: String,
        /// Print the rows as a JSON array of objects instead of columns.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
#[group(required = true, multiple = false)]
struct BindingArgs {
    /// The customer's own id for the binding (its order or ride id): one index query.
    #[arg(long)]
    customer_bind_id: Option<String>,
    /// NXCLOUD's id for the binding: a scan of the whole table (slower, and billed for
    /// every item read).
    #[arg(long)]
    bind_id: Option<String>,
}

#[derive(Args)]
#[group(required = true, multiple = false)]
struct EraseTarget {
    /// A phone number as NXCLOUD sends it (digits; `+` and spaces tolerated): every record,
    /// binding error, recording and kept body that holds it.
    #[arg(long)]
    number: Option<String>,
    /// The calls of a binding, by the customer's own id for it.
    #[arg(long)]
    customer_bind_id: Option<String>,
    /// One call record.
    #[arg(long)]
    id: Option<i64>,
}

#[derive(Args)]
#[group(required = true, multiple = false)]
struct ReplayBody {
    /// A local file holding the body.
    #[arg(long)]
    file: Option<PathBuf>,
    /// A key in the bucket, e.g. rejected/<sha256>.json.
    #[arg(long)]
    s3_key: Option<String>,
}

fn main() -> ExitCode {
    let mut process = pns_cdr::config::ProcessConfig::from_env();
    // Results go to stdout (`pnsctl show 45 | jq`), logs to stderr, quiet unless RUST_LOG asks:
    // the SDK's own warnings (the instance metadata service it tries for credentials) would
    // bury the one line that says what to set.
    process
        .log
        .filter
        .get_or_insert_with(|| "off,pnsctl=warn,pns_cdr=warn".into());
    pns_cdr::telemetry::init(&process.log);
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help and --version.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let _ = e.print();
            return ExitCode::FAILURE;
        }
    };
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime starts");
    match runtime.block_on(run(cli.command, cli.stack.as_deref(), &process.aws)) {
        Ok(output) => {
            print(&output);
            ExitCode::SUCCESS
        }
        Err(e) => {
            let target = hint::Target {
                endpoint: process.aws.endpoint_url.as_deref(),
            };
            match hint::for_error(&e, target) {
                Some(hint) => {
                    tracing::debug!(error = format!("{e:#}"), "failed");
                    eprintln!("pnsctl: {hint}");
                }
                // Every cause once: the errors keep their causes as sources, not in their text.
                None => eprintln!("pnsctl: {e:#}"),
            }
            ExitCode::FAILURE
        }
    }
}

impl Command {
    /// Whether the verb calls AWS (or the emulator): a replay of a local file only POSTs,
    /// and `report` says itself that it needs the local stack.
    fn calls_aws(&self) -> bool {
        match self {
            Command::Replay { body, .. } => body.file.is_none(),
            Command::Report { .. } => false,
            _ => true,
        }
    }
}

/// The numbers' hash keys, from the stack's secret (`--stack`, `PNS_NUMBER_KEY_SECRET`) or the
/// local stack's.
async fn number_keys(
    config: &OpsConfig,
    aws: &AwsConfig,
    clients: &AwsClients,
) -> anyhow::Result<NumberKeys> {
    let secret = (config.number_key_secret.clone())
        .or_else(|| {
            aws.endpoint_url
                .as_ref()
                .map(|_| LOCAL_NUMBER_KEY_SECRET.into())
        })
        .ok_or(erase::EraseError::NoKeySecret)?;
    Ok(secrets::number_keys(&SecretSource::Secret(secret), &clients.secrets).await?)
}

/// Asks a person at a terminal to confirm an erasure; refuses anywhere else.
fn confirm(report: &Value) -> anyhow::Result<()> {
    use std::io::{BufRead, IsTerminal};
    if !std::io::stdin().is_terminal() {
        anyhow::bail!(
            "pnsctl erase deletes data for good: pass --yes to confirm (or --dry-run to see what it would change)"
        );
    }
    eprintln!("{report:#}");
    eprint!("Erase all of the above for good? Type `erase` to confirm: ");
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    if answer.trim() != "erase" {
        anyhow::bail!("nothing erased");
    }
    Ok(())
}

/// Prints a result on stdout. A reader that went away (`pnsctl show 45 | head -1`) is not an
/// error: what was asked has been done.
fn print(text: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout().lock(), "{text}");
}

/// A day, `YYYY-MM-DD`.
fn parse_day(text: &str) -> Result<time::Date, time::error::Parse> {
    time::Date::parse(
        text,
        time::macros::format_description!("[year]-[month]-[day]"),
    )
}

fn parse_time(text: &str) -> Result<time::OffsetDateTime, time::error::Parse> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
}

/// The interpreter with DuckDB: `PNS_PYTHON`, else the project's virtualenv.
fn python(config: &OpsConfig) -> String {
    config.python.clone().unwrap_or_else(|| {
        let venv = std::path::Path::new(".venv/bin/python");
        if venv.exists() {
            venv.display().to_string()
        } else {
            "python3".into()
        }
    })
}

/// Runs one verb; returns what to print.
async fn run(command: Command, stack: Option<&str>, aws: &AwsConfig) -> anyhow::Result<String> {
    let mut config = OpsConfig::from_env();
    let clients = AwsClients::load(aws).await?;
    if aws.endpoint_url.is_none() && command.calls_aws() {
        hint::check_aws(&clients.config).await?;
    }
    if let Some(stack) = stack {
        let cloudformation = aws_sdk_cloudformation::Client::new(&clients.config);
        pnsctl::stack::apply(&cloudformation, stack, &mut config).await?;
    }
    let records = DynamoRecordStore::new(clients.dynamodb.clone(), &config.table);
    // Queues are resolved before anything changes: a wrong queue fails the verb up front.
    let job_queue = || async {
        let url = queue_url(&clients.sqs, &config.queue).await?;
        anyhow::Ok(SqsJobQueue::new(clients.sqs.clone(), url))
    };
    Ok(match command {
        Command::Redrive { max } => {
            let queue = job_queue().await?;
            let dlq_url = queue_url(&clients.sqs, &config.dead_letter_queue).await?;
            let dead_letters = SqsDeadLetters::new(clients.sqs.clone(), dlq_url);
            // Drawn on a terminal only.
            let progress = ProgressBar::new(max as u64);
            let moved = pnsctl::redrive(&queue, &dead_letters, max, |n| {
                progress.set_position(n as u64)
            })
            .await;
            progress.finish_and_clear();
            format!("moved {} messages from the DLQ back to the queue", moved?)
        }
        Command::Rearchive { id, force } => {
            let queue = job_queue().await?;
            let job = pnsctl::rearchive(&records, &queue, id, force).await?;
            format!("record {} is PENDING; job queued for {}", job.id, job.key)
        }
        Command::Show { id } => format!("{:#}", Value::Object(pnsctl::show(&records, id).await?)),
        Command::ShowCall { call_id } => {
            let items = pnsctl::show_call(&records, &call_id).await?;
            format!(
                "{:#}",
                Value::from_iter(items.into_iter().map(Value::Object))
            )
        }
        Command::Calls { binding } => {
            let binding = match (binding.customer_bind_id, binding.bind_id) {
                (Some(id), _) => pnsctl::Binding::Customer(id),
                (None, Some(id)) => pnsctl::Binding::Nxcloud(id),
                (None, None) => unreachable!("clap requires one of the two"),
            };
            let items = pnsctl::calls(&records, &binding).await?;
            format!(
                "{:#}",
                Value::from_iter(items.into_iter().map(Value::Object))
            )
        }
        Command::BindingError { request_id } => {
            let errors = DynamoBindingErrorStore::new(
                clients.dynamodb.clone(),
                &config.binding_errors_table,
            );
            let item = pnsctl::show_binding_error(&errors, &request_id).await?;
            format!("{:#}", Value::Object(item))
        }
        Command::BindingErrors { did, day } => {
            let errors = DynamoBindingErrorStore::new(
                clients.dynamodb.clone(),
                &config.binding_errors_table,
            );
            let items = pnsctl::binding_errors(&errors, &did, day).await?;
            format!(
                "{:#}",
                Value::from_iter(items.into_iter().map(Value::Object))
            )
        }
        Command::Erase {
            target,
            dry_run,
            yes,
        } => {
            let selector = match (target.number, target.customer_bind_id, target.id) {
                (Some(number), _, _) => erase::Selector::number(&number)?,
                (None, Some(id), _) => erase::Selector::CustomerBindId(id),
                (None, None, Some(id)) => erase::Selector::Id(id),
                (None, None, None) => unreachable!("clap requires one of the three"),
            };
            let keys = number_keys(&config, aws, &clients).await?;
            let stores = erase::Stores {
                dynamodb: clients.dynamodb.clone(),
                s3: clients.s3.clone(),
                calls_table: config.table.clone(),
                binding_errors_table: config.binding_errors_table.clone(),
                bucket: config.bucket.clone(),
                phone_numbers: config.phone_numbers.clone(),
            };
            let plan = erase::plan(&stores, &keys, &selector).await?;
            let mut report = erase::report(&selector, &keys, &plan, &stores, dry_run);
            if dry_run {
                return Ok(format!("{report:#}"));
            }
            if plan.is_empty() {
                // Nothing holds it: said, not an error; erasing twice is a no-op.
                report["dryRun"] = false.into();
                report["nothingToErase"] = true.into();
                if let Some(at) = erase::erased_before(&stores, &report).await? {
                    report["erasedBefore"] = at.into();
                }
                return Ok(format!("{report:#}"));
            }
            if !yes {
                confirm(&report)?;
            }
            erase::execute(&stores, &plan, &report, time::OffsetDateTime::now_utc()).await?;
            format!("{report:#}")
        }
        Command::Publish { since } => {
            // Events carry numbers as the stack sets them: guessing could publish numbers a
            // stack set to `omitted` never shows.
            let phones: PhoneNumbers = config
                .phone_numbers
                .as_deref()
                .ok_or_else(|| {
                    anyhow::anyhow!(
                    "pnsctl publish needs the stack's phone-number mode: set PNS_PHONE_NUMBERS \
                     to its PhoneNumbersInEvents parameter (masked, full or omitted)"
                )
                })?
                .parse()?;
            // The same events as the stream's, hashes of the numbers included.
            let keys = number_keys(&config, aws, &clients).await?;
            let publisher = Publisher {
                bus: EventBridgeBus::new(clients.events(), &config.event_bus),
                failures: lake::SetApart::default(),
                settings: PublisherSettings {
                    phones,
                    number_keys: Some(keys),
                    ..PublisherSettings::default()
                },
            };
            let errors = DynamoBindingErrorStore::new(
                clients.dynamodb.clone(),
                &config.binding_errors_table,
            );
            let since = since.unix_timestamp();
            let progress = ProgressBar::new_spinner();
            let calls = lake::publish_since(&records, &publisher, since, |n| {
                progress.set_position(n as u64)
            })
            .await?;
            let errors = lake::publish_since(&errors, &publisher, since, |n| {
                progress.set_position((calls + n) as u64)
            })
            .await?;
            progress.finish_and_clear();
            publisher.failures.check()?;
            format!(
                "published {} events to {}",
                calls + errors,
                config.event_bus
            )
        }
        Command::Smoke => {
            let token = match (&config.smoke_token, &config.token_secret, stack) {
                (Some(token), _, _) => token.clone(),
                (None, Some(secret), _) => {
                    let secret = SecretsManagerSecret::new(clients.secrets.clone(), secret);
                    let tokens = secret.fetch().await?;
                    let current = tokens.split(',').next().unwrap_or_default().trim();
                    current.to_owned()
                }
                // The local stack's fixed token.
                (None, None, None) => "local-dev-token".to_owned(),
                (None, None, Some(_)) => unreachable!("a stack names its secret"),
            };
            let target = pnsctl::smoke::SmokeTarget {
                webhook_url: (config.webhook_url.clone())
                    .unwrap_or_else(|| "http://127.0.0.1:3000/pns/call-result".into()),
                token,
                event_bus: config.event_bus.clone(),
                events_timeout: std::time::Duration::from_secs(60),
            };
            let errors = DynamoBindingErrorStore::new(
                clients.dynamodb.clone(),
                &config.binding_errors_table,
            );
            let report = pnsctl::smoke::run(
                &target,
                &records,
                &errors,
                (clients.events(), clients.sqs.clone()),
            )
            .await;
            let text = report.to_string();
            if !report.passed() {
                print(&text);
                anyhow::bail!("smoke test failed");
            }
            text
        }
        Command::Report { query, json } => {
            if aws.endpoint_url.is_none() {
                anyhow::bail!(
                    "pnsctl report runs on the local stack's lake (set AWS_ENDPOINT_URL); on AWS, \
                     run the named query {query} in the stack's Athena workgroup (output \
                     LakeWorkGroupName)"
                );
            }
            let sql = lake::report_sql(&query)?;
            let objects = S3ObjectStore::new(clients.s3.clone(), &config.bucket);
            let dir = tempfile::tempdir()?;
            lake::copy_lake(&objects, dir.path()).await?;
            let table = lake::run_duckdb(&python(&config), sql, dir.path())?;
            if json {
                format!(
                    "{:#}",
                    Value::from_iter(table.objects().into_iter().map(Value::Object))
                )
            } else {
                table.text().trim_end().to_owned()
            }
        }
        Command::Replay { url, body } => {
            let source = match (body.file, body.s3_key) {
                (Some(path), _) => BodySource::File(path),
                (None, Some(key)) => BodySource::S3Key(key),
                (None, None) => unreachable!("clap requires one of the two"),
            };
            let objects = S3ObjectStore::new(clients.s3.clone(), &config.bucket);
            let answer = pnsctl::replay(&objects, &url, &source).await?;
            let text = format!(
                "POST {} -> {}\n{}",
                redact_url(&url),
                answer.status,
                answer.body
            );
            if answer.status != 200 {
                // NXCLOUD would retry this push: the answer is printed, and the exit says so.
                print(&text);
                anyhow::bail!("the webhook answered {}, not 200", answer.status);
            }
            text
        }
    })
}
