//! `pnsctl smoke`: proof that a stack takes NXCLOUD's pushes, end to end, through its public
//! URL with its real token. It pushes a canary call record and a canary binding error, checks
//! each is stored, that the call record's event reaches the bus (through a temporary rule and
//! queue, removed at the end), that a duplicate is answered as one, and that a wrong token is
//! refused. Canaries (`pns_cdr::domain::canary`) expire within the hour and stay out of the
//! lake. One line per step, then the verdict.

use std::time::Duration;

use aws_sdk_eventbridge::types::Target;
use aws_sdk_sqs::types::QueueAttributeName;
use pns_cdr::domain::canary::{canary_binding_error, canary_call_record, canary_id, CANARY_SOURCE};
use pns_cdr::handlers::webhook::{BINDING_ERROR_ROUTE, CALL_RESULT_ROUTE};
use pns_cdr::ports::{BindingErrorLookup, RecordLookup};
use serde_json::{json, Value};
use time::OffsetDateTime;

/// A token no stack has: what the last step pushes with.
const WRONG_TOKEN: &str = "pns-smoke-not-the-token";

/// What `pnsctl smoke` proves.
pub struct SmokeTarget {
    /// The call-result URL, without the token.
    pub webhook_url: String,
    pub token: String,
    pub event_bus: String,
    /// How long to wait for the canary's event.
    pub events_timeout: Duration,
}

impl SmokeTarget {
    /// The binding-error route beside the call-result URL.
    fn binding_error_url(&self) -> String {
        match self.webhook_url.strip_suffix(CALL_RESULT_ROUTE) {
            Some(base) => format!("{base}{BINDING_ERROR_ROUTE}"),
            None => self.webhook_url.clone(),
        }
    }
}

/// How one step went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Passed(String),
    Failed(String),
    /// Not run: an earlier step it needs failed.
    Skipped,
}

/// Every step, in order.
#[derive(Debug, Default)]
pub struct SmokeReport {
    pub steps: Vec<(&'static str, Outcome)>,
}

impl SmokeReport {
    pub fn passed(&self) -> bool {
        (self.steps.iter()).all(|(_, o)| matches!(o, Outcome::Passed(_)))
    }

    fn step(&mut self, name: &'static str, outcome: Result<String, String>) -> bool {
        let passed = outcome.is_ok();
        let outcome = outcome.map_or_else(Outcome::Failed, Outcome::Passed);
        self.steps.push((name, outcome));
        passed
    }

    fn skip(&mut self, names: &[&'static str]) {
        self.steps
            .extend(names.iter().map(|n| (*n, Outcome::Skipped)));
    }
}

impl std::fmt::Display for SmokeReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (name, outcome) in &self.steps {
            match outcome {
                Outcome::Passed(detail) => writeln!(f, "ok      {name:<20} {detail}")?,
                Outcome::Failed(why) => writeln!(f, "FAILED  {name:<20} {why}")?,
                Outcome::Skipped => writeln!(f, "skipped {name:<20} (an earlier step failed)")?,
            }
        }
        let verdict = match self.passed() {
            true => "PASS: the stack stores pushes and publishes their events",
            false => "FAIL",
        };
        write!(f, "verdict {verdict}")
    }
}

/// A temporary subscription to the canary's events: a rule on the bus into a queue of its own.
pub struct EventTap {
    events: aws_sdk_eventbridge::Client,
    sqs: aws_sdk_sqs::Client,
    bus: String,
    rule: String,
    queue_url: String,
}

impl EventTap {
    /// Subscribes to the events of canary call record `id`.
    pub async fn open(
        events: aws_sdk_eventbridge::Client,
        sqs: aws_sdk_sqs::Client,
        bus: &str,
        id: i64,
        unique: u64,
    ) -> Result<Self, String> {
        let name = format!("pns-smoke-{unique}");
        let queue_url = (sqs.create_queue().queue_name(&name).send().await)
            .map_err(|e| format!("CreateQueue: {}", aws_sdk_sqs::Error::from(e)))?
            .queue_url
            .unwrap_or_default();
        let tap = Self {
            events,
            sqs,
            bus: bus.to_owned(),
            rule: name,
            queue_url,
        };
        if let Err(e) = tap.subscribe(id).await {
            tap.close().await;
            return Err(e);
        }
        Ok(tap)
    }

