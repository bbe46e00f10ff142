//! The webhook's hand-written fast paths, and why each exists: the one place that says so.
//!
//! Every push runs them once, and `make bench-webhook` holds the webhook's CPU per push to
//! 2.5× of `serde_json::from_slice` parsing the same body (BENCHMARKS.md, section 1). Each
//! replaced a general tool that did the same work with more allocations or instructions;
//! each has a test that compares it with that tool on many inputs.
//! - `cdr::CallRecord::parse` reads the top-level object into borrowed keys and owned
//!   values once, sorts it, writes the canonical form and moves each value into its field.
//!   `Value` → clone → canonical write → `from_value` (whose `flatten` buffers every field)
//!   was 40 % of the handler.
//! - `canonical::sha256_hex` writes the digest with `hex::encode_to_slice`: no per-char
//!   collect.
//! - `item::into_record_item` builds the item in one pass, in key order, with `&'static str`
//!   attribute names: the 31 `String` names of a `Map<String, Value>` were 31 allocations.
//! - [`push_padded`] writes zero-padded numbers for `item::format_time` (four per push) and
//!   `recording::recording_key`: padded `format!` and `time`'s RFC 3339 formatter took about
//!   twice the instructions.
//! - `pns_cdr::metrics::emf_line` (in the shipped crate) writes the metrics line directly
//!   instead of building a `serde_json::Value` tree of small maps.

/// Appends `n` in decimal, zero-padded to at least `width` digits.
pub(crate) fn push_padded(out: &mut String, n: u32, width: u32) {
    let mut unit = 10u64.pow(width.saturating_sub(1));
    while unit * 10 <= u64::from(n) {
        unit *= 10;
    }
    while unit > 0 {
        let digit = (u64::from(n) / unit % 10) as u8;
        out.push(char::from(b'0' + digit));
        unit /= 10;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padded_as_format_would() {
        let mut s = String::new();
        for (n, width) in [(0, 4), (7, 2), (12, 2), (123, 2), (u32::MAX, 4)] {
            s.clear();
            push_padded(&mut s, n, width);
            assert_eq!(s, format!("{n:0width$}", width = width as usize));
        }
    }
}
