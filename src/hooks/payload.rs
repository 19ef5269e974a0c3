//! Turns a webhook's configuration and a registry event into the HTTP request to send.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;

use crate::domain::delivery::StoredRequest;
use crate::domain::deploy::TokenUse;
use crate::domain::model::Webhook;
use crate::domain::names::{ContentType, RequestMethod};
use crate::hooks::client_cert::ClientIdentity;
use crate::hooks::{formats, signing};
use crate::secrets::Cipher;

/// Shown in place of secrets in stored requests.
pub const REDACTED: &str = "[redacted]";

#[derive(Debug, Clone)]
pub struct OutgoingHeader {
    pub name: String,
    pub value: String,
    /// Secret values are redacted before the request is stored or shown.
    pub secret: bool,
}

#[derive(Debug, Clone)]
pub struct OutgoingRequest {
    pub method: RequestMethod,
    pub url: String,
    pub headers: Vec<OutgoingHeader>,
    pub body: String,
    /// The body as stored and shown, when it holds a secret (GitLab's trigger token).
    pub body_redacted: Option<String>,
    /// True when `body` is the event exactly as received (stored once, with the event).
    pub body_is_event: bool,
    pub tls_verify: bool,
    /// The webhook's client certificate and key, for receivers behind mutual TLS.
    pub client_identity: Option<ClientIdentity>,
    /// Ask the receiver first (CloudEvents webhook validation): the CloudEvents formats.
    pub validation_handshake: bool,
    /// A broker webhook's username and password, which authenticate the connection to the
    /// broker instead of travelling as a header.
    pub broker_credentials: Option<BrokerCredentials>,
}

/// What a broker connection authenticates with; either part may be missing (Redis takes a
/// password alone).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct BrokerCredentials {
    pub username: Option<String>,
    pub password: Option<String>,
}

impl std::fmt::Debug for BrokerCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BrokerCredentials([redacted])")
    }
}

impl OutgoingRequest {
    pub fn redacted(&self) -> StoredRequest {
        StoredRequest {
            method: self.method.as_str().to_string(),
            url: self.url.clone(),
            headers: self
                .headers
                .iter()
                .map(|h| {
                    let value = if h.secret {
                        REDACTED.to_string()
                    } else {
                        h.value.clone()
                    };
                    (h.name.clone(), value)
                })
                .collect(),
            body: self
                .body_redacted
                .clone()
                .unwrap_or_else(|| self.body.clone()),
        }
    }
}

