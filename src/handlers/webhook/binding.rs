//! The binding-error push: stored once per `requestId`, as the call record is once per `id`.

use time::OffsetDateTime;

use super::{unavailable, PushOutcome, Quarantine, Webhook};
use crate::domain::binding::{binding_error_item, ParsedBindingError};
use crate::domain::canary::{is_canary_request_id, CANARY_TTL};
use crate::domain::push::{InvalidPush, PushKind};
use crate::domain::recording::binding_conflict_key;
use crate::ports::{BindingErrorStore, JobQueue, ObjectStore, PutOutcome, RecordStore};

impl<S: RecordStore, Q: JobQueue, O: ObjectStore, B: BindingErrorStore> Webhook<S, Q, O, B> {
    pub(super) async fn store_binding_error(
        &self,
        body: &[u8],
        parsed: ParsedBindingError,
        received_at: OffsetDateTime,
    ) -> PushOutcome {
        let request_id = parsed.error.request_id.clone();
        let code = parsed.error.code;
        let payload_sha256 = parsed.payload_sha256.clone();
        let mut item = binding_error_item(parsed, received_at, self.settings.nxcloud_offset);
        if is_canary_request_id(&request_id) {
            item.expire_after(received_at, CANARY_TTL);
        } else if let Some(retention) = self.settings.retention {
            item.expire_after(received_at, retention);
        }
        match self.bindings.put_new(item).await {
            Err(e) => unavailable(&e),
            Ok(PutOutcome::Created) => PushOutcome::BindingErrorStored { request_id, code },
            Ok(PutOutcome::Refused(reason)) => {
                let why = InvalidPush::Unstorable {
                    push: "binding error",
                    reason,
                };
                let kind = (PushKind::BindingError, Quarantine::Unstorable);
                self.quarantine(body, why, received_at, kind).await
            }
            Ok(PutOutcome::Duplicate(stored)) => {
                let conflict = stored.payload_sha256.as_deref() != Some(payload_sha256.as_str());
                if conflict {
                    let key = binding_conflict_key(&request_id, &payload_sha256);
                    let kept = ("request-id", request_id.clone());
                    if let Err(e) = self
                        .keep_conflict(&key, body, kept, &stored, received_at)
                        .await
                    {
                        return unavailable(&e);
                    }
                }
                PushOutcome::BindingErrorDuplicate {
                    request_id,
                    conflict,
                }
            }
        }
    }
}
