//! The SSRF guard: webhook URLs are chosen by API users, so without it anyone who may create a
//! webhook could make Herald call the loopback interface, the internal network or the cloud
//! metadata service and read the answer back in the delivery log.
//!
//! The check runs on the addresses a delivery actually connects to: `GuardedResolver` resolves
//! names itself and hands reqwest only the vetted addresses, so a name that resolves to a
//! public address when checked and to a private one when connecting (DNS rebinding) cannot slip
//! through. IP-literal URLs never reach a resolver in reqwest; `SsrfGuard::check_url` covers
//! those before the request is sent. Operators open ranges on purpose with an `AllowList`.
//!
//! Through an HTTP or `socks5h` proxy, the proxy resolves the receiver's name, so no resolver
//! of Herald's sees where it connects: `SsrfGuard::vet_target` resolves the name beforehand
//! and refuses the delivery when any of its addresses is forbidden. The proxy's own name is
//! the operator's choice and resolves unvetted (`GuardedResolver::for_proxy`).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;

use ipnet::IpNet;

/// The setting that opens forbidden ranges, named in every refusal so the fix is obvious.
pub const ALLOW_SETTING: &str = "HERALD_DELIVERY_ALLOW_NETWORKS";

/// Why an address is forbidden by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Unspecified,
    Loopback,
    /// RFC 1918.
    Private,
    LinkLocal,
    /// 169.254.169.254: link-local, named apart because it is what SSRF attacks aim at.
    CloudMetadata,
    /// 100.64.0.0/10, carrier-grade NAT (RFC 6598).
    SharedAddressSpace,
    Multicast,
    Broadcast,
    Documentation,
    Benchmarking,
    Reserved,
    /// fc00::/7 (RFC 4193).
    UniqueLocal,
    /// fec0::/10, deprecated but still routed inside some networks.
    SiteLocal,
}

impl Reason {
    fn describe(self) -> &'static str {
        match self {
            Self::Unspecified => "an unspecified address",
            Self::Loopback => "a loopback address",
            Self::Private => "a private address",
            Self::LinkLocal => "a link-local address",
            Self::CloudMetadata => "the cloud metadata address",
            Self::SharedAddressSpace => "a carrier-grade NAT address",
            Self::Multicast => "a multicast address",
            Self::Broadcast => "the broadcast address",
            Self::Documentation => "a documentation address",
            Self::Benchmarking => "a benchmarking address",
            Self::Reserved => "a reserved address",
            Self::UniqueLocal => "a unique local address",
            Self::SiteLocal => "a site-local address",
        }
    }
}

/// IPv6 forms that carry an IPv4 address, and so reach it (or a gateway acting for it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Embedding {
    /// ::ffff:0:0/96: a dual-stack socket connects straight to the IPv4 address.
    Ipv4Mapped,
    /// ::/96, deprecated.
    Ipv4Compatible,
    /// 64:ff9b::/96, the well-known NAT64 prefix.
    Nat64,
    /// 2002::/16.
    SixToFour,
    /// 2001::/32; the client address is stored inverted.
    Teredo,
}

impl Embedding {
    fn describe(self) -> &'static str {
        match self {
            Self::Ipv4Mapped => "the IPv4-mapped (::ffff:0:0/96) form",
            Self::Ipv4Compatible => "the IPv4-compatible (::/96) form",
            Self::Nat64 => "the NAT64 (64:ff9b::/96) form",
            Self::SixToFour => "the 6to4 (2002::/16) form",
            Self::Teredo => "the Teredo (2001::/32) form",
        }
    }
}

/// What the classifier says about a forbidden address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forbidden {
    pub reason: Reason,
    /// Set when the address is forbidden because of the IPv4 address it embeds.
    pub via: Option<(Embedding, Ipv4Addr)>,
}

impl fmt::Display for Forbidden {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.via {
            None => f.write_str(self.reason.describe()),
            Some((form, v4)) => {
                write!(f, "{} of {v4}, {}", form.describe(), self.reason.describe())
            }
        }
    }
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], prefix: u32) -> bool {
    let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
    u32::from(ip) & mask == u32::from(Ipv4Addr::from(net)) & mask
}