    async fn subscribe(&self, id: i64) -> Result<(), String> {
        let attributes = (self.sqs.get_queue_attributes())
            .queue_url(&self.queue_url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(|e| format!("GetQueueAttributes: {}", aws_sdk_sqs::Error::from(e)))?;
        let queue_arn = (attributes
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::QueueArn)))
        .cloned()
        .unwrap_or_default();
        // By the event's id, a string: a 19-digit record id is past what numeric matching keeps.
        let event_id = format!("CallRecorded:{id}");
        let pattern = json!({"source": [CANARY_SOURCE], "detail": {"eventId": [event_id]}});
        let rule_arn = (self.events.put_rule())
            .name(&self.rule)
            .event_bus_name(&self.bus)
            .event_pattern(pattern.to_string())
            .send()
            .await
            .map_err(|e| format!("PutRule: {}", aws_sdk_eventbridge::Error::from(e)))?
            .rule_arn
            .unwrap_or_default();
        // EventBridge may send to the queue for this rule only.
        let policy = json!({"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"Service": "events.amazonaws.com"},
            "Action": "sqs:SendMessage", "Resource": queue_arn,
            "Condition": {"ArnEquals": {"aws:SourceArn": rule_arn}}}]});
        (self.sqs.set_queue_attributes())
            .queue_url(&self.queue_url)
            .attributes(QueueAttributeName::Policy, policy.to_string())
            .send()
            .await
            .map_err(|e| format!("SetQueueAttributes: {}", aws_sdk_sqs::Error::from(e)))?;
        let target = Target::builder()
            .id("smoke")
            .arn(queue_arn)
            .build()
            .map_err(|e| e.to_string())?;
        (self.events.put_targets())
            .rule(&self.rule)
            .event_bus_name(&self.bus)
            .targets(target)
            .send()
            .await
            .map_err(|e| format!("PutTargets: {}", aws_sdk_eventbridge::Error::from(e)))?;
        Ok(())
    }

    /// Waits for the event `event_id`; its detail type.
    pub async fn wait_for(&self, event_id: &str, timeout: Duration) -> Result<String, String> {
        let until = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < until {
            let out = (self.sqs.receive_message())
                .queue_url(&self.queue_url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .send()
                .await
                .map_err(|e| format!("ReceiveMessage: {}", aws_sdk_sqs::Error::from(e)))?;
            for message in out.messages() {
                let event: Value =
                    serde_json::from_str(message.body().unwrap_or_default()).unwrap_or_default();
                if event["detail"]["eventId"] == event_id {
                    return Ok(event["detail-type"].as_str().unwrap_or_default().to_owned());
                }
            }
        }
        Err(format!(
            "{event_id} did not arrive within {} s",
            timeout.as_secs()
        ))
    }

    /// Removes the rule and the queue; what cannot be removed is named.
    pub async fn close(&self) -> Vec<String> {
        let mut left = Vec::new();
        let removed = (self.events.remove_targets())
            .rule(&self.rule)
            .event_bus_name(&self.bus)
            .ids("smoke")
            .send()
            .await;
        let deleted = (self.events.delete_rule())
            .name(&self.rule)
            .event_bus_name(&self.bus)
            .send()
            .await;
        if removed.is_err() || deleted.is_err() {
            left.push(format!("rule {} on bus {}", self.rule, self.bus));
        }
        if (self
            .sqs
            .delete_queue()
            .queue_url(&self.queue_url)
            .send()
            .await)
            .is_err()
        {
            left.push(format!("queue {}", self.queue_url));
        }
        left
    }
}

/// POSTs `body` to `url` with `token`; the status and the answer's JSON.
async fn push(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    body: &str,
) -> Result<(u16, Value), String> {
    let mut url = url::Url::parse(url).map_err(|e| format!("invalid URL: {e}"))?;
    url.query_pairs_mut().append_pair("token", token);
    let response = (client.post(url))
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body.to_owned())
        .send()
        .await
        // Without the URL: it would carry the token.
        .map_err(|e| format!("no answer: {}", e.without_url()))?;
    let status = response.status().as_u16();
    let text = response
        .text()
        .await
        .map_err(|e| e.without_url().to_string())?;
    Ok((
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    ))
}

