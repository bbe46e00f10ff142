//! The call record table (`pns-calls` by default), keyed by the NXCLOUD record `id`.

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, Select};
use aws_sdk_dynamodb::Client;
use serde_json::{Map, Value};
use time::OffsetDateTime;

use super::{get_json, now, put_if_absent, s, scan_received_since, to_json};
use crate::domain::item::{format_time, RecordItem, StoredRecord};
use crate::domain::item::{CALL_ID_INDEX, CUSTOMER_BIND_INDEX, PENDING_ATTRIBUTE, PENDING_INDEX};
use crate::domain::recording::{RecordingJob, RecordingStatus, MAX_DELIVERIES};
use crate::ports::{
    ArchivedRecording, CallsByBinding, CopyChecksum, ItemPage, PendingCounts, PendingRecording,
    PendingRecords, PortError, PutOutcome, ReceivedSince, RecordLookup, RecordStore,
};

/// A PENDING record whose recording is still the job's (`:queued_at`): not re-archived since.
const CURRENT_JOB: &str = "attribute_exists(id) AND recordingStatus = :pending \
     AND (attribute_not_exists(pendingSince) OR pendingSince <= :queued_at)";

/// The call record table (`pns-calls` by default), keyed by the NXCLOUD record `id` (Number).
#[derive(Clone, Debug)]
pub struct DynamoRecordStore {
    client: Client,
    table: String,
}

impl DynamoRecordStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    fn key(id: i64) -> AttributeValue {
        AttributeValue::N(id.to_string())
    }

    /// Runs a conditional update; a failed condition is `Ok(false)`, not an error.
    async fn update(
        &self,
        op: &'static str,
        request: aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder,
    ) -> Result<bool, PortError> {
        match request.send().await {
            Ok(_) => Ok(true),
            Err(SdkError::ServiceError(e))
                if matches!(e.err(), UpdateItemError::ConditionalCheckFailedException(_)) =>
            {
                Ok(false)
            }
            Err(e) => Err(PortError::new(op, e)),
        }
    }
}

impl RecordStore for DynamoRecordStore {
    async fn put_new(&self, item: RecordItem) -> Result<PutOutcome, PortError> {
        put_if_absent(&self.client, &self.table, "id", item).await
    }

