//! The webhook's hand-written fast paths, and why each exists: the one place that says so.
//!
//! Every push runs them once, and `make bench-cpu` holds the webhook's CPU per push to 2.5×
//! of `serde_json::from_slice` parsing the same body (BENCHMARKS.md, section 1). Each
//! replaced a general tool that did the same work with more allocations or instructions;
//! each has a test that compares it with that tool on many inputs.
//! - `cdr::CallRecord::parse` reads the top-level object once, putting each value of a
//!   declared name straight into that name's slot (`cdr::declared_slot`, a perfect hash of
//!   the name's length and three of its bytes, then one comparison), writes the canonical
//!   form from the slots and moves each value into its field. `Value` → clone → canonical
//!   write → `from_value` (whose `flatten` buffers every field) was 40 % of the handler;
//!   keeping every field in arrival order and sorting them all (comparing most keys as one
//!   integer, `cdr::key_head`) was a fifth of what was left, and a binary search over the
//!   names mispredicted at nearly every step. Only undeclared keys are still sorted.
//! - `canonical::write_str` copies a string that needs no escape as it is, after a scan
//!   eight bytes at a time; `serde_json`'s writer looks every byte up in its escape table. A
//!   key borrowed from the body, or a declared name, is copied without the scan
//!   (`canonical::CanonicalKey`).
//! - `item::format_time` writes its digits into a fixed `YYYY-MM-DDThh:mm:ssZ` template
//!   (four per push); `time`'s RFC 3339 formatter took about twice the instructions.
//! - `canonical::sha256_hex` writes the digest with `hex::encode_to_slice`: no per-char
//!   collect.
//! - `url_policy::UrlPolicy::admits` answers for a plainly admitted `https://<host>/…` without
//!   building a `Url` (the full parse was about a tenth of the handler); every other URL,
//!   every refusal included, still goes through the parser. The archiver parses every URL
//!   in full before fetching it, and again at every redirect.
//! - `item::into_record_item` builds the item in one pass, in key order, with `&'static str`
//!   attribute names: the 31 `String` names of a `Map<String, Value>` were 31 allocations.
//! - [`push_padded`] writes the zero-padded numbers of `recording::recording_key` (the id
//!   included): `format!` took about twice the instructions.
//! - `pns_cdr::metrics::emf_line` (in the shipped crate) writes the metrics line directly
//!   instead of building a `serde_json::Value` tree of small maps, and quotes the metric
//!   names without an escape scan (a test checks they are plain words).

/// Appends `n` in decimal, zero-padded to at least `width` digits: the digits are written
/// into a stack buffer from the right, then copied once.
pub(crate) fn push_padded(out: &mut String, n: u64, width: usize) {
    let mut digits = [b'0'; 20];
    let mut start = digits.len();
    let mut rest = n;
    loop {
        start -= 1;
        digits[start] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    for _ in digits.len()..width {
        out.push('0');
    }
    let start = start.min(digits.len().saturating_sub(width));
    out.push_str(std::str::from_utf8(&digits[start..]).expect("ASCII digits"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padded_as_format_would() {
        let mut s = String::new();
        for (n, width) in [
            (0, 4),
            (7, 2),
            (12, 2),
            (123, 2),
            (2026, 4),
            (u64::MAX, 4),
            (5, 30),
        ] {
            s.clear();
            push_padded(&mut s, n, width);
            assert_eq!(s, format!("{n:0width$}"));
        }
    }
}
