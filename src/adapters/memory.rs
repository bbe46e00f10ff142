//! In-memory ports: fast handler tests and benchmarks without an emulator, and faults on
//! demand (`fail_next`) that the emulator cannot produce.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use bytes::Bytes;
use serde_json::{Map, Value};

use crate::domain::events::Event;
use crate::domain::item::{RecordItem, StoredRecord};
use crate::domain::recording::RecordingJob;
use crate::ports::{
    ArchivedRecording, BindingErrorStore, CallsByBinding, CopyChecksum, EntryRefused, EventBus,
    EventFailures, JobQueue, ObjectInfo, ObjectMeta, ObjectStore, PartStream, PortError,
    PutOutcome, RecordLookup, RecordStore, UploadedPart, EVENTS_PER_PUT, PUT_EVENTS_MAX_BYTES,
};

/// Fails while `failures` is above 0, counting it down; exact under concurrent calls.
fn injected(operation: &'static str, failures: &AtomicUsize) -> Result<(), PortError> {
    let counted = failures.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
    match counted {
        Ok(_) => Err(PortError::new(operation, "injected failure")),
        Err(_) => Ok(()),
    }
}

/// A record table in a map; counts writes.
#[derive(Default)]
pub struct MemoryRecordStore {
    pub items: Mutex<HashMap<i64, RecordItem>>,
    pub writes: AtomicUsize,
    pub fail_next: AtomicUsize,
    /// Puts to refuse as invalid, as DynamoDB's ValidationException does.
    pub refuse_next: AtomicUsize,
}

impl MemoryRecordStore {
    fn stored(item: &RecordItem) -> StoredRecord {
        serde_json::from_value(Value::Object(item.to_json())).unwrap_or_default()
    }

