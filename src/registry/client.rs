//! A client of a registry's OCI distribution API, with read credentials: manifests by
//! digest, the catalog and tag lists (paginated), and a tag's digest. It answers Basic auth
//! and the bearer-token challenge of token-auth registries, reads bounded bodies, and never
//! sends credentials to another host on a redirect.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, ACCEPT, AUTHORIZATION, CONTENT_TYPE, LINK, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode};
use sha2::Digest;

use crate::domain::artifact::{INDEX_MEDIA_TYPES, MANIFEST_MEDIA_TYPES, MAX_MANIFEST_BYTES};
use crate::domain::registry::RegistryUrl;

/// The most bytes of a catalog or tag-list page (a page of 1,000 long names is ~300 KiB).
const MAX_PAGE_BYTES: usize = 4 * 1024 * 1024;
/// The most bytes of a token server's answer.
const MAX_TOKEN_BYTES: usize = 64 * 1024;

/// Why the registry could not be read. Its text is what the UI, the API and the log say.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// No answer: refused, not resolved, TLS failed, or timed out.
    #[error("the registry at {url} cannot be reached: {message}")]
    Unreachable { url: String, message: String },
    /// The registry (or its token server) refused Herald's credentials.
    #[error("the registry refused Herald's credentials ({status}): {message}")]
    Unauthorized { status: u16, message: String },
    /// What was asked for is not there.
    #[error("not found in the registry: {0}")]
    NotFound(String),
    /// Any other answer than the one asked for.
    #[error("the registry answered {status} to {what}: {message}")]
    Refused {
        status: u16,
        what: String,
        message: String,
    },
    /// An answer that does not make sense (too large, not JSON, a bad challenge).
    #[error("the registry's answer to {what} cannot be used: {message}")]
    Invalid { what: String, message: String },
}

impl RegistryError {
    /// A short word for metrics and readiness: `unreachable`, `unauthorized`, `error`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Unreachable { .. } => "unreachable",
            Self::Unauthorized { .. } => "unauthorized",
            _ => "error",
        }
    }
}

/// Read credentials: a username and a password or token.
#[derive(Clone)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, ..)", self.username)
    }
}

/// A manifest as served: its media type, its digest and its bytes.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub media_type: String,
    pub bytes: Vec<u8>,
}

/// A page of names and whether the registry has more after it.
#[derive(Debug, Clone, Default)]
pub struct Page {
    pub names: Vec<String>,
    /// The `last` to ask for the next page with, when there is one.
    pub next: Option<String>,
}

/// One registry's client. Cheap to share: tokens are cached per scope until they expire.
pub struct RegistryClient {
    http: reqwest::Client,
    base: RegistryUrl,
    credentials: Option<Credentials>,
    tokens: Mutex<HashMap<String, (String, Instant)>>,
}

impl std::fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RegistryClient({})", self.base)
    }
}

/// What a `WWW-Authenticate: Bearer ...` challenge asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Challenge {
    realm: String,
    service: Option<String>,
    scope: Option<String>,
}

