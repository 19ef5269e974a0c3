use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;

use super::ApiUser;
use super::{ApiJson, Items};
use crate::app;
use crate::domain::model::Namespace;
use crate::error::ApiResult;
use crate::error::ErrorBody;
use crate::AppState;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateNamespace {
    name: Option<String>,
    #[serde(default)]
    description: String,
    team: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/namespaces", operation_id = "listNamespaces", tag = "namespaces", security(("bearer" = [])),
    responses((status = 200, body = Items<Namespace>), (status = 401, description = "No or bad token", body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
) -> ApiResult<Json<Items<Namespace>>> {
    let items = app::namespaces::list(&state, &user).await?;
    Ok(Json(Items { items }))
}

#[utoipa::path(post, path = "/api/v1/namespaces", operation_id = "createNamespace", tag = "namespaces", security(("bearer" = [])), request_body = CreateNamespace,
    responses((status = 201, body = Namespace), (status = 401, description = "No or bad token", body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    ApiJson(body): ApiJson<CreateNamespace>,
) -> ApiResult<(StatusCode, Json<Namespace>)> {
    let ns = app::namespaces::create(
        &state,
        &user,
        body.name.as_deref(),
        body.team.as_deref(),
        &body.description,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(ns)))
}

#[utoipa::path(get, path = "/api/v1/namespaces/{ns}", operation_id = "getNamespace", tag = "namespaces", security(("bearer" = [])), params(("ns" = String, Path, description = "Namespace; `_global` for repositories without a `/`")),
    responses((status = 200, body = Namespace), (status = 401, description = "No or bad token", body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn show(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    Path(ns): Path<String>,
) -> ApiResult<Json<Namespace>> {
    Ok(Json(app::namespaces::show(&state, &user, &ns).await?))
}

#[utoipa::path(delete, path = "/api/v1/namespaces/{ns}", operation_id = "deleteNamespace", tag = "namespaces", security(("bearer" = [])), params(("ns" = String, Path, description = "Namespace; `_global` for repositories without a `/`")),
    responses((status = 204), (status = 401, description = "No or bad token", body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn delete(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    Path(ns): Path<String>,
) -> ApiResult<StatusCode> {
    app::namespaces::delete(&state, &user, &ns).await?;
    Ok(StatusCode::NO_CONTENT)
}
