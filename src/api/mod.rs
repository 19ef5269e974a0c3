//! The REST API under `/api/v1`: JSON in and out over app/'s use cases, one file per
//! resource. `crate::http` composes it with ingest, the UI and the operations routes.

pub(crate) mod activities;
pub(crate) mod deliveries;
pub(crate) mod events;
pub(crate) mod health;
pub(crate) mod namespaces;
pub(crate) mod sources;
pub(crate) mod teams;
pub(crate) mod tokens;
pub(crate) mod users;
pub(crate) mod webhooks;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header;
use serde::de::DeserializeOwned;

use crate::error::AppError;
use crate::AppState;

/// A JSON body whose problems come back as Herald's JSON errors: malformed JSON is a 400,
/// a wrong or unknown field a 422 naming it.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        json_content_type(req.headers())?;
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                AppError::payload_too_large("the request body is too large")
            } else {
                AppError::bad_request(format!("the body could not be read: {e}"))
            }
        })?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// 415 unless the request says its body is JSON.
pub fn json_content_type(headers: &axum::http::HeaderMap) -> Result<(), AppError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if essence != "application/json" && !essence.ends_with("+json") {
        return Err(AppError::unsupported_media_type(
            "the request body must be JSON (Content-Type: application/json)",
        ));
    }
    Ok(())
}

/// A JSON body: malformed JSON is a 400, a wrong or unknown field a 422 naming it.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, AppError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
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
    Ok(value)
}

/// The authenticated caller of an API route, as the use cases know them.
pub struct ApiUser(pub crate::app::Actor);

impl axum::extract::FromRequestParts<AppState> for ApiUser {
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let user = user_from_bearer(state, &parts.headers).await?;
        Ok(ApiUser(crate::app::Actor::User(user)))
    }
}

/// The user behind `Authorization: Bearer <api token>`.
pub async fn user_from_bearer(
    state: &AppState,
    headers: &axum::http::HeaderMap,
) -> Result<crate::domain::model::User, AppError> {
    let header = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            AppError::unauthorized("an API token is required: Authorization: Bearer <token>")
        })?;
    let token = crate::auth::scheme::credentials(header, "Bearer").ok_or_else(|| {
        AppError::unauthorized("the Authorization header must be 'Bearer <token>'")
    })?;
    Ok(crate::app::users::from_token(state, token).await?)
}

/// A list answer: `{"items": [...]}`.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Items<T> {
    pub items: Vec<T>,
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
