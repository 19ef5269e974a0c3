//! The outbound HTTP client: no redirects, bounded time, and a response body read as a
//! stream and cut at a cap, so a huge or endless response never fills memory. Every address
//! it connects to has passed the SSRF guard.

use std::sync::Arc;
use std::time::Duration;

use crate::delivery::ssrf::{Blocked, GuardedResolver, SsrfGuard};
use crate::hooks::payload::OutgoingRequest;
use crate::hooks::types::RequestMethod;

/// How much of a response body is kept.
pub const RESPONSE_BODY_CAP: usize = 64 * 1024;

#[derive(Debug, Clone)]
pub struct ReceiverResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub truncated: bool,
}

#[derive(Clone)]
pub struct HttpSender {
    client: reqwest::Client,
    /// For webhooks that opted out of certificate verification.
    insecure: reqwest::Client,
    total_timeout: Duration,
    guard: SsrfGuard,
}

impl HttpSender {
    /// `extra_roots` are trusted beside the built-in roots (an operator's CA bundle).
    pub fn new(
        connect_timeout: Duration,
        total_timeout: Duration,
        guard: SsrfGuard,
        extra_roots: &[reqwest::Certificate],
    ) -> anyhow::Result<Self> {
        let build = |verify: bool| {
            let mut builder = reqwest::Client::builder()
                .dns_resolver(Arc::new(GuardedResolver::new(guard.clone())))
                // Through a proxy the guard would vet the proxy, not the receiver: connect directly.
                .no_proxy()
                .connect_timeout(connect_timeout)
                .timeout(total_timeout)
                .redirect(reqwest::redirect::Policy::none())
                .pool_idle_timeout(Duration::from_secs(60))
                .pool_max_idle_per_host(32)
                .danger_accept_invalid_certs(!verify);
            for cert in extra_roots {
                builder = builder.add_root_certificate(cert.clone());
            }
            builder.build()
        };
        Ok(Self {
            client: build(true)?,
            insecure: build(false)?,
            total_timeout,
            guard,
        })
    }

    /// The longest a send may take, so callers know how long a claim must last.
    pub fn timeout(&self) -> Duration {
        self.total_timeout
    }

    /// Sends the request; an `Err` is a transport failure described for a human.
    pub async fn send(&self, request: &OutgoingRequest) -> Result<ReceiverResponse, String> {
        // reqwest connects to IP-literal hosts without asking the resolver: check them here.
        self.guard
            .check_url(&request.url)
            .map_err(|blocked| blocked.to_string())?;
        let method = match request.method {
            RequestMethod::Get => reqwest::Method::GET,
            RequestMethod::Post => reqwest::Method::POST,
        };
        let client = if request.tls_verify {
            &self.client
        } else {
            &self.insecure
        };
        let mut builder = client.request(method, &request.url);
        for h in &request.headers {
            builder = builder.header(&h.name, &h.value);
        }
        let mut response = builder
            .body(request.body.clone())
            .send()
            .await
            .map_err(|e| self.describe(&e))?;
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

    fn describe(&self, e: &reqwest::Error) -> String {
        // A refusal of the guard (raised in the resolver) is the whole story: say just that.
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            if let Some(blocked) = s.downcast_ref::<Blocked>() {
                return blocked.to_string();
            }
            source = s.source();
        }
        let mut text = if e.is_timeout() {
            format!(
                "timed out (limit {})",
                humantime::format_duration(self.total_timeout)
            )
        } else if e.is_connect() {
            "could not connect".to_string()
        } else if e.is_builder() {
            "the request could not be built".to_string()
        } else {
            "the request failed".to_string()
        };
        // The innermost cause is the useful part ("Connection refused", "dns error" ...).
        let mut source = std::error::Error::source(e);
        let mut last = None;
        while let Some(s) = source {
            last = Some(s.to_string());
            source = s.source();
        }
        if let Some(cause) = last {
            text.push_str(": ");
            text.push_str(&cause);
        }
        text
    }
}
