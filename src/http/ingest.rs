//! `POST /v2/webhooks/events` and `POST /v2/sources/{name}/events`: where registries deliver
//! their notifications. What the payloads mean is registry/'s to say; this admits them,
//! stores their events and answers.
//!
//! The answer is 2xx only after the events and their deliveries are committed; the
//! registry keeps retrying anything else, so nothing accepted can be lost.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::rejection::BytesRejection;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use tokio::sync::Semaphore;

use crate::domain::delivery::{HandOff, IngestSummary};
use crate::domain::events::IncomingEvent;
use crate::domain::model::Source;
use crate::error::{ApiResult, AppError, ErrorBody};
use crate::registry::envelope::parse_envelope;
use crate::registry::token::RegistryToken;
use crate::AppState;

/// Whether ingest commits: `/readyz` reports a process whose envelopes keep failing to be
/// stored (a full disk, a database that refuses writes) as not ready.
#[derive(Default)]
pub struct IngestHealth(std::sync::Mutex<IngestRecord>);

#[derive(Default)]
struct IngestRecord {
    /// Failures since the last envelope that was committed.
    failures: u32,
    last_failure: Option<std::time::Instant>,
    last_error: Option<String>,
}

/// Failures in a row that make a process not ready.
const INGEST_FAILURES_NOT_READY: u32 = 3;

impl IngestHealth {
    pub fn committed(&self) {
        if let Ok(mut r) = self.0.lock() {
            *r = IngestRecord::default();
        }
    }

    pub fn failed(&self, error: &str) {
        if let Ok(mut r) = self.0.lock() {
            r.failures += 1;
            r.last_failure = Some(std::time::Instant::now());
            r.last_error = Some(error.to_string());
        }
    }

    /// Why ingest is failing, if it failed [`INGEST_FAILURES_NOT_READY`] times in a row, the
    /// last within `window`. The window matters: a process taken out of service gets no
    /// envelopes, so it could never commit one to become ready again; once the window has
    /// passed it is let back in and tried.
    pub fn failing(&self, window: Duration) -> Option<String> {
        let r = self.0.lock().ok()?;
        let recent = r.last_failure.is_some_and(|t| t.elapsed() < window);
        (r.failures >= INGEST_FAILURES_NOT_READY && recent).then(|| {
            format!(
                "the last {} envelopes could not be stored: {}",
                r.failures,
                r.last_error.as_deref().unwrap_or("unknown error")
            )
        })
    }
}

/// Media types the registry sends (2.x and 3.x), plus plain JSON for hand-made requests.
pub const ACCEPTED_MEDIA_TYPES: &[&str] = &[
    "application/vnd.docker.distribution.events.v1+json",
    "application/vnd.docker.distribution.events.v2+json",
    "application/json",
];

/// What decides whether an envelope is let in: the registry token, the size limit, the
/// in-flight places and how long a body may take.
#[derive(Clone)]
pub struct Gate {
    slots: Arc<Semaphore>,
    token: RegistryToken,
    max_bytes: usize,
    read_timeout: Duration,
}

impl Gate {
    pub fn new(state: &AppState) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(state.config.ingest_max_in_flight as usize)),
            token: state.registry_token.clone(),
            max_bytes: state.config.ingest_max_bytes,
            read_timeout: state.config.ingest_read_timeout,
        }
    }

    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    fn too_large(&self) -> AppError {
        AppError::payload_too_large(format!(
            "the envelope is larger than the limit of {} bytes (--ingest-max-bytes)",
            self.max_bytes
        ))
    }
}

/// Admits an envelope in the order that keeps strangers from tying anything up: the token
/// (401) and the content type (415) are checked and a declared `Content-Length` over the
/// limit refused (413) before a single body byte is read; only then is one of the
/// `--ingest-max-in-flight` places taken (503 with `Retry-After` when none is free, which
/// the registry answers by sending again later), and the body must arrive within
/// `--ingest-read-timeout` (408). The handler gets the body already read.
pub async fn admit(State(gate): State<Gate>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let auth = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if !gate.token.verify_header(auth) {
        return AppError::unauthorized(
            "the registry must send 'Authorization: Bearer <registry token>' \
             (see `herald registry-config`)",
        )
        .into_response();
    }
    if let Err(e) = check_headers(&gate, &parts.headers, ACCEPTED_MEDIA_TYPES) {
        return e.into_response();
    }
    admit_body(&gate, parts, body, next).await
}

