//! `POST /v2/webhooks/events`: where the registry delivers its notifications.
//!
//! The answer is 2xx only after the events and their deliveries are committed; the
//! registry keeps retrying anything else, so nothing accepted can be lost.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use tokio::sync::Semaphore;

use crate::error::{ApiResult, AppError, ErrorBody};
use crate::registry::envelope::parse_envelope;
use crate::store::IngestSummary;
use crate::AppState;

/// Media types the registry sends (2.x and 3.x), plus plain JSON for hand-made requests.
pub const ACCEPTED_MEDIA_TYPES: &[&str] = &[
    "application/vnd.docker.distribution.events.v1+json",
    "application/vnd.docker.distribution.events.v2+json",
    "application/json",
];

/// Admits at most `--ingest-max-in-flight` envelopes at once, before their bodies are read;
/// the rest get 503 with `Retry-After`, which the registry answers by sending again later.
pub async fn limit(State(slots): State<Arc<Semaphore>>, request: Request, next: Next) -> Response {
    let Ok(_slot) = slots.try_acquire() else {
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
    next.run(request).await
}

#[utoipa::path(post, path = "/v2/webhooks/events", operation_id = "receiveRegistryEvents", tag = "registry", security(("registry" = [])),
    request_body(description = "A registry notification envelope (distribution 2.x sends v1, 3.x v2)", content(
        (String = "application/vnd.docker.distribution.events.v1+json"),
        (String = "application/vnd.docker.distribution.events.v2+json"),
        (String = "application/json"))),
    responses((status = 200, body = IngestSummary), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 503, body = ErrorBody, description = "Too many envelopes at once; send again after Retry-After")))]
pub async fn receive(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<IngestSummary>> {
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if !state.registry_token.verify_header(auth) {
        return Err(AppError::unauthorized(
            "the registry must send 'Authorization: Bearer <registry token>' \
             (see `herald registry-config`)",
        ));
    }
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
    if !ACCEPTED_MEDIA_TYPES.contains(&essence.as_str()) {
        return Err(AppError::unsupported_media_type(format!(
            "content type '{content_type}' is not a registry notification; expected one of {}",
            ACCEPTED_MEDIA_TYPES.join(", ")
        )));
    }
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            AppError::payload_too_large(format!(
                "the envelope is larger than the limit of {} bytes",
                state.config.ingest_max_bytes
            ))
        } else {
            AppError::bad_request(format!("the body could not be read: {e}"))
        }
    })?;
    let events = parse_envelope(&body).map_err(|e| AppError::bad_request(e.0))?;
    let summary = state.store.ingest(&events, chrono::Utc::now()).await?;
    if summary.deliveries > 0 {
        state.dispatcher.wake();
    }
    state.metrics.record_events(&events);
    tracing::info!(
        events = events.len(),
        accepted = summary.accepted,
        skipped = summary.skipped,
        ignored = summary.ignored,
        duplicates = summary.duplicates,
        deliveries = summary.deliveries,
        "registry envelope stored"
    );
    Ok(Json(summary))
}
