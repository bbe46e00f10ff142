//! Phone numbers as personal data: the keyed hash that stands for a number where the number
//! itself must not go (events, the lake, the S3 index of kept bodies), and the erasure of a
//! number from a stored item.

use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha2::Sha256;

/// What an erased number field holds instead of the number.
pub const ERASED: &str = "ERASED";

/// The attributes of a call record that hold a party's real number.
pub const CALL_NUMBER_FIELDS: [&str; 2] = ["caller", "callee"];
/// The attribute of a binding error that holds the caller's real number.
pub const BINDING_NUMBER_FIELDS: [&str; 1] = ["caller"];

/// The prefix of the index of kept bodies by number: an empty object
/// `number-index/<keyed hash>/<body key>` beside each quarantined or conflicting body, so an
/// erasure lists one prefix instead of reading every body.
pub const NUMBER_INDEX_PREFIX: &str = "number-index/";

/// A number as digits only: what NXCLOUD sends, with `+`, spaces, dashes and brackets
/// tolerated. `None` when no digit is left (an erased field, a masked one is not a number).
pub fn normalize(number: &str) -> Option<String> {
    if number.chars().any(|c| c == '*') {
        return None;
    }
    let digits: String = number.chars().filter(char::is_ascii_digit).collect();
    let only_separators = number
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, '+' | ' ' | '-' | '(' | ')' | '.'));
    (!digits.is_empty() && only_separators).then_some(digits)
}

/// The HMAC keys of numbers, from the stack's secret: `current` or `current,previous,…`.
/// Hashes are made with the current key; lookups try every key, so a rotation keeps finding
/// what older keys hashed until it expires.
#[derive(Clone, PartialEq, Eq)]
pub struct NumberKeys(Vec<Vec<u8>>);

/// The secret holds no usable key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the number key secret holds no key of at least 32 characters")]
pub struct NoNumberKey;

impl NumberKeys {
    pub fn parse(secret: &str) -> Result<Self, NoNumberKey> {
        let keys: Vec<Vec<u8>> = secret
            .split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .map(|k| k.as_bytes().to_vec())
            .collect();
        // Short keys would make the hashes guessable from the few billion numbers there are.
        if keys.is_empty() || keys.iter().any(|k| k.len() < 32) {
            return Err(NoNumberKey);
        }
        Ok(Self(keys))
    }

    /// The number's keyed hash with the current key (hex); `None` when it is no number.
    pub fn hash(&self, number: &str) -> Option<String> {
        let digits = normalize(number)?;
        Some(hmac_hex(&self.0[0], &digits))
    }

    /// The number's hashes under every key, current first.
    pub fn hashes(&self, number: &str) -> Vec<String> {
        let Some(digits) = normalize(number) else {
            return Vec::new();
        };
        self.0.iter().map(|key| hmac_hex(key, &digits)).collect()
    }

    /// Any text's keyed hash with the current key: how an erasure's audit names its selector.
    pub fn hash_text(&self, text: &str) -> String {
        hmac_hex(&self.0[0], text)
    }
}

/// Never prints the keys.
impl std::fmt::Debug for NumberKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NumberKeys({} keys)", self.0.len())
    }
}

fn hmac_hex(key: &[u8], text: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(text.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// The numbers a push body holds, as digits: every string or integer under a key named
/// `caller` or `callee`, at any depth. Works on bodies that failed validation too, as long
/// as they are JSON.
pub fn numbers_in_body(body: &[u8]) -> Vec<String> {
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    collect_numbers(&value, &mut found);
    found.sort();
    found.dedup();
    found
}

fn collect_numbers(value: &Value, found: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                if CALL_NUMBER_FIELDS.contains(&key.as_str()) {
                    let text = match value {
                        Value::String(s) => Some(s.clone()),
                        Value::Number(n) => Some(n.to_string()),
                        _ => None,
                    };
                    found.extend(text.as_deref().and_then(normalize));
                }
                collect_numbers(value, found);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_numbers(v, found)),
        _ => {}
    }
}

/// Whether `value` is one of `numbers` (digits), in any form [`normalize`] accepts.
fn is_one_of(value: &str, numbers: &[String]) -> bool {
    normalize(value).is_some_and(|digits| numbers.contains(&digits))
}