/// After the credential and the headers: one of the in-flight places, then the body
/// within the read timeout, then the handler.
async fn admit_body(
    gate: &Gate,
    parts: axum::http::request::Parts,
    body: Body,
    next: Next,
) -> Response {
    let Ok(_slot) = gate.slots.try_acquire() else {
        let mut response = AppError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "Herald is receiving as many envelopes as it is configured to \
             (--ingest-max-in-flight); send this one again shortly",
        )
        .into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return response;
    };
    let bytes = match tokio::time::timeout(gate.read_timeout, read_body(body, gate)).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(e)) => return e.into_response(),
        Err(_) => {
            tracing::warn!(timeout = %humantime::format_duration(gate.read_timeout), "an envelope's body did not arrive in time; answered 408");
            return AppError::new(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                format!(
                    "the envelope's body did not arrive within {} (--ingest-read-timeout); \
                     send it again",
                    humantime::format_duration(gate.read_timeout)
                ),
            )
            .into_response();
        }
    };
    // The place is held until the envelope is stored and answered.
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// What can be refused from the headers alone once the credential is good: the content
/// type and a declared length over the limit.
fn check_headers(gate: &Gate, headers: &HeaderMap, accepted: &[&str]) -> Result<(), AppError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if !accepted.contains(&essence.as_str()) {
        return Err(AppError::unsupported_media_type(format!(
            "content type '{content_type}' is not a registry notification; expected one of {}",
            accepted.join(", ")
        )));
    }
    // HTTP itself has already refused a malformed or ambiguous Content-Length.
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > gate.max_bytes as u64) {
        return Err(gate.too_large());
    }
    Ok(())
}

/// The whole body, refused as soon as it outgrows the limit (a chunked body declares no
/// length up front).
async fn read_body(mut body: Body, gate: &Gate) -> Result<Bytes, AppError> {
    let mut buffer = Vec::new();
    while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        let frame =
            frame.map_err(|e| AppError::bad_request(format!("the body could not be read: {e}")))?;
        if let Ok(data) = frame.into_data() {
            if buffer.len() + data.len() > gate.max_bytes {
                return Err(gate.too_large());
            }
            buffer.extend_from_slice(&data);
        }
    }
    Ok(Bytes::from(buffer))
}

#[utoipa::path(post, path = "/v2/webhooks/events", operation_id = "receiveRegistryEvents", tag = "registry", security(("registry" = [])),
    request_body(description = "A registry notification envelope (distribution 2.x sends v1, 3.x v2)", content(
        (String = "application/vnd.docker.distribution.events.v1+json"),
        (String = "application/vnd.docker.distribution.events.v2+json"),
        (String = "application/json"))),
    responses((status = 200, body = IngestSummary), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 408, body = ErrorBody, description = "The body did not arrive within --ingest-read-timeout"), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 503, body = ErrorBody, description = "Too many envelopes at once; send again after Retry-After")))]
