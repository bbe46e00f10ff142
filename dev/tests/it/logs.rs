//! No log level leaks a secret or personal data: the webhook, archiver and publisher binaries
//! run as Lambda runs them (Runtime API emulator, JSON logs), with `RUST_LOG=trace`, and everything
//! they print is searched for the token, query strings and the phone numbers of the push.

use std::path::Path;

use pns_cdr_dev::bench::cold_start::logged_run;
use pns_cdr_dev::local::emulator::ResourceNames;
use pns_cdr_dev::local::{LOCAL_NUMBER_KEY, LOCAL_TOKEN};

use crate::common;

/// What must never reach a log, whatever the level.
const NEVER_LOGGED: [&str; 8] = [
    LOCAL_TOKEN,
    LOCAL_NUMBER_KEY,
    "token=",
    // The signed query of the recording URL.
    "never-logged-signature",
    // The phone numbers of events/push-answered.json.
    "85235757583",
    "85238533300",
    "85235757584",
    // The whole body of the push.
    "69f1d1be1a82204c6049b4a2797ed0af",
];

fn leaks(printed: &str) -> Vec<String> {
    let mut found = Vec::new();
    for secret in NEVER_LOGGED {
        if let Some(line) = printed.lines().find(|l| l.contains(secret)) {
            found.push(format!("{secret}: {}", &line[..line.len().min(400)]));
        }
    }
    found
}

async fn run(rust_log: &str) -> String {
    let webhook = common::binary("webhook");
    let archiver = common::binary("archiver");
    let publisher = common::binary("publisher");
    let names = ResourceNames::suffixed(&format!("logs-{}-{rust_log}", std::process::id()));
    logged_run(
        Path::new(&webhook),
        Path::new(&archiver),
        Path::new(&publisher),
        rust_log,
        &common::emulator_endpoint(),
        names,
    )
    .await
    .expect("the functions answered")
}

#[tokio::test]
async fn no_log_level_prints_the_token_a_query_or_a_phone_number() {
    let printed = run("trace").await;
    // The dependencies stop at DEBUG (telemetry::filter); they print plenty there.
    assert!(
        printed.lines().filter(|l| l.contains("\"DEBUG\"")).count() > 20,
        "verbose logging was not on: {printed}"
    );
    let found = leaks(&printed);
    assert!(found.is_empty(), "leaked at trace:\n{}", found.join("\n"));
}