    /// As DynamoDB's conditional update: applies when `condition` holds on the stored item.
    fn update(
        &self,
        id: i64,
        condition: impl FnOnce(&RecordItem) -> bool,
        apply: impl FnOnce(&mut RecordItem),
    ) -> Result<bool, PortError> {
        injected("UpdateItem", &self.fail_next)?;
        let mut items = self.items.lock().expect("not poisoned");
        match items.get_mut(&id) {
            Some(item) if condition(item) => {
                apply(item);
                self.writes.fetch_add(1, Ordering::SeqCst);
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

fn pending(item: &RecordItem) -> bool {
    item.get("recordingStatus") == Some(&Value::from("PENDING"))
}

/// PENDING, and not re-archived since `job` was queued.
fn current_job(item: &RecordItem, job: &RecordingJob) -> bool {
    let since = item.get("pendingSince").and_then(Value::as_i64);
    pending(item) && !job.is_superseded(since)
}

impl RecordStore for MemoryRecordStore {
    async fn put_new(&self, item: RecordItem) -> Result<PutOutcome, PortError> {
        injected("PutItem", &self.fail_next)?;
        if self
            .refuse_next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Ok(PutOutcome::Refused("injected: item refused".into()));
        }
        let id = item
            .id()
            .ok_or_else(|| PortError::new("PutItem", "no id"))?;
        let mut items = self.items.lock().expect("not poisoned");
        if let Some(old) = items.get(&id) {
            return Ok(PutOutcome::Duplicate(Box::new(Self::stored(old))));
        }
        items.insert(id, item);
        self.writes.fetch_add(1, Ordering::SeqCst);
        Ok(PutOutcome::Created)
    }

    async fn get(&self, id: i64) -> Result<Option<StoredRecord>, PortError> {
        injected("GetItem", &self.fail_next)?;
        Ok(self
            .items
            .lock()
            .expect("not poisoned")
            .get(&id)
            .map(Self::stored))
    }

    async fn mark_archived(
        &self,
        id: i64,
        archived: &ArchivedRecording,
    ) -> Result<bool, PortError> {
        self.update(
            id,
            |_| true,
            |item| {
                item.insert("recordingStatus", "ARCHIVED".into());
                item.insert("recordingKey", archived.key.clone().into());
                item.insert("recordingBytes", archived.bytes.into());
                item.insert("recordingSha256", archived.sha256.clone().into());
                item.remove("pending");
            },
        )
    }

    async fn mark_failed(&self, job: &RecordingJob, reason: &str) -> Result<bool, PortError> {
        self.update(
            job.id,
            |item| current_job(item, job),
            |item| {
                item.insert("recordingStatus", "FAILED".into());
                item.insert("recordingError", reason.into());
                item.remove("pending");
            },
        )
    }

    async fn note_attempt(&self, job: &RecordingJob, reason: &str) -> Result<(), PortError> {
        self.update(
            job.id,
            |item| current_job(item, job),
            |item| {
                item.insert("recordingError", reason.into());
            },
        )
        .map(drop)
    }

    async fn note_copy(&self, id: i64, copy: &CopyChecksum) -> Result<(), PortError> {
        self.update(id, pending, |item| {
            item.insert("copySha256", copy.sha256.clone().into());
            item.insert("copyBytes", copy.bytes.into());
            item.insert("copyEtag", copy.etag.clone().into());
        })
        .map(drop)
    }

    async fn reset_to_pending(
        &self,
        id: i64,
        url: &str,
        key: &str,
        since: i64,
    ) -> Result<bool, PortError> {
        injected("UpdateItem", &self.fail_next)?;
        let mut items = self.items.lock().expect("not poisoned");
        let Some(item) = items.get_mut(&id) else {
            return Ok(false);
        };
        let same_key = item.get("recordingKey").is_none_or(|k| k == key);
        if item.get("recordFile") != Some(&Value::from(url)) || !same_key {
            return Ok(false);
        }
        item.insert("recordingStatus", "PENDING".into());
        item.insert("pending", "PENDING".into());
        item.insert("recordingKey", key.into());
        item.insert("pendingSince", since.into());
        for gone in [
            "recordingError",
            "failedAt",
            "recordingAttempts",
            "lastAttemptAt",
        ] {
            item.remove(gone);
        }
        self.writes.fetch_add(1, Ordering::SeqCst);
        Ok(true)
    }
}

impl RecordLookup for MemoryRecordStore {
    async fn item(&self, id: i64) -> Result<Option<Map<String, Value>>, PortError> {
        injected("GetItem", &self.fail_next)?;
        let items = self.items.lock().expect("not poisoned");
        Ok(items.get(&id).map(RecordItem::to_json))
    }

    async fn by_call_id(&self, call_id: &str) -> Result<Vec<Map<String, Value>>, PortError> {
        injected("Query", &self.fail_next)?;
        let items = self.items.lock().expect("not poisoned");
        let mut found: Vec<Map<String, Value>> = items
            .values()
            .filter(|item| item.get("callId").and_then(Value::as_str) == Some(call_id))
            .map(RecordItem::to_json)
            .collect();
        found.sort_by_key(|i| i.get("id").and_then(Value::as_i64));
        Ok(found)
    }
}

impl CallsByBinding for MemoryRecordStore {
    async fn by_customer_bind_id(
        &self,
        customer_bind_id: &str,
    ) -> Result<Vec<Map<String, Value>>, PortError> {
        injected("Query", &self.fail_next)?;
        Ok(self.calls_where("customerBindId", customer_bind_id))
    }

    async fn by_bind_id(&self, bind_id: &str) -> Result<Vec<Map<String, Value>>, PortError> {
        injected("Scan", &self.fail_next)?;
        Ok(self.calls_where("bindId", bind_id))
    }
}

impl MemoryRecordStore {
    /// The items whose `attribute` is `value`, oldest call first (as the index orders them).
    fn calls_where(&self, attribute: &str, value: &str) -> Vec<Map<String, Value>> {
        let items = self.items.lock().expect("not poisoned");
        let mut found: Vec<Map<String, Value>> = items
            .values()
            .filter(|item| item.get(attribute).and_then(Value::as_str) == Some(value))
            .map(RecordItem::to_json)
            .collect();
        found.sort_by_key(|i| {
            (
                i.get("startAt").and_then(Value::as_i64),
                i.get("id").and_then(Value::as_i64),
            )
        });
        found
    }
}

/// A binding-error table in a map.
#[derive(Default)]
pub struct MemoryBindingErrorStore {
    pub items: Mutex<HashMap<String, RecordItem>>,
    pub fail_next: AtomicUsize,
}

impl BindingErrorStore for MemoryBindingErrorStore {
    async fn put_new(&self, item: RecordItem) -> Result<PutOutcome, PortError> {
        injected("PutItem", &self.fail_next)?;
        let request_id = item
            .get("requestId")
            .and_then(Value::as_str)
            .ok_or_else(|| PortError::new("PutItem", "no requestId"))?
            .to_owned();
        let mut items = self.items.lock().expect("not poisoned");
        if let Some(old) = items.get(&request_id) {
            return Ok(PutOutcome::Duplicate(Box::new(MemoryRecordStore::stored(
                old,
            ))));
        }
        items.insert(request_id, item);
        Ok(PutOutcome::Created)
    }
}

/// A queue in a vector.
#[derive(Default)]
pub struct MemoryJobQueue {
    pub jobs: Mutex<Vec<RecordingJob>>,
    pub fail_next: AtomicUsize,
}

impl JobQueue for MemoryJobQueue {
    async fn send(&self, job: &RecordingJob) -> Result<(), PortError> {
        injected("SendMessage", &self.fail_next)?;
        self.jobs.lock().expect("not poisoned").push(job.clone());
        Ok(())
    }

    async fn send_raw(&self, body: &str) -> Result<(), PortError> {
        let job = serde_json::from_str(body)
            .map_err(|e| PortError::new("SendMessage", format!("not a job: {e}")))?;
        self.send(&job).await
    }

    async fn retry_later(
        &self,
        _receipt_handle: &str,
        _delay_seconds: u32,
    ) -> Result<(), PortError> {
        Ok(())
    }
}

/// S3's longest object key, in bytes.
const MAX_KEY_BYTES: usize = 1024;

/// A bucket in a map (single-part objects; multipart calls are refused).
#[derive(Default)]
pub struct MemoryObjectStore {
    pub objects: Mutex<HashMap<String, (Bytes, ObjectMeta)>>,
    pub fail_next: AtomicUsize,
}

impl ObjectStore for MemoryObjectStore {
    async fn list(&self, prefix: &str) -> Result<Vec<String>, PortError> {
        let objects = self.objects.lock().expect("not poisoned");
        let mut keys: Vec<String> = objects
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect();
        keys.sort();
        Ok(keys)
    }

    async fn put(&self, key: &str, body: Bytes, meta: &ObjectMeta) -> Result<(), PortError> {
        injected("PutObject", &self.fail_next)?;
        // As S3 refuses it (KeyTooLongError), on every try.
        if key.len() > MAX_KEY_BYTES {
            return Err(PortError::new("PutObject", "KeyTooLongError"));
        }
        self.objects
            .lock()
            .expect("not poisoned")
            .insert(key.to_owned(), (body, meta.clone()));
        Ok(())
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectInfo>, PortError> {
        Ok(self
            .objects
            .lock()
            .expect("not poisoned")
            .get(key)
            .map(|(body, meta)| ObjectInfo {
                size: body.len() as u64,
                sha256: meta.sha256.clone(),
                etag: None,
            }))
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, PortError> {
        injected("GetObject", &self.fail_next)?;
        let objects = self.objects.lock().expect("not poisoned");
        Ok(objects.get(key).map(|(body, _)| body.clone()))
    }

    async fn start_multipart(&self, _key: &str, _meta: &ObjectMeta) -> Result<String, PortError> {
        Err(PortError::new(
            "CreateMultipartUpload",
            "not supported in memory",
        ))
    }

    async fn upload_part(
        &self,
        _key: &str,
        _upload_id: &str,
        _number: i32,
        _body: Bytes,
    ) -> Result<UploadedPart, PortError> {
        Err(PortError::new("UploadPart", "not supported in memory"))
    }

    async fn upload_part_stream(
        &self,
        _key: &str,
        _upload_id: &str,
        _number: i32,
        _length: u64,
        _body: PartStream,
    ) -> Result<UploadedPart, PortError> {
        Err(PortError::new("UploadPart", "not supported in memory"))
    }

    async fn complete_multipart(
        &self,
        _key: &str,
        _upload_id: &str,
        _parts: &[UploadedPart],
    ) -> Result<(), PortError> {
        Err(PortError::new(
            "CompleteMultipartUpload",
            "not supported in memory",
        ))
    }

    async fn abort_multipart(&self, _key: &str, _upload_id: &str) -> Result<(), PortError> {
        Ok(())
    }
}

/// A bus that keeps what it accepted, in order. `refuse_entries` refuses that many entries
/// one by one (EventBridge's partial failure); `fail_next` fails whole puts.
#[derive(Default)]
pub struct MemoryEventBus {
    pub accepted: Mutex<Vec<Event>>,
    pub puts: AtomicUsize,
    pub refuse_entries: AtomicUsize,
    pub fail_next: AtomicUsize,
}

/// Events described instead of published, with the reason.
#[derive(Default)]
pub struct MemoryEventFailures {
    pub described: Mutex<Vec<(String, String)>>,
}

impl EventFailures for MemoryEventFailures {
    async fn describe(&self, event: &Event, reason: &str) -> Result<(), PortError> {
        let mut described = self.described.lock().expect("not poisoned");
        described.push((event.id.clone(), reason.to_owned()));
        Ok(())
    }
}

impl MemoryEventBus {
    pub fn ids(&self) -> Vec<String> {
        let accepted = self.accepted.lock().expect("not poisoned");
        accepted.iter().map(|e| e.id.clone()).collect()
    }
}

impl EventBus for MemoryEventBus {
    async fn put(&self, events: &[&Event]) -> Result<Vec<Result<(), EntryRefused>>, PortError> {
        injected("PutEvents", &self.fail_next)?;
        // As EventBridge refuses the whole request, on every try.
        let bytes: usize = events.iter().map(|e| e.entry_bytes()).sum();
        if events.len() > EVENTS_PER_PUT || bytes > PUT_EVENTS_MAX_BYTES {
            return Err(PortError::new(
                "PutEvents",
                format!(
                    "ValidationException: {} entries of {bytes} bytes",
                    events.len()
                ),
            ));
        }
        self.puts.fetch_add(1, Ordering::SeqCst);
        let mut accepted = self.accepted.lock().expect("not poisoned");
        Ok(events
            .iter()
            .map(|event| {
                if injected("PutEvents", &self.refuse_entries).is_err() {
                    return Err(EntryRefused {
                        code: "ThrottlingException".into(),
                        message: "injected refusal".into(),
                    });
                }
                accepted.push((*event).clone());
                Ok(())
            })
            .collect())
    }
}
