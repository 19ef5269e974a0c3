//! Validated domain types. Input is checked once, at the edge, so the rest of Herald can
//! trust a `WebhookUrl` or a `NamespaceName` without checking it again.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A validation failure naming the offending field; becomes a 422.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub field: String,
    pub message: String,
}

impl Invalid {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for Invalid {}

/// The registry's path-component grammar: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
/// Namespaces and usernames follow it, so a namespace is always a valid repository prefix.
pub fn is_path_component(s: &str) -> bool {
    let bytes = s.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        // A separator run: ".", "_", "__", or any number of "-".
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &s[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|b| b == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// A namespace: the first path segment of a repository, or the global namespace.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(transparent)]
pub struct NamespaceName(String);

impl NamespaceName {
    /// How the API addresses the namespace of repositories without a `/`. The leading
    /// underscore can never start a registry path component, so it cannot collide.
    pub const GLOBAL: &'static str = "_global";

    pub fn global() -> Self {
        Self(Self::GLOBAL.to_string())
    }

    pub fn parse(s: &str) -> Result<Self, Invalid> {
        if s == Self::GLOBAL {
            return Ok(Self::global());
        }
        if s.len() > 255 {
            return Err(Invalid::new(
                "name",
                "a namespace name has at most 255 characters",
            ));
        }
        if !is_path_component(s) {
            return Err(Invalid::new(
                "name",
                format!(
                    "'{s}' is not a valid namespace name: use lowercase letters and digits, \
                     separated by '.', '_', '__' or '-' (the registry's path-component grammar)"
                ),
            ));
        }
        Ok(Self(s.to_string()))
    }

    /// The namespace of a repository: its first path segment, or global without a `/`.
    pub fn of_repository(repository: &str) -> Result<Self, Invalid> {
        match repository.split_once('/') {
            Some((first, _)) => Self::parse(first).map_err(|_| {
                Invalid::new(
                    "repository",
                    format!("the first path segment of '{repository}' is not a valid namespace"),
                )
            }),
            None => Ok(Self::global()),
        }
    }

    pub fn is_global(&self) -> bool {
        self.0 == Self::GLOBAL
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NamespaceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A webhook's display name: required, one line, bounded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(transparent)]
pub struct WebhookName(String);

impl WebhookName {
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        let s = s.trim();
        if s.is_empty() {
            return Err(Invalid::new("name", "a webhook needs a name"));
        }
        if s.chars().count() > 100 {
            return Err(Invalid::new(
                "name",
                "a webhook name has at most 100 characters",
            ));
        }
        if s.chars().any(char::is_control) {
            return Err(Invalid::new(
                "name",
                "a webhook name cannot hold control characters",
            ));
        }
        Ok(Self(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A URL that a delivery may be sent to: an http(s) receiver or a broker
/// (`nats`, `amqp`, `redis`, `mqtt`; see `domain::destination`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(transparent)]
pub struct WebhookUrl(String);

impl WebhookUrl {
    /// Accepts `http://` and `https://` URLs; a bare host such as `example.org` becomes
    /// `http://example.org` (as Portus did). Broker URLs are accepted when their shape is
    /// right (`destination::broker_target`). Credentials in the URL are refused because
    /// they would be stored and shown in plain text: `username`/`password` exist for that
    /// (the input layer moves a broker URL's credentials there before this check).
    pub fn parse(input: &str) -> Result<Self, Invalid> {
        let trimmed = input.trim();
        // Messages quote the URL without its user part: it may hold a password.
        let shown = super::destination::redact_userinfo(trimmed);
        let s = shown.as_str();
        let err = |m: String| Invalid::new("url", m);
        if s.is_empty() {
            return Err(err("a webhook needs a URL".into()));
        }
        if trimmed.len() > 2048 {
            return Err(err("the URL is longer than 2048 characters".into()));
        }
        let candidate = if trimmed.contains("://") {
            trimmed.to_string()
        } else {
            format!("http://{trimmed}")
        };
        let url = url::Url::parse(&candidate)
            .map_err(|e| err(format!("'{s}' is not a valid URL ({e})")))?;
        let broker = super::destination::broker_target(&url)?;
        if broker.is_none() && url.scheme() != "http" && url.scheme() != "https" {
            return Err(err(format!(
                "the URL scheme must be http, https, nats, amqp, redis or mqtt, not '{}'",
                url.scheme()
            )));
        }
        match url.host_str() {
            Some(h) if !h.is_empty() => {}
            _ => return Err(err(format!("'{s}' has no host"))),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(err(
                "put credentials in the webhook's username and password, not in the URL".into(),
            ));
        }
        // Percent-encoding can lengthen the URL: the limit holds for what is stored and sent,
        // or a stored URL would be refused when read back and re-validated.
        if url.as_str().len() > 2048 {
            return Err(err(
                "the URL is longer than 2048 characters once percent-encoded".into(),
            ));
        }
        Ok(Self(url.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The broker this URL names, or `None` for an http(s) receiver.
    pub fn broker(&self) -> Option<super::destination::BrokerTarget> {
        url::Url::parse(&self.0)
            .ok()
            .and_then(|u| super::destination::broker_target(&u).ok().flatten())
    }

    /// Whether deliveries go to a message broker rather than over HTTP.
    pub fn is_broker(&self) -> bool {
        self.0
            .split_once("://")
            .is_some_and(|(scheme, _)| super::destination::is_broker_scheme(scheme))
    }

    pub fn host(&self) -> String {
        url::Url::parse(&self.0)
            .ok()
            .and_then(|u| u.host_str().map(str::to_string))
            .unwrap_or_default()
    }
}

/// The HTTP method of a webhook's requests (Portus: GET by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub enum RequestMethod {
    #[default]
    #[serde(rename = "GET")]
    Get,
    #[serde(rename = "POST")]
    Post,
}

impl RequestMethod {
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        match s.trim().to_ascii_uppercase().as_str() {
            "GET" => Ok(Self::Get),
            "POST" => Ok(Self::Post),
            _ => Err(Invalid::new(
                "request_method",
                format!("request_method must be GET or POST, not '{s}'"),
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Post => "POST",
        }
    }
}

/// How the event is encoded in the request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub enum ContentType {
    #[default]
    #[serde(rename = "application/json")]
    Json,
    #[serde(rename = "application/x-www-form-urlencoded")]
    Form,
}

impl ContentType {
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        match s.trim().to_ascii_lowercase().as_str() {
            "application/json" => Ok(Self::Json),
            "application/x-www-form-urlencoded" => Ok(Self::Form),
            _ => Err(Invalid::new(
                "content_type",
                format!(
                    "content_type must be application/json or \
                     application/x-www-form-urlencoded, not '{s}'"
                ),
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Json => "application/json",
            Self::Form => "application/x-www-form-urlencoded",
        }
    }
}

/// Headers Herald sets itself or that would break HTTP framing if a user set them.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "proxy-connection",
    "x-herald-delivery",
    "x-herald-event",
    "x-herald-synthesized",
];

/// A custom header name, stored as the user wrote it and compared case-insensitively.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(transparent)]
pub struct HeaderName(String);

impl HeaderName {
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        let field = "headers";
        let s = s.trim();
        if s.is_empty() {
            return Err(Invalid::new(field, "a header name cannot be empty"));
        }
        if axum::http::HeaderName::from_bytes(s.as_bytes()).is_err() {
            return Err(Invalid::new(
                field,
                format!("'{s}' is not a valid HTTP header name"),
            ));
        }
        if RESERVED_HEADERS.contains(&s.to_ascii_lowercase().as_str()) {
            return Err(Invalid::new(
                field,
                format!(
                    "the header '{s}' is set by Herald or by HTTP itself and cannot be customised"
                ),
            ));
        }
        Ok(Self(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn eq_ignore_case(&self, other: &str) -> bool {
        self.0.eq_ignore_ascii_case(other)
    }
}

/// A custom header value: visible ASCII, no line breaks, at most 8 KiB.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderValue(String);

impl HeaderValue {
    pub fn parse(name: &str, s: &str) -> Result<Self, Invalid> {
        let field = "headers";
        if s.len() > 8192 {
            return Err(Invalid::new(
                field,
                format!("the value of header '{name}' is longer than 8192 bytes"),
            ));
        }
        if axum::http::HeaderValue::from_str(s).is_err() {
            return Err(Invalid::new(
                field,
                format!(
                    "the value of header '{name}' is not a valid HTTP header value \
                     (visible ASCII only, no line breaks)"
                ),
            ));
        }
        Ok(Self(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_component_grammar() {
        for ok in [
            "acme",
            "a",
            "a1",
            "my.team",
            "my_team",
            "my__team",
            "my---team",
            "0x",
        ] {
            assert!(is_path_component(ok), "{ok} should be valid");
        }
        for bad in [
            "", "Acme", "-acme", "acme-", "a..b", "a___b", "a_.b", "a/b", "a b", "_global",
        ] {
            assert!(!is_path_component(bad), "{bad} should be invalid");
        }
    }

    #[test]
    fn namespace_of_repository() {
        assert_eq!(
            NamespaceName::of_repository("acme/web/api")
                .unwrap()
                .as_str(),
            "acme"
        );
        assert_eq!(
            NamespaceName::of_repository("acme/web").unwrap().as_str(),
            "acme"
        );
        assert!(NamespaceName::of_repository("nginx").unwrap().is_global());
        assert!(NamespaceName::of_repository("Bad/x").is_err());
        assert!(NamespaceName::parse("_global").unwrap().is_global());
    }

    #[test]
    fn webhook_urls() {
        assert_eq!(
            WebhookUrl::parse("example.org").unwrap().as_str(),
            "http://example.org/"
        );
        assert_eq!(
            WebhookUrl::parse(" https://ci.example.org:8443/hook?x=1 ")
                .unwrap()
                .as_str(),
            "https://ci.example.org:8443/hook?x=1"
        );
        for bad in [
            "",
            "ftp://example.org",
            "http://",
            "http://user:pw@example.org",
            "://x",
            "http://exa mple.org",
        ] {
            let e = WebhookUrl::parse(bad).unwrap_err();
            assert_eq!(e.field, "url", "{bad}");
        }
        // Under the limit as typed, over it once percent-encoded (found by a property test).
        let encoded_too_long = format!("http://a.example/{}", "é".repeat(600));
        assert!(encoded_too_long.len() <= 2048);
        let e = WebhookUrl::parse(&encoded_too_long).unwrap_err();
        assert!(e.message.contains("percent-encoded"), "{e}");
    }

    #[test]
    fn methods_and_content_types() {
        assert_eq!(RequestMethod::parse("post").unwrap(), RequestMethod::Post);
        assert!(RequestMethod::parse("PUT").is_err());
        assert_eq!(
            ContentType::parse("application/x-www-form-urlencoded").unwrap(),
            ContentType::Form
        );
        assert!(ContentType::parse("text/plain").is_err());
    }

    #[test]
    fn headers() {
        assert!(HeaderName::parse("X-Deploy-Token").is_ok());
        assert!(HeaderName::parse("Bad Header").is_err());
        assert!(HeaderName::parse("Content-Length").is_err());
        assert!(HeaderName::parse("Content-Type").is_ok());
        assert!(HeaderValue::parse("x", "abc def").is_ok());
        assert!(HeaderValue::parse("x", "line\nbreak").is_err());
    }
}

/// Values read back from the database were validated on the way in.
macro_rules! trusted {
    ($($t:ty),*) => {$(
        impl $t {
            pub(crate) fn trusted(s: String) -> Self {
                Self(s)
            }
        }
    )*};
}
trusted!(NamespaceName, WebhookName, WebhookUrl, HeaderName);
