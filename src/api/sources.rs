//! `/api/v1/sources`: the registries that feed Herald besides the default one (admins).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;

use super::{ApiJson, Items};
use crate::auth::policy::{check_global, GlobalAction};
use crate::auth::ApiUser;
use crate::error::{ApiResult, AppError, ErrorBody};
use crate::registry::sources::{validate_name, SourceKind, DEFAULT_SOURCE};
use crate::store::{Audit, NewSource, Source};
use crate::AppState;

/// A new source: a name, a kind and either a bearer `token` or a `username` and `password`
/// (Basic auth), as the registry can send them.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSource {
    name: Option<String>,
    /// `distribution`, `zot`, `harbor` or `gitlab`.
    kind: Option<String>,
    token: Option<String>,
    username: Option<String>,
    password: Option<String>,
}

/// The shortest token accepted: it is kept as its SHA-256 only, which guards a long random
/// secret, not a guessable one.
const MIN_TOKEN_CHARS: usize = 24;

#[utoipa::path(post, path = "/api/v1/sources", operation_id = "createSource", tag = "registry", security(("bearer" = [])),
    request_body = CreateSource,
    responses((status = 201, body = Source), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    ApiJson(input): ApiJson<CreateSource>,
) -> ApiResult<(StatusCode, Json<Source>)> {
    check_global(&user, GlobalAction::ManageSources)?;
    let name = input.name.unwrap_or_default();
    validate_name(&name).map_err(|m| AppError::invalid("name", m))?;
    if name == DEFAULT_SOURCE {
        return Err(AppError::invalid(
            "name",
            "'default' is the registry token's source at /v2/webhooks/events; choose another name",
        ));
    }
    let kind_text = input.kind.unwrap_or_default();
    let kind = SourceKind::parse(&kind_text).ok_or_else(|| {
        AppError::invalid(
            "kind",
            format!("kind must be distribution, zot, harbor or gitlab, not '{kind_text}'"),
        )
    })?;
    let (username, secret_hash) = match (input.token, input.username, input.password) {
        (Some(token), None, None) => {
            let token = token.trim().to_string();
            if token.chars().count() < MIN_TOKEN_CHARS
                || token.len() > 1024
                || token.chars().any(|c| c.is_control() || c == ' ')
            {
                return Err(AppError::invalid(
                    "token",
                    format!(
                        "a token has {MIN_TOKEN_CHARS} to 1024 characters without spaces or \
                         control characters: use a random one (openssl rand -base64 32)"
                    ),
                ));
            }
            (None, crate::auth::token_hash(&token))
        }
        (None, Some(username), Some(password)) => {
            if username.is_empty()
                || username.len() > 255
                || username.contains(':')
                || username.chars().any(char::is_control)
            {
                return Err(AppError::invalid(
                    "username",
                    "a username has 1 to 255 characters, without ':' or control characters",
                ));
            }
            crate::auth::validate_password(&password)
                .map_err(|e| AppError::invalid(e.field, e.message))?;
            (Some(username), state.password_gate.hash(password).await?)
        }
        _ => {
            return Err(AppError::invalid(
                "token",
                "give either a token, or a username and a password",
            ))
        }
    };
    let audit = Audit::new(&user.username, "source.create")
        .detail(format!("source '{name}' ({})", kind.as_str()));
    let new = NewSource {
        name,
        kind,
        username,
        secret_hash,
    };
    let source = state.store.create_source(&new, &audit).await?;
    Ok((StatusCode::CREATED, Json(source)))
}

#[utoipa::path(get, path = "/api/v1/sources", operation_id = "listSources", tag = "registry", security(("bearer" = [])),
    responses((status = 200, body = Items<Source>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
) -> ApiResult<Json<Items<Source>>> {
    check_global(&user, GlobalAction::ManageSources)?;
    Ok(Json(Items {
        items: state.store.list_sources().await?,
    }))
}

#[utoipa::path(delete, path = "/api/v1/sources/{name}", operation_id = "deleteSource", tag = "registry", security(("bearer" = [])),
    params(("name" = String, Path)),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    check_global(&user, GlobalAction::ManageSources)?;
    let audit = Audit::new(&user.username, "source.destroy").detail(format!("source '{name}'"));
    state.store.delete_source(&name, &audit).await?;
    Ok(StatusCode::NO_CONTENT)
}
