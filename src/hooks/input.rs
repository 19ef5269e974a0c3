//! Webhook fields as a client or a form sends them, turned into validated values. The REST
//! API and the web UI share this, so both accept and refuse exactly the same input.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};

use crate::domain::control::{DeliveryOrder, RateLimit};
use crate::domain::deploy::{check_settings, FormatOptions};
use crate::domain::destination::split_credentials;
use crate::domain::filters::Filters;
use crate::domain::format::Format;
use crate::domain::model::{Audit, NewWebhook, StoredHeader, Webhook, WebhookPatch};
use crate::domain::names::{
    ContentType, HeaderName, HeaderValue, Invalid, RequestMethod, WebhookName, WebhookUrl,
};
use crate::domain::signature::SignatureScheme;
use crate::hooks::templates::{compile as validate_template, TemplateSandbox};
use crate::secrets::{Cipher, Sealed};

/// Unvalidated webhook fields. `None` means "not given"; for `username` and `password`,
/// `Some(None)` (JSON `null`) or an empty string means "none".
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookInput {
    pub name: Option<String>,
    pub url: Option<String>,
    pub request_method: Option<String>,
    pub content_type: Option<String>,
    #[serde(default, deserialize_with = "double_option")]
    pub username: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    pub password: Option<Option<String>>,
    pub headers: Option<BTreeMap<String, String>>,
    pub enabled: Option<bool>,
    /// Which events the webhook wants; fields left out take their defaults.
    pub filters: Option<Filters>,
    /// `registry-event` (default), `registry-envelope`, `cloudevents`, `cloudevents-binary`,
    /// `slack`, `teams`, `discord`, `mattermost`, `google-chat` or `template`.
    pub format: Option<String>,
    /// A minijinja template for the `template` format.
    #[serde(default, deserialize_with = "double_option")]
    pub template: Option<Option<String>>,
    /// `false` skips TLS certificate verification for this webhook (shown as a warning).
    pub tls_verify: Option<bool>,
    /// At most this many deliveries per second (per process), from 0.01 to 10000, with a
    /// burst of one second's worth; `null`: no limit (the default).
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<f64>)]
    pub rate_limit: Option<Option<f64>>,
    /// `none` (default) or `fifo`: one delivery at a time, in the order events arrived.
    pub ordering: Option<String>,
    /// Standard Webhooks scheme: `v1` (HMAC-SHA256 with a shared secret, the default) or
    /// `v1a` (ed25519: receivers verify with `signature_public_key`).
    pub signature: Option<String>,
    /// For receivers behind mutual TLS: the PEM certificate chain to present, client
    /// certificate first. Given with `client_key`; `null` removes both.
    #[serde(default, deserialize_with = "double_option")]
    pub client_certificate: Option<Option<String>>,
    /// The PEM private key of `client_certificate` (PKCS#8, RSA or EC); write-only.
    #[serde(default, deserialize_with = "double_option")]
    pub client_key: Option<Option<String>>,
    /// The deploy tool's secret, write-only (`has_token` says whether one is set): Flux's
    /// Receiver token (the HMAC key of `X-Signature`) for `flux`, a GitHub token (sent as
    /// `Authorization: Bearer`) for `github-dispatch`, the pipeline trigger token for
    /// `gitlab-trigger`. Those formats need it; the others refuse it. `null` removes it.
    #[serde(default, deserialize_with = "double_option")]
    pub token: Option<Option<String>>,
    /// What the deploy formats read besides the event: `event_type` (`github-dispatch`,
    /// required), `ref` and `variables` (`gitlab-trigger`; `ref` required), `registry`
    /// (every deploy format). Replaces the options as a whole; `{}` removes them.
    pub format_options: Option<FormatOptions>,
}

/// Tells an absent field (`None`) from an explicit `null` (`Some(None)`).
pub fn double_option<'de, D, T>(de: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(de).map(Some)
}

/// Collects every problem, so a form can show each next to its field.
struct Problems(Vec<Invalid>);

impl Problems {
    fn take<T>(&mut self, r: Result<T, Invalid>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.0.push(e);
                None
            }
        }
    }
}

