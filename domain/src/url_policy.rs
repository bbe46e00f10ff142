//! The rules a recording URL must pass before a single byte is fetched.
//!
//! Recording URLs arrive in the push body, so they are hostile input. The static rules here
//! run on the URL (webhook and archiver, every redirect hop); `check_ip` runs on every address
//! the archiver's resolver returns, so the address connected to is the address checked.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::LazyLock;

use ipnet::IpNet;
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
            Some(Host::Domain(d)) => d.trim_end_matches('.').to_ascii_lowercase(),
            Some(Host::Ipv4(_) | Host::Ipv6(_)) => return Err(UrlRefused::IpLiteral),
            None => return Err(UrlRefused::Malformed),
        };
        if !self.hosts.iter().any(|p| p.matches(&host)) {
            return Err(UrlRefused::HostNotAllowed(host));
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

/// Every block of IANA's IPv4 and IPv6 Special-Purpose Address Registries (as of 2025), with
/// multicast and the deprecated IPv4-compatible and site-local IPv6 blocks. A recording host
/// never lives in one; most reach the private network, the cloud's metadata service, or an
/// IPv4 address through translation.
const SPECIAL_PURPOSE: [&str; 46] = [
    // IPv4
    "0.0.0.0/8",       // "this network"
    "10.0.0.0/8",      // private use
    "100.64.0.0/10",   // shared address space (CGNAT)
    "127.0.0.0/8",     // loopback
    "169.254.0.0/16",  // link local (cloud metadata services)
    "172.16.0.0/12",   // private use
    "192.0.0.0/24",    // IETF protocol assignments (incl. PCP, TURN, NAT64 discovery)
    "192.0.2.0/24",    // documentation
    "192.31.196.0/24", // AS112-v4
    "192.52.193.0/24", // AMT
    "192.88.99.0/24",  // 6to4 relay anycast (deprecated)
    "192.168.0.0/16",  // private use
    "192.175.48.0/24", // direct delegation AS112
    "198.18.0.0/15",   // benchmarking
    "198.51.100.0/24", // documentation
    "203.0.113.0/24",  // documentation
    "224.0.0.0/4",     // multicast
    "240.0.0.0/4",     // reserved, and 255.255.255.255 limited broadcast
    // IPv6
    "::/128",            // unspecified
    "::1/128",           // loopback
    "::/96",             // IPv4-compatible (deprecated)
    "::ffff:0:0/96",     // IPv4-mapped
    "64:ff9b::/96",      // IPv4/IPv6 translation (NAT64)
    "64:ff9b:1::/48",    // IPv4/IPv6 translation, local use
    "100::/64",          // discard-only
    "100:0:0:1::/64",    // dummy prefix
    "2001::/23",         // IETF protocol assignments
    "2001::/32",         // Teredo (an obfuscated IPv4 inside)
    "2001:1::1/128",     // PCP anycast
    "2001:1::2/128",     // TURN anycast
    "2001:1::3/128",     // DNS-SD SRP anycast
    "2001:2::/48",       // benchmarking
    "2001:3::/32",       // AMT
    "2001:4:112::/48",   // AS112-v6
    "2001:10::/28",      // ORCHID (deprecated)
    "2001:20::/28",      // ORCHIDv2
    "2001:30::/28",      // drone remote ID entity tags
    "2001:db8::/32",     // documentation
    "2620:4f:8000::/48", // direct delegation AS112
    "3fff::/20",         // documentation
    "5f00::/16",         // segment routing (SRv6) SIDs
    "fc00::/7",          // unique local
    "fe80::/10",         // link-local unicast
    "fec0::/10",         // site-local (deprecated)
    "ff00::/8",          // multicast
    "2002::/16",         // 6to4: judged by its embedded IPv4 instead (see is_public)
];

/// The 6to4 block: `2002:AABB:CCDD::/48` carries the IPv4 address A.B.C.D.
const SIX_TO_FOUR: &str = "2002::/16";

static BLOCKS: LazyLock<Vec<IpNet>> = LazyLock::new(|| {
    SPECIAL_PURPOSE
        .iter()
        .filter(|block| **block != SIX_TO_FOUR)
        .map(|block| block.parse().expect("a registry block parses"))
        .collect()
});

/// Public unicast only: no address in any special-purpose block ([`SPECIAL_PURPOSE`]); a
/// 6to4 address is public when the IPv4 address it embeds is.
pub fn is_public(ip: IpAddr) -> bool {
    if let IpAddr::V6(v6) = ip {
        let seg = v6.segments();
        if seg[0] == 0x2002 {
            let [a, b] = seg[1].to_be_bytes();
            let [c, d] = seg[2].to_be_bytes();
            return is_public(IpAddr::V4(Ipv4Addr::new(a, b, c, d)));
        }
    }
    !BLOCKS.iter().any(|block| block.contains(&ip))
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

    /// The address blocks of an IANA special-purpose registry CSV (first column; a cell may
    /// hold several blocks, and footnote marks).
    fn registry(csv: &str) -> Vec<IpNet> {
        let mut blocks = Vec::new();
        for line in csv.lines().skip(1) {
            let cell = match line.strip_prefix('"') {
                Some(quoted) => quoted.split('"').next().unwrap_or_default(),
                None => line.split(',').next().unwrap_or_default(),
            };
            for block in cell.split(',') {
                let block = block.split_whitespace().next().unwrap_or_default();
                blocks.push(block.parse().unwrap_or_else(|_| panic!("{line}")));
            }
        }
        blocks
    }

    /// First, last and a middle address of a block.
    fn samples(block: &IpNet) -> Vec<IpAddr> {
        let (first, last) = (block.network(), block.broadcast());
        let middle = match (first, last) {
            (IpAddr::V4(a), IpAddr::V4(b)) => {
                IpAddr::V4(((u32::from(a) >> 1) + (u32::from(b) >> 1)).into())
            }
            (IpAddr::V6(a), IpAddr::V6(b)) => {
                IpAddr::V6(((u128::from(a) >> 1) + (u128::from(b) >> 1)).into())
            }
            _ => unreachable!("one family"),
        };
        vec![first, middle, last]
    }

    #[test]
    fn every_special_purpose_block_of_both_registries_is_refused() {
        let v4 = registry(include_str!("../data/iana-ipv4-special-registry.csv"));
        let v6 = registry(include_str!("../data/iana-ipv6-special-registry.csv"));
        assert_eq!((v4.len(), v6.len()), (25, 25), "every row read");
        for block in v4.iter().chain(&v6) {
            for ip in samples(block) {
                if block.to_string() == SIX_TO_FOUR {
                    continue;
                }
                assert!(!is_public(ip), "{ip} in {block} passed");
            }
        }
        // 6to4 carries an IPv4 address: judged by it.
        for (ip, public) in [
            ("2002:808:808::1", true),   // 8.8.8.8
            ("2002:a00:1::", false),     // 10.0.0.1
            ("2002:a9fe:a9fe::", false), // 169.254.169.254
            ("2002:7f00:1::", false),    // 127.0.0.1
            ("2002:c058:6301::", false), // 192.88.99.1, the 6to4 relay
        ] {
            assert_eq!(is_public(ip.parse().unwrap()), public, "{ip}");
        }
        // Multicast and the deprecated blocks, beyond the registries.
        for ip in [
            "224.0.0.1",
            "239.255.255.255",
            "ff02::1",
            "fec0::1",
            "::a00:1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "8.8.8.8",
            "1.1.1.1",
            "52.94.236.248",
            "2606:4700::1111",
            "2a05:d018::1",
        ] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }
}