/// Builds the request around a body already rendered in the webhook's format. Fails only
/// when a sealed secret cannot be opened.
pub fn render(
    webhook: &Webhook,
    cipher: &Cipher,
    delivery_id: i64,
    action: &str,
    rendered: formats::Rendered,
) -> Result<OutgoingRequest, String> {
    let format_headers = rendered.headers;
    let token = webhook
        .token
        .as_ref()
        .map(|sealed| cipher.open(sealed))
        .transpose()?;
    let token_use = webhook.format.token_use();
    let (body, body_is_event) = match webhook.content_type {
        ContentType::Json => (rendered.body, rendered.body_is_event),
        ContentType::Form => {
            let encoded: String =
                url::form_urlencoded::byte_serialize(rendered.body.as_bytes()).collect();
            (format!("payload={encoded}"), false)
        }
    };
    // CloudEvents names its own media type in structured mode.
    let content_type = match (webhook.content_type, rendered.content_type) {
        (ContentType::Json, Some(ct)) => ct,
        (ct, _) => ct.as_str(),
    };
    // GitLab reads the trigger token from the body: the stored copy shows it redacted.
    let (body, body_redacted) = match (token_use, &token) {
        (Some(TokenUse::BodyField), Some(token)) => (
            with_token(&body, token)?,
            Some(with_token(&body, REDACTED)?),
        ),
        _ => (body, None),
    };
    let mut headers = vec![OutgoingHeader {
        name: "Content-Type".into(),
        value: content_type.into(),
        secret: false,
    }];
    let broker = webhook.url.is_broker();
    let broker_credentials = match (broker, &webhook.username, &webhook.password) {
        (false, _, _) | (true, None, None) => None,
        (true, username, password) => Some(BrokerCredentials {
            username: username.clone(),
            password: password.as_ref().map(|p| cipher.open(p)).transpose()?,
        }),
    };
    if let (false, Some(user), Some(sealed)) = (broker, &webhook.username, &webhook.password) {
        let password = cipher.open(sealed)?;
        headers.push(OutgoingHeader {
            name: "Authorization".into(),
            value: format!("Basic {}", B64.encode(format!("{user}:{password}"))),
            secret: true,
        });
    }
    if let (Some(TokenUse::Bearer), Some(token), false) = (token_use, &token, broker) {
        headers.retain(|h| !h.name.eq_ignore_ascii_case("authorization"));
        headers.push(OutgoingHeader {
            name: "Authorization".into(),
            value: format!("Bearer {token}"),
            secret: true,
        });
    }
    headers.extend(
        format_headers
            .into_iter()
            .map(|(name, value)| OutgoingHeader {
                name,
                value,
                secret: false,
            }),
    );
    headers.push(OutgoingHeader {
        name: "User-Agent".into(),
        value: format!("Herald/{}", env!("CARGO_PKG_VERSION")),
        secret: false,
    });
    headers.push(OutgoingHeader {
        name: "X-Herald-Delivery".into(),
        value: delivery_id.to_string(),
        secret: false,
    });
    headers.push(OutgoingHeader {
        name: "X-Herald-Event".into(),
        value: action.to_string(),
        secret: false,
    });
    // Custom headers win over Herald's defaults of the same name (a custom Content-Type too).
    for custom in &webhook.headers {
        let value = cipher.open(&custom.value)?;
        headers.retain(|h| !custom.name.eq_ignore_case(&h.name));
        let secret = !custom.name.eq_ignore_case("content-type");
        headers.push(OutgoingHeader {
            name: custom.name.as_str().to_string(),
            value,
            secret,
        });
    }
    // Standard Webhooks: signed over exactly the bytes sent, with every valid secret.
    if !webhook.signing_secrets.is_empty() {
        let mut keys = Vec::with_capacity(webhook.signing_secrets.len());
        for sealed in &webhook.signing_secrets {
            // `whsec_` or `whsk_`: after a change of scheme the two kinds sign side by side.
            let key = cipher.open(sealed)?;
            keys.push(signing::SigningKey::parse(&key).map_err(|e| e.message)?);
        }
        let msg_id = delivery_id.to_string();
        let timestamp = chrono::Utc::now().timestamp();
        let signature = signing::header_for_keys(&keys, &msg_id, timestamp, body.as_bytes());
        for (name, value) in [
            (signing::HEADER_ID, msg_id),
            (signing::HEADER_TIMESTAMP, timestamp.to_string()),
            (signing::HEADER_SIGNATURE, signature),
        ] {
            headers.retain(|h| !h.name.eq_ignore_ascii_case(name));
            headers.push(OutgoingHeader {
                name: name.to_string(),
                value,
                secret: false,
            });
        }
    }
    // Flux's generic-hmac Receiver: the hex HMAC-SHA256 of exactly the bytes sent.
    if let (Some(TokenUse::HmacSignature), Some(token)) = (token_use, &token) {
        headers.retain(|h| !h.name.eq_ignore_ascii_case(signing::X_SIGNATURE));
        headers.push(OutgoingHeader {
            name: signing::X_SIGNATURE.into(),
            value: signing::x_signature(token.as_bytes(), body.as_bytes()),
            secret: false,
        });
    }
    let client_identity = match (&webhook.client_certificate, &webhook.client_key) {
        (Some(certificate), Some(sealed)) => {
            Some(ClientIdentity::new(certificate, &cipher.open(sealed)?))
        }
        _ => None,
    };
    Ok(OutgoingRequest {
        method: webhook.request_method,
        url: webhook.url.as_str().to_string(),
        headers,
        body,
        body_redacted,
        body_is_event,
        tls_verify: webhook.tls_verify,
        client_identity,
        validation_handshake: !broker
            && matches!(
                webhook.format,
                crate::domain::format::Format::Cloudevents
                    | crate::domain::format::Format::CloudeventsBinary
            ),
        broker_credentials,
    })
}

