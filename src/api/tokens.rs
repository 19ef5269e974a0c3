use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::Json;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::Deserialize;

use super::ApiUser;
use super::Items;
use crate::app;
use crate::app::access::parse_id;
use crate::auth::{self, ClientAddr};
use crate::domain::model::{ApiToken, User};
use crate::error::ErrorBody;
use crate::error::{ApiResult, AppError};
use crate::AppState;

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    #[serde(default)]
    label: String,
}

/// A new token: the only time its secret is shown.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct NewToken {
    #[serde(flatten)]
    token: ApiToken,
    /// The token itself (`hrld_...`); Herald keeps only its hash.
    #[serde(rename = "token")]
    secret: String,
}

/// Signs in with Basic auth (username and password): how a user gets their first token.
/// Throttled and gated like the UI's sign-in form, through the same code.
async fn basic_user(state: &AppState, headers: &HeaderMap, client: ClientAddr) -> ApiResult<User> {
    let unauthorized = || {
        AppError::unauthorized("sign in with Basic auth (username and password) or an API token")
    };
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(unauthorized)?;
    let encoded = auth::scheme::credentials(value, "Basic").ok_or_else(unauthorized)?;
    let decoded = B64.decode(encoded).map_err(|_| unauthorized())?;
    let decoded = String::from_utf8(decoded).map_err(|_| unauthorized())?;
    let (username, password) = decoded.split_once(':').ok_or_else(unauthorized)?;
    Ok(
        app::users::sign_in(state, username, password.to_string(), client.0)
            .await
            .map_err(app::Error::from)?,
    )
}

/// `POST /api/v1/tokens`: with Basic auth, or with an existing token.
#[utoipa::path(post, path = "/api/v1/tokens", operation_id = "createToken", tag = "tokens", security(("basic" = []), ("bearer" = [])), request_body(content = CreateToken, description = "Optional"),
    responses((status = 201, body = NewToken), (status = 401, description = "No or bad token, or wrong username or password", body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 429, description = "Too many failed sign-ins for this user or from this address; try again after Retry-After", body = ErrorBody),
        (status = 503, description = "Too many password checks at once; try again after Retry-After", body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    client: ClientAddr,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult<(StatusCode, Json<NewToken>)> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| auth::scheme::credentials(v, "Bearer").is_some());
    let user = if bearer {
        super::user_from_bearer(&state, &headers).await?
    } else {
        basic_user(&state, &headers, client).await?
    };
    // The body is optional: a bare `curl -u user -X POST` gets an unlabelled token.
    let label = if body.iter().all(u8::is_ascii_whitespace) {
        String::new()
    } else {
        super::json_content_type(&headers)?;
        super::parse_json::<CreateToken>(&body)?.label
    };
    let actor = app::Actor::User(user);
    let (stored, token) = app::tokens::create(&state, &actor, None, &label).await?;
    Ok((
        StatusCode::CREATED,
        Json(NewToken {
            token: stored,
            secret: token,
        }),
    ))
}

#[utoipa::path(get, path = "/api/v1/tokens", operation_id = "listTokens", tag = "tokens", security(("bearer" = [])),
    responses((status = 200, body = Items<ApiToken>), (status = 401, description = "No or bad token", body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
) -> ApiResult<Json<Items<ApiToken>>> {
    let items = app::tokens::list(&state, &user, None).await?;
    Ok(Json(Items { items }))
}

/// Revokes one of the caller's own tokens.
#[utoipa::path(delete, path = "/api/v1/tokens/{id}", operation_id = "revokeToken", tag = "tokens", security(("bearer" = [])), params(("id" = i64, Path, description = "Token id")),
    responses((status = 204), (status = 401, description = "No or bad token", body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn revoke(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let id = parse_id(&id, "token")?;
    app::tokens::revoke(&state, &user, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
