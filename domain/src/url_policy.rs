//! The rules a recording URL must pass before a single byte is fetched.
//!
//! Recording URLs arrive in the push body, so they are hostile input. The static rules here
//! run on the URL (webhook and archiver, every redirect hop); `check_ip` runs on every address
//! the archiver's resolver returns, so the address connected to is the address checked.

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use url::{Host, Url};

/// Which extra targets the policy allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UrlProfile {
    /// Production: https to allow-listed public hosts only.
    Production,
    /// `make run` and tests: additionally `http(s)://127.0.0.1:<port>`, for a local fake
    /// recording host. Never the default.
    Local,
}

/// Why a URL or an address is refused. The text is stored on the record (`recordingError`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlRefused {
    #[error("recording URL is not a valid absolute URL")]
    Malformed,
    #[error("recording URL scheme `{0}` is not allowed (https only)")]
    Scheme(String),
    #[error("recording URL carries credentials")]
    Credentials,
    #[error("recording URL uses an IP address instead of a host name")]
    IpLiteral,
    #[error("recording host `{0}` is not in the allow-list")]
    HostNotAllowed(String),
    #[error("recording URL port {0} is not allowed (443 only)")]
    Port(u16),
    #[error("recording host resolves to a non-public address ({0})")]
    NonPublicAddress(IpAddr),
    #[error("recording host has no address")]
    NoAddress,
}

/// A host pattern: `*.example.com` (any sub-domain) or an exact name.
#[derive(Debug, Clone, PartialEq, Eq)]
struct HostPattern {
    suffix: String,
    wildcard: bool,
}

impl HostPattern {
    fn parse(s: &str) -> Option<Self> {
        let s = s.trim().trim_end_matches('.').to_ascii_lowercase();
        let (wildcard, name) = match s.strip_prefix("*.") {
            Some(rest) => (true, rest.to_owned()),
            None => (false, s),
        };
        (!name.is_empty() && !name.contains('*')).then_some(Self {
            suffix: name,
            wildcard,
        })
    }

    fn matches(&self, host: &str) -> bool {
        if self.wildcard {
            host.strip_suffix(&self.suffix)
                .is_some_and(|head| head.len() > 1 && head.ends_with('.'))
        } else {
            host == self.suffix
        }
    }
}

/// Why a recording-host allow-list is not valid configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostListError {
    #[error("bad host pattern `{0}` (a name, or `*.` and a name)")]
    BadPattern(String),
    #[error("the recording host allow-list is empty")]
    Empty,
}

/// The recording-URL policy: allow-listed hosts and a profile.
#[derive(Debug, Clone)]
pub struct UrlPolicy {
    hosts: Vec<HostPattern>,
    profile: UrlProfile,
}

/// The default allow-list: NXCLOUD's own recording hosts.
pub const DEFAULT_RECORDING_HOSTS: &str = "*.nxcloud.com";

impl UrlPolicy {
    /// `hosts` is a comma-separated allow-list such as `*.nxcloud.com,records.example.net`.
    pub fn new(hosts: &str, profile: UrlProfile) -> Result<Self, HostListError> {
        let mut patterns = Vec::new();
        for raw in hosts.split(',').filter(|s| !s.trim().is_empty()) {
            patterns.push(
                HostPattern::parse(raw)
                    .ok_or_else(|| HostListError::BadPattern(raw.trim().to_owned()))?,
            );
        }
        if patterns.is_empty() {
            return Err(HostListError::Empty);
        }
        Ok(Self {
            hosts: patterns,
            profile,
        })
    }

    pub fn profile(&self) -> UrlProfile {
        self.profile
    }

    /// The static rules: scheme, credentials, host form and allow-list, port.
    pub fn check_url(&self, raw: &str) -> Result<Url, UrlRefused> {
        let url = Url::parse(raw.trim()).map_err(|_| UrlRefused::Malformed)?;
        self.check_parsed(&url)?;
        Ok(url)
    }

