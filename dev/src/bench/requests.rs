//! AWS requests per push, counted at the emulator by the fault proxy (with no faults): the
//! design's floor is PutItem + SendMessage for a new record with a recording, and a single
//! PutItem for a duplicate (the conditional put returns the stored item) or a record without
//! a recording.

use std::collections::BTreeMap;

use crate::local::fault_proxy::FaultProxy;
use crate::local::{LocalOptions, LocalStack, LOCAL_TOKEN};

/// Requests by operation, for each kind of push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestCounts {
    pub new_with_recording: BTreeMap<String, u64>,
    pub duplicate: BTreeMap<String, u64>,
    pub without_recording: BTreeMap<String, u64>,
}

impl RequestCounts {
    /// The floor of this design.
    pub fn floor() -> Self {
        let ops = |names: &[&str]| names.iter().map(|n| ((*n).to_owned(), 1)).collect();
        Self {
            new_with_recording: ops(&["PutItem", "SendMessage"]),
            duplicate: ops(&["PutItem"]),
            without_recording: ops(&["PutItem"]),
        }
    }

    pub fn table(&self) -> String {
        let total = |c: &BTreeMap<String, u64>| c.values().sum::<u64>();
        let list = |c: &BTreeMap<String, u64>| {
            c.iter()
                .map(|(op, n)| format!("{op}×{n}"))
                .collect::<Vec<_>>()
                .join(" + ")
        };
        let floor = Self::floor();
        let row = |name: &str, got: &BTreeMap<String, u64>, want: &BTreeMap<String, u64>| {
            format!(
                "{name:<28} {:>3}  {:<34} floor {}  {}\n",
                total(got),
                list(got),
                total(want),
                if got == want {
                    "at the floor"
                } else {
                    "ABOVE THE FLOOR"
                }
            )
        };
        row(
            "new push with a recording",
            &self.new_with_recording,
            &floor.new_with_recording,
        ) + &row("exact duplicate", &self.duplicate, &floor.duplicate)
            + &row(
                "push without a recording",
                &self.without_recording,
                &floor.without_recording,
            )
    }
}

/// Counts the requests of three pushes through the webhook's HTTP server. `options` names an
/// emulator in `endpoint_url`; the stack is put behind a proxy to it, with nothing draining
/// the queue (the archiver's requests are not the push's).
pub async fn measure(mut options: LocalOptions) -> anyhow::Result<RequestCounts> {
    let emulator = options
        .endpoint_url
        .clone()
        .ok_or_else(|| anyhow::anyhow!("an emulator endpoint is needed"))?;
    let proxy = FaultProxy::start(&emulator).await?;
    options.endpoint_url = Some(proxy.endpoint.clone());
    options.drain = false;
    // The publisher's stream reads are not the push's.
    options.events = false;
    options.webhook_port = 0;
    options.recordings_port = 0;
    let stack = LocalStack::start(options).await?;
    let client = reqwest::Client::builder().no_proxy().build()?;
    let url = format!("{}?token={LOCAL_TOKEN}", stack.webhook_url);
    let recording = stack.recordings.url("count", 1024, "");
    let base = i64::from(std::process::id()) * 1000;
    let mut rng = fastrand::Rng::with_seed(7);
    let with_recording = crate::sim::push_body(base + 1, Some(&recording), &mut rng);
    let without = crate::sim::push_body(base + 2, None, &mut rng);
    let count = |body: String| {
        let (proxy, client, url) = (&proxy, &client, &url);
        async move {
            proxy.reset_counts();
            let answer = client.post(url).body(body).send().await?;
            anyhow::ensure!(answer.status() == 200, "push answered {}", answer.status());
            Ok::<_, anyhow::Error>(proxy.counts())
        }
    };
    Ok(RequestCounts {
        new_with_recording: count(with_recording.clone()).await?,
        duplicate: count(with_recording).await?,
        without_recording: count(without).await?,
    })
}
