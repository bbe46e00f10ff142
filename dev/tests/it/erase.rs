//! `pnsctl erase` against the local stack: every trace of a number gone from every store,
//! a control number's data untouched, a dry run that changes nothing.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::common::*;
use pns_cdr::domain::recording::LAKE_PREFIX;
use pns_cdr_dev::local::{LocalStack, LOCAL_TOKEN};
use serde_json::{json, Value};

/// The number erased, and the control number that must stay as it is.
const N: &str = "85255501111";
const M: &str = "85255502222";
/// Others in the calls, neither erased nor controlled.
const X: &str = "85255503333";

async fn post(url: &str, body: &str) -> u16 {
    reqwest::Client::new()
        .post(format!("{url}?token={LOCAL_TOKEN}"))
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn call(id: i64, caller: &str, callee: &str, recording: &str) -> Value {
    let mut body: Value = serde_json::from_str(&push_body(id, recording)).unwrap();
    body["caller"] = caller.into();
    body["callee"] = callee.into();
    body["customerBindId"] = format!("order-{id}").into();
    body
}

fn binding_error(request_id: &str, caller: &str) -> String {
    json!({"code": 10013, "msg": "binding not exist", "requestId": request_id,
        "data": {"action": "queryAXB", "requestParams": {"caller": caller, "did": "85299999999"},
        "occurrenceTime": "2023-03-29 11:36:53"}})
    .to_string()
}

/// Every item of a table, by its key, as JSON.
async fn table(stack: &LocalStack, name: &str, key: &str) -> BTreeMap<String, Value> {
    let mut items = BTreeMap::new();
    let mut pages = (stack.clients.dynamodb.scan().table_name(name))
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        for item in page.unwrap().items.unwrap_or_default() {
            let item: Value = serde_dynamo::from_item(item).unwrap();
            let id =
                (item[key].as_str().map(str::to_owned)).unwrap_or_else(|| item[key].to_string());
            items.insert(id, item);
        }
    }
    items
}

/// Every version of every object in the bucket: (key, version id) -> its bytes (empty for a
/// delete marker).
async fn bucket(stack: &LocalStack) -> BTreeMap<(String, String), Vec<u8>> {
    let s3 = &stack.clients.s3;
    let listed = s3
        .list_object_versions()
        .bucket(&stack.names.bucket)
        .send()
        .await
        .unwrap();
    assert_ne!(
        listed.is_truncated,
        Some(true),
        "one page holds the test's objects"
    );
    let mut objects = BTreeMap::new();
    for v in listed.versions.unwrap_or_default() {
        let (key, version) = (v.key.unwrap(), v.version_id.unwrap());
        let body = object_version(stack, &key, Some(&version)).await;
        objects.insert((key, version), body);
    }
    for m in listed.delete_markers.unwrap_or_default() {
        objects.insert((m.key.unwrap(), m.version_id.unwrap()), Vec::new());
    }
    objects
}

/// What the stores hold: both tables and every object version.
#[derive(Debug, PartialEq)]
struct Stores {
    calls: BTreeMap<String, Value>,
    binding_errors: BTreeMap<String, Value>,
    objects: BTreeMap<(String, String), Vec<u8>>,
}

/// The stores once the stack's background work (archiver, streams, lake) is done: two
/// snapshots in a row, a few lake deliveries apart, are the same.
async fn settled(stack: &LocalStack) -> Stores {
    let mut last = stores(stack).await;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let now = stores(stack).await;
        if now == last {
            return now;
        }
        last = now;
    }
    panic!("the stack never settled");
}

async fn stores(stack: &LocalStack) -> Stores {
    Stores {
        calls: table(stack, &stack.names.table, "id").await,
        binding_errors: table(stack, &stack.names.binding_errors_table, "requestId").await,
        objects: bucket(stack).await,
    }
}

/// The forms of `number` the project writes in full: as pushed, with `+`, spaced.
fn full_forms(number: &str) -> Vec<String> {
    vec![
        number.to_owned(),
        format!("+{number}"),
        format!("{} {} {}", &number[..3], &number[3..7], &number[7..]),
    ]
}

fn holds(text: &str, number: &str) -> bool {
    full_forms(number).iter().any(|form| text.contains(form))
}

