//! The binding-error table (`pns-binding-errors` by default), keyed by NXCLOUD's `requestId`.

use aws_sdk_dynamodb::Client;
use serde_json::{Map, Value};

use super::{get_json, put_if_absent, s, scan_received_since, to_json};
use crate::domain::binding::DID_INDEX;
use crate::domain::item::RecordItem;
use crate::ports::{
    BindingErrorLookup, BindingErrorStore, ItemPage, PortError, PutOutcome, ReceivedSince,
};

/// The binding-error table (`pns-binding-errors` by default), keyed by NXCLOUD's `requestId`.
#[derive(Clone, Debug)]
pub struct DynamoBindingErrorStore {
    client: Client,
    table: String,
}

impl DynamoBindingErrorStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }
}

impl BindingErrorStore for DynamoBindingErrorStore {
    async fn put_new(&self, item: RecordItem) -> Result<PutOutcome, PortError> {
        put_if_absent(&self.client, &self.table, "requestId", item).await
    }
}

impl ReceivedSince for DynamoBindingErrorStore {
    async fn received_since(
        &self,
        epoch: i64,
        start: Option<Map<String, Value>>,
    ) -> Result<ItemPage, PortError> {
        scan_received_since(&self.client, &self.table, epoch, start).await
    }
}

impl BindingErrorLookup for DynamoBindingErrorStore {
    async fn item(&self, request_id: &str) -> Result<Option<Map<String, Value>>, PortError> {
        get_json(&self.client, &self.table, "requestId", s(request_id)).await
    }

    async fn by_did(
        &self,
        did: &str,
        day: Option<&str>,
    ) -> Result<Vec<Map<String, Value>>, PortError> {
        const OPERATION: &str = "Query(bindingErrorsByDid)";
        let condition = match day {
            Some(_) => "did = :did AND begins_with(occurredAt, :day)",
            None => "did = :did",
        };
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let mut query = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(DID_INDEX)
                .key_condition_expression(condition)
                .expression_attribute_values(":did", s(did))
                .scan_index_forward(true)
                .set_exclusive_start_key(start.take());
            if let Some(day) = day {
                query = query.expression_attribute_values(":day", s(day));
            }
            let page = query
                .send()
                .await
                .map_err(|e| PortError::new(OPERATION, e))?;
            for item in page.items.unwrap_or_default() {
                items.push(to_json(OPERATION, item)?);
            }
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(items),
            }
        }
    }
}
