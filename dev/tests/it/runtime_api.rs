//! The Lambda Runtime API emulator the cold-start bench runs the functions against: driven by
//! the real `lambda_runtime` client, and call by call over plain HTTP.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lambda_runtime::{service_fn, Error, LambdaEvent};
use pns_cdr_dev::local::runtime_api::{Outcome, RuntimeApi};
use serde_json::{json, Value};

const ARN: &str = "arn:aws:lambda:us-east-1:123456789012:function:echo";
const WAIT: Duration = Duration::from_secs(10);

fn epoch_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Echoes the payload and the invocation context, or fails when asked to.
async fn echo(event: LambdaEvent<Value>) -> Result<Value, Error> {
    if event.payload["fail"] == true {
        return Err("asked to fail".into());
    }
    let context = event.context;
    Ok(json!({
        "echo": event.payload,
        "requestId": context.request_id,
        "arn": context.invoked_function_arn,
        "deadline": context.deadline,
        "trace": context.xray_trace_id,
    }))
}

#[tokio::test]
async fn the_lambda_runtime_client_gets_events_and_answers_them() {
    let api = RuntimeApi::start(ARN).await.unwrap();
    // Queued before the function starts, as for a cold start.
    let first = api.invoke(r#"{"n":1}"#, Duration::from_secs(30));
    assert!(api.init_done_at().is_none());

    // lambda_runtime reads its configuration from the environment; no other test here does.
    std::env::set_var("AWS_LAMBDA_RUNTIME_API", api.address());
    std::env::set_var("AWS_LAMBDA_FUNCTION_NAME", "echo");
    std::env::set_var("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128");
    std::env::set_var("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST");
    let function = tokio::spawn(lambda_runtime::run(service_fn(echo)));

    let first_id = first.request_id.clone();
    let answer = tokio::time::timeout(WAIT, first.answer())
        .await
        .expect("answered in time")
        .unwrap();
    let init_done = api.init_done_at().expect("the first next is recorded");
    assert!(init_done <= answer.at);
    let Outcome::Response(body) = answer.outcome else {
        panic!("expected a response, got {:?}", answer.outcome);
    };
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["echo"], json!({"n": 1}));
    assert_eq!(body["requestId"], first_id.as_str());
    assert_eq!(body["arn"], ARN);
    let deadline = body["deadline"].as_u64().unwrap();
    let now = epoch_ms();
    assert!(
        deadline > now + 20_000 && deadline <= now + 30_000,
        "{deadline} vs {now}"
    );
    assert!(body["trace"].as_str().unwrap().starts_with("Root=1-"));

    // The function is now waiting in `next`: later events reach it, and errors come back.
    let failing = api.invoke(r#"{"fail":true}"#, Duration::from_secs(30));
    let answer = tokio::time::timeout(WAIT, failing.answer())
        .await
        .expect("answered in time")
        .unwrap();
    let Outcome::Error { error_type, body } = answer.outcome else {
        panic!("expected an error, got {:?}", answer.outcome);
    };
    assert_eq!(error_type.as_deref(), Some("unhandled"));
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["errorMessage"], "asked to fail");
    // Still the first `next`: init is over once.
    assert_eq!(api.init_done_at(), Some(init_done));

    function.abort();
}

#[tokio::test]
async fn each_call_behaves_as_lambdas_does() {
    let api = RuntimeApi::start(ARN).await.unwrap();
    let base = format!("http://{}/2018-06-01/runtime", api.address());
    let http = reqwest::Client::new();

    // `next` waits while nothing is queued.
    let waiting = tokio::spawn({
        let (http, url) = (http.clone(), format!("{base}/invocation/next"));
        async move { http.get(url).send().await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiting.is_finished(), "next answered with nothing queued");
    assert!(api.init_done_at().is_some());

    let pending = api.invoke(r#"{"hello":"world"}"#, Duration::from_secs(5));
    let event = tokio::time::timeout(WAIT, waiting)
        .await
        .expect("next answered once an event was queued")
        .unwrap()
        .unwrap();
    assert_eq!(event.status(), 200);
    let header = |name: &str| {
        event
            .headers()
            .get(name)
            .unwrap_or_else(|| panic!("{name} is set"))
            .to_str()
            .unwrap()
            .to_owned()
    };
    let id = header("lambda-runtime-aws-request-id");
    assert_eq!(id, pending.request_id);
    assert_eq!(header("lambda-runtime-invoked-function-arn"), ARN);
    let deadline: u64 = header("lambda-runtime-deadline-ms").parse().unwrap();
    assert!(deadline > epoch_ms() && deadline <= epoch_ms() + 5_000);
    assert!(header("lambda-runtime-trace-id").starts_with("Root=1-"));
    assert_eq!(event.text().await.unwrap(), r#"{"hello":"world"}"#);

    // An unknown id is refused; the right one is accepted once, and the waiter gets it.
    let post = |path: String, body: &'static str| http.post(format!("{base}{path}")).body(body);
    let unknown = post("/invocation/nope/response".into(), "{}")
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 400);
    let accepted = post(format!("/invocation/{id}/response"), r#"{"ok":true}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), 202);
    let again = post(format!("/invocation/{id}/response"), r#"{"ok":true}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 400, "a second answer is refused");
    let answer = pending.answer().await.unwrap();
    assert_eq!(answer.outcome, Outcome::Response(r#"{"ok":true}"#.into()));

    // An init error answers every waiting invocation, and any queued later.
    let queued = api.invoke("{}", Duration::from_secs(5));
    let reported = http
        .post(format!("{base}/init/error"))
        .header("lambda-runtime-function-error-type", "Runtime.InitError")
        .body(r#"{"errorMessage":"no config"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(reported.status(), 202);
    for pending in [queued, api.invoke("{}", Duration::from_secs(5))] {
        let answer = tokio::time::timeout(WAIT, pending.answer())
            .await
            .expect("answered at once")
            .unwrap();
        assert_eq!(
            answer.outcome,
            Outcome::InitError {
                error_type: Some("Runtime.InitError".into()),
                body: r#"{"errorMessage":"no config"}"#.into(),
            }
        );
    }
    assert!(api.init_error().is_some());

    let unknown_path = http.get(format!("{base}/nothing")).send().await.unwrap();
    assert_eq!(unknown_path.status(), 404);
}

#[tokio::test]
async fn dropping_it_stops_the_server_and_ends_waits() {
    let api = RuntimeApi::start(ARN).await.unwrap();
    let url = format!(
        "http://{}/2018-06-01/runtime/invocation/next",
        api.address()
    );
    let http = reqwest::Client::new();
    let waiting = tokio::spawn({
        let (http, url) = (http.clone(), url.clone());
        async move { http.get(url).send().await }
    });
    let pending = api.invoke("{}", Duration::from_secs(5));
    // Take the event so that the next `next` is held open.
    let taken = tokio::time::timeout(WAIT, waiting).await.unwrap().unwrap();
    assert_eq!(taken.unwrap().status(), 200);
    let held = tokio::spawn({
        let (http, url) = (http.clone(), url.clone());
        async move { http.get(url).send().await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;

    drop(api);
    let held = tokio::time::timeout(WAIT, held)
        .await
        .expect("the held next ends when the emulator is dropped")
        .unwrap();
    assert!(held.is_err(), "the held next fails: {held:?}");
    assert!(
        pending.answer().await.is_err(),
        "an unanswered invocation reports the stop"
    );
    assert!(http.get(&url).send().await.is_err(), "nothing listens");
}
