//! The canonical JSON form of a push and its digest: what tells an exact retry from a
//! conflicting one, whatever the sender's key order or white space.

use std::borrow::Cow;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// Compact JSON with object keys sorted at every depth, so the digest does not depend on the
/// sender's key order or on which map type serde_json was built with.
pub(crate) fn write_canonical(v: &Value, out: &mut Vec<u8>) {
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
        Value::String(s) => write_str(s, out),
        scalar => serde_json::to_writer(&mut *out, scalar).expect("a scalar serialises"),
    }
}

/// A nested object: its keys sorted here.
fn write_canonical_object(map: &Map<String, Value>, out: &mut Vec<u8>) {
    let mut entries: Vec<_> = map.iter().collect();
    entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
    write_entries(entries.into_iter(), out);
}

/// An object key, written as `serde_json` writes it.
pub(crate) trait CanonicalKey {
    fn write_key(&self, out: &mut Vec<u8>);
}

impl CanonicalKey for &String {
    fn write_key(&self, out: &mut Vec<u8>) {
        write_str(self, out);
    }
}

/// A key of the pushed body. `serde_json` borrows a key only when it holds no escape, and a
/// JSON string holds no raw control character, so a borrowed key needs no escape scan (a fast
/// path: see `crate::fast`).
impl CanonicalKey for &Cow<'_, str> {
    fn write_key(&self, out: &mut Vec<u8>) {
        match self {
            Cow::Borrowed(plain) => write_quoted(plain, out),
            Cow::Owned(key) => write_str(key, out),
        }
    }
}

pub(crate) fn write_entries<'a, K: CanonicalKey>(
    entries: impl Iterator<Item = (K, &'a Value)>,
    out: &mut Vec<u8>,
) {
    out.push(b'{');
    for (i, (k, v)) in entries.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        k.write_key(out);
        out.push(b':');
        write_canonical(v, out);
    }
    out.push(b'}');
}

/// A JSON string as `serde_json` writes it. Nearly every string in a push needs no escape, and
/// for those the bytes are copied as they are, after one scan (a fast path: see `crate::fast`).
fn write_str(s: &str, out: &mut Vec<u8>) {
    if needs_escape(s.as_bytes()) {
        serde_json::to_writer(&mut *out, s).expect("a string serialises");
    } else {
        write_quoted(s, out);
    }
}

/// `s` between quotes, as it is: for a string known to need no escape.
pub(crate) fn write_quoted(s: &str, out: &mut Vec<u8>) {
    out.reserve(s.len() + 2);
    out.push(b'"');
    out.extend_from_slice(s.as_bytes());
    out.push(b'"');
}

/// Whether `bytes` hold a control character, `"` or `\`: eight bytes at a time, as
/// `serde_json`'s reader looks for escapes.
fn needs_escape(bytes: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    // The high bit of each byte of `word` below `n` (n ≤ 0x80) is set in the result.
    let below = |word: u64, n: u8| word.wrapping_sub(ONES * u64::from(n)) & !word & HIGH;
    let is = |word: u64, b: u8| below(word ^ (ONES * u64::from(b)), 1);
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let word = u64::from_ne_bytes(chunk.try_into().expect("eight bytes"));
        if below(word, 0x20) | is(word, b'"') | is(word, b'\\') != 0 {
            return true;
        }
    }
    chunks
        .remainder()
        .iter()
        .any(|&b| b < 0x20 || b == b'"' || b == b'\\')
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
    fn strings_are_written_as_serde_json_writes_them() {
        let mut samples: Vec<String> = (0u32..0x300)
            .filter_map(char::from_u32)
            .map(|c| format!("a{c}b"))
            .collect();
        samples
            .extend(["", "plain", "\"", "\\", "\u{7f}", "é", "\u{2028}", "日本"].map(String::from));
        // Each escaped character at every position of a word, in strings of every length.
        for len in 1..20 {
            for at in 0..len {
                for c in ['\0', '\u{1f}', '"', '\\', ' ', '\u{7f}', 'é'] {
                    let mut s: String = "abcdefghijklmnopqrstuvwxyz".chars().take(len).collect();
                    s.replace_range(at..=at, &c.to_string());
                    samples.push(s);
                }
            }
        }
        for s in samples {
            let mut ours = Vec::new();
            write_str(&s, &mut ours);
            assert_eq!(ours, serde_json::to_vec(&s).unwrap(), "{s:?}");
        }
    }

    #[test]
    fn hex_digest_is_hex_encode() {
        let example = include_bytes!("../../events/bodies/call-result.json");
        for body in [&b""[..], b"abc", example] {
            assert_eq!(sha256_hex(body), hex::encode(Sha256::digest(body)));
        }
    }
}
