//! Both tables over DynamoDB: one conditional write per state change. What the two tables
//! share lives here: the conversions, the put-if-absent and its outcomes, the paging scan.

use std::collections::HashMap;

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
use aws_sdk_dynamodb::Client;
use serde_json::{Map, Value};
use time::OffsetDateTime;

use crate::domain::item::{format_time, RecordItem};
use crate::ports::{ItemPage, PortError, PutOutcome};

mod binding_errors;
mod calls;

pub use binding_errors::DynamoBindingErrorStore;
pub use calls::DynamoRecordStore;

pub(super) type Item = HashMap<String, AttributeValue>;

pub(super) fn to_json(
    operation: &'static str,
    item: Item,
) -> Result<Map<String, Value>, PortError> {
    serde_dynamo::from_item(item).map_err(|e| PortError::new(operation, e))
}

/// The item under `key` as plain JSON, read consistently (what people are shown).
pub(super) async fn get_json(
    client: &Client,
    table: &str,
    key: &str,
    value: AttributeValue,
) -> Result<Option<Map<String, Value>>, PortError> {
    let out = client
        .get_item()
        .table_name(table)
        .key(key, value)
        .consistent_read(true)
        .send()
        .await
        .map_err(|e| PortError::new("GetItem", e))?;
    out.item.map(|item| to_json("GetItem", item)).transpose()
}

/// One page of `table`'s items with `receivedAtEpoch >= epoch` (a filtered scan: an operator's
/// recovery, not a hot path).
pub(super) async fn scan_received_since(
    client: &Client,
    table: &str,
    epoch: i64,
    start: Option<Map<String, Value>>,
) -> Result<ItemPage, PortError> {
    const OPERATION: &str = "Scan";
    let start = start
        .map(|key| serde_dynamo::to_item(key).map_err(|e| PortError::new(OPERATION, e)))
        .transpose()?;
    let page = client
        .scan()
        .table_name(table)
        .filter_expression("receivedAtEpoch >= :since")
        .expression_attribute_values(":since", AttributeValue::N(epoch.to_string()))
        .set_exclusive_start_key(start)
        .send()
        .await
        .map_err(|e| PortError::new(OPERATION, e))?;
    Ok(ItemPage {
        items: page
            .items
            .unwrap_or_default()
            .into_iter()
            .map(|item| to_json(OPERATION, item))
            .collect::<Result<_, _>>()?,
        next: page
            .last_evaluated_key
            .map(|key| to_json(OPERATION, key))
            .transpose()?,
    })
}

pub(super) fn now() -> AttributeValue {
    AttributeValue::S(format_time(OffsetDateTime::now_utc()))
}

pub(super) fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

/// Deepest nesting DynamoDB stores in a document attribute.
const MAX_DEPTH: usize = 32;

/// Makes JSON that is valid to NXCLOUD's contract storable in DynamoDB, which refuses numbers
/// outside 1e-130..1e126 in magnitude and documents nested deeper than 32 levels. Unknown
/// fields may carry either; refused, the put would fail on every retry and the record would
/// be lost. Such a number is kept as its JSON text; such a subtree as its JSON string.
pub fn make_storable(value: &mut Value, depth: usize) {
    match value {
        Value::Number(n) => {
            let storable = n.as_f64().is_some_and(|x| {
                n.is_i64() || n.is_u64() || x == 0.0 || (1e-130..1e126).contains(&x.abs())
            });
            if !storable {
                *value = Value::String(n.to_string());
            }
        }
        Value::Array(_) | Value::Object(_) if depth >= MAX_DEPTH - 1 => {
            *value = Value::String(value.to_string());
        }
        Value::Array(items) => items.iter_mut().for_each(|v| make_storable(v, depth + 1)),
        Value::Object(fields) => fields
            .values_mut()
            .for_each(|v| make_storable(v, depth + 1)),
        Value::Null | Value::Bool(_) | Value::String(_) => {}
    }
}

/// Puts `item` into `table` unless an item with its `key` attribute exists: one conditional
/// write, whose failed condition hands back the stored item.
pub(super) async fn put_if_absent(
    client: &Client,
    table: &str,
    key: &'static str,
    item: RecordItem,
) -> Result<PutOutcome, PortError> {
    let item = item
        .into_json()
        .into_iter()
        .map(|(name, mut value)| {
            make_storable(&mut value, 1);
            let value = serde_dynamo::to_attribute_value(value)
                .map_err(|e| PortError::new("PutItem", e))?;
            Ok((name, value))
        })
        .collect::<Result<Item, PortError>>()?;
    let result = client
        .put_item()
        .table_name(table)
        .set_item(Some(item))
        .condition_expression("attribute_not_exists(#key)")
        .expression_attribute_names("#key", key)
        .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
        .send()
        .await;
    match result {
        Ok(_) => Ok(PutOutcome::Created),
        Err(SdkError::ServiceError(e)) => match e.into_err() {
            PutItemError::ConditionalCheckFailedException(failed) => {
                let old = failed.item.unwrap_or_default();
                let stored =
                    serde_dynamo::from_item(old).map_err(|e| PortError::new("PutItem", e))?;
                Ok(PutOutcome::Duplicate(Box::new(stored)))
            }
            other if other.code() == Some("ValidationException") => Ok(PutOutcome::Refused(
                other.message().unwrap_or("ValidationException").to_owned(),
            )),
            other => Err(PortError::new("PutItem", other)),
        },
        Err(e) => Err(PortError::new("PutItem", e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_dynamodb_refuses_are_kept_as_text() {
        let mut v = json!({"big": 1e200, "tiny": 5e-324, "ok": 1e100, "int": 18446744073709551615u64,
                           "neg": -1e127, "zero": 0.0, "small": 1.5e-100});
        make_storable(&mut v, 1);
        assert_eq!(v["big"], json!("1e+200"));
        assert_eq!(v["tiny"], json!("5e-324"));
        assert_eq!(v["neg"], json!("-1e+127"));
        assert_eq!(v["ok"], json!(1e100));
        assert_eq!(v["int"], json!(18446744073709551615u64));
        assert_eq!(v["zero"], json!(0.0));
        assert_eq!(v["small"], json!(1.5e-100));
    }

    #[test]
    fn nesting_past_dynamodbs_limit_becomes_a_json_string() {
        let mut deep = json!("leaf");
        for _ in 0..40 {
            deep = json!([deep]);
        }
        let original = deep.clone();
        let mut item = Map::new();
        item.insert("extraFields".to_owned(), json!({"deep": deep}));
        item.values_mut().for_each(|v| make_storable(v, 1));
        // Walk down: containers up to the limit, then one string holding the rest.
        let mut depth = 1;
        let mut at = &item["extraFields"];
        while let Some(next) = at.get("deep").or_else(|| at.get(0)) {
            at = next;
            depth += 1;
        }
        assert!(depth < MAX_DEPTH, "{depth}");
        let rest: Value = serde_json::from_str(at.as_str().unwrap()).unwrap();
        let mut expected = &original;
        for _ in 0..depth - 2 {
            expected = &expected[0];
        }
        assert_eq!(&rest, expected);
        assert!(
            serde_dynamo::to_item::<_, std::collections::HashMap<String, AttributeValue>>(item)
                .is_ok()
        );
    }
}