    async fn get(&self, id: i64) -> Result<Option<StoredRecord>, PortError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("id", Self::key(id))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| PortError::new("GetItem", e))?;
        out.item
            .map(|item| serde_dynamo::from_item(item).map_err(|e| PortError::new("GetItem", e)))
            .transpose()
    }

    async fn mark_archived(
        &self,
        id: i64,
        archived: &ArchivedRecording,
    ) -> Result<bool, PortError> {
        let request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("id", Self::key(id))
            .update_expression(
                "SET recordingStatus = :archived, recordingKey = :key, recordingBytes = :bytes, \
                 recordingSha256 = :sha, recordingContentType = :ct, archivedAt = :now REMOVE recordingError, pending",
            )
            .condition_expression("attribute_exists(id)")
            .expression_attribute_values(":archived", s(RecordingStatus::Archived.as_str()))
            .expression_attribute_values(":key", s(&archived.key))
            .expression_attribute_values(":bytes", AttributeValue::N(archived.bytes.to_string()))
            .expression_attribute_values(":sha", s(&archived.sha256))
            .expression_attribute_values(":ct", s(&archived.content_type))
            .expression_attribute_values(":now", now());
        self.update("UpdateItem(archived)", request).await
    }

    async fn mark_failed(&self, job: &RecordingJob, reason: &str) -> Result<bool, PortError> {
        let request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("id", Self::key(job.id))
            .update_expression(
                "SET recordingStatus = :failed, recordingError = :reason, failedAt = :now REMOVE pending",
            )
            .condition_expression(CURRENT_JOB)
            .expression_attribute_values(":queued_at", AttributeValue::N(job.queued_at.to_string()))
            .expression_attribute_values(":failed", s(RecordingStatus::Failed.as_str()))
            .expression_attribute_values(":pending", s(RecordingStatus::Pending.as_str()))
            .expression_attribute_values(":reason", s(reason))
            .expression_attribute_values(":now", now());
        self.update("UpdateItem(failed)", request).await
    }

    async fn note_attempt(&self, job: &RecordingJob, reason: &str) -> Result<(), PortError> {
        let request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("id", Self::key(job.id))
            .update_expression(
                "SET recordingError = :reason, lastAttemptAt = :now, \
                 recordingAttempts = if_not_exists(recordingAttempts, :zero) + :one",
            )
            .condition_expression(CURRENT_JOB)
            .expression_attribute_values(":queued_at", AttributeValue::N(job.queued_at.to_string()))
            .expression_attribute_values(":pending", s(RecordingStatus::Pending.as_str()))
            .expression_attribute_values(":reason", s(reason))
            .expression_attribute_values(":now", now())
            .expression_attribute_values(":zero", AttributeValue::N("0".into()))
            .expression_attribute_values(":one", AttributeValue::N("1".into()));
        self.update("UpdateItem(attempt)", request).await.map(drop)
    }

    async fn note_copy(&self, id: i64, copy: &CopyChecksum) -> Result<(), PortError> {
        // A record decided meanwhile (another delivery archived it) needs no note.
        let request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("id", Self::key(id))
            .update_expression("SET copySha256 = :sha, copyBytes = :bytes, copyEtag = :etag")
            .condition_expression("attribute_exists(id) AND recordingStatus = :pending")
            .expression_attribute_values(":pending", s(RecordingStatus::Pending.as_str()))
            .expression_attribute_values(":sha", s(&copy.sha256))
            .expression_attribute_values(":bytes", AttributeValue::N(copy.bytes.to_string()))
            .expression_attribute_values(":etag", s(&copy.etag));
        self.update("UpdateItem(copy)", request).await.map(drop)
    }

    async fn reset_to_pending(
        &self,
        id: i64,
        url: &str,
        key: &str,
        since: i64,
    ) -> Result<bool, PortError> {
        // The condition pins what was read, so the job queued next matches the stored record.
        let request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("id", Self::key(id))
            .update_expression(
                "SET recordingStatus = :pending, #pending = :pending, recordingKey = :key, \
                 pendingSince = :since \
                 REMOVE recordingError, failedAt, recordingAttempts, lastAttemptAt",
            )
            .expression_attribute_values(":since", AttributeValue::N(since.to_string()))
            .condition_expression(
                "attribute_exists(id) AND recordFile = :url \
                 AND (attribute_not_exists(recordingKey) OR recordingKey = :key)",
            )
            .expression_attribute_names("#pending", PENDING_ATTRIBUTE)
            .expression_attribute_values(":pending", s(RecordingStatus::Pending.as_str()))
            .expression_attribute_values(":key", s(key))
            .expression_attribute_values(":url", s(url));
        self.update("UpdateItem(rearchive)", request).await
    }
}

impl ReceivedSince for DynamoRecordStore {
    async fn received_since(
        &self,
        epoch: i64,
        start: Option<Map<String, Value>>,
    ) -> Result<ItemPage, PortError> {
        scan_received_since(&self.client, &self.table, epoch, start).await
    }
}

impl RecordLookup for DynamoRecordStore {
    async fn item(&self, id: i64) -> Result<Option<Map<String, Value>>, PortError> {
        get_json(&self.client, &self.table, "id", Self::key(id)).await
    }

    async fn by_call_id(&self, call_id: &str) -> Result<Vec<Map<String, Value>>, PortError> {
        const OPERATION: &str = "Query(callIdLookup)";
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(CALL_ID_INDEX)
                .key_condition_expression("callId = :call_id")
                .expression_attribute_values(":call_id", s(call_id))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| PortError::new(OPERATION, e))?;
            for item in page.items.unwrap_or_default() {
                items.push(to_json(OPERATION, item)?);
            }
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => break,
            }
        }
        items.sort_by_key(|i| i.get("id").and_then(Value::as_i64));
        Ok(items)
    }
}

