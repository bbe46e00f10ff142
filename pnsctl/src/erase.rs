//! `pnsctl erase`: every trace of a phone number, a binding's calls or one record, store by
//! store (docs/operations.md, "Erase a person's data").
//!
//! Call records and binding errors keep their facts (ids, times, duration, status, business
//! fields) with the numbers replaced by `ERASED`; the recordings and the kept bodies are
//! deleted with every version; an audit object names the selector by its keyed hash only.
//! Each step is safe to repeat, so a run cut short is completed by running it again.

use std::collections::BTreeSet;

use aws_sdk_dynamodb::types::AttributeValue;
use pns_cdr::adapters::dynamodb::{DynamoBindingErrorStore, DynamoRecordStore};
use pns_cdr::domain::item::format_time;
use pns_cdr::domain::numbers::{
    erase_numbers, holds_number, normalize, NumberKeys, BINDING_NUMBER_FIELDS, CALL_NUMBER_FIELDS,
    ERASED, NUMBER_INDEX_PREFIX,
};
use pns_cdr::domain::recording::{
    binding_conflicts_of, conflicts_of, CONFLICTS_PREFIX, REJECTED_PREFIX,
};
use pns_cdr::ports::{BindingErrorLookup, CallsByBinding, PortError, RecordLookup};
use serde_json::{json, Map, Value};
use time::OffsetDateTime;

/// Where an erasure's audit objects go: `erasures/<selector>/<keyed hash>/<time>.json`.
pub const AUDIT_PREFIX: &str = "erasures/";

/// What to erase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// A phone number, as digits: everything that holds it.
    Number(String),
    /// The calls of a binding, by the customer's id for it.
    CustomerBindId(String),
    /// One call record.
    Id(i64),
}

impl Selector {
    /// `--number` as typed: `+`, spaces and dashes tolerated.
    pub fn number(text: &str) -> Result<Self, EraseError> {
        normalize(text)
            .map(Self::Number)
            .ok_or_else(|| EraseError::NotANumber(text.chars().count()))
    }