fn in_v6(ip: Ipv6Addr, net: [u16; 8], prefix: u32) -> bool {
    let mask = u128::MAX.checked_shl(128 - prefix).unwrap_or(0);
    let [a, b, c, d, e, f, g, h] = net;
    u128::from(ip) & mask == u128::from(Ipv6Addr::new(a, b, c, d, e, f, g, h)) & mask
}

fn classify_v4(ip: Ipv4Addr) -> Option<Reason> {
    use Reason::*;
    let rules: &[([u8; 4], u32, Reason)] = &[
        ([0, 0, 0, 0], 32, Unspecified),
        ([0, 0, 0, 0], 8, Reserved), // "this network"
        ([10, 0, 0, 0], 8, Private),
        ([100, 64, 0, 0], 10, SharedAddressSpace),
        ([127, 0, 0, 0], 8, Loopback),
        ([169, 254, 169, 254], 32, CloudMetadata),
        ([169, 254, 0, 0], 16, LinkLocal),
        ([172, 16, 0, 0], 12, Private),
        ([192, 0, 0, 0], 24, Reserved), // IETF protocol assignments
        ([192, 0, 2, 0], 24, Documentation),
        ([192, 168, 0, 0], 16, Private),
        ([198, 18, 0, 0], 15, Benchmarking),
        ([198, 51, 100, 0], 24, Documentation),
        ([203, 0, 113, 0], 24, Documentation),
        ([224, 0, 0, 0], 4, Multicast),
        ([255, 255, 255, 255], 32, Broadcast),
        ([240, 0, 0, 0], 4, Reserved),
    ];
    rules
        .iter()
        .find(|(net, prefix, _)| in_v4(ip, *net, *prefix))
        .map(|(_, _, reason)| *reason)
}

