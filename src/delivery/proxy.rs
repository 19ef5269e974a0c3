//! The egress proxy for deliveries (`--delivery-proxy`, `--delivery-no-proxy`). Networks that
//! let nothing out but a proxy need it; the SSRF guard still judges every receiver, because
//! a proxy would otherwise reach for Herald whatever a webhook's owner names.
//!
//! Herald decides itself which deliveries bypass the proxy (reqwest's own no-proxy rules
//! cannot report a bad entry), and the proxy's credentials are kept apart from its URL so
//! that nothing that prints the setting can show them.

use std::ffi::OsStr;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;

/// The flags, named in every refusal of their values.
pub const PROXY_FLAG: &str = "--delivery-proxy";
pub const NO_PROXY_FLAG: &str = "--delivery-no-proxy";

/// How a proxy is spoken to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyKind {
    /// CONNECT for https targets, absolute-form requests for http ones; DNS at the proxy.
    Http,
    /// SOCKS5 with the target's name resolved by Herald (through the SSRF guard).
    Socks5,
    /// SOCKS5 with the target's name resolved by the proxy.
    Socks5h,
}

/// A proxy URL whose credentials are kept apart, so that printing it cannot show them.
#[derive(Clone, PartialEq, Eq)]
pub struct ProxyUrl {
    /// Without credentials, path, query or fragment.
    url: url::Url,
    kind: ProxyKind,
    /// Percent-decoded; `None` when the URL names no user.
    credentials: Option<(String, String)>,
}

impl ProxyUrl {
    /// Parses `http://[user:password@]host[:port]`, `socks5://...` or `socks5h://...`.
    /// Messages never repeat the credentials.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err(
                "the proxy URL is empty (leave the setting out to connect directly)".into(),
            );
        }
        if !text.contains("://") {
            return Err(format!(
                "'{}' is not a URL with a scheme; give one such as http://proxy.internal:3128",
                redact_raw(text)
            ));
        }
        let mut url = url::Url::parse(text).map_err(|e| {
            format!(
                "'{}' is not a URL ({e}); give one such as http://proxy.internal:3128",
                redact_raw(text)
            )
        })?;
        let kind = match url.scheme() {
            "http" => ProxyKind::Http,
            "socks5" => ProxyKind::Socks5,
            "socks5h" => ProxyKind::Socks5h,
            other => {
                return Err(format!(
                    "the scheme '{other}' is not supported (use http://, socks5:// or socks5h://)"
                ))
            }
        };
        if url.host_str().is_none_or(str::is_empty) {
            return Err(format!(
                "'{}' names no host; give one such as http://proxy.internal:3128",
                redact_raw(text)
            ));
        }
        if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
            return Err(format!(
                "'{}' has a path, query or fragment; a proxy is only scheme://host:port",
                redact_raw(text)
            ));
        }
        let credentials = if url.username().is_empty() && url.password().is_none() {
            None
        } else {
            let decode = |part: &str| {
                percent_encoding::percent_decode_str(part)
                    .decode_utf8()
                    .map(|s| s.into_owned())
                    .map_err(|_| {
                        "the proxy's user or password is not UTF-8 once decoded".to_string()
                    })
            };
            let user = decode(url.username())?;
            let password = decode(url.password().unwrap_or_default())?;
            // Cannot fail: the URL has a host, so it can carry credentials.
            let _ = url.set_username("");
            let _ = url.set_password(None);
            Some((user, password))
        };
        // reqwest hands the proxy to hyper-util as text, which ignores a proxy it cannot
        // parse: deliveries would then go out directly without a word. Refuse that here.
        if url.as_str().parse::<axum::http::Uri>().is_err() {
            return Err(format!(
                "'{}' is not a proxy address reqwest can use",
                redact_raw(text)
            ));
        }
        Ok(Self {
            url,
            kind,
            credentials,
        })
    }

    pub fn kind(&self) -> ProxyKind {
        self.kind
    }

    /// The proxy's host name, or `None` for an IP literal; the SSRF guard lets it resolve
    /// anywhere, as the proxy is the operator's choice.
    pub fn host_name(&self) -> Option<&str> {
        match self.url.host() {
            // socks5:// is not a special scheme to the url crate, so its IPv4 hosts stay text.
            Some(url::Host::Domain(name)) if name.parse::<IpAddr>().is_err() => Some(name),
            _ => None,
        }
    }

    pub fn has_credentials(&self) -> bool {
        self.credentials.is_some()
    }

    /// What reqwest needs: every http and https request to this proxy, with its credentials
    /// (a `Proxy-Authorization` header, or SOCKS5 username/password authentication).
    pub fn to_reqwest(&self) -> reqwest::Result<reqwest::Proxy> {
        let proxy = reqwest::Proxy::all(self.url.as_str())?;
        Ok(match &self.credentials {
            Some((user, password)) => proxy.basic_auth(user, password),
            None => proxy,
        })
    }
}

