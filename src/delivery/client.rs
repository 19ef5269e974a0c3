//! The outbound HTTP client: no redirects, bounded time, and a response body read as a
//! stream and cut at a cap, so a huge or endless response never fills memory. Every address
//! it connects to has passed the SSRF guard; through a proxy, every address the receiver's
//! name resolves to has (see `ssrf`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::delivery::proxy::{Egress, ProxyUrl};
use crate::delivery::ssrf::{Blocked, GuardedResolver, SsrfGuard};
use crate::domain::names::RequestMethod;
use crate::hooks::client_cert::ClientIdentity;
use crate::hooks::payload::OutgoingRequest;

/// How much of a response body is kept.
pub const RESPONSE_BODY_CAP: usize = 64 * 1024;

/// Why a send got no answer from the receiver. Its text is what the delivery log says.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The SSRF guard refused the destination.
    #[error("{0}")]
    Blocked(String),
    /// No answer within the delivery timeout.
    #[error("timed out (limit {})", humantime::format_duration(*.0))]
    Timeout(Duration),
    /// No connection: refused, not resolved, or the TLS handshake failed (directly, or
    /// through the delivery proxy).
    #[error("{0}")]
    Connect(String),
    /// The webhook's client certificate and key could not be used.
    #[error("the client certificate cannot be used: {0}")]
    ClientCertificate(String),
    /// The receiver does not allow deliveries from Herald (CloudEvents webhook validation).
    #[error("{0}")]
    NotAllowed(String),
    /// Anything else that went wrong with the request.
    #[error("{0}")]
    Failed(String),
}

#[derive(Debug, Clone)]
pub struct ReceiverResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub truncated: bool,
}

/// One way out, with and without certificate verification.
#[derive(Clone)]
struct Clients {
    verify: reqwest::Client,
    /// For webhooks that opted out of certificate verification.
    insecure: reqwest::Client,
}

impl Clients {
    fn pick(&self, tls_verify: bool) -> &reqwest::Client {
        if tls_verify {
            &self.verify
        } else {
            &self.insecure
        }
    }
}

#[derive(Clone)]
pub struct HttpSender {
    direct: Clients,
    /// Through `egress.proxy`, when there is one.
    proxied: Option<Clients>,
    egress: Egress,
    connect_timeout: Duration,
    total_timeout: Duration,
    guard: SsrfGuard,
    /// The operator's CA bundle, again for the clients made per client certificate.
    extra_roots: Arc<Vec<reqwest::Certificate>>,
    /// Clients that present a webhook's client certificate (mutual TLS), built once per
    /// identity rather than a TLS configuration per delivery.
    with_identity: Arc<Mutex<IdentityClients>>,
    /// CloudEvents webhook validation: who Herald says it is, and what receivers answered.
    validation: Arc<Validation>,
}

/// The abuse protection of "HTTP 1.1 Web Hooks for Event Delivery" (section 4), which
/// CloudEvents receivers such as Azure Event Grid's require: before delivering, the sender
/// asks with `OPTIONS` and `WebHook-Request-Origin`, and delivers only if the answer's
/// `WebHook-Allowed-Origin` is that origin or `*`. A receiver that does not take part
/// (no such header) is delivered to as before.
struct Validation {
    origin: String,
    /// What each URL answered, until when; a permission is kept for a day, a refusal not
    /// at all (the next attempt asks again).
    allowed: Mutex<HashMap<String, std::time::Instant>>,
}

/// How long a receiver's permission is trusted before it is asked again.
const VALIDATION_TTL: Duration = Duration::from_secs(24 * 3600);
/// The most URLs remembered; past it, all are forgotten and asked again.
const VALIDATION_MAX_URLS: usize = 10_000;

/// Most clients with a client certificate kept at once; beyond it the least recently used
/// goes (and is built again when its webhook next sends).
const MAX_IDENTITY_CLIENTS: usize = 256;

/// Which identity, whether certificates are verified, whether through the proxy.
type IdentityKey = ([u8; 32], bool, bool);

#[derive(Default)]
struct IdentityClients {
    tick: u64,
    clients: HashMap<IdentityKey, (u64, reqwest::Client)>,
}

impl IdentityClients {
    fn get(&mut self, key: &IdentityKey) -> Option<reqwest::Client> {
        self.tick += 1;
        let tick = self.tick;
        self.clients.get_mut(key).map(|(used, client)| {
            *used = tick;
            client.clone()
        })
    }

    fn insert(&mut self, key: IdentityKey, client: reqwest::Client) {
        if self.clients.len() >= MAX_IDENTITY_CLIENTS && !self.clients.contains_key(&key) {
            let oldest = self
                .clients
                .iter()
                .min_by_key(|(_, (used, _))| *used)
                .map(|(k, _)| *k);
            if let Some(oldest) = oldest {
                self.clients.remove(&oldest);
            }
        }
        self.tick += 1;
        self.clients.insert(key, (self.tick, client));
    }
}