/// The IPv4 address an IPv6 address carries, if it has one of the embedding forms.
fn embedded_v4(ip: Ipv6Addr) -> Option<(Embedding, Ipv4Addr)> {
    let bits = u128::from(ip);
    let low32 = Ipv4Addr::from(bits as u32);
    if in_v6(ip, [0, 0, 0, 0, 0, 0xffff, 0, 0], 96) {
        Some((Embedding::Ipv4Mapped, low32))
    } else if in_v6(ip, [0; 8], 96) {
        Some((Embedding::Ipv4Compatible, low32))
    } else if in_v6(ip, [0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96) {
        Some((Embedding::Nat64, low32))
    } else if in_v6(ip, [0x2002, 0, 0, 0, 0, 0, 0, 0], 16) {
        Some((Embedding::SixToFour, Ipv4Addr::from((bits >> 80) as u32)))
    } else if in_v6(ip, [0x2001, 0, 0, 0, 0, 0, 0, 0], 32) {
        Some((Embedding::Teredo, Ipv4Addr::from(!(bits as u32))))
    } else {
        None
    }
}

fn classify_v6(ip: Ipv6Addr) -> Option<Forbidden> {
    use Reason::*;
    let direct = |reason| Some(Forbidden { reason, via: None });
    if ip.is_unspecified() {
        return direct(Unspecified);
    }
    if ip.is_loopback() {
        return direct(Loopback);
    }
    if let Some((form, v4)) = embedded_v4(ip) {
        return classify_v4(v4).map(|reason| Forbidden {
            reason,
            via: Some((form, v4)),
        });
    }
    let rules: &[([u16; 8], u32, Reason)] = &[
        ([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48, Reserved), // local-use NAT64 (RFC 8215)
        ([0x100, 0, 0, 0, 0, 0, 0, 0], 64, Reserved),     // discard-only (RFC 6666)
        ([0x2001, 0x2, 0, 0, 0, 0, 0, 0], 48, Benchmarking),
        ([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32, Documentation),
        ([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20, Documentation), // RFC 9637
        ([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7, UniqueLocal),
        ([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10, LinkLocal),
        ([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10, SiteLocal),
        ([0xff00, 0, 0, 0, 0, 0, 0, 0], 8, Multicast),
    ];
    rules
        .iter()
        .find(|(net, prefix, _)| in_v6(ip, *net, *prefix))
        .and_then(|(_, _, reason)| direct(*reason))
}

/// Why deliveries may not go to `ip` by default, or `None` for an ordinary public address.
pub fn classify(ip: IpAddr) -> Option<Forbidden> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4).map(|reason| Forbidden { reason, via: None }),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

/// Networks the operator opened on purpose (`--delivery-allow-networks`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList(Vec<IpNet>);

impl AllowList {
    /// Parses comma-separated CIDRs; a bare address means just that address. An empty string
    /// is an empty list, so a later flag can close everything again.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut nets = Vec::new();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let net = if item.contains('/') {
                IpNet::from_str(item).ok()
            } else {
                IpAddr::from_str(item).ok().map(IpNet::from)
            };
            match net {
                Some(net) => nets.push(net.trunc()),
                None => {
                    return Err(format!(
                    "'{item}' is not a network in CIDR notation, such as 10.1.0.0/16 or fd00::/8"
                ))
                }
            }
        }
        Ok(Self(nets))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether every address is allowed (`0.0.0.0/0,::/0`): the guard is off.
    pub fn covers_everything(&self) -> bool {
        let whole = |v4: bool| {
            self.0
                .iter()
                .any(|net| net.prefix_len() == 0 && matches!(net, IpNet::V4(_)) == v4)
        };
        whole(true) && whole(false)
    }

    /// An IPv4-mapped IPv6 address reaches the IPv4 address itself, so it matches IPv4 ranges.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let mapped = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4),
            IpAddr::V4(_) => None,
        };
        self.0
            .iter()
            .any(|net| net.contains(&ip) || mapped.is_some_and(|m| net.contains(&m)))
    }
}

impl fmt::Display for AllowList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let items: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&items.join(","))
    }
}

/// A refused destination, worded for the delivery log.
#[derive(Debug, Clone)]
pub struct Blocked {
    /// The name that was resolved; `None` for an IP-literal URL.
    host: Option<String>,
    refused: Vec<(IpAddr, Forbidden)>,
    /// The name also resolved to permitted addresses (refused through a proxy, which may
    /// use any of them).
    mixed: bool,
}

impl fmt::Display for Blocked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("blocked by the SSRF guard: ")?;
        match (&self.host, self.refused.as_slice()) {
            (None, [(ip, why), ..]) => write!(f, "{ip} is {why}")?,
            (Some(host), [(ip, why)]) => write!(f, "{host} resolves to {ip}, {why}")?,
            (Some(host), many) => {
                let only = if self.mixed { "" } else { "only " };
                write!(f, "{host} resolves {only}to forbidden addresses: ")?;
                for (i, (ip, why)) in many.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{ip} ({why})")?;
                }
            }
            (None, []) => f.write_str("no address")?,
        }
        let them = if self.refused.len() > 1 { "them" } else { "it" };
        write!(f, " (allow {them} with {ALLOW_SETTING})")
    }
}

impl std::error::Error for Blocked {}

/// The policy: forbidden ranges minus the operator's allow-list. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct SsrfGuard {
    allow: Arc<AllowList>,
}

impl SsrfGuard {
    pub fn new(allow: AllowList) -> Self {
        Self {
            allow: Arc::new(allow),
        }
    }

    /// `Err` says why deliveries may not go to `ip`.
    pub fn check(&self, ip: IpAddr) -> Result<(), Forbidden> {
        if self.allow.contains(ip) {
            return Ok(());
        }
        match classify(ip) {
            Some(forbidden) => Err(forbidden),
            None => Ok(()),
        }
    }