impl WebhookInput {
    /// A new webhook; every field problem is reported.
    pub fn into_new(self, cipher: &Cipher) -> Result<NewWebhook, Vec<Invalid>> {
        let mut p = Problems(Vec::new());
        if self.enabled == Some(true) {
            p.0.push(Invalid::new(
                "enabled",
                "new webhooks start disabled; enable it once it is set up",
            ));
        }
        let name = p.take(WebhookName::parse(self.name.as_deref().unwrap_or("")));
        let (url, from_url) = split_credentials(self.url.as_deref().unwrap_or(""));
        let url = p.take(WebhookUrl::parse(&url));
        let (username, password) = match &from_url {
            None => (flat(&self.username), flat(&self.password)),
            Some(c) => {
                p.take(credentials_once(&self.username, &self.password));
                (
                    c.username.as_deref().unwrap_or(""),
                    c.password.as_deref().unwrap_or(""),
                )
            }
        };
        let format = p
            .take(
                self.format
                    .as_deref()
                    .map_or(Ok(Format::default()), Format::parse),
            )
            .unwrap_or_default();
        // A format that must be POSTed defaults to POST, and refuses an explicit GET.
        let default_method = match format.needs_post() {
            Some(_) => RequestMethod::Post,
            None => RequestMethod::default(),
        };
        let method = p.take(
            self.request_method
                .as_deref()
                .map_or(Ok(default_method), RequestMethod::parse)
                .and_then(|m| check_method(format, m)),
        );
        let content_type = p.take(
            self.content_type
                .as_deref()
                .map_or(Ok(ContentType::default()), ContentType::parse)
                .and_then(|c| check_content_type(format, c)),
        );
        let username = p.take(parse_username(username));
        let password = p.take(parse_password(password, cipher));
        let headers = p.take(parse_headers(&self.headers.unwrap_or_default(), cipher));
        // A deploy trigger gets only pushes (of tagged manifests): its filters say so.
        let default_filters = match format.triggers_deploy() {
            true => Filters {
                actions: vec![crate::domain::events::Action::Push],
                ..Filters::default()
            },
            false => Filters::default(),
        };
        let filters = p
            .take(self.filters.unwrap_or(default_filters).validate())
            .unwrap_or_default();
        let rate_limit = p
            .take(
                self.rate_limit
                    .flatten()
                    .map(RateLimit::per_second)
                    .transpose(),
            )
            .flatten();
        let ordering = p
            .take(
                self.ordering
                    .as_deref()
                    .map_or(Ok(DeliveryOrder::default()), DeliveryOrder::parse),
            )
            .unwrap_or_default();
        let template = self.template.flatten().filter(|t| !t.trim().is_empty());
        if let Some(t) = &template {
            p.take(validate_template(t));
        }
        if format == Format::Template && template.is_none() {
            p.0.push(Invalid::new(
                "template",
                "the template format needs a template",
            ));
        }
        let signature = p
            .take(
                self.signature
                    .as_deref()
                    .map_or(Ok(SignatureScheme::default()), SignatureScheme::parse),
            )
            .unwrap_or_default();
        let identity = match client_identity(
            flat(&self.client_certificate),
            flat(&self.client_key),
            cipher,
        ) {
            Ok(identity) => identity,
            Err(problems) => {
                p.0.extend(problems);
                None
            }
        };
        let (client_certificate, client_key) = identity.unzip();
        let token = p.take(parse_token(flat(&self.token), cipher)).flatten();
        let format_options = self.format_options.unwrap_or_default();
        if let Some(password) = &password {
            p.take(check_settings(
                format,
                &format_options,
                token.is_some(),
                password.is_some(),
            ));
        }
        match (name, url, method, content_type, username, password, headers) {
            (
                Some(name),
                Some(url),
                Some(request_method),
                Some(content_type),
                Some(username),
                Some(password),
                Some(headers),
            ) if p.0.is_empty() => Ok(NewWebhook {
                name,
                url,
                request_method,
                content_type,
                username,
                password,
                headers,
                signing_secret: cipher.seal(&crate::hooks::signing::generate(signature)),
                filters,
                format,
                template,
                tls_verify: self.tls_verify.unwrap_or(true),
                rate_limit,
                ordering,
                signature,
                client_certificate,
                client_key,
                token,
                format_options,
            }),
            _ => Err(p.0),
        }
    }