    fn kind(&self) -> &'static str {
        match self {
            Self::Number(_) => "number",
            Self::CustomerBindId(_) => "customer-bind-id",
            Self::Id(_) => "id",
        }
    }

    fn text(&self) -> String {
        match self {
            Self::Number(digits) => digits.clone(),
            Self::CustomerBindId(id) => id.clone(),
            Self::Id(id) => id.to_string(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EraseError {
    /// Carries the length only: the text may be a number.
    #[error("--number takes a phone number (digits, with + and spaces tolerated); got {0} characters that are not one")]
    NotANumber(usize),
    #[error("this command needs the stack's number key: set PNS_NUMBER_KEY_SECRET (the NumberKeySecretArn output) or name the stack with --stack")]
    NoKeySecret,
    #[error("{operation} failed")]
    Aws {
        operation: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error(transparent)]
    Port(#[from] PortError),
    #[error("record {0} kept changing while it was erased; run the command again")]
    Busy(String),
}

fn aws(
    operation: &'static str,
) -> impl FnOnce(Box<dyn std::error::Error + Send + Sync>) -> EraseError {
    move |source| EraseError::Aws { operation, source }
}

/// The stores an erasure reaches, as the operator's credentials reach them.
pub struct Stores {
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub s3: aws_sdk_s3::Client,
    pub calls_table: String,
    pub binding_errors_table: String,
    pub bucket: String,
    /// The stack's `PhoneNumbersInEvents`, when known: what the lake and the archive hold.
    pub phone_numbers: Option<String>,
}

impl Stores {
    fn records(&self) -> DynamoRecordStore {
        DynamoRecordStore::new(self.dynamodb.clone(), &self.calls_table)
    }
}

/// One object and its versions (delete markers included).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Versions {
    key: String,
    versions: Vec<String>,
}

/// What an erasure finds, before it changes anything.
#[derive(Debug, Default)]
pub struct Plan {
    calls: Vec<Map<String, Value>>,
    binding_errors: Vec<Map<String, Value>>,
    recordings: Vec<Versions>,
    bodies: Vec<Versions>,
    /// The numbers to scrub from the items found, as digits.
    numbers: Vec<String>,
    /// The records were chosen themselves (by binding or id), not for a number they hold:
    /// both parties' fields go, whatever they hold.
    whole_records: bool,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
            && self.binding_errors.is_empty()
            && self.recordings.is_empty()
            && self.bodies.is_empty()
    }
}

/// What an erasure did (or, on a dry run, would do), store by store: what pnsctl prints,
/// and the audit object's content.
pub fn report(
    selector: &Selector,
    keys: &NumberKeys,
    plan: &Plan,
    stores: &Stores,
    dry_run: bool,
) -> Value {
    let versions = |list: &[Versions]| list.iter().map(|v| v.versions.len()).sum::<usize>();
    let ids: Vec<Value> = plan
        .calls
        .iter()
        .filter_map(|i| i.get("id").cloned())
        .collect();
    let request_ids: Vec<Value> = (plan.binding_errors.iter())
        .filter_map(|i| i.get("requestId").cloned())
        .collect();
    let (lake, archive) = match stores.phone_numbers.as_deref() {
        Some("omitted") => (
            "no numbers, only their keyed hashes; deleted after LakeRetentionDays",
            "events without numbers, with their keyed hashes, for EventArchiveDays",
        ),
        Some("full") => (
            "off: a stack with full numbers in events runs without the lake",
            "events with FULL numbers for EventArchiveDays; EventBridge cannot delete single events",
        ),
        _ => (
            "masked numbers (last four digits) and keyed hashes only; deleted after LakeRetentionDays",
            "events with masked numbers and keyed hashes for EventArchiveDays",
        ),
    };
    json!({
        "selector": selector.kind(),
        "selectorHash": keys.hash_text(&selector.text()),
        "dryRun": dry_run,
        "callRecords": {"count": plan.calls.len(), "ids": ids},
        "bindingErrors": {"count": plan.binding_errors.len(), "requestIds": request_ids},
        "recordings": {"objects": plan.recordings.len(), "versions": versions(&plan.recordings)},
        "keptBodies": {
            "objects": plan.bodies.len(),
            "versions": versions(&plan.bodies),
            "keys": plan.bodies.iter().map(|b| b.key.clone()).collect::<Vec<_>>(),
        },
        "lake": lake,
        "eventArchive": archive,
    })
}

/// Finds what `selector` reaches in every store. Changes nothing.
pub async fn plan(
    stores: &Stores,
    keys: &NumberKeys,
    selector: &Selector,
) -> Result<Plan, EraseError> {
    let records = stores.records();
    let mut plan = Plan {
        whole_records: !matches!(selector, Selector::Number(_)),
        ..Plan::default()
    };
    let mut index_entries = Vec::new();
    let mut calls = match selector {
        Selector::Number(digits) => {
            plan.numbers.push(digits.clone());
            plan.binding_errors = scan_for_number(
                stores,
                &stores.binding_errors_table,
                &BINDING_NUMBER_FIELDS,
                digits,
            )
            .await?;
            for hash in keys.hashes(digits) {
                index_entries.extend(
                    versions_under(stores, &format!("{NUMBER_INDEX_PREFIX}{hash}/")).await?,
                );
            }
            scan_for_number(stores, &stores.calls_table, &CALL_NUMBER_FIELDS, digits).await?
        }
        Selector::CustomerBindId(id) => records.by_customer_bind_id(id).await?,
        Selector::Id(id) => records.item(*id).await?.into_iter().collect(),
    };
    // A record chosen by its binding or id: its own numbers go wherever they are in it.
    for call in calls.iter().filter(|_| plan.whole_records) {
        for field in CALL_NUMBER_FIELDS {
            plan.numbers
                .extend(call.get(field).and_then(Value::as_str).and_then(normalize));
        }
    }
    plan.numbers.sort();
    plan.numbers.dedup();
    // The bodies kept beside the items found, and those the index names.
    let mut body_keys = BTreeSet::new();
    for entry in &index_entries {
        if let Some(body) = entry
            .key
            .strip_prefix(NUMBER_INDEX_PREFIX)
            .and_then(|k| k.split_once('/'))
        {
            body_keys.insert(body.1.to_owned());
        }
    }
    for call in &calls {
        if let Some(id) = call.get("id").and_then(Value::as_i64) {
            for v in versions_under(stores, &conflicts_of(id)).await? {
                body_keys.insert(v.key);
            }
        }
    }
    for error in &plan.binding_errors {
        if let Some(request_id) = error.get("requestId").and_then(Value::as_str) {
            for v in versions_under(stores, &binding_conflicts_of(request_id)).await? {
                body_keys.insert(v.key);
            }
        }
    }
    for key in body_keys {
        // Only what the index or the items lead to, under the prefixes of kept bodies.
        if key.starts_with(REJECTED_PREFIX) || key.starts_with(CONFLICTS_PREFIX) {
            plan.bodies.extend(versions_of(stores, &key).await?);
        }
    }
    plan.bodies.extend(index_entries);
    // The recordings of the calls, every version.
    for call in &calls {
        if let Some(key) = call.get("recordingKey").and_then(Value::as_str) {
            plan.recordings.extend(versions_of(stores, key).await?);
        }
    }
    // An item erased before, with nothing of the numbers left, is done.
    calls.retain(|c| !c.contains_key("erasedAt") || holds_number(c, &plan.numbers));
    plan.binding_errors
        .retain(|e| !e.contains_key("erasedAt") || holds_number(e, &plan.numbers));
    plan.calls = calls;
    Ok(plan)
}

/// Carries out `plan`: recordings first, then each item (so a record is never erased while
/// its voice stays behind where no number would find it again), then the bodies and their
/// index entries, then the audit object.
pub async fn execute(
    stores: &Stores,
    plan: &Plan,
    audit: &Value,
    now: OffsetDateTime,
) -> Result<(), EraseError> {
    for recording in &plan.recordings {
        delete_versions(stores, recording).await?;
    }
    for call in &plan.calls {
        let id = call.get("id").and_then(Value::as_i64).unwrap_or_default();
        let fields: &[&str] = match plan.whole_records {
            true => &CALL_NUMBER_FIELDS,
            // Only the fields that hold the number: the other party is not the one erased.
            false => &[],
        };
        erase_call(stores, id, fields, &plan.numbers, now).await?;
    }
    for error in &plan.binding_errors {
        let request_id = error
            .get("requestId")
            .and_then(Value::as_str)
            .unwrap_or_default();
        erase_binding_error(stores, request_id, &plan.numbers, now).await?;
    }
    for body in &plan.bodies {
        delete_versions(stores, body).await?;
    }
    let key = format!(
        "{AUDIT_PREFIX}{}/{}/{}.json",
        audit["selector"].as_str().unwrap_or_default(),
        audit["selectorHash"].as_str().unwrap_or_default(),
        format_time(now)
    );
    let mut record = audit.clone();
    record["erasedAt"] = format_time(now).into();
    stores
        .s3
        .put_object()
        .bucket(&stores.bucket)
        .key(key)
        .content_type("application/json")
        .body(record.to_string().into_bytes().into())
        .send()
        .await
        .map_err(|e| aws("PutObject(audit)")(e.into()))?;
    Ok(())
}

/// When the same selector was erased before, per its audit objects (the latest).
pub async fn erased_before(stores: &Stores, audit: &Value) -> Result<Option<String>, EraseError> {
    let prefix = format!(
        "{AUDIT_PREFIX}{}/{}/",
        audit["selector"].as_str().unwrap_or_default(),
        audit["selectorHash"].as_str().unwrap_or_default()
    );
    let keys = versions_under(stores, &prefix).await?;
    Ok(keys
        .iter()
        .filter_map(|v| v.key.strip_prefix(&prefix)?.strip_suffix(".json"))
        .max()
        .map(str::to_owned))
}

/// Reads, erases and writes back one call record, with a condition on what was read: an
/// archiver that changed the record meanwhile makes it read again.
async fn erase_call(
    stores: &Stores,
    id: i64,
    fields: &[&str],
    numbers: &[String],
    now: OffsetDateTime,
) -> Result<(), EraseError> {
    let records = stores.records();
    for _ in 0..5 {
        let Some(mut item) = records.item(id).await? else {
            return Ok(());
        };
        let status = item
            .get("recordingStatus")
            .and_then(Value::as_str)
            .map(str::to_owned);
        erase_numbers(&mut item, fields, numbers);
        // The recording and everything that leads to it or describes it: the archiver and
        // the reconciler leave an ERASED record alone. `recordingKey` stays (it holds the id
        // and a date): erasing the record again deletes what an in-flight copy left there.
        for gone in [
            "recordFile",
            "pending",
            "pendingSince",
            "recordingError",
            "recordingSha256",
            "copySha256",
            "copyEtag",
            "copyBytes",
        ] {
            item.remove(gone);
        }
        if status.as_deref().is_some_and(|s| s != "NONE") {
            item.insert("recordingStatus".into(), ERASED.into());
        }
        item.insert("erasedAt".into(), format_time(now).into());
        let condition = match &status {
            Some(_) => "attribute_exists(id) AND recordingStatus = :status",
            None => "attribute_exists(id) AND attribute_not_exists(recordingStatus)",
        };
        if put_if(
            stores,
            &stores.calls_table,
            item,
            condition,
            status.as_deref(),
        )
        .await?
        {
            return Ok(());
        }
    }
    Err(EraseError::Busy(id.to_string()))
}

async fn erase_binding_error(
    stores: &Stores,
    request_id: &str,
    numbers: &[String],
    now: OffsetDateTime,
) -> Result<(), EraseError> {
    let errors =
        DynamoBindingErrorStore::new(stores.dynamodb.clone(), &stores.binding_errors_table);
    let Some(mut item) = errors.item(request_id).await? else {
        return Ok(());
    };
    // Found for the number it holds: that is what goes. Nothing else writes a stored binding
    // error, so the condition fails only when TTL deleted it meanwhile: nothing left to erase.
    erase_numbers(&mut item, &[], numbers);
    item.insert("erasedAt".into(), format_time(now).into());
    put_if(
        stores,
        &stores.binding_errors_table,
        item,
        "attribute_exists(requestId)",
        None,
    )
    .await
    .map(drop)
}

/// A conditional `PutItem` of the whole item; `false` when the condition failed.
async fn put_if(
    stores: &Stores,
    table: &str,
    item: Map<String, Value>,
    condition: &str,
    status: Option<&str>,
) -> Result<bool, EraseError> {
    let item: std::collections::HashMap<String, AttributeValue> =
        serde_dynamo::to_item(Value::Object(item)).map_err(|e| aws("PutItem")(e.into()))?;
    let mut request = stores
        .dynamodb
        .put_item()
        .table_name(table)
        .set_item(Some(item))
        .condition_expression(condition);
    if let Some(status) = status {
        request = request.expression_attribute_values(":status", AttributeValue::S(status.into()));
    }
    match request.send().await {
        Ok(_) => Ok(true),
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
        {
            Ok(false)
        }
        Err(e) => Err(aws("PutItem")(e.into())),
    }
}

/// The items of `table` that hold `digits` in a number field: a scan (no index is keyed by
/// a number), filtered on the server and checked here in every written form.
async fn scan_for_number(
    stores: &Stores,
    table: &str,
    fields: &[&str],
    digits: &str,
) -> Result<Vec<Map<String, Value>>, EraseError> {
    let numbers = [digits.to_owned()];
    let filter = fields
        .iter()
        .map(|f| format!("contains({f}, :n)"))
        .collect::<Vec<_>>()
        .join(" OR ");
    let mut pages = stores
        .dynamodb
        .scan()
        .table_name(table)
        .filter_expression(filter)
        .expression_attribute_values(":n", AttributeValue::S(digits.to_owned()))
        .into_paginator()
        .send();
    let mut found = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| aws("Scan")(e.into()))?;
        for item in page.items.unwrap_or_default() {
            let item: Map<String, Value> =
                serde_dynamo::from_item(item).map_err(|e| aws("Scan")(e.into()))?;
            if holds_number(&item, &numbers) {
                found.push(item);
            }
        }
    }
    Ok(found)
}

