use axum::extract::{RawQuery, State};
use axum::Json;

use super::ApiUser;
use super::PageParams;
use crate::domain::model::{Activity, Page};
use crate::error::ApiResult;
use crate::error::ErrorBody;
use crate::AppState;

/// The audit trail, newest first, limited to what the caller may see; `?namespace=` narrows it.
#[utoipa::path(get, path = "/api/v1/activities", operation_id = "listActivities", tag = "audit", security(("bearer" = [])), params(("namespace" = Option<String>, Query, description = "Only this namespace"), ("limit" = Option<i64>, Query, description = "1 to 500, default 50"), ("cursor" = Option<i64>, Query, description = "`next` of the previous page")),
    responses((status = 200, body = Page<Activity>), (status = 401, description = "No or bad token", body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<Page<Activity>>> {
    let page = PageParams::parse(query.as_deref())?;
    let namespace = url::form_urlencoded::parse(query.as_deref().unwrap_or("").as_bytes())
        .find(|(k, _)| k == "namespace")
        .map(|(_, v)| v.into_owned())
        .filter(|v| !v.is_empty());
    Ok(Json(
        crate::app::history::activities(
            &state,
            &user,
            namespace.as_deref(),
            page.limit,
            page.cursor,
        )
        .await?,
    ))
}