    /// A partial update of the fields given.
    pub fn into_patch(self, cipher: &Cipher) -> Result<WebhookPatch, Vec<Invalid>> {
        let mut p = Problems(Vec::new());
        let (url, from_url) = match self.url.as_deref().map(split_credentials) {
            Some((url, credentials)) => (Some(url), credentials),
            None => (None, None),
        };
        let mut patch = WebhookPatch {
            name: self
                .name
                .as_deref()
                .and_then(|n| p.take(WebhookName::parse(n))),
            url: url.as_deref().and_then(|u| p.take(WebhookUrl::parse(u))),
            request_method: self
                .request_method
                .as_deref()
                .and_then(|m| p.take(RequestMethod::parse(m))),
            content_type: self
                .content_type
                .as_deref()
                .and_then(|c| p.take(ContentType::parse(c))),
            username: self
                .username
                .as_ref()
                .and_then(|u| p.take(parse_username(u.as_deref().unwrap_or("")))),
            password: self
                .password
                .as_ref()
                .and_then(|pw| p.take(parse_password(pw.as_deref().unwrap_or(""), cipher))),
            headers: self
                .headers
                .as_ref()
                .and_then(|h| p.take(parse_headers(h, cipher))),
            enabled: self.enabled,
            filters: self.filters.clone().and_then(|f| p.take(f.validate())),
            format: self
                .format
                .as_deref()
                .and_then(|f| p.take(Format::parse(f))),
            template: self
                .template
                .clone()
                .map(|t| t.filter(|t| !t.trim().is_empty())),
            tls_verify: self.tls_verify,
            rate_limit: self
                .rate_limit
                .map(|r| r.and_then(|r| p.take(RateLimit::per_second(r)))),
            ordering: self
                .ordering
                .as_deref()
                .and_then(|o| p.take(DeliveryOrder::parse(o))),
            signature: self
                .signature
                .as_deref()
                .and_then(|s| p.take(SignatureScheme::parse(s))),
            signing_secret: None,
            client_identity: None,
            token: self
                .token
                .as_ref()
                .and_then(|t| p.take(parse_token(t.as_deref().unwrap_or(""), cipher))),
            format_options: self.format_options.clone(),
        };
        // A broker URL's credentials replace the webhook's username and password.
        if let Some(c) = from_url {
            p.take(credentials_once(&self.username, &self.password));
            patch.username = p.take(parse_username(c.username.as_deref().unwrap_or("")));
            patch.password = p.take(parse_password(c.password.as_deref().unwrap_or(""), cipher));
        }
        match (&self.client_certificate, &self.client_key) {
            (None, None) => {}
            // Removing the certificate removes its key: a key alone is of no use.
            (Some(None), None | Some(None)) => patch.client_identity = Some(None),
            (Some(Some(c)), None | Some(None)) if c.trim().is_empty() => {
                patch.client_identity = Some(None)
            }
            (certificate, key) => {
                let certificate = certificate.as_ref().and_then(|c| c.as_deref());
                let key = key.as_ref().and_then(|k| k.as_deref());
                match client_identity(certificate.unwrap_or(""), key.unwrap_or(""), cipher) {
                    Ok(Some(identity)) => patch.client_identity = Some(Some(identity)),
                    Ok(None) => patch.client_identity = Some(None),
                    Err(problems) => p.0.extend(problems),
                }
            }
        }
        if let Some(Some(t)) = &patch.template {
            p.take(validate_template(t));
        }
        if p.0.is_empty() {
            Ok(patch)
        } else {
            Err(p.0)
        }
    }
}

/// The template checks that need the sandbox: a new webhook's template renders a sample
/// event, so unknown filters, includes and bombs are refused when saved.
pub async fn check_new_template(
    new: &NewWebhook,
    sandbox: &TemplateSandbox,
) -> Result<(), Invalid> {
    match &new.template {
        Some(t) => sandbox.validate(t).await,
        None => Ok(()),
    }
}

fn check_method(format: Format, method: RequestMethod) -> Result<RequestMethod, Invalid> {
    match format.needs_post() {
        Some(why) if method == RequestMethod::Get => Err(Invalid::new(
            "request_method",
            format!("{why}; the {} format cannot use GET", format.as_str()),
        )),
        _ => Ok(method),
    }
}

fn check_content_type(format: Format, content_type: ContentType) -> Result<ContentType, Invalid> {
    match format.refuses_form() {
        Some(why) if content_type == ContentType::Form => Err(Invalid::new("content_type", why)),
        _ => Ok(content_type),
    }
}