impl RegistryClient {
    /// `roots` are the operator's extra CA certificates (`--registry-ca-bundle`).
    pub fn new(
        base: RegistryUrl,
        credentials: Option<Credentials>,
        roots: &[reqwest::Certificate],
        timeout: Duration,
    ) -> Result<Self, String> {
        // reqwest drops Authorization when a redirect leaves the origin; five hops at most.
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::limited(5))
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .timeout(timeout)
            .user_agent(concat!("herald/", env!("CARGO_PKG_VERSION")));
        for cert in roots {
            builder = builder.add_root_certificate(cert.clone());
        }
        let http = builder
            .build()
            .map_err(|e| format!("cannot build the registry client: {e}"))?;
        Ok(Self {
            http,
            base,
            credentials,
            tokens: Mutex::new(HashMap::new()),
        })
    }

    pub fn base(&self) -> &RegistryUrl {
        &self.base
    }

    /// `GET /v2/`: whether the registry answers and takes the credentials.
    pub async fn check(&self) -> Result<(), RegistryError> {
        self.fetch(
            Method::GET,
            "",
            "registry:catalog:*",
            &[],
            4096,
            "the API check",
        )
        .await
        .map(|_| ())
    }

    /// The manifest `reference` (a digest or a tag) of `repository`.
    pub async fn manifest(
        &self,
        repository: &str,
        reference: &str,
    ) -> Result<Manifest, RegistryError> {
        let accept = manifest_accept();
        let what = format!("the manifest {repository}@{reference}");
        let (headers, bytes) = self
            .fetch(
                Method::GET,
                &format!("{repository}/manifests/{reference}"),
                &pull_scope(repository),
                &accept,
                MAX_MANIFEST_BYTES,
                &what,
            )
            .await?;
        // Facts are kept per digest for good: bytes that are not the digest's (a cache or
        // proxy in between gone wrong) must not be taken for it.
        if let Some(hex) = reference.strip_prefix("sha256:") {
            let got = format!("{:x}", sha2::Sha256::digest(&bytes));
            if !got.eq_ignore_ascii_case(hex) {
                return Err(RegistryError::Invalid {
                    what,
                    message: format!("its content's digest is sha256:{got}"),
                });
            }
        }
        let media_type = headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or(v).trim().to_string())
            .unwrap_or_default();
        Ok(Manifest { media_type, bytes })
    }

    /// The digest a tag points at and the manifest's media type (`HEAD` with the manifest
    /// types), `None` if the tag is not there.
    pub async fn tag_digest(
        &self,
        repository: &str,
        tag: &str,
    ) -> Result<Option<(String, String)>, RegistryError> {
        let what = format!("the tag {repository}:{tag}");
        match self
            .fetch(
                Method::HEAD,
                &format!("{repository}/manifests/{tag}"),
                &pull_scope(repository),
                &manifest_accept(),
                0,
                &what,
            )
            .await
        {
            Ok((headers, _)) => {
                let header = |name: &str| {
                    headers
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .map(|v| v.split(';').next().unwrap_or(v).trim().to_string())
                };
                let digest =
                    header("docker-content-digest").ok_or_else(|| RegistryError::Invalid {
                        what,
                        message: "no Docker-Content-Digest header".into(),
                    })?;
                Ok(Some((digest, header("content-type").unwrap_or_default())))
            }
            Err(RegistryError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A page of the catalog's repositories after `last`.
    pub async fn catalog(&self, last: Option<&str>, n: usize) -> Result<Page, RegistryError> {
        let path = paged("_catalog", last, n);
        self.page(&path, "registry:catalog:*", "repositories", "the catalog")
            .await
    }

    /// A page of `repository`'s tags after `last`.
    pub async fn tags(
        &self,
        repository: &str,
        last: Option<&str>,
        n: usize,
    ) -> Result<Page, RegistryError> {
        let path = paged(&format!("{repository}/tags/list"), last, n);
        let what = format!("the tags of {repository}");
        match self
            .page(&path, &pull_scope(repository), "tags", &what)
            .await
        {
            // A repository deleted since the catalog was read has no tags.
            Err(RegistryError::NotFound(_)) => Ok(Page::default()),
            other => other,
        }
    }

    async fn page(
        &self,
        path: &str,
        scope: &str,
        field: &str,
        what: &str,
    ) -> Result<Page, RegistryError> {
        let (headers, bytes) = self
            .fetch(Method::GET, path, scope, &[], MAX_PAGE_BYTES, what)
            .await?;
        let body: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| RegistryError::Invalid {
                what: what.into(),
                message: format!("not JSON ({e})"),
            })?;
        let names: Vec<String> = match &body[field] {
            serde_json::Value::Array(items) => items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            // distribution answers `"tags": null` for a repository without tags.
            serde_json::Value::Null => Vec::new(),
            _ => {
                return Err(RegistryError::Invalid {
                    what: what.into(),
                    message: format!("'{field}' is not a list"),
                })
            }
        };
        // A Link without `last` means "after the last name of this page".
        let next = match (next_last(&headers), has_next(&headers)) {
            (Some(last), _) => Some(last),
            (None, true) => names.last().cloned(),
            (None, false) => None,
        };
        Ok(Page { names, next })
    }

    /// One request, authenticated: the cached token for `scope`, else Basic; on a bearer
    /// challenge, a token from the realm and the request once more.
    async fn fetch(
        &self,
        method: Method,
        path: &str,
        scope: &str,
        accept: &[&str],
        cap: usize,
        what: &str,
    ) -> Result<(HeaderMap, Vec<u8>), RegistryError> {
        let url = self.base.api(path);
        let token = self.cached_token(scope);
        let first = self.send(&method, &url, accept, token.as_deref()).await?;
        let response = if first.status() == StatusCode::UNAUTHORIZED {
            match bearer_challenge(first.headers()) {
                Some(challenge) => {
                    let token = self.token(&challenge, scope).await?;
                    self.send(&method, &url, accept, Some(&token)).await?
                }
                None => first,
            }
        } else {
            first
        };
        let status = response.status();
        let headers = response.headers().clone();
        if status.is_success() {
            let bytes = read_capped(response, cap, what).await?;
            return Ok((headers, bytes));
        }
        let message = error_message(response).await;
        Err(match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => RegistryError::Unauthorized {
                status: status.as_u16(),
                message,
            },
            StatusCode::NOT_FOUND => RegistryError::NotFound(what.to_string()),
            _ => RegistryError::Refused {
                status: status.as_u16(),
                what: what.into(),
                message,
            },
        })
    }

    async fn send(
        &self,
        method: &Method,
        url: &str,
        accept: &[&str],
        token: Option<&str>,
    ) -> Result<reqwest::Response, RegistryError> {
        let mut request = self.http.request(method.clone(), url);
        if !accept.is_empty() {
            request = request.header(ACCEPT, accept.join(", "));
        }
        request = match (token, &self.credentials) {
            (Some(token), _) => request.header(AUTHORIZATION, format!("Bearer {token}")),
            (None, Some(c)) => request.basic_auth(&c.username, Some(&c.password)),
            (None, None) => request,
        };
        request.send().await.map_err(|e| self.unreachable(&e))
    }

    fn unreachable(&self, e: &reqwest::Error) -> RegistryError {
        let message = if e.is_timeout() {
            "timed out".to_string()
        } else {
            // The innermost cause says what happened (refused, TLS, DNS).
            let mut cause: &dyn std::error::Error = e;
            while let Some(next) = cause.source() {
                cause = next;
            }
            cause.to_string()
        };
        RegistryError::Unreachable {
            url: self.base.to_string(),
            message,
        }
    }

    fn cached_token(&self, scope: &str) -> Option<String> {
        let tokens = self.tokens.lock().ok()?;
        tokens
            .get(scope)
            .filter(|(_, until)| *until > Instant::now())
            .map(|(t, _)| t.clone())
    }

    /// A token for `scope` from the challenge's realm, with the credentials as Basic auth.
    async fn token(&self, challenge: &Challenge, scope: &str) -> Result<String, RegistryError> {
        let realm = url::Url::parse(&challenge.realm).map_err(|e| RegistryError::Invalid {
            what: "the bearer challenge".into(),
            message: format!("its realm '{}' is not a URL ({e})", challenge.realm),
        })?;
        if realm.scheme() != "https" && realm.scheme() != "http" {
            return Err(RegistryError::Invalid {
                what: "the bearer challenge".into(),
                message: format!("its realm '{}' is not an http(s) URL", challenge.realm),
            });
        }
        let mut request = self.http.get(realm.clone());
        let mut query: Vec<(&str, &str)> = Vec::new();
        if let Some(service) = &challenge.service {
            query.push(("service", service));
        }
        // The challenge's own scope when it names one, else the operation's.
        query.push(("scope", challenge.scope.as_deref().unwrap_or(scope)));
        request = request.query(&query);
        if let Some(c) = &self.credentials {
            request = request.basic_auth(&c.username, Some(&c.password));
        }
        let response = request.send().await.map_err(|e| self.unreachable(&e))?;
        let status = response.status();
        if !status.is_success() {
            let message = error_message(response).await;
            return Err(if matches!(status.as_u16(), 401 | 403) {
                RegistryError::Unauthorized {
                    status: status.as_u16(),
                    message: format!(
                        "the token server {} said: {message}",
                        realm.origin().ascii_serialization()
                    ),
                }
            } else {
                RegistryError::Refused {
                    status: status.as_u16(),
                    what: "a token request".into(),
                    message,
                }
            });
        }
        let bytes = read_capped(response, MAX_TOKEN_BYTES, "a token request").await?;
        #[derive(serde::Deserialize)]
        struct TokenAnswer {
            token: Option<String>,
            access_token: Option<String>,
            expires_in: Option<u64>,
        }
        let answer: TokenAnswer =
            serde_json::from_slice(&bytes).map_err(|e| RegistryError::Invalid {
                what: "a token request".into(),
                message: format!("not JSON ({e})"),
            })?;
        let token = answer
            .token
            .or(answer.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| RegistryError::Invalid {
                what: "a token request".into(),
                message: "the answer holds no token".into(),
            })?;
        // The spec's default lifetime is 60 s; keep a margin for the request in flight.
        let lifetime = Duration::from_secs(answer.expires_in.unwrap_or(60).clamp(10, 3600));
        if let Ok(mut tokens) = self.tokens.lock() {
            if tokens.len() > 1024 {
                tokens.clear();
            }
            tokens.insert(
                scope.to_string(),
                (
                    token.clone(),
                    Instant::now() + lifetime - Duration::from_secs(5),
                ),
            );
        }
        Ok(token)
    }
}

