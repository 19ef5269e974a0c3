//! Which addresses are forbidden by default, and the operator's allow-list that opens
//! ranges on purpose.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use ipnet::IpNet;

use super::ALLOW_SETTING;

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
    pub(super) host: Option<String>,
    pub(super) refused: Vec<(IpAddr, Forbidden)>,
    /// The name also resolved to permitted addresses (refused through a proxy, which may
    /// use any of them).
    pub(super) mixed: bool,
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
