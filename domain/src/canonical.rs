//! The canonical JSON form of a push and its digest: what tells an exact retry from a
//! conflicting one, whatever the sender's key order or white space.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// SHA-256 (hex) of the pushed object's canonical form.
pub(crate) fn payload_sha256(object: &Map<String, Value>) -> String {
    let mut canonical = Vec::new();
    write_object(object, &mut canonical);
    sha256_hex(&canonical)
}

/// Compact JSON with object keys sorted at every depth, so the digest depends neither on the
/// sender's key order nor on which map type serde_json was built with.
fn write_canonical(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Object(map) => write_object(map, out),
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

fn write_object(map: &Map<String, Value>, out: &mut Vec<u8>) {
    let mut entries: Vec<_> = map.iter().collect();
    entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
    out.push(b'{');
    for (i, (k, v)) in entries.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        serde_json::to_writer(&mut *out, k).expect("a key serialises");
        out.push(b':');
        write_canonical(v, out);
    }
    out.push(b'}');
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}