/// The checks of an update against the webhook as it is: the format, method, content type
/// and template in force afterwards must go together. A change to a format that must be
/// POSTed moves a GET webhook to POST unless the update names a method.
pub async fn check_patch(
    patch: &mut WebhookPatch,
    current: &Webhook,
    sandbox: &TemplateSandbox,
) -> Result<(), Invalid> {
    let format = patch.format.unwrap_or(current.format);
    if format.needs_post().is_some()
        && patch.format.is_some()
        && patch.request_method.is_none()
        && current.request_method == RequestMethod::Get
    {
        patch.request_method = Some(RequestMethod::Post);
    }
    check_method(
        format,
        patch.request_method.unwrap_or(current.request_method),
    )?;
    check_content_type(format, patch.content_type.unwrap_or(current.content_type))?;
    // The format's token and options as they will be, whichever of them the update names.
    check_settings(
        format,
        patch
            .format_options
            .as_ref()
            .unwrap_or(&current.format_options),
        match &patch.token {
            Some(token) => token.is_some(),
            None => current.token.is_some(),
        },
        match &patch.password {
            Some(password) => password.is_some(),
            None => current.password.is_some(),
        },
    )?;
    let template = match &patch.template {
        Some(t) => t.as_deref(),
        None => current.template.as_deref(),
    };
    let changed = patch.format.is_some() || patch.template.is_some();
    match (format, template) {
        (Format::Template, None) => Err(Invalid::new(
            "template",
            "the template format needs a template",
        )),
        (_, Some(t)) if changed => sandbox.validate(t).await,
        _ => Ok(()),
    }
}

/// A client certificate and key given together (checked, the key sealed), or neither;
/// one without the other is refused, naming the one missing.
fn client_identity(
    certificate: &str,
    key: &str,
    cipher: &Cipher,
) -> Result<Option<(String, Sealed)>, Vec<Invalid>> {
    match (certificate.trim().is_empty(), key.trim().is_empty()) {
        (true, true) => Ok(None),
        (false, true) => Err(vec![Invalid::new(
            "client_key",
            "a client certificate needs its private key in client_key (both are set together)",
        )]),
        (true, false) => Err(vec![Invalid::new(
            "client_certificate",
            "a client_key needs its certificate in client_certificate (both are set together)",
        )]),
        (false, false) => {
            let checked = crate::hooks::client_cert::check(certificate, key)?;
            Ok(Some((checked.certificate, cipher.seal(&checked.key))))
        }
    }
}

/// Credentials come either in a broker URL's user part or in `username`/`password`:
/// both at once would leave one of them silently unused.
fn credentials_once(
    username: &Option<Option<String>>,
    password: &Option<Option<String>>,
) -> Result<(), Invalid> {
    if flat(username).trim().is_empty() && flat(password).is_empty() {
        return Ok(());
    }
    Err(Invalid::new(
        "url",
        "the URL holds credentials and username/password are given too: give them once",
    ))
}

fn flat(v: &Option<Option<String>>) -> &str {
    v.as_ref().and_then(|s| s.as_deref()).unwrap_or("")
}

/// Basic auth user-ids cannot hold ':'; an empty one means "none".
fn parse_username(s: &str) -> Result<Option<String>, Invalid> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    if s.contains(':') || s.chars().any(char::is_control) || s.len() > 255 {
        return Err(Invalid::new(
            "username",
            "a username has at most 255 characters, without ':' or control characters",
        ));
    }
    Ok(Some(s.to_string()))
}

fn parse_password(s: &str, cipher: &Cipher) -> Result<Option<Sealed>, Invalid> {
    if s.is_empty() {
        return Ok(None);
    }
    if s.len() > 1024 || s.chars().any(char::is_control) {
        return Err(Invalid::new(
            "password",
            "a password has at most 1024 bytes, without control characters",
        ));
    }
    Ok(Some(cipher.seal(s)))
}

/// A deploy tool's token, sealed; empty means none. Surrounding white space (a line end
/// from a file or a pipe) is not part of it.
fn parse_token(s: &str, cipher: &Cipher) -> Result<Option<Sealed>, Invalid> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    if s.len() > 4096 || s.chars().any(char::is_control) {
        return Err(Invalid::new(
            "token",
            "a token has at most 4096 bytes, without control characters",
        ));
    }
    Ok(Some(cipher.seal(s)))
}

/// Most custom headers a webhook may have: each is sent with every delivery and stored
/// with every request, so they cannot be allowed to grow without bound.
pub const MAX_HEADERS: usize = 50;

/// Longest custom header name, in bytes. (A value has at most 8192: `HeaderValue`.)
pub const MAX_HEADER_NAME_BYTES: usize = 256;

fn too_many_headers(count: usize) -> Invalid {
    Invalid::new(
        "headers",
        format!("a webhook has at most {MAX_HEADERS} custom headers; this would make {count}"),
    )
}

