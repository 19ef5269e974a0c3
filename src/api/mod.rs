//! The REST API under `/api/v1`: JSON in and out, one file per resource.

mod access;
mod activities;
mod deliveries;
mod events;
mod namespaces;
mod teams;
mod tokens;
mod users;
mod webhooks;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Request};
use axum::http::header;
use axum::routing::{delete, get, patch, post, put};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::error::AppError;
use crate::registry::ingest;
use crate::AppState;

pub fn router(state: AppState) -> Router {
    let ingest_limit = state.config.ingest_max_bytes;
    let api = Router::new()
        .route(
            "/namespaces",
            get(namespaces::list).post(namespaces::create),
        )
        .route(
            "/namespaces/{ns}",
            get(namespaces::show).delete(namespaces::delete),
        )
        .route(
            "/namespaces/{ns}/webhooks",
            get(webhooks::list).post(webhooks::create),
        )
        .route(
            "/namespaces/{ns}/webhooks/{id}",
            get(webhooks::show)
                .patch(webhooks::update)
                .delete(webhooks::delete),
        )
        .route(
            "/namespaces/{ns}/webhooks/{id}/headers/{name}",
            put(webhooks::set_header).delete(webhooks::delete_header),
        )
        .route(
            "/namespaces/{ns}/webhooks/{id}/deliveries",
            get(deliveries::list),
        )
        .route(
            "/namespaces/{ns}/webhooks/{id}/deliveries/{delivery}",
            get(deliveries::show),
        )
        .route(
            "/namespaces/{ns}/webhooks/{id}/deliveries/{delivery}/retrigger",
            post(deliveries::retrigger),
        )
        .route("/events", get(events::list))
        .route("/activities", get(activities::list))
        .route("/tokens", get(tokens::list).post(tokens::create))
        .route("/tokens/{id}", delete(tokens::revoke))
        .route("/users", get(users::list).post(users::create))
        .route("/users/me", get(users::me))
        .route("/users/{name}", patch(users::update))
        .route("/teams", get(teams::list).post(teams::create))
        .route("/teams/{team}", get(teams::show))
        .route(
            "/teams/{team}/members/{user}",
            put(teams::set_member).delete(teams::remove_member),
        );
    Router::new()
        .route("/healthz", get(healthz))
        .route(
            "/v2/webhooks/events",
            post(ingest::receive).layer(DefaultBodyLimit::max(ingest_limit)),
        )
        .nest("/api/v1", api)
        .fallback(|| async { AppError::not_found("no such route") })
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

pub async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok", "version": env!("CARGO_PKG_VERSION") }))
}

/// A JSON body whose problems come back as Herald's JSON errors: malformed JSON is a 400,
/// a wrong or unknown field a 422 naming it.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        let essence = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_string();
        if essence != "application/json" && !essence.ends_with("+json") {
            return Err(AppError::unsupported_media_type(
                "the request body must be JSON (Content-Type: application/json)",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                AppError::payload_too_large("the request body is too large")
            } else {
                AppError::bad_request(format!("the body could not be read: {e}"))
            }
        })?;
        let mut de = serde_json::Deserializer::from_slice(&bytes);
        let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if inner.is_syntax() || inner.is_eof() {
                AppError::bad_request(format!("the body is not valid JSON: {inner}"))
            } else if path == "." {
                AppError::invalid("body", inner.to_string())
            } else {
                AppError::invalid(path, inner.to_string())
            }
        })?;
        de.end()
            .map_err(|e| AppError::bad_request(format!("the body is not valid JSON: {e}")))?;
        Ok(ApiJson(value))
    }
}

/// `?limit=&cursor=` of newest-first lists.
pub struct PageParams {
    pub limit: i64,
    pub cursor: Option<i64>,
}

impl PageParams {
    pub const DEFAULT_LIMIT: i64 = 50;
    pub const MAX_LIMIT: i64 = 500;

    pub fn parse(query: Option<&str>) -> Result<Self, AppError> {
        let mut params = Self {
            limit: Self::DEFAULT_LIMIT,
            cursor: None,
        };
        for (key, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            match key.as_ref() {
                "limit" => {
                    params.limit = value
                        .parse()
                        .ok()
                        .filter(|n| (1..=Self::MAX_LIMIT).contains(n))
                        .ok_or_else(|| {
                            AppError::invalid(
                                "limit",
                                format!("limit must be a number from 1 to {}", Self::MAX_LIMIT),
                            )
                        })?;
                }
                "cursor" if !value.is_empty() => {
                    params.cursor = Some(value.parse().map_err(|_| {
                        AppError::invalid(
                            "cursor",
                            "cursor must be the `next` value of a previous page",
                        )
                    })?);
                }
                _ => {}
            }
        }
        Ok(params)
    }
}

/// Ids in paths: anything that is not one cannot exist, so it is a 404.
pub fn parse_id(raw: &str, what: &str) -> Result<i64, AppError> {
    raw.parse()
        .map_err(|_| AppError::not_found(format!("{what} '{raw}' not found")))
}

/// For PATCH bodies: tells an absent field (`None`) from an explicit `null` (`Some(None)`).
pub fn double_option<'de, D, T>(de: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(de).map(Some)
}
