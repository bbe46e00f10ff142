//! Generated inputs for the push parser: it never panics, and what it accepts round-trips.

use std::collections::BTreeMap;

use pns_cdr::domain::cdr::CallRecord;
use proptest::collection::{btree_map, vec};
use proptest::option;
use proptest::prelude::*;
use serde_json::Value;

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..8).prop_map(Value::Array),
            btree_map(".{0,10}", inner, 0..8).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Objects that use the real field names with values of any type.
fn push_like() -> impl Strategy<Value = Value> {
    let names = prop::sample::select(vec![
        "id",
        "businessId",
        "customerBindId",
        "bindId",
        "callId",
        "did",
        "caller",
        "callee",
        "callStatus",
        "callStatusMsg",
        "duration",
        "startAt",
        "answerAt",
        "hangupAt",
        "hangupCause",
        "hangupCode",
        "hangup",
        "recordFile",
        "extensionCaller",
    ]);
    btree_map(names, json_value(), 0..19)
        .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()))
}

fn extra_fields() -> impl Strategy<Value = BTreeMap<String, Value>> {
    // Unknown names only: a known name would be parsed as the known field.
    btree_map("x[A-Za-z0-9]{0,8}", json_value(), 0..4)
}

prop_compose! {
    fn call_record()(
        id in 1..=i64::MAX,
        strings in vec(option::of(".{0,24}"), 10),
        integers in vec(option::of(any::<i64>()), 7),
        extra in extra_fields(),
    ) -> CallRecord {
        let s = |i: usize| strings[i].clone();
        CallRecord {
            id,
            business_id: s(0), customer_bind_id: s(1), bind_id: s(2), call_id: s(3), did: s(4),
            caller: s(5), callee: s(6), call_status_msg: s(7), hangup_cause: s(8), record_file: s(9),
            call_status: integers[0], duration: integers[1], start_at: integers[2], answer_at: integers[3],
            hangup_at: integers[4], hangup_code: integers[5], hangup: integers[6],
            extra,
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn never_panics_on_arbitrary_bytes(bytes in vec(any::<u8>(), 0..4096)) {
        let _ = CallRecord::parse(&bytes);
    }

    #[test]
    fn never_panics_on_arbitrary_json(value in json_value()) {
        let _ = CallRecord::parse(&serde_json::to_vec(&value).unwrap());
    }

    #[test]
    fn push_like_objects_are_accepted_only_with_a_positive_integer_id(value in push_like()) {
        let result = CallRecord::parse(&serde_json::to_vec(&value).unwrap());
        let id_ok = match &value["id"] {
            Value::Number(n) => n.as_i64().is_some_and(|i| i > 0),
            Value::String(s) => s.trim().parse::<i64>().is_ok_and(|i| i > 0),
            _ => false,
        };
        if !id_ok {
            prop_assert!(result.is_err());
        }
        if let Ok(parsed) = result {
            prop_assert!(parsed.record.id > 0);
            prop_assert_eq!(parsed.payload_sha256.len(), 64);
        }
    }

    #[test]
    fn a_record_serialised_and_parsed_back_is_unchanged(record in call_record()) {
        let bytes = serde_json::to_vec(&record).unwrap();
        let parsed = CallRecord::parse(&bytes).unwrap();
        prop_assert_eq!(parsed.record, record);
    }

    #[test]
    fn integers_written_as_strings_parse_like_integers(record in call_record()) {
        let mut value = serde_json::to_value(&record).unwrap();
        for field in ["id", "callStatus", "duration", "startAt", "answerAt", "hangupAt", "hangupCode", "hangup"] {
            if let Some(n) = value.get(field).and_then(Value::as_i64) {
                value[field] = Value::String(n.to_string());
            }
        }
        let parsed = CallRecord::parse(&serde_json::to_vec(&value).unwrap()).unwrap();
        prop_assert_eq!(parsed.record, record);
    }
}