fn expect(status: u16, answer: &Value, want: u16) -> Result<String, String> {
    match status == want {
        true => Ok(format!("{status} {answer}")),
        false => Err(format!("answered {status} {answer}, not {want}")),
    }
}

/// Runs the steps against `target`; the tap is opened before the first push.
pub async fn run(
    target: &SmokeTarget,
    records: &impl RecordLookup,
    errors: &impl BindingErrorLookup,
    clients: (aws_sdk_eventbridge::Client, aws_sdk_sqs::Client),
) -> SmokeReport {
    let mut report = SmokeReport::default();
    let now = OffsetDateTime::now_utc();
    let unique = (now.unix_timestamp_nanos() / 1_000_000) as u64;
    let id = canary_id(unique);
    let call = canary_call_record(id, now.unix_timestamp());
    let (request_id, binding) = canary_binding_error(unique);
    let http = match http_client() {
        Ok(client) => client,
        Err(why) => {
            report.step("http client", Err(why));
            return report;
        }
    };

    let tap = EventTap::open(clients.0, clients.1, &target.event_bus, id, unique).await;
    let subscribed = tap
        .as_ref()
        .map(|_| format!("temporary rule pns-smoke-{unique} on {}", target.event_bus));
    report.step("subscribe", subscribed.map_err(Clone::clone));

    let pushed = push(&http, &target.webhook_url, &target.token, &call).await;
    let stored_call = report.step(
        "push call record",
        pushed.and_then(|(status, answer)| expect(status, &answer, 200)),
    );
    let pushed = push(&http, &target.binding_error_url(), &target.token, &binding).await;
    let stored_binding = report.step(
        "push binding error",
        pushed.and_then(|(status, answer)| expect(status, &answer, 200)),
    );
    if stored_call && stored_binding {
        let found = async {
            records
                .item(id)
                .await
                .map_err(|e| e.to_string())?
                .ok_or(format!("record {id} is not in the table"))?;
            (errors.item(&request_id).await.map_err(|e| e.to_string())?)
                .ok_or(format!("binding error {request_id} is not in its table"))?;
            Ok::<_, String>(format!("record {id} and binding error {request_id}"))
        };
        report.step("stored", found.await);
    } else {
        report.skip(&["stored"]);
    }
    match (&tap, stored_call) {
        (Ok(tap), true) => {
            let event_id = format!("CallRecorded:{id}");
            let arrived = tap.wait_for(&event_id, target.events_timeout).await;
            report.step(
                "event on the bus",
                arrived.map(|t| format!("{t} {event_id}")),
            );
        }
        _ => report.skip(&["event on the bus"]),
    }
    if stored_call {
        let again = push(&http, &target.webhook_url, &target.token, &call).await;
        let duplicate = again.and_then(|(status, answer)| match answer["duplicate"] == true {
            true => expect(status, &answer, 200),
            false => Err(format!("answered {status} {answer}, not as a duplicate")),
        });
        report.step("duplicate", duplicate);
    } else {
        report.skip(&["duplicate"]);
    }
    let refused = push(&http, &target.webhook_url, WRONG_TOKEN, &call).await;
    report.step(
        "wrong token",
        refused.and_then(|(status, answer)| expect(status, &answer, 401)),
    );
    if let Ok(tap) = &tap {
        let left = tap.close().await;
        let cleaned = match left.is_empty() {
            true => {
                Ok("temporary rule and queue removed; the canaries expire within the hour".into())
            }
            false => Err(format!("remove by hand: {}", left.join(", "))),
        };
        report.step("clean up", cleaned);
    }
    report
}

/// The HTTP client, over the process's one TLS configuration.
fn http_client() -> Result<reqwest::Client, String> {
    let tls = pns_cdr::adapters::tls::client_config().map_err(|e| e.to_string())?;
    (reqwest::Client::builder())
        .tls_backend_preconfigured(tls)
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| e.to_string())
}