    /// Checks a URL whose host is an IP literal; names are left to `GuardedResolver`. A URL
    /// that does not parse is left to reqwest, which refuses it with its own error.
    pub fn check_url(&self, url: &str) -> Result<(), Blocked> {
        let Ok(parsed) = url::Url::parse(url) else {
            return Ok(());
        };
        let ip = match parsed.host() {
            Some(url::Host::Ipv4(v4)) => IpAddr::V4(v4),
            Some(url::Host::Ipv6(v6)) => IpAddr::V6(v6),
            // The url crate turns IPv4-looking hosts into Ipv4 already; this covers anything
            // the connector might still read as an address.
            Some(url::Host::Domain(d)) => match d.parse::<IpAddr>() {
                Ok(ip) => ip,
                Err(_) => return Ok(()),
            },
            None => return Ok(()),
        };
        self.check(ip).map_err(|why| Blocked {
            host: None,
            refused: vec![(ip, why)],
            mixed: false,
        })
    }

    /// What to tell whoever saves a webhook with this URL: the addresses its host is (or
    /// resolves to now) that the guard would refuse, or that it does not resolve. Only a
    /// hint: deliveries resolve again and are checked each time. Waits at most `wait`; with
    /// no time at all, names are not resolved.
    pub async fn warnings_for(&self, url: &str, wait: std::time::Duration) -> Vec<String> {
        let Ok(parsed) = url::Url::parse(url) else {
            return Vec::new();
        };
        let port = parsed.port_or_known_default().unwrap_or(80);
        let addrs: Vec<IpAddr> = match parsed.host() {
            Some(url::Host::Ipv4(v4)) => vec![IpAddr::V4(v4)],
            Some(url::Host::Ipv6(v6)) => vec![IpAddr::V6(v6)],
            Some(url::Host::Domain(_)) if wait.is_zero() => return Vec::new(),
            Some(url::Host::Domain(name)) => {
                match tokio::time::timeout(wait, tokio::net::lookup_host((name, port))).await {
                    Ok(Ok(found)) => {
                        let mut ips: Vec<IpAddr> = Vec::new();
                        for a in found {
                            if !ips.contains(&a.ip()) {
                                ips.push(a.ip());
                            }
                        }
                        ips
                    }
                    Ok(Err(e)) => {
                        return vec![format!(
                            "the URL's host {name} does not resolve now ({e}); deliveries fail until it does"
                        )]
                    }
                    Err(_) => {
                        return vec![format!(
                            "the URL's host {name} does not resolve now (no answer within {} s); deliveries fail until it does",
                            wait.as_secs()
                        )]
                    }
                }
            }
            None => return Vec::new(),
        };
        addrs
            .into_iter()
            .filter_map(|ip| self.check(ip).err().map(|why| (ip, why)))
            .map(|(ip, why)| {
                format!(
                    "the URL resolves to {ip}, {why} the SSRF guard blocks; deliveries to it \
                     fail unless it is allowed with --delivery-allow-networks ({ALLOW_SETTING})"
                )
            })
            .collect()
    }

    /// Keeps the permitted addresses a name resolved to; fails when none is left.
    pub fn vet_resolved(
        &self,
        host: &str,
        addrs: impl IntoIterator<Item = SocketAddr>,
    ) -> Result<Vec<SocketAddr>, Blocked> {
        let mut permitted = Vec::new();
        let mut refused: Vec<(IpAddr, Forbidden)> = Vec::new();
        for addr in addrs {
            match self.check(addr.ip()) {
                Ok(()) => permitted.push(addr),
                Err(why) => {
                    if !refused.iter().any(|(ip, _)| *ip == addr.ip()) {
                        refused.push((addr.ip(), why));
                    }
                }
            }
        }
        if permitted.is_empty() && !refused.is_empty() {
            return Err(Blocked {
                host: Some(host.to_string()),
                refused,
                mixed: false,
            });
        }
        if !refused.is_empty() {
            tracing::warn!(
                host,
                refused = ?refused.iter().map(|(ip, _)| ip).collect::<Vec<_>>(),
                "the SSRF guard dropped some addresses of a webhook host"
            );
        }
        Ok(permitted)
    }

