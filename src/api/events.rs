use axum::extract::{RawQuery, State};
use axum::Json;

use super::ApiUser;
use super::PageParams;
use crate::domain::model::{Page, StoredEvent};
use crate::error::ApiResult;
use crate::error::ErrorBody;
use crate::AppState;

/// Every event the registry sent, newest first, with what Herald did with it and why:
/// the first place to look when a webhook did not fire.
#[utoipa::path(get, path = "/api/v1/events", operation_id = "listEvents", tag = "registry", security(("bearer" = [])), params(("limit" = Option<i64>, Query, description = "1 to 500, default 50"), ("cursor" = Option<i64>, Query, description = "`next` of the previous page")),
    responses((status = 200, body = Page<StoredEvent>), (status = 401, description = "No or bad token", body = ErrorBody), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<Page<StoredEvent>>> {
    let page = PageParams::parse(query.as_deref())?;
    Ok(Json(
        crate::app::history::events(&state, &user, page.limit, page.cursor).await?,
    ))
}