/// Replaces, in an item, the named number fields and every other string (at any depth, in
/// `extraFields` too) that is one of `numbers`, by [`ERASED`]. Returns how many it replaced.
pub fn erase_numbers(item: &mut Map<String, Value>, fields: &[&str], numbers: &[String]) -> usize {
    let mut replaced = 0;
    for field in fields {
        if let Some(value) = item.get_mut(*field) {
            if value.as_str() != Some(ERASED) && !value.is_null() {
                *value = ERASED.into();
                replaced += 1;
            }
        }
    }
    for value in item.values_mut() {
        replaced += erase_matching(value, numbers);
    }
    replaced
}

fn erase_matching(value: &mut Value, numbers: &[String]) -> usize {
    match value {
        Value::String(s) if is_one_of(s, numbers) => {
            *value = ERASED.into();
            1
        }
        Value::Object(map) => map.values_mut().map(|v| erase_matching(v, numbers)).sum(),
        Value::Array(items) => items.iter_mut().map(|v| erase_matching(v, numbers)).sum(),
        _ => 0,
    }
}

/// Whether an item holds one of `numbers` in the named fields or anywhere else.
pub fn holds_number(item: &Map<String, Value>, numbers: &[String]) -> bool {
    fn any(value: &Value, numbers: &[String]) -> bool {
        match value {
            Value::String(s) => is_one_of(s, numbers),
            Value::Object(map) => map.values().any(|v| any(v, numbers)),
            Value::Array(items) => items.iter().any(|v| any(v, numbers)),
            _ => false,
        }
    }
    item.values().any(|v| any(v, numbers))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const KEY: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn numbers_are_digits_whatever_the_separators() {
        assert_eq!(normalize("85255501234").as_deref(), Some("85255501234"));
        assert_eq!(normalize("+852 5550-1234").as_deref(), Some("85255501234"));
        assert_eq!(normalize("(852) 5550 1234").as_deref(), Some("85255501234"));
        for not_a_number in ["", ERASED, "*******1234", "abc123", "+"] {
            assert_eq!(normalize(not_a_number), None, "{not_a_number}");
        }
    }

    #[test]
    fn hashes_are_keyed_stable_and_tried_under_every_key() {
        let keys = NumberKeys::parse(KEY).unwrap();
        let h = keys.hash("+852 55501234").unwrap();
        assert_eq!(h.len(), 64);
        assert_eq!(keys.hash("85255501234").unwrap(), h, "one number, one hash");
        assert_ne!(keys.hash("85255501235").unwrap(), h);
        let other = NumberKeys::parse(&KEY.replace('0', "x")).unwrap();
        assert_ne!(other.hash("85255501234").unwrap(), h, "keyed");
        let rotated = NumberKeys::parse(&format!("{},{KEY}", KEY.replace('0', "x"))).unwrap();
        assert_eq!(rotated.hashes("85255501234")[1], h);
        assert_eq!(keys.hash(ERASED), None);
        assert!(NumberKeys::parse("short").is_err());
        assert!(NumberKeys::parse(" , ").is_err());
        assert!(!format!("{keys:?}").contains(KEY));
    }

    #[test]
    fn a_bodys_numbers_are_found_at_any_depth_valid_or_not() {
        let body = json!({"id": "not a number", "caller": "85255501234", "callee": 85255509876u64,
            "data": {"requestParams": {"caller": "+852 5550 1111", "did": "85299999999"}}});
        assert_eq!(
            numbers_in_body(body.to_string().as_bytes()),
            ["85255501111", "85255501234", "85255509876"]
        );
        assert!(numbers_in_body(b"not json").is_empty());
    }

    #[test]
    fn erasing_replaces_the_fields_and_every_copy_of_the_number() {
        let mut item = json!({"id": 45, "caller": "85255501234", "callee": "85255509876",
            "did": "85235757584", "duration": 6,
            "extraFields": {"forwardedFrom": "+852 5550 1234", "note": ["85255501234"]}})
        .as_object()
        .unwrap()
        .clone();
        let numbers = vec!["85255501234".to_owned()];
        assert!(holds_number(&item, &numbers));
        assert_eq!(erase_numbers(&mut item, &CALL_NUMBER_FIELDS, &numbers), 4);
        assert_eq!(item["caller"], ERASED);
        assert_eq!(
            item["callee"], ERASED,
            "a named field goes whatever it holds"
        );
        assert_eq!(item["did"], "85235757584", "the business's number stays");
        assert_eq!(item["extraFields"]["forwardedFrom"], ERASED);
        assert_eq!(item["extraFields"]["note"][0], ERASED);
        assert!(!holds_number(&item, &numbers));
        assert_eq!(
            erase_numbers(&mut item, &CALL_NUMBER_FIELDS, &numbers),
            0,
            "once"
        );
    }
}