    /// As [`check_url`](Self::check_url), for an already parsed URL (a redirect target).
    pub fn check_parsed(&self, url: &Url) -> Result<(), UrlRefused> {
        if !url.username().is_empty() || url.password().is_some() {
            return Err(UrlRefused::Credentials);
        }
        if self.is_local_target(url) {
            return Ok(());
        }
        if url.scheme() != "https" {
            return Err(UrlRefused::Scheme(url.scheme().to_owned()));
        }
        let host = match url.host() {
            Some(Host::Domain(d)) => d.trim_end_matches('.'),
            Some(Host::Ipv4(_) | Host::Ipv6(_)) => return Err(UrlRefused::IpLiteral),
            None => return Err(UrlRefused::Malformed),
        };
        // The URL parser lower-cases `https` hosts already: copy only if it did not.
        let host = if host.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(host.to_ascii_lowercase())
        } else {
            Cow::Borrowed(host)
        };
        if !self.hosts.iter().any(|p| p.matches(&host)) {
            return Err(UrlRefused::HostNotAllowed(host.into_owned()));
        }
        match url.port() {
            None | Some(443) => Ok(()),
            Some(p) => Err(UrlRefused::Port(p)),
        }
    }

    /// The local profile's one extra: `http(s)://127.0.0.1:<port>`, and nothing else.
    pub fn is_local_target(&self, url: &Url) -> bool {
        self.profile == UrlProfile::Local
            && matches!(url.scheme(), "http" | "https")
            && url.host() == Some(Host::Ipv4(Ipv4Addr::LOCALHOST))
    }

    /// An address a recording host resolved to must be public unicast.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), UrlRefused> {
        if is_public(ip) {
            Ok(())
        } else {
            Err(UrlRefused::NonPublicAddress(ip))
        }
    }
}

/// Public unicast only: no loopback, private, link-local, CGNAT, multicast, unspecified,
/// broadcast, documentation, benchmarking or reserved ranges; no IPv4-mapped/-compatible,
/// NAT64 or unique-local IPv6.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        || a == 0 // "this network"
        || (a == 100 && (64..128).contains(&b)) // CGNAT 100.64.0.0/10
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (18..20).contains(&b)) // benchmarking 198.18.0.0/15
        || a >= 240) // reserved
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let seg = ip.segments();
    let mapped_or_compatible = seg[..5] == [0; 5] && (seg[5] == 0xffff || seg[5] == 0);
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || mapped_or_compatible
        || (seg[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
        || (seg[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
        || (seg[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
        || (seg[0] == 0x64 && seg[1] == 0xff9b) // NAT64 64:ff9b::/96 and /48
        || (seg[0] == 0x2001 && seg[1] == 0x0db8) // documentation
        || seg[0] == 0x2002) // 6to4 embeds an IPv4 address
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prod() -> UrlPolicy {
        UrlPolicy::new(DEFAULT_RECORDING_HOSTS, UrlProfile::Production).unwrap()
    }

    #[test]
    fn accepts_nxcloud_https() {
        prod()
            .check_url("https://remote.record.nxcloud.com/pns/20221219/a.mp3?sig=x")
            .unwrap();
        prod().check_url("https://A.NXCLOUD.COM./x.mp3").unwrap();
    }

    #[test]
    fn refuses_the_static_ssrf_corpus() {
        let corpus = [
            ("http://remote.record.nxcloud.com/a.mp3", "scheme"),
            ("ftp://remote.record.nxcloud.com/a.mp3", "scheme"),
            ("https://8.8.8.8/a.mp3", "IP address"),
            (
                "https://127.0.0.1:9001/2018-06-01/runtime/invocation/next",
                "IP address",
            ),
            ("https://169.254.169.254/latest/meta-data/", "IP address"),
            ("https://[::ffff:127.0.0.1]/a.mp3", "IP address"),
            ("https://2130706433/a.mp3", "IP address"),
            ("https://localhost/a.mp3", "allow-list"),
            ("https://nxcloud.com.evil.example/a.mp3", "allow-list"),
            ("https://evilnxcloud.com/a.mp3", "allow-list"),
            ("https://nxcloud.com/a.mp3", "allow-list"),
            (
                "https://user:pass@remote.record.nxcloud.com/a.mp3",
                "credentials",
            ),
            ("https://remote.record.nxcloud.com:8443/a.mp3", "port"),
            ("not a url", "valid"),
        ];
        for (url, why) in corpus {
            let err = prod().check_url(url).unwrap_err().to_string();
            assert!(err.contains(why), "{url}: {err}");
        }
    }

    #[test]
    fn local_profile_adds_only_loopback_ipv4() {
        let local = UrlPolicy::new(DEFAULT_RECORDING_HOSTS, UrlProfile::Local).unwrap();
        local.check_url("http://127.0.0.1:4567/r/1.mp3").unwrap();
        for url in [
            "http://localhost:4567/r/1.mp3",
            "http://127.0.0.2:4567/r/1.mp3",
            "http://[::1]:4567/r/1.mp3",
            "http://u:p@127.0.0.1:4567/r/1.mp3",
            "http://10.0.0.1/r/1.mp3",
        ] {
            assert!(local.check_url(url).is_err(), "{url}");
        }
        assert!(prod().check_url("http://127.0.0.1:4567/r/1.mp3").is_err());
    }

    #[test]
    fn classifies_addresses() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "::ffff:127.0.0.1",
            "::ffff:8.8.8.8",
            "fd00::1",
            "fe80::1",
            "ff02::1",
            "64:ff9b::a00:1",
            "2002:a00:1::",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["8.8.8.8", "203.0.114.1", "2606:4700::1111"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }
}