fn manifest_accept() -> Vec<&'static str> {
    INDEX_MEDIA_TYPES
        .iter()
        .chain(MANIFEST_MEDIA_TYPES.iter())
        .copied()
        .collect()
}

fn pull_scope(repository: &str) -> String {
    format!("repository:{repository}:pull")
}

fn paged(path: &str, last: Option<&str>, n: usize) -> String {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    query.append_pair("n", &n.to_string());
    if let Some(last) = last {
        query.append_pair("last", last);
    }
    format!("{path}?{}", query.finish())
}

/// Whether a `Link: <...>; rel="next"` header is there.
fn has_next(headers: &HeaderMap) -> bool {
    next_link(headers).is_some()
}

fn next_link(headers: &HeaderMap) -> Option<String> {
    headers.get_all(LINK).iter().find_map(|v| {
        let v = v.to_str().ok()?;
        v.split(',').find_map(|part| {
            let (target, params) = part.split_once(';')?;
            params
                .split(';')
                .any(|p| {
                    let p = p.trim().replace(' ', "");
                    p == "rel=\"next\"" || p == "rel=next"
                })
                .then(|| {
                    target
                        .trim()
                        .trim_start_matches('<')
                        .trim_end_matches('>')
                        .to_string()
                })
        })
    })
}

