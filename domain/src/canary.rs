//! Canary pushes: the records the stack's own checks push through its public path (the
//! pre-traffic hook of a deployment, `pnsctl smoke`). They are stored as any push is, but
//! expire within the hour, make no recording job, and publish their events under their own
//! source, which the lake's rule and consumers' rules do not match.

use std::time::Duration;

use serde_json::json;

/// Call record ids from here up are reserved for canaries (NXCLOUD's are far below).
pub const CANARY_IDS_FROM: i64 = 9_000_000_000_000_000_000;

/// Binding-error `requestId`s that start with this are canaries.
pub const CANARY_REQUEST_PREFIX: &str = "pns-cdr-canary-";

/// How long a canary item lives (DynamoDB's TTL removes it some time after).
pub const CANARY_TTL: Duration = Duration::from_secs(3600);

/// The `source` of a canary's events.
pub const CANARY_SOURCE: &str = "pns-cdr.canary";

pub fn is_canary_id(id: i64) -> bool {
    id >= CANARY_IDS_FROM
}

pub fn is_canary_request_id(request_id: &str) -> bool {
    request_id.starts_with(CANARY_REQUEST_PREFIX)
}

/// A fresh canary record id for `unique` (milliseconds since the epoch, say).
pub fn canary_id(unique: u64) -> i64 {
    CANARY_IDS_FROM + (unique % 100_000_000_000_000_000) as i64
}

/// A canary call record: an answered call without a recording. Its numbers are not phone
/// numbers (a canary must never look like a person's call).
pub fn canary_call_record(id: i64, start_at: i64) -> String {
    json!({
        "id": id, "businessId": "pns-cdr-canary", "customerBindId": "pns-cdr-canary",
        "bindId": "pns-cdr-canary", "callId": format!("canary-{id}"),
        "did": "0", "caller": "0", "callee": "0",
        "callStatus": 1, "callStatusMsg": "canary", "duration": 1,
        "startAt": start_at, "answerAt": start_at, "hangupAt": start_at + 1,
        "hangupCause": "NORMAL_CLEARING", "hangupCode": 16, "hangup": 0, "recordFile": ""
    })
    .to_string()
}

/// A canary binding error for `unique`.
pub fn canary_binding_error(unique: u64) -> (String, String) {
    let request_id = format!("{CANARY_REQUEST_PREFIX}{unique}");
    let body = json!({
        "code": 10013, "msg": "binding not exist", "requestId": request_id,
        "data": {"action": "queryAXB", "requestParams": {"caller": "0", "did": "0"}}
    })
    .to_string();
    (request_id, body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binding::BindingError;
    use crate::cdr::CallRecord;

    #[test]
    fn canaries_are_valid_pushes_in_their_reserved_ranges() {
        let id = canary_id(1_764_460_800_123);
        assert!(is_canary_id(id) && !is_canary_id(45));
        let record = CallRecord::parse(canary_call_record(id, 1_764_460_800).as_bytes()).unwrap();
        assert_eq!(record.record.id, id);
        assert_eq!(record.record.recording_url(), None);
        let (request_id, body) = canary_binding_error(7);
        let error = BindingError::parse(body.as_bytes()).unwrap().error;
        assert_eq!(error.request_id, request_id);
        assert!(is_canary_request_id(&request_id) && !is_canary_request_id("1640920940635361280"));
        assert!(is_canary_id(canary_id(u64::MAX)), "no overflow");
    }
}