/// The URL with any user and password shown as `***`.
impl fmt::Display for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://", self.url.scheme())?;
        if self.credentials.is_some() {
            f.write_str("***:***@")?;
        }
        f.write_str(self.url.host_str().unwrap_or_default())?;
        if let Some(port) = self.url.port() {
            write!(f, ":{port}")?;
        }
        Ok(())
    }
}

/// Redacted like `Display`, so a `{:?}` of the configuration shows no password either.
impl fmt::Debug for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProxyUrl({self})")
    }
}

/// A value that did not parse, fit to print: whatever precedes the last `@` after the
/// scheme may be a password.
fn redact_raw(text: &str) -> String {
    let (scheme, rest) = match text.find("://") {
        Some(i) => text.split_at(i + 3),
        None => ("", text),
    };
    match rest.rfind('@') {
        Some(at) => format!("{scheme}***@{}", &rest[at + 1..]),
        None => text.to_string(),
    }
}

/// clap's parser for `--delivery-proxy`. clap's own errors repeat the value given, which
/// here may hold a password; this one shows it redacted.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProxyUrlParser;

impl clap::builder::TypedValueParser for ProxyUrlParser {
    type Value = ProxyUrl;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<ProxyUrl, clap::Error> {
        use clap::error::{ContextKind, ContextValue, ErrorKind};
        let name = arg.map_or_else(|| PROXY_FLAG.to_string(), ToString::to_string);
        let text = value.to_string_lossy();
        ProxyUrl::parse(&text).map_err(|why| {
            let message = format!(
                "invalid value '{}' for '{name}': {why}",
                redact_raw(text.trim())
            );
            let mut err =
                clap::Error::raw(ErrorKind::ValueValidation, message).format(&mut cmd.clone());
            // main names the configuration file's key from this when the value came from it.
            err.insert(ContextKind::InvalidArg, ContextValue::String(name));
            err
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Bypass {
    /// `*`: no delivery uses the proxy.
    Everything,
    /// A name and every name below it: lower case, without a leading or trailing dot, and
    /// whether it was written with the leading dot (shown as written).
    Domain(String, bool),
    /// IP-literal hosts in this network (a bare address is a /32 or /128).
    Network(IpNet),
}

/// The targets that bypass the proxy, with the usual `no_proxy` meaning: `*`, host names
/// (`example.org` and `.example.org` both match the name and its subdomains), IP addresses
/// and CIDRs. Addresses and networks match IP-literal URLs only: names are compared as names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NoProxyList(Vec<Bypass>);

impl NoProxyList {
    /// Parses a comma-separated list; an empty string is an empty list, so a later flag can
    /// send everything through the proxy again.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut entries = Vec::new();
        for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            entries.push(parse_entry(item)?);
        }
        Ok(Self(entries))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether a delivery to `host` goes out directly.
    pub fn matches(&self, host: &url::Host<&str>) -> bool {
        let ip = match host {
            url::Host::Ipv4(v4) => Some(IpAddr::V4(*v4)),
            url::Host::Ipv6(v6) => Some(IpAddr::V6(*v6)),
            url::Host::Domain(_) => None,
        };
        let name = match host {
            url::Host::Domain(d) => Some(d.trim_end_matches('.').to_ascii_lowercase()),
            _ => None,
        };
        self.0.iter().any(|entry| match (entry, &name, ip) {
            (Bypass::Everything, _, _) => true,
            (Bypass::Domain(domain, _), Some(name), _) => {
                name == domain
                    || name
                        .strip_suffix(domain.as_str())
                        .is_some_and(|head| head.ends_with('.'))
            }
            (Bypass::Network(net), _, Some(ip)) => {
                net.contains(&ip)
                    || matches!(ip, IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some_and(|v4| net.contains(&IpAddr::V4(v4))))
            }
            _ => false,
        })
    }
}

fn parse_entry(item: &str) -> Result<Bypass, String> {
    if item == "*" {
        return Ok(Bypass::Everything);
    }
    let unbracketed = item
        .strip_prefix('[')
        .and_then(|i| i.strip_suffix(']'))
        .unwrap_or(item);
    if let Ok(ip) = IpAddr::from_str(unbracketed) {
        return Ok(Bypass::Network(IpNet::from(ip)));
    }
    if item.contains("://") || (item.contains(':') && !item.contains('/')) {
        return Err(format!(
            "'{item}' is not a host name, domain, address or network (entries take no ports or schemes)"
        ));
    }
    if item.contains('/') {
        return IpNet::from_str(item)
            .map(|net| Bypass::Network(net.trunc()))
            .map_err(|_| {
                format!(
                    "'{item}' is not a network in CIDR notation, such as 10.0.0.0/8 or fd00::/8"
                )
            });
    }
    if item.contains('*') {
        return Err(format!(
            "'{item}': '*' alone is the only wildcard; .example.org already covers every name below example.org"
        ));
    }
    let domain = item
        .trim_start_matches('.')
        .trim_end_matches('.')
        .to_ascii_lowercase();
    let valid_label = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if domain.is_empty() || domain.len() > 253 || !domain.split('.').all(valid_label) {
        return Err(format!(
            "'{item}' is not a host name, domain (.internal), address or network (10.0.0.0/8)"
        ));
    }
    Ok(Bypass::Domain(domain, item.starts_with('.')))
}

impl fmt::Display for NoProxyList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, entry) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            match entry {
                Bypass::Everything => f.write_str("*")?,
                Bypass::Domain(d, true) => write!(f, ".{d}")?,
                Bypass::Domain(d, false) => f.write_str(d)?,
                Bypass::Network(net) if net.prefix_len() == net.max_prefix_len() => {
                    write!(f, "{}", net.addr())?
                }
                Bypass::Network(net) => write!(f, "{net}")?,
            }
        }
        Ok(())
    }
}

