//! `UrlPolicy::check_url` on arbitrary text: never panics, and a URL it admits in production
//! is https to a host under `*.nxcloud.com` on port 443 without credentials, and passes the
//! re-check the archiver runs on every redirect hop; the local profile never panics either.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use url::Host;

use pns_cdr_domain::url_policy;

use url_policy::{UrlPolicy, UrlProfile, DEFAULT_RECORDING_HOSTS};

static PRODUCTION: LazyLock<UrlPolicy> =
    LazyLock::new(|| UrlPolicy::new(DEFAULT_RECORDING_HOSTS, UrlProfile::Production).unwrap());
static LOCAL: LazyLock<UrlPolicy> =
    LazyLock::new(|| UrlPolicy::new(DEFAULT_RECORDING_HOSTS, UrlProfile::Local).unwrap());

fuzz_target!(|data: &[u8]| {
    let raw = String::from_utf8_lossy(data);
    for policy in [&*LOCAL, &*PRODUCTION] {
        let _ = policy.check_url(&raw);
    }
    let Ok(url) = PRODUCTION.check_url(&raw) else {
        return;
    };
    assert_eq!(url.scheme(), "https", "{raw:?}");
    assert!(
        url.username().is_empty() && url.password().is_none(),
        "{raw:?}"
    );
    assert!(matches!(url.port(), None | Some(443)), "{raw:?}");
    let host = match url.host() {
        Some(Host::Domain(d)) => d.trim_end_matches('.').to_ascii_lowercase(),
        other => panic!("{raw:?} admitted with host {other:?}"),
    };
    assert!(
        host.strip_suffix(".nxcloud.com")
            .is_some_and(|h| !h.is_empty()),
        "{raw:?} admitted for host {host}"
    );
    assert_eq!(PRODUCTION.check_parsed(&url), Ok(()), "{raw:?}");
});
