//! `pnsctl smoke` against a local stack with its stream readers and bus: it passes, and with
//! a wrong token it fails at the push.

use crate::common;
use pns_cdr_dev::local::LocalStack;

async fn events_stack() -> LocalStack {
    let mut options = common::options();
    options.events = true;
    LocalStack::start(options)
        .await
        .expect("the local stack starts")
}

#[tokio::test]
async fn a_healthy_stack_passes_every_step_and_a_wrong_token_fails_the_push() {
    let stack = events_stack().await;
    let url = [("PNS_WEBHOOK_URL", stack.webhook_url.as_str())];
    let out = common::pnsctl_with(&stack, &["smoke"], &url).await;
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{printed}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for step in [
        "subscribe",
        "push call record",
        "push binding error",
        "stored",
        "event on the bus",
        "duplicate",
        "wrong token",
        "clean up",
    ] {
        assert!(
            printed
                .lines()
                .any(|l| l.starts_with("ok") && l.contains(step)),
            "{step}: {printed}"
        );
    }
    assert!(printed
        .trim_end()
        .ends_with("the stack stores pushes and publishes their events"));

    let wrong = [url[0], ("SMOKE_TOKEN", "not-the-local-token-at-all")];
    let out = common::pnsctl_with(&stack, &["smoke"], &wrong).await;
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{printed}");
    assert!(
        printed.lines().any(|l| l.starts_with("FAILED")
            && l.contains("push call record")
            && l.contains("401")),
        "{printed}"
    );
    assert!(printed.contains("verdict FAIL"), "{printed}");
    assert!(
        !printed.contains("not-the-local-token-at-all"),
        "the token is never printed"
    );
}
