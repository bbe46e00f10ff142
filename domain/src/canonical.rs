//! The canonical JSON form of a push and its digest: what tells an exact retry from a
//! conflicting one, whatever the sender's key order or white space.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// Compact JSON with object keys sorted at every depth, so the digest does not depend on the
/// sender's key order or on which map type serde_json was built with.
fn write_canonical(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Object(map) => write_canonical_object(map, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(v, out);
            }
            out.push(b']');
        }
        scalar => serde_json::to_writer(&mut *out, scalar).expect("a scalar serialises"),
    }
}

/// A nested object: its keys sorted here.
fn write_canonical_object(map: &Map<String, Value>, out: &mut Vec<u8>) {
    let mut entries: Vec<_> = map.iter().collect();
    entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
    write_entries(entries.into_iter(), out);
}

pub(crate) fn write_entries<'a, K: AsRef<str>>(
    entries: impl Iterator<Item = (K, &'a Value)>,
    out: &mut Vec<u8>,
) {
    out.push(b'{');
    for (i, (k, v)) in entries.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        serde_json::to_writer(&mut *out, k.as_ref()).expect("a string serialises");
        out.push(b':');
        write_canonical(v, out);
    }
    out.push(b'}');
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let mut out = [0u8; 64];
    hex::encode_to_slice(Sha256::digest(bytes), &mut out).expect("64 digits for 32 bytes");
    String::from_utf8(out.to_vec()).expect("hex digits are ASCII")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_digest_is_hex_encode() {
        let example = include_bytes!("../../events/bodies/call-result.json");
        for body in [&b""[..], b"abc", example] {
            assert_eq!(sha256_hex(body), hex::encode(Sha256::digest(body)));
        }
    }
}
