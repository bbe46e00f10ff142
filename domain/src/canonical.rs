//! The canonical JSON form of a push and its digest: what tells an exact retry from a
//! conflicting one, whatever the sender's key order or white space.
//!
//! The form is compact JSON with object keys sorted at every depth and the last of a repeated
//! key kept, as any JSON map reads it. Numbers are read from the body's own text, so two
//! bodies that differ only in digits a 64-bit float cannot hold still differ.

use std::collections::BTreeMap;

use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

/// SHA-256 (hex) of the canonical form of `body`, a JSON text already read once.
pub(crate) fn payload_sha256(body: &[u8]) -> Result<String, serde_json::Error> {
    let raw: &RawValue = serde_json::from_slice(body)?;
    let mut canonical = Vec::with_capacity(body.len());
    write_canonical(raw, &mut canonical)?;
    Ok(sha256_hex(&canonical))
}

fn write_canonical(raw: &RawValue, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
    let text = raw.get();
    match text.as_bytes().first() {
        Some(b'{') => {
            let map: BTreeMap<String, &RawValue> = serde_json::from_str(text)?;
            out.push(b'{');
            for (i, (key, value)) in map.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                serde_json::to_writer(&mut *out, &key)?;
                out.push(b':');
                write_canonical(value, out)?;
            }
            out.push(b'}');
        }
        Some(b'[') => {
            let items: Vec<&RawValue> = serde_json::from_str(text)?;
            out.push(b'[');
            for (i, item) in items.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out)?;
            }
            out.push(b']');
        }
        Some(b'"') => {
            let s: String = serde_json::from_str(text)?;
            serde_json::to_writer(&mut *out, &s)?;
        }
        Some(b'-' | b'0'..=b'9') => write_number(text, out)?,
        // `true`, `false`, `null`.
        _ => out.extend_from_slice(text.as_bytes()),
    }
    Ok(())
}

/// A number as `serde_json` writes the value it reads (so digests stored by earlier versions
/// hold), unless that value is not the number's exact value: then the number's exact value
/// in a normal form no written float can take for another value.
fn write_number(text: &str, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
    let number: serde_json::Number = serde_json::from_str(text)?;
    let written = serde_json::to_string(&number)?;
    let exact = Decimal::parse(text);
    if Decimal::parse(&written) == exact {
        out.extend_from_slice(written.as_bytes());
    } else {
        out.extend_from_slice(exact.to_string().as_bytes());
    }
    Ok(())
}

/// A JSON number's exact value: sign, significant digits (no leading or trailing zeros) and
/// the power of ten of the last one. Zero has no digits and no sign.
#[derive(Debug, PartialEq, Eq)]
struct Decimal {
    negative: bool,
    digits: String,
    exponent: i64,
}

impl Decimal {
    /// Reads JSON number syntax (`-?int(.frac)?([eE][+-]?exp)?`), which `text` has.
    fn parse(text: &str) -> Self {
        let (negative, rest) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (mantissa, exponent) = match rest.split_once(['e', 'E']) {
            Some((m, e)) => (m, e.trim_start_matches('+').parse::<i64>().unwrap_or(0)),
            None => (rest, 0),
        };
        let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        let all = format!("{int}{frac}");
        let trimmed = all.trim_end_matches('0');
        let exponent = exponent - frac.len() as i64 + (all.len() - trimmed.len()) as i64;
        let digits = trimmed.trim_start_matches('0').to_owned();
        match digits.is_empty() {
            true => Self {
                negative: false,
                digits,
                exponent: 0,
            },
            false => Self {
                negative,
                digits,
                exponent,
            },
        }
    }
}

impl std::fmt::Display for Decimal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sign = if self.negative { "-" } else { "" };
        match self.digits.is_empty() {
            true => f.write_str("0"),
            false => write!(f, "{sign}{}e{}", self.digits, self.exponent),
        }
    }
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(body: &str) -> String {
        payload_sha256(body.as_bytes()).unwrap()
    }

    #[test]
    fn numbers_a_float_holds_are_written_as_serde_json_writes_them() {
        for (text, written) in [
            ("1", "1"),
            ("-7", "-7"),
            ("18446744073709551615", "18446744073709551615"),
            ("1.5", "1.5"),
            ("1.50", "1.5"),
            ("1e2", "100.0"),
            ("1E+300", "1e+300"),
            ("0.1", "0.1"),
            ("-0.0", "-0.0"),
        ] {
            let mut out = Vec::new();
            write_number(text, &mut out).unwrap();
            assert_eq!(String::from_utf8(out).unwrap(), written, "{text}");
        }
    }

    #[test]
    fn numbers_beyond_a_float_keep_every_digit() {
        for (a, b) in [
            ("18446744073709551616", "18446744073709551617"),
            ("-9223372036854775809", "-9223372036854775810"),
            (
                "123456789012345678901234567890",
                "123456789012345678901234567891",
            ),
            ("0.10000000000000000001", "0.1"),
        ] {
            assert_ne!(
                digest(&format!(r#"{{"n":{a}}}"#)),
                digest(&format!(r#"{{"n":{b}}}"#)),
                "{a} {b}"
            );
        }
        // The same value spelt two ways is one value.
        assert_eq!(
            digest(r#"{"n":18446744073709551616}"#),
            digest(r#"{"n":1.8446744073709551616e19}"#)
        );
        assert_eq!(Decimal::parse("1200").to_string(), "12e2");
        assert_eq!(Decimal::parse("-0.00120e-1").to_string(), "-12e-5");
        assert_eq!(Decimal::parse("-0.0e5").to_string(), "0");
        // Beyond a float's range a number is not JSON this receiver reads at all.
        assert!(payload_sha256(br#"{"n":1e400}"#).is_err());
    }

    #[test]
    fn the_last_of_a_repeated_key_counts_at_every_depth() {
        assert_eq!(digest(r#"{"a":{"x":1,"x":2}}"#), digest(r#"{"a":{"x":2}}"#));
        assert_eq!(digest(r#"{"\u0061":1}"#), digest(r#"{"a":1}"#));
        assert_eq!(digest(r#"{"s":"\u00e9"}"#), digest(r#"{"s":"é"}"#));
    }
}