/// Every object under `prefix` with its versions and delete markers.
async fn versions_under(stores: &Stores, prefix: &str) -> Result<Vec<Versions>, EraseError> {
    let mut found: Vec<Versions> = Vec::new();
    let (mut key_marker, mut version_marker) = (None, None);
    loop {
        let page = stores
            .s3
            .list_object_versions()
            .bucket(&stores.bucket)
            .prefix(prefix)
            .set_key_marker(key_marker.take())
            .set_version_id_marker(version_marker.take())
            .send()
            .await
            .map_err(|e| aws("ListObjectVersions")(e.into()))?;
        let versions =
            (page.versions.unwrap_or_default().into_iter()).map(|v| (v.key, v.version_id));
        let markers =
            (page.delete_markers.unwrap_or_default().into_iter()).map(|m| (m.key, m.version_id));
        for (key, version) in versions.chain(markers) {
            let (Some(key), Some(version)) = (key, version) else {
                continue;
            };
            match found.iter_mut().find(|f| f.key == key) {
                Some(f) => f.versions.push(version),
                None => found.push(Versions {
                    key,
                    versions: vec![version],
                }),
            }
        }
        if page.is_truncated != Some(true) {
            break;
        }
        key_marker = page.next_key_marker;
        version_marker = page.next_version_id_marker;
    }
    Ok(found)
}

/// The versions of exactly `key` (none: nothing).
async fn versions_of(stores: &Stores, key: &str) -> Result<Option<Versions>, EraseError> {
    Ok(versions_under(stores, key)
        .await?
        .into_iter()
        .find(|v| v.key == key))
}

async fn delete_versions(stores: &Stores, object: &Versions) -> Result<(), EraseError> {
    // One request per version: each is an s3:DeleteObjectVersion, which the operator's
    // policy grants by prefix.
    for version in &object.versions {
        stores
            .s3
            .delete_object()
            .bucket(&stores.bucket)
            .key(&object.key)
            .version_id(version)
            .send()
            .await
            .map_err(|e| aws("DeleteObject(version)")(e.into()))?;
    }
    Ok(())
}