/// The `last` parameter of the next page's link.
fn next_last(headers: &HeaderMap) -> Option<String> {
    let link = next_link(headers)?;
    let url = url::Url::parse("http://registry.invalid")
        .ok()?
        .join(&link)
        .ok()?;
    url.query_pairs()
        .find(|(k, _)| k == "last")
        .map(|(_, v)| v.into_owned())
}

fn bearer_challenge(headers: &HeaderMap) -> Option<Challenge> {
    headers.get_all(WWW_AUTHENTICATE).iter().find_map(|v| {
        let v = v.to_str().ok()?;
        let rest = v
            .trim()
            .strip_prefix("Bearer ")
            .or_else(|| v.trim().strip_prefix("bearer "))?;
        let params = auth_params(rest);
        Some(Challenge {
            realm: params.get("realm")?.clone(),
            service: params.get("service").cloned(),
            scope: params.get("scope").cloned(),
        })
    })
}

/// `key="value", key=value` pairs; commas inside quotes (scopes list actions) are kept.
fn auth_params(s: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        let value = if chars.peek() == Some(&'"') {
            chars.next();
            let mut v = String::new();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(n) = chars.next() {
                            v.push(n)
                        }
                    }
                    '"' => break,
                    c => v.push(c),
                }
            }
            v
        } else {
            chars
                .by_ref()
                .take_while(|c| *c != ',')
                .collect::<String>()
                .trim()
                .to_string()
        };
        out.insert(key.trim().to_ascii_lowercase(), value);
    }
    out
}

/// The body, cut off (as an error) past `cap` bytes.
async fn read_capped(
    mut response: reqwest::Response,
    cap: usize,
    what: &str,
) -> Result<Vec<u8>, RegistryError> {
    let mut out = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if out.len() + chunk.len() > cap {
                    return Err(RegistryError::Invalid {
                        what: what.into(),
                        message: format!("larger than {cap} bytes"),
                    });
                }
                out.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(out),
            Err(e) => {
                return Err(RegistryError::Invalid {
                    what: what.into(),
                    message: format!("the body could not be read ({e})"),
                })
            }
        }
    }
}

/// What an error answer says: the OCI error's message, else the status's reason.
async fn error_message(response: reqwest::Response) -> String {
    let status = response.status();
    let body = read_capped(response, 16 * 1024, "an error")
        .await
        .unwrap_or_default();
    let parsed: Option<String> = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| {
            let first = v["errors"].get(0)?.clone();
            let code = first["code"].as_str().unwrap_or_default().to_string();
            let message = first["message"].as_str().unwrap_or_default().to_string();
            Some(format!("{code} {message}").trim().to_string())
        });
    parsed
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_string())
        .chars()
        .take(300)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bearer_challenge_is_read_with_quoted_commas() {
        let mut h = HeaderMap::new();
        h.insert(
            WWW_AUTHENTICATE,
            r#"Bearer realm="https://auth.example.org/token",service="registry.example.org",scope="repository:acme/web:pull,push""#
                .parse()
                .unwrap(),
        );
        assert_eq!(
            bearer_challenge(&h),
            Some(Challenge {
                realm: "https://auth.example.org/token".into(),
                service: Some("registry.example.org".into()),
                scope: Some("repository:acme/web:pull,push".into()),
            })
        );
        let mut basic = HeaderMap::new();
        basic.insert(
            WWW_AUTHENTICATE,
            r#"Basic realm="Registry""#.parse().unwrap(),
        );
        assert_eq!(bearer_challenge(&basic), None);
    }

    #[test]
    fn the_next_page_comes_from_the_link_header() {
        let mut h = HeaderMap::new();
        h.insert(
            LINK,
            r#"</v2/_catalog?last=acme%2Fweb&n=100>; rel="next""#
                .parse()
                .unwrap(),
        );
        assert_eq!(next_last(&h).as_deref(), Some("acme/web"));
        assert!(has_next(&h));
        assert!(!has_next(&HeaderMap::new()));
        assert_eq!(
            paged("_catalog", Some("a/b"), 50),
            "_catalog?n=50&last=a%2Fb"
        );
    }
}
