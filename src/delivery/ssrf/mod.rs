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

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// The setting that opens forbidden ranges, named in every refusal so the fix is obvious.
pub const ALLOW_SETTING: &str = "HERALD_DELIVERY_ALLOW_NETWORKS";

mod classify;
#[cfg(test)]
mod tests;

pub use classify::*;

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