/// One delivery client: the guarded resolver, timeouts, no redirects, the operator's roots,
/// and a client certificate when a webhook has one.
fn build_client(
    guard: &SsrfGuard,
    connect_timeout: Duration,
    total_timeout: Duration,
    extra_roots: &[reqwest::Certificate],
    verify: bool,
    proxy: Option<&ProxyUrl>,
    identity: Option<reqwest::Identity>,
) -> reqwest::Result<reqwest::Client> {
    let builder = reqwest::Client::builder();
    // Never HTTP_PROXY and friends: only the proxy the operator configured for
    // deliveries, whose receivers Herald vets before sending (see `send`).
    let builder =
        match proxy {
            None => builder
                .no_proxy()
                .dns_resolver(Arc::new(GuardedResolver::new(guard.clone()))),
            Some(proxy) => builder.proxy(proxy.to_reqwest()?).dns_resolver(Arc::new(
                GuardedResolver::for_proxy(guard.clone(), proxy.host_name()),
            )),
        };
    let mut builder = builder
        .connect_timeout(connect_timeout)
        .timeout(total_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(32)
        .danger_accept_invalid_certs(!verify);
    for cert in extra_roots {
        builder = builder.add_root_certificate(cert.clone());
    }
    if let Some(identity) = identity {
        builder = builder.identity(identity);
    }
    builder.build()
}

impl HttpSender {
    /// `extra_roots` are trusted beside the built-in roots (an operator's CA bundle);
    /// `egress` says which deliveries go through a proxy.
    pub fn new(
        connect_timeout: Duration,
        total_timeout: Duration,
        guard: SsrfGuard,
        extra_roots: &[reqwest::Certificate],
        egress: Egress,
        origin: String,
    ) -> anyhow::Result<Self> {
        let build = |verify: bool, proxy: Option<&ProxyUrl>| {
            build_client(
                &guard,
                connect_timeout,
                total_timeout,
                extra_roots,
                verify,
                proxy,
                None,
            )
        };
        let clients = |proxy: Option<&ProxyUrl>| -> reqwest::Result<Clients> {
            Ok(Clients {
                verify: build(true, proxy)?,
                insecure: build(false, proxy)?,
            })
        };
        Ok(Self {
            direct: clients(None)?,
            proxied: egress
                .proxy
                .as_ref()
                .map(|p| clients(Some(p)))
                .transpose()?,
            egress,
            connect_timeout,
            total_timeout,
            guard,
            extra_roots: Arc::new(extra_roots.to_vec()),
            with_identity: Arc::default(),
            validation: Arc::new(Validation {
                origin,
                allowed: Mutex::default(),
            }),
        })
    }

    /// CloudEvents webhook validation of `url` (see [`Validation`]), asked with `client`.
    async fn validate(
        &self,
        client: &reqwest::Client,
        url: &str,
        proxied: bool,
    ) -> Result<(), SendError> {
        let v = &self.validation;
        let now = std::time::Instant::now();
        let known = v
            .allowed
            .lock()
            .map(|m| m.get(url).copied())
            .unwrap_or(None);
        if known.is_some_and(|until| until > now) {
            return Ok(());
        }
        let response = client
            .request(reqwest::Method::OPTIONS, url)
            .header("WebHook-Request-Origin", &v.origin)
            .send()
            .await
            .map_err(|e| match self.describe(&e, proxied) {
                SendError::Connect(m) => {
                    SendError::Connect(format!("CloudEvents webhook validation (OPTIONS): {m}"))
                }
                other => other,
            })?;
        let status = response.status().as_u16();
        let allowed = response
            .headers()
            .get("webhook-allowed-origin")
            .and_then(|h| h.to_str().ok())
            .map(str::trim);
        match allowed {
            Some(a) if a == "*" || a.eq_ignore_ascii_case(&v.origin) => {}
            Some(a) => {
                return Err(SendError::NotAllowed(format!(
                    "the receiver allows deliveries from '{a}', not from '{}' (CloudEvents \
                     webhook validation; --public-url sets the origin Herald gives)",
                    v.origin
                )))
            }
            None if status == 403 => {
                return Err(SendError::NotAllowed(format!(
                    "the receiver refused deliveries from '{}' (CloudEvents webhook \
                     validation: OPTIONS answered 403)",
                    v.origin
                )))
            }
            // The receiver does not take part in the handshake.
            None => {}
        }
        if let Ok(mut m) = v.allowed.lock() {
            if m.len() >= VALIDATION_MAX_URLS {
                m.clear();
            }
            m.insert(url.to_string(), now + VALIDATION_TTL);
        }
        Ok(())
    }

    /// The client that presents `identity`, from the cache or built now (outside the lock:
    /// a build loads the roots and the key).
    fn identity_client(
        &self,
        identity: &ClientIdentity,
        verify: bool,
        proxied: bool,
    ) -> Result<reqwest::Client, SendError> {
        let key = (identity.digest(), verify, proxied);
        let cache = || self.with_identity.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(client) = cache().get(&key) {
            return Ok(client);
        }
        let unusable = |e: reqwest::Error| SendError::ClientCertificate(e.to_string());
        let pem = reqwest::Identity::from_pem(identity.pem()).map_err(unusable)?;
        let proxy = if proxied {
            self.egress.proxy.as_ref()
        } else {
            None
        };
        let client = build_client(
            &self.guard,
            self.connect_timeout,
            self.total_timeout,
            &self.extra_roots,
            verify,
            proxy,
            Some(pem),
        )
        .map_err(unusable)?;
        cache().insert(key, client.clone());
        Ok(client)
    }

    /// The longest a send may take, so callers know how long a claim must last.
    pub fn timeout(&self) -> Duration {
        self.total_timeout
    }

    /// Sends the request; an `Err` is a transport failure described for a human.
    pub async fn send(&self, request: &OutgoingRequest) -> Result<ReceiverResponse, SendError> {
        // reqwest connects to IP-literal hosts without asking the resolver: check them here.
        self.guard
            .check_url(&request.url)
            .map_err(|blocked| SendError::Blocked(blocked.to_string()))?;
        let method = match request.method {
            RequestMethod::Get => reqwest::Method::GET,
            RequestMethod::Post => reqwest::Method::POST,
        };
        let started = std::time::Instant::now();
        // A URL that does not parse goes out directly, for reqwest to refuse it.
        let parsed = url::Url::parse(&request.url).ok();
        let proxied = match (&self.proxied, &parsed) {
            (Some(clients), Some(url)) if self.egress.proxies(url) => {
                // The proxy resolves the receiver's name where Herald cannot see it:
                // vet that name's addresses first, as the direct client's resolver would.
                self.guard
                    .vet_target(url, self.connect_timeout)
                    .await
                    .map_err(SendError::Blocked)?;
                Some(clients)
            }
            _ => None,
        };
        let client = match &request.client_identity {
            None => proxied
                .unwrap_or(&self.direct)
                .pick(request.tls_verify)
                .clone(),
            Some(identity) => {
                self.identity_client(identity, request.tls_verify, proxied.is_some())?
            }
        };
        if request.validation_handshake {
            self.validate(&client, &request.url, proxied.is_some())
                .await?;
        }
        let mut builder = client.request(method, &request.url);
        if proxied.is_some() {
            // Resolving the receiver counts against the total, which stays a bound.
            builder = builder.timeout(self.total_timeout.saturating_sub(started.elapsed()));
        }
        for h in &request.headers {
            builder = builder.header(&h.name, &h.value);
        }
        let mut response = builder
            .body(request.body.clone())
            .send()
            .await
            .map_err(|e| self.describe(&e, proxied.is_some()))?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let mut body = Vec::new();
        let mut truncated = false;
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    let room = RESPONSE_BODY_CAP - body.len();
                    if chunk.len() > room {
                        body.extend_from_slice(&chunk[..room]);
                        truncated = true;
                        break; // dropping the response closes the connection
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                // The status already arrived: a broken body does not change the outcome.
                Err(e) => {
                    tracing::debug!(error = %e, "response body ended early");
                    truncated = true;
                    break;
                }
            }
        }
        Ok(ReceiverResponse {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
            truncated,
        })
    }

    /// `proxied`: the request went to the proxy, so a connection failure may be the proxy's.
    fn describe(&self, e: &reqwest::Error, proxied: bool) -> SendError {
        // A refusal of the guard (raised in the resolver) is the whole story: say just that.
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            if let Some(blocked) = s.downcast_ref::<Blocked>() {
                return SendError::Blocked(blocked.to_string());
            }
            source = s.source();
        }
        if e.is_timeout() {
            return SendError::Timeout(self.total_timeout);
        }
        // The innermost cause is the useful part ("Connection refused", "dns error" ...).
        let mut source = std::error::Error::source(e);
        let mut last = None;
        while let Some(s) = source {
            last = Some(s.to_string());
            source = s.source();
        }
        let with_cause = |text: &str| match &last {
            Some(cause) => format!("{text}: {cause}"),
            None => text.to_string(),
        };
        if e.is_connect() && proxied {
            SendError::Connect(with_cause("could not connect through the delivery proxy"))
        } else if e.is_connect() {
            SendError::Connect(with_cause("could not connect"))
        } else if e.is_builder() {
            SendError::Failed(with_cause("the request could not be built"))
        } else {
            SendError::Failed(with_cause("the request failed"))
        }
    }
}