pub async fn receive(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<IngestSummary>> {
    // Only reachable through `admit`, which has checked the token, the content type and
    // the size, and read the body.
    let body =
        body.map_err(|e| AppError::bad_request(format!("the body could not be read: {e}")))?;
    let mut events = parse_envelope(&body).map_err(|e| AppError::bad_request(e.0))?;
    let readable = state.registries.default_readable();
    store_events(&state, &mut events, "default", readable)
        .await
        .map(Json)
}

/// Stores the events of one envelope or payload, wakes the dispatcher and logs. When
/// Herald may read the source's registry (`readable`), manifest pushes' facts are read
/// after the commit, never before it.
pub(crate) async fn store_events(
    state: &AppState,
    events: &mut [IncomingEvent],
    source: &str,
    readable: bool,
) -> ApiResult<IngestSummary> {
    for event in events.iter_mut() {
        event.registry_readable = readable;
    }
    let events = &*events;
    // Deliveries the dispatcher has room for are born claimed by this process.
    let ticket = state.dispatcher.ticket();
    let offer = ticket.clone().map(|t| t as Arc<dyn HandOff>);
    let received_at = chrono::Utc::now();
    let ingested = state
        .store
        .ingest_handing_off(events, received_at, offer)
        .await;
    let mut summary = match ingested {
        Ok(summary) => {
            state.ingest_health.committed();
            summary
        }
        Err(e) => {
            state.ingest_health.failed(&e.to_string());
            return Err(e.into());
        }
    };
    let handed_off = std::mem::take(&mut summary.handed_off);
    if summary.deliveries > handed_off.len() {
        state.dispatcher.wake();
    }
    if let Some(ticket) = ticket {
        state
            .dispatcher
            .hand_off(ticket, handed_off, events, received_at);
    }
    if readable {
        if events.iter().any(IncomingEvent::facts_pending) {
            state.registries.facts_wanted.notify_one();
        }
        note_instance(state, source, events);
    }
    state.metrics.record_ingest(events, &summary);
    tracing::info!(
        source,
        events = events.len(),
        accepted = summary.accepted,
        skipped = summary.skipped,
        ignored = summary.ignored,
        duplicates = summary.duplicates,
        deliveries = summary.deliveries,
        "registry envelope stored"
    );
    Ok(summary)
}

/// A registry that restarted has lost the events it had queued in memory: a new
/// `source.instanceID` asks for a reconcile. Off the request's path (the registry has its
/// answer once the events are committed).
fn note_instance(state: &AppState, source: &str, events: &[IncomingEvent]) {
    let Some(instance) = events.iter().rev().find_map(|e| e.instance_id.clone()) else {
        return;
    };
    if !state.registries.instance_changed(source, &instance) {
        return;
    }
    let registries = state.registries.clone();
    let source = source.to_string();
    tokio::spawn(async move {
        match registries
            .store()
            .note_instance(&source, &instance, chrono::Utc::now())
            .await
        {
            Ok(true) => {
                tracing::info!(source, instance, "the registry restarted (a new instance id): its queued events may be lost, so it is reconciled");
                registries.reconcile_wanted.notify_one();
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(source, error = %e, "cannot record the registry's instance"),
        }
    });
}

/// Media types a source may send: distribution's, plain JSON (Harbor, zot's binary mode)
/// and structured CloudEvents.
pub const SOURCE_MEDIA_TYPES: &[&str] = &[
    "application/vnd.docker.distribution.events.v1+json",
    "application/vnd.docker.distribution.events.v2+json",
    "application/json",
    "application/cloudevents+json",
];

/// The source a request was admitted for, passed from [`admit_source`] to the handler.
#[derive(Clone)]
pub struct AdmittedSource(pub Source);

/// [`admit`] for `/v2/sources/{name}/events`: the source's own credential first (401 for an
/// unknown source or a wrong credential, alike), then the same content type, length,
/// in-flight and read-timeout rules.
pub async fn admit_source(
    State((gate, state)): State<(Gate, AppState)>,
    request: Request,
    next: Next,
) -> Response {
    let (mut parts, body) = request.into_parts();
    let name = parts
        .uri
        .path()
        .strip_prefix("/v2/sources/")
        .and_then(|p| p.strip_suffix("/events"))
        .unwrap_or("")
        .to_string();
    let client = parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    match verify_source(&state, &name, &parts.headers, client).await {
        Ok(source) => {
            parts.extensions.insert(AdmittedSource(source));
        }
        Err(e) => return e.into_response(),
    }
    if let Err(e) = check_headers(&gate, &parts.headers, SOURCE_MEDIA_TYPES) {
        return e.into_response();
    }
    admit_body(&gate, parts, body, next).await
}

async fn verify_source(
    state: &AppState,
    name: &str,
    headers: &HeaderMap,
    client: Option<std::net::IpAddr>,
) -> Result<Source, AppError> {
    let refused = || {
        AppError::unauthorized(format!(
            "source '{}' does not exist or its credential is wrong: send the token as \
             'Authorization: Bearer <token>', or the username and password as Basic auth \
             (see `herald registry-config --source NAME`)",
            name.chars().take(64).collect::<String>()
        ))
    };
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let found = match crate::domain::events::validate_name(name) {
        Ok(()) => state.store.source_credential(name).await?,
        Err(_) => None,
    };
    let basic = auth.and_then(basic_credentials);
    // Every Basic attempt costs one Argon2 check, whether the source exists, the username is
    // its own and the password right or not: the time taken tells nothing about which.
    let (source, good) = match (found, basic) {
        (Some((source, hash)), None) if source.username.is_none() => {
            let good = auth
                .and_then(|h| crate::auth::scheme::credentials(h, "Bearer"))
                .is_some_and(|token| {
                    let given = crate::auth::token_hash(token.trim());
                    subtle::ConstantTimeEq::ct_eq(given.as_bytes(), hash.as_bytes()).into()
                });
            (Some(source), good)
        }
        (Some((source, hash)), Some((user, password)))
            if source.username.as_deref() == Some(user.as_str()) =>
        {
            let good = check_password(state, client, password, Some(hash)).await?;
            (Some(source), good)
        }
        (_, Some((_, password))) => {
            check_password(state, client, password, None).await?;
            (None, false)
        }
        (_, None) => (None, false),
    };
    match source {
        Some(source) if good => Ok(source),
        _ => Err(refused()),
    }
}

/// A source's password checked through the gate the sign-ins share, counted by the same
/// throttle, so a client that keeps failing is slowed down like a password guesser. With
/// no hash (no such source or username) a dummy hash is checked and the answer is false.
async fn check_password(
    state: &AppState,
    client: Option<std::net::IpAddr>,
    password: String,
    hash: Option<String>,
) -> Result<bool, AppError> {
    let throttle = &state.login_throttle;
    let attempt = throttle.begin_from(client).map_err(|t| {
        AppError::too_many_requests(
            "too many failed attempts from this address; send again later",
            t.wait,
        )
    })?;
    match state.password_gate.verify(password, hash).await {
        Ok(true) => {
            throttle.succeeded(attempt);
            Ok(true)
        }
        Ok(false) => {
            throttle.failed(attempt);
            Ok(false)
        }
        Err(e) => {
            throttle.not_checked(attempt);
            Err(crate::app::Error::from(e).into())
        }
    }
}

/// `Authorization: Basic base64(user:password)`.
fn basic_credentials(header: &str) -> Option<(String, String)> {
    use base64::Engine;
    let encoded = crate::auth::scheme::credentials(header, "Basic")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

#[utoipa::path(post, path = "/v2/sources/{name}/events", operation_id = "receiveSourceEvents", tag = "registry", security(("registry" = []), ("basic" = [])),
    params(("name" = String, Path, description = "The source's name")),
    request_body(description = "A payload of the source's kind: a distribution (or GitLab) envelope, a zot CloudEvent in binary or structured mode, or a Harbor webhook payload", content(
        (String = "application/vnd.docker.distribution.events.v1+json"),
        (String = "application/vnd.docker.distribution.events.v2+json"),
        (String = "application/json"),
        (String = "application/cloudevents+json"))),
    responses((status = 200, body = IngestSummary), (status = 400, body = ErrorBody, description = "Not a payload, or not of the source's kind"), (status = 401, body = ErrorBody), (status = 408, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn receive_source(
    State(state): State<AppState>,
    axum::Extension(AdmittedSource(source)): axum::Extension<AdmittedSource>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<IngestSummary>> {
    let body =
        body.map_err(|e| AppError::bad_request(format!("the body could not be read: {e}")))?;
    let mut events =
        crate::registry::sources::translate(source.kind, &source.name, &headers, &body)
            .map_err(|e| AppError::bad_request(e.0))?;
    let readable = source.registry_url.is_some();
    store_events(&state, &mut events, &source.name, readable)
        .await
        .map(Json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ingest_is_failing_after_three_failures_in_a_row_within_the_window() {
        let h = IngestHealth::default();
        let window = Duration::from_secs(30);
        h.failed("disk full");
        h.failed("disk full");
        assert_eq!(h.failing(window), None);
        h.failed("disk full");
        assert!(h.failing(window).unwrap().contains("last 3 envelopes"));
        // Out of service, it hears nothing: once the window has passed it is let back in.
        assert_eq!(h.failing(Duration::ZERO), None);
        h.committed();
        assert_eq!(h.failing(window), None);
    }
}
