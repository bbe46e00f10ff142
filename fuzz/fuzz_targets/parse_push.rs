//! `CallRecord::parse` on arbitrary bytes: never panics, and whatever it accepts has a
//! positive id and survives a round trip through its own serialised form unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;

use pns_cdr_domain::cdr;

fuzz_target!(|body: &[u8]| {
    let Ok(parsed) = cdr::CallRecord::parse(body) else {
        return;
    };
    assert!(parsed.record.id > 0);
    assert_eq!(parsed.payload_sha256.len(), 64);
    let again = serde_json::to_vec(&parsed.record).expect("a record serialises");
    let reparsed = cdr::CallRecord::parse(&again).expect("a serialised record parses");
    assert_eq!(reparsed.record, parsed.record);
});