/// Where deliveries go out: directly, or through a proxy except for the `no_proxy` targets.
#[derive(Debug, Clone, Default)]
pub struct Egress {
    pub proxy: Option<ProxyUrl>,
    pub no_proxy: NoProxyList,
}

impl Egress {
    /// Whether a delivery to `url` goes through the proxy. A URL without a host (which
    /// reqwest refuses anyway) goes out directly.
    pub fn proxies(&self, url: &url::Url) -> bool {
        match (&self.proxy, url.host()) {
            (Some(_), Some(host)) => !self.no_proxy.matches(&host),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_urls_are_parsed_and_shown_without_credentials() {
        let p = ProxyUrl::parse("http://proxy.internal:3128").unwrap();
        assert_eq!(p.kind(), ProxyKind::Http);
        assert_eq!(p.to_string(), "http://proxy.internal:3128");
        assert_eq!(p.host_name(), Some("proxy.internal"));
        assert!(!p.has_credentials());

        let p = ProxyUrl::parse("http://herald:s3cr%40t@proxy.internal:3128/").unwrap();
        assert_eq!(p.to_string(), "http://***:***@proxy.internal:3128");
        assert_eq!(
            format!("{p:?}"),
            "ProxyUrl(http://***:***@proxy.internal:3128)"
        );
        assert_eq!(
            p.credentials,
            Some(("herald".to_string(), "s3cr@t".to_string()))
        );
        assert!(
            !p.url.as_str().contains("s3cr"),
            "the URL keeps no password"
        );
        assert!(p.to_reqwest().is_ok());

        let p = ProxyUrl::parse("socks5h://10.0.0.1:1080").unwrap();
        assert_eq!(p.kind(), ProxyKind::Socks5h);
        assert_eq!(p.host_name(), None);
        assert_eq!(
            ProxyUrl::parse("socks5://[::1]:1080").unwrap().to_string(),
            "socks5://[::1]:1080"
        );
    }

    #[test]
    fn bad_proxy_urls_are_refused_without_their_credentials() {
        for (bad, says) in [
            ("", "empty"),
            ("proxy.internal:3128", "not a URL with a scheme"),
            ("me:s3cret@proxy.internal:3128", "not a URL with a scheme"),
            ("https://proxy:3128", "scheme 'https' is not supported"),
            ("ftp://user:s3cret@proxy", "scheme 'ftp'"),
            ("http://user:s3cret@:3128", "not a URL"),
            ("http://user:s3cret@proxy:99999", "not a URL"),
            ("http://user:s3cret@proxy:3128/path", "has a path"),
            ("not a url", "not a URL"),
        ] {
            let err = ProxyUrl::parse(bad).unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
            assert!(!err.contains("s3cret"), "{bad}: {err}");
        }
    }

    #[test]
    fn the_clap_parser_names_the_flag_and_hides_the_password() {
        use clap::builder::TypedValueParser;
        // As clap calls it: on a built command, whose arguments know their value names.
        let mut cmd = clap::Command::new("herald").arg(
            clap::Arg::new("delivery_proxy")
                .long("delivery-proxy")
                .value_name("URL"),
        );
        cmd.build();
        let arg = cmd.get_arguments().next().unwrap().clone();
        let err = ProxyUrlParser
            .parse_ref(&cmd, Some(&arg), OsStr::new("gopher://me:s3cret@proxy:70"))
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("'--delivery-proxy <URL>'") && text.contains("gopher://***@proxy:70"),
            "{text}"
        );
        assert!(!text.contains("s3cret"), "{text}");
        assert!(err.get(clap::error::ContextKind::InvalidArg).is_some());
    }

    fn host(s: &str) -> url::Host<String> {
        url::Url::parse(&format!("http://{s}/"))
            .unwrap()
            .host()
            .unwrap()
            .to_owned()
    }

    fn bypasses(list: &NoProxyList, h: &str) -> bool {
        let owned = host(h);
        let borrowed = match &owned {
            url::Host::Domain(d) => url::Host::Domain(d.as_str()),
            url::Host::Ipv4(v4) => url::Host::Ipv4(*v4),
            url::Host::Ipv6(v6) => url::Host::Ipv6(*v6),
        };
        list.matches(&borrowed)
    }

    #[test]
    fn no_proxy_has_the_usual_meaning() {
        let list =
            NoProxyList::parse(" .internal, example.org,10.0.0.0/8, 192.168.1.7,[::1], FD00::/8")
                .unwrap();
        assert_eq!(
            list.to_string(),
            ".internal,example.org,10.0.0.0/8,192.168.1.7,::1,fd00::/8"
        );
        for direct in [
            "internal",
            "hooks.internal",
            "a.b.internal",
            "HOOKS.Internal",
            "example.org",
            "www.example.org",
            "10.1.2.3",
            "192.168.1.7",
            "[::1]",
            "[fd12::1]",
            "[::ffff:10.0.0.1]",
        ] {
            assert!(bypasses(&list, direct), "{direct}");
        }
        for proxied in [
            "notinternal",
            "internal.example.com",
            "notexample.org",
            "example.org.evil",
            "11.0.0.1",
            "192.168.1.8",
            "[::2]",
            // Names are compared as names, even when they resolve into a listed network.
            "localhost",
        ] {
            assert!(!bypasses(&list, proxied), "{proxied}");
        }
        let all = NoProxyList::parse("*").unwrap();
        assert!(bypasses(&all, "anything.example") && bypasses(&all, "8.8.8.8"));
        assert!(NoProxyList::parse("").unwrap().is_empty());
    }

    #[test]
    fn bad_no_proxy_entries_are_named() {
        for bad in [
            "10.0.0.0/33",
            "10.0.0/8",
            "*.internal",
            "proxy.internal:3128",
            "http://x",
            "a..b",
            "bad host",
            ".",
        ] {
            let err = NoProxyList::parse(&format!("ok.internal,{bad}")).unwrap_err();
            assert!(err.contains(&format!("'{bad}'")), "{bad}: {err}");
        }
    }

    #[test]
    fn egress_proxies_all_but_the_bypassed_targets() {
        let egress = Egress {
            proxy: Some(ProxyUrl::parse("http://proxy:3128").unwrap()),
            no_proxy: NoProxyList::parse(".internal,10.0.0.0/8").unwrap(),
        };
        let url = |s: &str| url::Url::parse(s).unwrap();
        assert!(egress.proxies(&url("https://ci.example.org/hook")));
        assert!(!egress.proxies(&url("https://ci.internal/hook")));
        assert!(!egress.proxies(&url("http://10.1.2.3:9000/")));
        assert!(!Egress::default().proxies(&url("https://ci.example.org/")));
    }
}