impl CallsByBinding for DynamoRecordStore {
    async fn by_customer_bind_id(
        &self,
        customer_bind_id: &str,
    ) -> Result<Vec<Map<String, Value>>, PortError> {
        const OPERATION: &str = "Query(callsByCustomerBindId)";
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(CUSTOMER_BIND_INDEX)
            .key_condition_expression("customerBindId = :bind")
            .expression_attribute_values(":bind", s(customer_bind_id));
        let mut items = Vec::new();
        let mut pages = query.into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| PortError::new(OPERATION, e))?;
            for item in page.items.unwrap_or_default() {
                items.push(to_json(OPERATION, item)?);
            }
        }
        Ok(items)
    }

    async fn by_bind_id(&self, bind_id: &str) -> Result<Vec<Map<String, Value>>, PortError> {
        const OPERATION: &str = "Scan(bindId)";
        let scan = self
            .client
            .scan()
            .table_name(&self.table)
            .filter_expression("bindId = :bind")
            .expression_attribute_values(":bind", s(bind_id));
        let mut items = Vec::new();
        let mut pages = scan.into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| PortError::new(OPERATION, e))?;
            for item in page.items.unwrap_or_default() {
                items.push(to_json(OPERATION, item)?);
            }
        }
        items.sort_by_key(|i| {
            (
                i.get("startAt").and_then(Value::as_i64),
                i.get("id").and_then(Value::as_i64),
            )
        });
        Ok(items)
    }
}

impl DynamoRecordStore {
    /// A query of the sparse pending index: PENDING records received at or before `before`.
    fn pending_query(
        &self,
        before: i64,
    ) -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder {
        self.client
            .query()
            .table_name(&self.table)
            .index_name(PENDING_INDEX)
            .key_condition_expression("#pending = :pending AND receivedAtEpoch <= :before")
            .expression_attribute_names("#pending", PENDING_ATTRIBUTE)
            .expression_attribute_values(":pending", s(RecordingStatus::Pending.as_str()))
            .expression_attribute_values(":before", AttributeValue::N(before.to_string()))
    }

    /// Counts the matches of a query, page by page (COUNT reads no attributes).
    async fn count(
        &self,
        query: aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder,
    ) -> Result<usize, PortError> {
        let mut count = 0;
        let mut start = None;
        loop {
            let page = query
                .clone()
                .select(Select::Count)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| PortError::new("Query(pendingRecordings)", e))?;
            count += page.count.max(0) as usize;
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(count),
            }
        }
    }
}

impl PendingRecords for DynamoRecordStore {
    async fn pending_before(
        &self,
        received_before: i64,
        limit: usize,
    ) -> Result<Vec<PendingRecording>, PortError> {
        let cutoff = OffsetDateTime::from_unix_timestamp(received_before)
            .map(format_time)
            .map_err(|e| PortError::new("Query(pendingRecordings)", e))?;
        let mut found = Vec::new();
        let mut start = None;
        while found.len() < limit {
            let page = self
                .pending_query(received_before)
                // Records whose job used up its deliveries sit in the DLQ for a person to
                // look at: re-queuing them every run would only pile up copies there. A
                // record with a failed delivery after the cutoff has a live job in its
                // backoff: a copy would double its deliveries. Filtered here, so neither
                // counts against the limit.
                .filter_expression(
                    "(attribute_not_exists(recordingAttempts) OR recordingAttempts < :exhausted) \
                     AND (attribute_not_exists(lastAttemptAt) OR lastAttemptAt <= :cutoff)",
                )
                .expression_attribute_values(
                    ":exhausted",
                    AttributeValue::N(MAX_DELIVERIES.to_string()),
                )
                .expression_attribute_values(":cutoff", s(&cutoff))
                .scan_index_forward(true)
                .limit((limit - found.len()).min(1000) as i32)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| PortError::new("Query(pendingRecordings)", e))?;
            for item in page.items.unwrap_or_default() {
                let record: StoredRecord = serde_dynamo::from_item(item)
                    .map_err(|e| PortError::new("Query(pendingRecordings)", e))?;
                // The index projects the URL and key; a record without them has nothing to fetch.
                if let (Some(url), Some(key)) = (record.record_file, record.recording_key) {
                    found.push(PendingRecording {
                        id: record.id,
                        url,
                        key,
                    });
                }
            }
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => break,
            }
        }
        found.truncate(limit);
        Ok(found)
    }

    async fn count_pending(
        &self,
        overdue_before: i64,
        received_before: i64,
    ) -> Result<PendingCounts, PortError> {
        let cutoff = OffsetDateTime::from_unix_timestamp(received_before)
            .map(format_time)
            .map_err(|e| PortError::new("Query(pendingRecordings)", e))?;
        let overdue = self.count(self.pending_query(overdue_before)).await?;
        let in_retry = self
            .count(
                self.pending_query(received_before)
                    .filter_expression("lastAttemptAt > :cutoff")
                    .expression_attribute_values(":cutoff", s(&cutoff)),
            )
            .await?;
        Ok(PendingCounts { overdue, in_retry })
    }
}