    /// Whether the guard lets everything through (`0.0.0.0/0,::/0`), so checking a
    /// receiver's addresses would prove nothing.
    pub fn is_off(&self) -> bool {
        self.allow.covers_everything()
    }

    /// Refuses `host` unless every address it resolved to is permitted: for deliveries
    /// through a proxy, which resolves the name again and may connect to any of them.
    pub fn vet_every(
        &self,
        host: &str,
        addrs: impl IntoIterator<Item = SocketAddr>,
    ) -> Result<(), Blocked> {
        let mut refused: Vec<(IpAddr, Forbidden)> = Vec::new();
        let mut permitted = false;
        for addr in addrs {
            match self.check(addr.ip()) {
                Ok(()) => permitted = true,
                Err(why) => {
                    if !refused.iter().any(|(ip, _)| *ip == addr.ip()) {
                        refused.push((addr.ip(), why));
                    }
                }
            }
        }
        if refused.is_empty() {
            return Ok(());
        }
        Err(Blocked {
            host: Some(host.to_string()),
            refused,
            mixed: permitted,
        })
    }

    /// Resolves a delivery's host (within `wait`) and vets every address, before it is
    /// sent through a proxy that would resolve it out of Herald's sight. IP literals are
    /// left to `check_url`. `Err` is the text for the delivery log.
    pub async fn vet_target(
        &self,
        url: &url::Url,
        wait: std::time::Duration,
    ) -> Result<(), String> {
        if self.is_off() {
            return Ok(()); // nothing to refuse, so no need to resolve names here
        }
        let Some(url::Host::Domain(name)) = url.host() else {
            return Ok(());
        };
        let port = url.port_or_known_default().unwrap_or(80);
        let found: Vec<SocketAddr> =
            match tokio::time::timeout(wait, tokio::net::lookup_host((name, port))).await {
                Ok(Ok(found)) => found.collect(),
                Ok(Err(e)) => return Err(format!("could not resolve {name}: {e}")),
                Err(_) => {
                    return Err(format!(
                        "could not resolve {name}: no answer within {}",
                        humantime::format_duration(wait)
                    ))
                }
            };
        if found.is_empty() {
            return Err(format!("could not resolve {name}: it has no addresses"));
        }
        self.vet_every(name, found)
            .map_err(|blocked| blocked.to_string())
    }
}

/// reqwest's resolver, replaced so that every address it connects to has been vetted.
pub struct GuardedResolver {
    guard: SsrfGuard,
    /// The proxy's host name, lower case: resolved unvetted, as the operator chose it.
    proxy: Option<String>,
}

impl GuardedResolver {
    pub fn new(guard: SsrfGuard) -> Self {
        Self { guard, proxy: None }
    }

    /// For a client that connects through the proxy named `proxy_host`: its name resolves
    /// without the guard; any other name (a SOCKS5 receiver's, resolved here) is vetted.
    pub fn for_proxy(guard: SsrfGuard, proxy_host: Option<&str>) -> Self {
        Self {
            guard,
            proxy: proxy_host.map(normalise_name),
        }
    }
}