async fn until(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done().await {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn json_out(out: &std::process::Output) -> Value {
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

#[tokio::test]
async fn erasing_a_number_leaves_no_trace_of_it_and_the_control_untouched() {
    let stack = stack_with_events().await;
    let (calls, bindings) = (&stack.webhook_url, &stack.binding_error_url);
    let recording = |name: &str| stack.recordings.url(name, 4096, "");

    // N: a record with an archived recording, one with N as callee in another form, a binding
    // error, a quarantined body, and conflicting bodies (one beside a record of M).
    let n1 = call(201, N, X, &recording("n1"));
    assert_eq!(post(calls, &n1.to_string()).await, 200);
    assert_eq!(
        post(calls, &call(202, X, &format!("+{N}"), "").to_string()).await,
        200
    );
    assert_eq!(post(bindings, &binding_error("req-n", N)).await, 200);
    let invalid = json!({"id": "not-a-number", "caller": N, "callee": X}).to_string();
    assert_eq!(post(calls, &invalid).await, 400);
    let mut changed = n1.clone();
    changed["duration"] = 7.into();
    assert_eq!(post(calls, &changed.to_string()).await, 200, "a conflict");
    // M: the control, with the same kinds of data.
    assert_eq!(
        post(calls, &call(300, M, X, &recording("m")).to_string()).await,
        200
    );
    assert_eq!(post(calls, &call(301, M, X, "").to_string()).await, 200);
    assert_eq!(post(bindings, &binding_error("req-m", M)).await, 200);
    let invalid_m = json!({"id": "still-not", "caller": M}).to_string();
    assert_eq!(post(calls, &invalid_m).await, 400);
    // A conflicting body holding N beside M's record 301: found through the index.
    assert_eq!(post(calls, &call(301, N, X, "").to_string()).await, 200);

    for id in [201, 300] {
        until("recordings archived", async || {
            item(&stack, id).await.unwrap()["recordingStatus"] == "ARCHIVED"
        })
        .await;
    }
    until("the lake has every call", async || {
        let lake: Vec<_> = keys(&stack, LAKE_PREFIX).await;
        let mut text = String::new();
        for key in &lake {
            text.push_str(&String::from_utf8_lossy(&object(&stack, key).await));
        }
        ["201", "202", "300", "301", "req-n"]
            .iter()
            .all(|id| text.contains(id))
    })
    .await;

    let before = settled(&stack).await;
    let count = before.calls.len();
    let m_items = |s: &Stores| -> Vec<Value> {
        (s.calls.values().chain(s.binding_errors.values()))
            .filter(|i| i.to_string().contains(M))
            .cloned()
            .collect()
    };
    let m_objects = |s: &Stores| -> Vec<(String, String)> {
        (s.objects.iter())
            .filter(|(_, body)| {
                let text = String::from_utf8_lossy(body);
                holds(&text, M) && !holds(&text, N)
            })
            .map(|(k, _)| k.clone())
            .collect()
    };
    let mut m_recording = before
        .objects
        .keys()
        .filter(|(k, _)| k.ends_with("/300.mp3"));
    let m_recording = m_recording.next().expect("M's recording").clone();
    assert!(holds(&format!("{before:?}"), N), "seeded");

    // A dry run says what it would do, and does nothing.
    let plan = json_out(&pnsctl(&stack, &["erase", "--number", N, "--dry-run"]).await);
    assert_eq!(plan["dryRun"], true);
    assert_eq!(plan["callRecords"]["ids"], json!([201, 202]));
    assert_eq!(plan["bindingErrors"]["count"], 1);
    assert_eq!(plan["recordings"]["objects"], 1);
    let bodies: Vec<String> = (plan["keptBodies"]["keys"].as_array().unwrap().iter())
        .map(|k| k.as_str().unwrap().to_owned())
        .collect();
    for wanted in [
        "rejected/",
        "conflicts/201/",
        "conflicts/301/",
        "number-index/",
    ] {
        assert!(
            bodies.iter().any(|b| b.starts_with(wanted)),
            "{wanted}: {bodies:?}"
        );
    }
    assert!(
        !plan.to_string().contains(N),
        "the report never names the number"
    );
    assert_eq!(stores(&stack).await, before, "a dry run changes nothing");

    // The erasure, with the number typed another way.
    let done = json_out(&pnsctl(&stack, &["erase", "--number", "+852 5550 1111", "--yes"]).await);
    assert_eq!(done["dryRun"], false);
    assert_eq!(done["callRecords"]["count"], 2);
    let after = settled(&stack).await;

    // No table item and no object version holds N in a form written in full.
    for (key, item) in after.calls.iter().chain(after.binding_errors.iter()) {
        assert!(!holds(&item.to_string(), N), "{key}: {item}");
    }
    for ((key, version), body) in &after.objects {
        let text = String::from_utf8_lossy(body);
        assert!(!holds(&text, N), "{key} {version}: {text}");
        if key.starts_with("analytics/") {
            // The lake keeps masked numbers (docs/security.md) and no full one.
            assert!(!text.contains(&N[..7]), "{key}: {text}");
        }
    }
    // The facts stay; the recording of N's call is gone, every version.
    let erased = &after.calls["201"];
    assert_eq!(erased["caller"], "ERASED");
    assert_eq!(erased["callee"], X, "the other party is not the one erased");
    assert_eq!(erased["duration"], 6);
    assert_eq!(erased["recordingStatus"], "ERASED");
    assert!(erased.get("erasedAt").is_some() && erased.get("recordFile").is_none());
    assert_eq!(after.calls["202"]["callee"], "ERASED");
    assert_eq!(after.binding_errors["req-n"]["caller"], "ERASED");
    assert!(!after.objects.keys().any(|(k, _)| k.ends_with("/201.mp3")));
    for gone in &bodies {
        assert!(!after.objects.keys().any(|(k, _)| k == gone), "{gone}");
    }
    // M as it was, and as many call records as before.
    assert_eq!(after.calls.len(), count);
    assert_eq!(m_items(&after), m_items(&before));
    assert_eq!(m_objects(&after), m_objects(&before));
    assert!(after.objects.contains_key(&m_recording));
    // One audit object, naming the selector by its keyed hash only.
    let audits: Vec<_> = (after.objects.iter())
        .filter(|((k, _), _)| k.starts_with("erasures/number/"))
        .collect();
    assert_eq!(audits.len(), 1);
    let audit: Value = serde_json::from_slice(audits[0].1).unwrap();
    assert_eq!(audit["callRecords"]["count"], 2);
    assert_eq!(audit["selectorHash"].as_str().unwrap().len(), 64);

    // Again: nothing left, and it says so; nothing changes.
    let again = json_out(&pnsctl(&stack, &["erase", "--number", N, "--yes"]).await);
    assert_eq!(again["nothingToErase"], true, "{again}");
    assert!(again["erasedBefore"].is_string(), "{again}");
    assert_eq!(stores(&stack).await, after);

    // Not a block list: a new call of N is stored as usual.
    assert_eq!(post(calls, &call(205, N, X, "").to_string()).await, 200);
    assert_eq!(item(&stack, 205).await.unwrap()["caller"], N);
}

#[tokio::test]
async fn erasing_a_binding_or_a_record_asks_first_and_keeps_the_rest() {
    let stack = stack().await;
    let calls = &stack.webhook_url;
    for (id, caller) in [(401, N), (402, M), (403, X)] {
        let mut body = call(id, caller, X, "");
        body["customerBindId"] = if id == 403 { "other" } else { "order-7" }.into();
        assert_eq!(post(calls, &body.to_string()).await, 200);
    }
    let before = stores(&stack).await;

    // Without --yes and without a terminal: refused, nothing changed.
    let out = pnsctl(&stack, &["erase", "--customer-bind-id", "order-7"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--yes"),
        "{out:?}"
    );
    assert_eq!(stores(&stack).await, before);

    let done =
        json_out(&pnsctl(&stack, &["erase", "--customer-bind-id", "order-7", "--yes"]).await);
    assert_eq!(done["callRecords"]["ids"], json!([401, 402]));
    for id in [401, 402] {
        let erased = item(&stack, id).await.unwrap();
        assert_eq!(erased["caller"], "ERASED");
        assert_eq!(erased["callee"], "ERASED");
        assert_eq!(erased["customerBindId"], "order-7", "business fields stay");
    }
    assert_eq!(item(&stack, 403).await.unwrap()["caller"], X);

    let done = json_out(&pnsctl(&stack, &["erase", "--id", "403", "--yes"]).await);
    assert_eq!(done["callRecords"]["ids"], json!([403]));
    assert_eq!(item(&stack, 403).await.unwrap()["caller"], "ERASED");
    let again = json_out(&pnsctl(&stack, &["erase", "--id", "403", "--yes"]).await);
    assert_eq!(again["nothingToErase"], true);

    let bad = pnsctl(&stack, &["erase", "--number", "call me", "--yes"]).await;
    assert_eq!(bad.status.code(), Some(1));
    assert!(!String::from_utf8_lossy(&bad.stderr).contains("call me"));
}