/// One custom header, checked as every path that sets headers checks it: the `headers`
/// of a create or PATCH, `PUT .../headers/{name}` and the UI's header form.
pub fn parse_header(name: &str, value: &str) -> Result<(HeaderName, HeaderValue), Invalid> {
    let length = name.trim().len();
    if length > MAX_HEADER_NAME_BYTES {
        // Not echoed: the name itself may be huge.
        return Err(Invalid::new(
            "headers",
            format!(
                "a header name has at most {MAX_HEADER_NAME_BYTES} bytes; this one has {length}"
            ),
        ));
    }
    let name = HeaderName::parse(name)?;
    let value = HeaderValue::parse(name.as_str(), value)?;
    Ok((name, value))
}

/// A header set on a webhook that has `existing` ones: a new name counts against
/// `MAX_HEADERS`, a name it already has (in any case) replaces that header.
pub fn parse_added_header(
    existing: &[StoredHeader],
    name: &str,
    value: &str,
) -> Result<(HeaderName, HeaderValue), Invalid> {
    let (name, value) = parse_header(name, value)?;
    let replaces = existing
        .iter()
        .any(|h| h.name.eq_ignore_case(name.as_str()));
    if !replaces && existing.len() >= MAX_HEADERS {
        return Err(too_many_headers(existing.len() + 1));
    }
    Ok((name, value))
}

/// A webhook's whole set of headers (a create, or a PATCH, which replaces them all).
pub fn parse_headers(
    map: &BTreeMap<String, String>,
    cipher: &Cipher,
) -> Result<Vec<StoredHeader>, Invalid> {
    if map.len() > MAX_HEADERS {
        return Err(too_many_headers(map.len()));
    }
    let mut out: Vec<StoredHeader> = Vec::with_capacity(map.len());
    for (name, value) in map {
        let (name, value) = parse_header(name, value)?;
        if out.iter().any(|h| h.name.eq_ignore_case(name.as_str())) {
            return Err(Invalid::new(
                "headers",
                format!(
                    "the header '{}' is given twice (names are case-insensitive)",
                    name.as_str()
                ),
            ));
        }
        out.push(StoredHeader {
            name,
            value: cipher.seal(value.as_str()),
        });
    }
    Ok(out)
}

/// One audit entry per change: a pure switch is `webhook.enabled`/`webhook.disabled`,
/// anything else `webhook.update` naming the fields changed.
pub fn audit_for_patch(actor: &str, patch: &WebhookPatch) -> Audit {
    let fields = [
        ("name", patch.name.is_some()),
        ("url", patch.url.is_some()),
        ("request_method", patch.request_method.is_some()),
        ("content_type", patch.content_type.is_some()),
        ("username", patch.username.is_some()),
        ("password", patch.password.is_some()),
        ("headers", patch.headers.is_some()),
        ("enabled", patch.enabled.is_some()),
        ("filters", patch.filters.is_some()),
        ("format", patch.format.is_some()),
        ("template", patch.template.is_some()),
        ("tls_verify", patch.tls_verify.is_some()),
        ("rate_limit", patch.rate_limit.is_some()),
        ("ordering", patch.ordering.is_some()),
        ("signature", patch.signature.is_some()),
        ("client_certificate", patch.client_identity.is_some()),
        ("token", patch.token.is_some()),
        ("format_options", patch.format_options.is_some()),
    ];
    let changed: Vec<&str> = fields
        .iter()
        .filter(|(_, set)| *set)
        .map(|(f, _)| *f)
        .collect();
    match (changed.as_slice(), patch.enabled) {
        (["enabled"], Some(true)) => Audit::new(actor, "webhook.enabled"),
        (["enabled"], Some(false)) => Audit::new(actor, "webhook.disabled"),
        _ => Audit::new(actor, "webhook.update").detail(format!("changed: {}", changed.join(", "))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_problem_is_reported_with_its_field() {
        let cipher = Cipher::from_key(&[1; 32]);
        let input = WebhookInput {
            url: Some("ftp://x".into()),
            request_method: Some("PUT".into()),
            ..Default::default()
        };
        let fields: Vec<String> = input
            .into_new(&cipher)
            .unwrap_err()
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(fields, ["name", "url", "request_method"]);
    }

    #[test]
    fn audit_names_a_pure_switch() {
        let on = WebhookPatch {
            enabled: Some(true),
            ..Default::default()
        };
        assert_eq!(audit_for_patch("a", &on).action, "webhook.enabled");
        let both = WebhookPatch {
            enabled: Some(false),
            url: Some(WebhookUrl::parse("x.org").unwrap()),
            ..Default::default()
        };
        let audit = audit_for_patch("a", &both);
        assert_eq!(audit.action, "webhook.update");
        assert_eq!(audit.detail.as_deref(), Some("changed: url, enabled"));
    }
}