fn normalise_name(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let guard = self.guard.clone();
        let host = name.as_str().to_string();
        let is_proxy = self
            .proxy
            .as_ref()
            .is_some_and(|p| *p == normalise_name(&host));
        Box::pin(async move {
            // Port 0: reqwest puts the URL's port on the addresses it gets back.
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if found.is_empty() {
                return Err(format!("{host} has no addresses").into());
            }
            if is_proxy {
                return Ok(Box::new(found.into_iter()) as reqwest::dns::Addrs);
            }
            let vetted = guard.vet_resolved(&host, found)?;
            Ok(Box::new(vetted.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn why(s: &str) -> Option<Reason> {
        classify(s.parse().unwrap()).map(|f| f.reason)
    }

    #[test]
    fn ipv4_ranges() {
        use Reason::*;
        let cases = [
            ("0.0.0.0", Some(Unspecified)),
            ("0.1.2.3", Some(Reserved)),
            ("10.0.0.1", Some(Private)),
            ("172.16.0.1", Some(Private)),
            ("172.31.255.255", Some(Private)),
            ("172.32.0.1", None),
            ("192.168.1.1", Some(Private)),
            ("100.64.1.1", Some(SharedAddressSpace)),
            ("100.127.255.255", Some(SharedAddressSpace)),
            ("100.128.0.1", None),
            ("127.0.0.1", Some(Loopback)),
            ("127.0.0.2", Some(Loopback)),
            ("169.254.169.254", Some(CloudMetadata)),
            ("169.254.1.1", Some(LinkLocal)),
            ("192.0.0.8", Some(Reserved)),
            ("192.0.2.1", Some(Documentation)),
            ("198.51.100.7", Some(Documentation)),
            ("203.0.113.9", Some(Documentation)),
            ("198.18.0.1", Some(Benchmarking)),
            ("198.19.255.255", Some(Benchmarking)),
            ("198.20.0.1", None),
            ("224.0.0.1", Some(Multicast)),
            ("239.255.255.250", Some(Multicast)),
            ("240.0.0.1", Some(Reserved)),
            ("255.255.255.255", Some(Broadcast)),
            ("93.184.216.34", None),
            ("8.8.8.8", None),
            ("1.1.1.1", None),
        ];
        for (ip, expected) in cases {
            assert_eq!(why(ip), expected, "{ip}");
        }
    }

    #[test]
    fn ipv6_ranges() {
        use Reason::*;
        let cases = [
            ("::", Some(Unspecified)),
            ("::1", Some(Loopback)),
            ("fd00::1", Some(UniqueLocal)),
            ("fc00::1", Some(UniqueLocal)),
            ("fd00:ec2::254", Some(UniqueLocal)),
            ("fe80::1", Some(LinkLocal)),
            ("febf::1", Some(LinkLocal)),
            ("fec0::1", Some(SiteLocal)),
            ("ff02::1", Some(Multicast)),
            ("2001:db8::1", Some(Documentation)),
            ("3fff::1", Some(Documentation)),
            ("2001:2::1", Some(Benchmarking)),
            ("100::1", Some(Reserved)),
            ("64:ff9b:1::a", Some(Reserved)),
            ("2606:2800:220:1:248:1893:25c8:1946", None),
            ("2a00:1450:4001:80b::200e", None),
        ];
        for (ip, expected) in cases {
            assert_eq!(why(ip), expected, "{ip}");
        }
    }

    #[test]
    fn embedded_ipv4_is_judged_by_the_ipv4_address() {
        let cases = [
            (
                "::ffff:127.0.0.1",
                Embedding::Ipv4Mapped,
                "127.0.0.1",
                Reason::Loopback,
            ),
            (
                "::ffff:a9fe:a9fe",
                Embedding::Ipv4Mapped,
                "169.254.169.254",
                Reason::CloudMetadata,
            ),
            (
                "::10.0.0.1",
                Embedding::Ipv4Compatible,
                "10.0.0.1",
                Reason::Private,
            ),
            (
                "64:ff9b::a00:1",
                Embedding::Nat64,
                "10.0.0.1",
                Reason::Private,
            ),
            (
                "2002:7f00:1::",
                Embedding::SixToFour,
                "127.0.0.1",
                Reason::Loopback,
            ),
            (
                "2002:c0a8:101::1",
                Embedding::SixToFour,
                "192.168.1.1",
                Reason::Private,
            ),
            // Teredo keeps the client address inverted: !127.0.0.1 = 128.255.255.254.
            (
                "2001:0:4136:e378:8000:63bf:80ff:fffe",
                Embedding::Teredo,
                "127.0.0.1",
                Reason::Loopback,
            ),
        ];
        for (ip, form, v4, reason) in cases {
            let got = classify(ip.parse().unwrap());
            assert_eq!(
                got,
                Some(Forbidden {
                    reason,
                    via: Some((form, v4.parse().unwrap()))
                }),
                "{ip}"
            );
        }
        // The forms are fine when the address inside is public.
        for ip in [
            "::ffff:93.184.216.34",
            "64:ff9b::5db8:d822",
            "2002:5db8:d822::1",
        ] {
            assert_eq!(classify(ip.parse().unwrap()), None, "{ip}");
        }
    }

    #[test]
    fn allow_list_parses_and_matches() {
        let list = AllowList::parse("127.0.0.1/32, 10.1.0.0/16,fd00::/8,192.168.5.5").unwrap();
        assert_eq!(
            list.to_string(),
            "127.0.0.1/32,10.1.0.0/16,fd00::/8,192.168.5.5/32"
        );
        let guard = SsrfGuard::new(list);
        for ok in [
            "127.0.0.1",
            "10.1.200.3",
            "fd12::1",
            "192.168.5.5",
            "::ffff:127.0.0.1",
            "93.184.216.34",
        ] {
            assert!(guard.check(ok.parse().unwrap()).is_ok(), "{ok}");
        }
        for refused in [
            "127.0.0.2",
            "10.2.0.1",
            "::1",
            "192.168.5.6",
            "169.254.169.254",
        ] {
            assert!(guard.check(refused.parse().unwrap()).is_err(), "{refused}");
        }
        assert!(AllowList::parse("").unwrap().is_empty());
        // Host bits are dropped, as the operator plainly meant the network.
        assert_eq!(
            AllowList::parse("10.1.2.3/16").unwrap().to_string(),
            "10.1.0.0/16"
        );
        for bad in [
            "10.0.0.0/33",
            "example.org",
            "10.0.0/8",
            "fd00::/129",
            "1.2.3.4/",
        ] {
            let err = AllowList::parse(&format!("127.0.0.1/32,{bad}")).unwrap_err();
            assert!(err.contains(&format!("'{bad}'")), "{err}");
        }
    }

    #[test]
    fn literal_urls_are_checked_and_named_hosts_are_left_to_the_resolver() {
        let guard = SsrfGuard::new(AllowList::parse("127.0.0.1/32").unwrap());
        assert!(guard.check_url("http://127.0.0.1:8080/x").is_ok());
        assert!(guard.check_url("http://example.org/").is_ok());
        assert_eq!(
            guard
                .check_url("http://127.0.0.2:9/")
                .unwrap_err()
                .to_string(),
            "blocked by the SSRF guard: 127.0.0.2 is a loopback address \
             (allow it with HERALD_DELIVERY_ALLOW_NETWORKS)"
        );
        assert_eq!(
            guard.check_url("http://[::1]:9/").unwrap_err().to_string(),
            "blocked by the SSRF guard: ::1 is a loopback address \
             (allow it with HERALD_DELIVERY_ALLOW_NETWORKS)"
        );
        // The url crate reads these as IPv4 literals, as browsers do.
        for sneaky in ["http://2130706434/", "http://0x7f.0.0.2/", "http://127.2/"] {
            assert!(guard.check_url(sneaky).is_err(), "{sneaky}");
        }
        assert_eq!(
            guard
                .check_url("http://[::ffff:a9fe:a9fe]/latest/meta-data/")
                .unwrap_err()
                .to_string(),
            "blocked by the SSRF guard: ::ffff:169.254.169.254 is the IPv4-mapped \
             (::ffff:0:0/96) form of 169.254.169.254, the cloud metadata address \
             (allow it with HERALD_DELIVERY_ALLOW_NETWORKS)"
        );
    }

    #[test]
    fn through_a_proxy_one_forbidden_address_refuses_the_name() {
        let guard = SsrfGuard::new(AllowList::parse("127.0.0.1/32").unwrap());
        let addr = |s: &str| SocketAddr::new(s.parse().unwrap(), 80);
        assert!(guard
            .vet_every("ok.example", [addr("127.0.0.1"), addr("93.184.216.34")])
            .is_ok());
        assert_eq!(
            guard
                .vet_every("mixed.example", [addr("93.184.216.34"), addr("10.0.0.1")])
                .unwrap_err()
                .to_string(),
            "blocked by the SSRF guard: mixed.example resolves to 10.0.0.1, a private address \
             (allow it with HERALD_DELIVERY_ALLOW_NETWORKS)"
        );
        assert_eq!(
            guard
                .vet_every(
                    "two.example",
                    [addr("93.184.216.34"), addr("10.0.0.1"), addr("::1")]
                )
                .unwrap_err()
                .to_string(),
            "blocked by the SSRF guard: two.example resolves to forbidden addresses: \
             10.0.0.1 (a private address), ::1 (a loopback address) \
             (allow them with HERALD_DELIVERY_ALLOW_NETWORKS)"
        );
        assert!(!guard.is_off());
        assert!(!SsrfGuard::new(AllowList::parse("0.0.0.0/0").unwrap()).is_off());
        assert!(SsrfGuard::new(AllowList::parse("0.0.0.0/0,::/0").unwrap()).is_off());
    }

    #[tokio::test]
    async fn a_proxy_name_resolves_unvetted_and_other_names_are_vetted() {
        use reqwest::dns::Resolve;
        let name = || reqwest::dns::Name::from_str("localhost").unwrap();
        let guard = SsrfGuard::default();
        let plain = GuardedResolver::new(guard.clone());
        let err = match plain.resolve(name()).await {
            Ok(_) => panic!("localhost is loopback, which the guard refuses"),
            Err(e) => e.to_string(),
        };
        assert!(
            err.starts_with("blocked by the SSRF guard: localhost"),
            "{err}"
        );
        let for_proxy = GuardedResolver::for_proxy(guard.clone(), Some("LocalHost."));
        assert!(
            for_proxy.resolve(name()).await.is_ok(),
            "the proxy's own name"
        );
        let other = GuardedResolver::for_proxy(guard, Some("proxy.internal"));
        assert!(other.resolve(name()).await.is_err(), "a receiver's name");
    }

    #[tokio::test]
    async fn vet_target_resolves_names_and_leaves_literals_to_check_url() {
        let guard = SsrfGuard::default();
        let url = |s: &str| url::Url::parse(s).unwrap();
        let wait = std::time::Duration::from_secs(5);
        let err = guard
            .vet_target(&url("http://localhost:9/"), wait)
            .await
            .unwrap_err();
        assert!(
            err.starts_with("blocked by the SSRF guard: localhost resolves"),
            "{err}"
        );
        assert!(guard
            .vet_target(&url("http://127.0.0.1:9/"), wait)
            .await
            .is_ok());
        let off = SsrfGuard::new(AllowList::parse("0.0.0.0/0,::/0").unwrap());
        assert!(off
            .vet_target(&url("http://localhost:9/"), wait)
            .await
            .is_ok());
    }

    #[test]
    fn resolved_addresses_are_filtered() {
        let guard = SsrfGuard::default();
        let addr = |s: &str| SocketAddr::new(s.parse().unwrap(), 0);
        let kept = guard
            .vet_resolved(
                "mixed.example",
                [addr("10.0.0.1"), addr("93.184.216.34"), addr("::1")],
            )
            .unwrap();
        assert_eq!(kept, vec![addr("93.184.216.34")]);
        let err = guard
            .vet_resolved("localhost", [addr("127.0.0.1"), addr("::1"), addr("::1")])
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "blocked by the SSRF guard: localhost resolves only to forbidden addresses: \
             127.0.0.1 (a loopback address), ::1 (a loopback address) \
             (allow them with HERALD_DELIVERY_ALLOW_NETWORKS)"
        );
        let err = guard
            .vet_resolved("meta.example", [addr("169.254.169.254")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("meta.example resolves to 169.254.169.254, the cloud metadata address"),
            "{err}"
        );
    }
}
