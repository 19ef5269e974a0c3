use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;

use super::ApiJson;
use crate::auth::policy::{authorize, Action};
use crate::auth::ApiUser;
use crate::error::{ApiResult, AppError};
use crate::hooks::types::NamespaceName;
use crate::store::Namespace;
use crate::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateNamespace {
    name: Option<String>,
    #[serde(default)]
    description: String,
}

/// A namespace in a path: a malformed name cannot exist, so it is a 404, not a 422.
pub fn path_namespace(raw: &str) -> ApiResult<NamespaceName> {
    NamespaceName::parse(raw)
        .map_err(|_| AppError::not_found(format!("namespace '{raw}' not found")))
}

pub async fn list(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
) -> ApiResult<Json<serde_json::Value>> {
    authorize(&user, Action::ListNamespaces)?;
    let items = state.store.list_namespaces().await?;
    Ok(Json(serde_json::json!({ "items": items })))
}

pub async fn create(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    ApiJson(body): ApiJson<CreateNamespace>,
) -> ApiResult<(StatusCode, Json<Namespace>)> {
    authorize(&user, Action::CreateNamespace)?;
    let name = body
        .name
        .ok_or_else(|| AppError::invalid("name", "a namespace needs a name"))?;
    let name = NamespaceName::parse(&name)?;
    if body.description.len() > 1000 {
        return Err(AppError::invalid(
            "description",
            "a description has at most 1000 characters",
        ));
    }
    let ns = state
        .store
        .create_namespace(&name, body.description.trim())
        .await?;
    tracing::info!(namespace = %ns.name, by = %user.username, "namespace created");
    Ok((StatusCode::CREATED, Json(ns)))
}

pub async fn show(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    Path(ns): Path<String>,
) -> ApiResult<Json<Namespace>> {
    authorize(&user, Action::ReadNamespace)?;
    Ok(Json(
        state.store.get_namespace(&path_namespace(&ns)?).await?,
    ))
}

pub async fn delete(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    Path(ns): Path<String>,
) -> ApiResult<StatusCode> {
    authorize(&user, Action::DeleteNamespace)?;
    let name = path_namespace(&ns)?;
    state.store.delete_namespace(&name).await?;
    tracing::info!(namespace = %name, by = %user.username, "namespace deleted");
    Ok(StatusCode::NO_CONTENT)
}
