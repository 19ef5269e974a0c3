//! `/api/v1/sources`: the registries that feed Herald besides the default one (admins).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;

use super::ApiUser;
use super::{ApiJson, Items};
use crate::app::sources::{self, SourceInput};
use crate::domain::model::Source;
use crate::error::{ApiResult, ErrorBody};
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

#[utoipa::path(post, path = "/api/v1/sources", operation_id = "createSource", tag = "registry", security(("bearer" = [])),
    request_body = CreateSource,
    responses((status = 201, body = Source), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    ApiJson(input): ApiJson<CreateSource>,
) -> ApiResult<(StatusCode, Json<Source>)> {
    let input = SourceInput {
        name: input.name.unwrap_or_default(),
        kind: input.kind.unwrap_or_default(),
        token: input.token,
        username: input.username,
        password: input.password,
    };
    let source = sources::create(&state, &user, input).await?;
    Ok((StatusCode::CREATED, Json(source)))
}

#[utoipa::path(get, path = "/api/v1/sources", operation_id = "listSources", tag = "registry", security(("bearer" = [])),
    responses((status = 200, body = Items<Source>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
) -> ApiResult<Json<Items<Source>>> {
    Ok(Json(Items {
        items: sources::list(&state, &user).await?,
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
    sources::delete(&state, &user, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}