/// The JSON object `body` with a `token` field; `body` is a deploy format's own object.
fn with_token(body: &str, token: &str) -> Result<String, String> {
    let mut object: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(body).map_err(|e| format!("the body is not a JSON object: {e}"))?;
    object.insert("token".into(), serde_json::Value::String(token.into()));
    serde_json::to_string(&object).map_err(|e| e.to_string())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::domain::model::StoredHeader;
    use crate::domain::names::*;

    /// A webhook with every setting given (shared with the dispatcher's tests).
    pub(crate) fn webhook(cipher: &Cipher) -> Webhook {
        Webhook {
            id: 1,
            namespace: NamespaceName::parse("acme").unwrap(),
            name: WebhookName::parse("deploy").unwrap(),
            url: WebhookUrl::parse("http://127.0.0.1:9/hook").unwrap(),
            request_method: RequestMethod::Post,
            content_type: ContentType::Json,
            username: Some("bot".into()),
            password: Some(cipher.seal("s3cret")),
            headers: vec![StoredHeader {
                name: HeaderName::parse("X-Token").unwrap(),
                value: cipher.seal("abc"),
            }],
            enabled: true,
            created_at: chrono::Utc::now(),
            updated_at: chrono::Utc::now(),
            signing_secrets: vec![],
            previous_secret_until: None,
            failing_since: None,
            filters: Default::default(),
            format: Default::default(),
            template: None,
            tls_verify: true,
            rate_limit: None,
            ordering: Default::default(),
            circuit: Default::default(),
            signature: Default::default(),
            client_certificate: None,
            client_key: None,
            token: None,
            format_options: Default::default(),
            revision: 0,
        }
    }

    fn event(body: &str) -> formats::Rendered {
        formats::render_builtin(
            crate::domain::format::Format::RegistryEvent,
            body,
            &Default::default(),
        )
        .unwrap()
    }

    fn header<'a>(r: &'a OutgoingRequest, name: &str) -> Option<&'a str> {
        r.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str())
    }

    #[test]
    fn json_request_carries_auth_headers_and_the_exact_event() {
        let cipher = Cipher::from_key(&[3; 32]);
        let body = "{\n  \"id\": \"x\", \"action\": \"push\"\n}";
        let r = render(&webhook(&cipher), &cipher, 42, "push", event(body)).unwrap();
        assert_eq!(r.body, body);
        assert!(r.body_is_event);
        assert_eq!(header(&r, "content-type"), Some("application/json"));
        assert_eq!(header(&r, "authorization"), Some("Basic Ym90OnMzY3JldA=="));
        assert_eq!(header(&r, "x-herald-delivery"), Some("42"));
        assert_eq!(header(&r, "x-herald-event"), Some("push"));
        assert_eq!(header(&r, "x-token"), Some("abc"));
        assert!(header(&r, "user-agent").unwrap().starts_with("Herald/"));
        let stored = r.redacted();
        let shown: Vec<_> = stored
            .headers
            .iter()
            .map(|(n, v)| format!("{n}: {v}"))
            .collect();
        assert!(shown.contains(&"Authorization: [redacted]".to_string()));
        assert!(shown.contains(&"X-Token: [redacted]".to_string()));
        assert!(!shown
            .iter()
            .any(|h| h.contains("s3cret") || h.contains("abc")));
    }

    #[test]
    fn form_encoding_and_custom_content_type() {
        let cipher = Cipher::from_key(&[3; 32]);
        let mut w = webhook(&cipher);
        w.content_type = ContentType::Form;
        w.username = None;
        w.headers = vec![StoredHeader {
            name: HeaderName::parse("content-type").unwrap(),
            value: cipher.seal("application/vnd.custom+json"),
        }];
        let r = render(&w, &cipher, 1, "delete", event(r#"{"a":"b c&d"}"#)).unwrap();
        assert_eq!(r.body, "payload=%7B%22a%22%3A%22b+c%26d%22%7D");
        assert!(!r.body_is_event);
        assert_eq!(
            header(&r, "content-type"),
            Some("application/vnd.custom+json")
        );
        assert_eq!(
            r.headers
                .iter()
                .filter(|h| h.name.eq_ignore_ascii_case("content-type"))
                .count(),
            1
        );
        assert!(
            header(&r, "authorization").is_none(),
            "basic auth needs both username and password"
        );
    }

    fn deploy(
        cipher: &Cipher,
        format: crate::domain::format::Format,
        options: serde_json::Value,
    ) -> Webhook {
        let mut w = webhook(cipher);
        w.username = None;
        w.password = None;
        w.headers = vec![];
        w.format = format;
        w.token = Some(cipher.seal("tok-3n"));
        w.format_options = serde_json::from_value(options).unwrap();
        w
    }

    fn rendered(w: &Webhook, fixture: &str) -> formats::Rendered {
        let bytes = std::fs::read(format!(
            "{}/tests/fixtures/{fixture}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        let event = crate::registry::envelope::split_envelope(&bytes).unwrap()[0]
            .get()
            .to_string();
        formats::render_with(w.format, &w.format_options, &event, &Default::default()).unwrap()
    }

    const TAGGED: &str = "distribution-2.8.2/push-manifest-tagged.json";

    #[test]
    fn gitlab_token_goes_in_the_body_and_is_redacted_when_stored() {
        use crate::domain::format::Format;
        let cipher = Cipher::from_key(&[3; 32]);
        let w = deploy(
            &cipher,
            Format::GitlabTrigger,
            serde_json::json!({"ref": "main"}),
        );
        let r = render(&w, &cipher, 5, "push", rendered(&w, TAGGED)).unwrap();
        let sent: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(sent["token"], "tok-3n");
        assert_eq!(sent["ref"], "main");
        let stored = r.redacted();
        assert!(!stored.body.contains("tok-3n"), "{}", stored.body);
        let shown: serde_json::Value = serde_json::from_str(&stored.body).unwrap();
        assert_eq!(shown["token"], REDACTED);
        assert_eq!(shown["variables"], sent["variables"]);
        assert!(header(&r, "authorization").is_none());
    }

    #[test]
    fn github_token_is_a_redacted_bearer_and_flux_signs_the_body() {
        use crate::domain::format::Format;
        let cipher = Cipher::from_key(&[3; 32]);
        let w = deploy(
            &cipher,
            Format::GithubDispatch,
            serde_json::json!({"event_type": "deploy"}),
        );
        let r = render(&w, &cipher, 5, "push", rendered(&w, TAGGED)).unwrap();
        assert_eq!(header(&r, "authorization"), Some("Bearer tok-3n"));
        assert_eq!(header(&r, "accept"), Some("application/vnd.github+json"));
        assert!(r
            .redacted()
            .headers
            .contains(&("Authorization".into(), REDACTED.into())));
        let w = deploy(&cipher, Format::Flux, serde_json::json!({}));
        let r = render(&w, &cipher, 5, "push", rendered(&w, TAGGED)).unwrap();
        assert_eq!(
            header(&r, "x-signature"),
            Some(signing::x_signature(b"tok-3n", r.body.as_bytes()).as_str())
        );
        assert!(!r.body.contains("tok-3n") && header(&r, "authorization").is_none());
    }
}
