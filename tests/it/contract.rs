//! The HTTP contract as API Gateway delivers it: the sample events in `events/` through
//! `lambda_http`'s own parsing and the webhook, over the in-memory ports.

use std::path::Path;

use pns_cdr::handlers::webhook::MemoryWebhook;

/// The token the samples' query strings carry (the local stack's).
const SAMPLE_TOKEN: &str = "local-dev-token";

/// The samples in events/ are what API Gateway delivers (`cargo lambda invoke` and `sam local
/// invoke` send them): through `lambda_http`'s own parsing, each gets its documented answer.
#[tokio::test]
async fn every_sample_event_gets_its_documented_answer() {
    let webhook = MemoryWebhook::in_memory(SAMPLE_TOKEN, "");
    for (sample, status) in [
        ("push-answered.json", 200),
        ("push-unanswered.json", 200),
        ("push-string-integers.json", 200),
        ("push-binding-error.json", 200),
        ("push-invalid.json", 400),
        ("push-wrong-token.json", 401),
    ] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("events")
            .join(sample);
        let request = lambda_http::request::from_str(&std::fs::read_to_string(path).unwrap())
            .unwrap_or_else(|e| panic!("{sample}: {e}"));
        let Ok(response) = webhook.handle_http(request).await;
        assert_eq!(response.status().as_u16(), status, "{sample}");
    }
    assert_eq!(webhook.store.items.lock().unwrap().len(), 3);
    assert_eq!(webhook.bindings.items.lock().unwrap().len(), 1);
}
