use axum::extract::{RawQuery, State};
use axum::Json;

use super::PageParams;
use crate::auth::policy::{check_global, GlobalAction};
use crate::auth::ApiUser;
use crate::error::ApiResult;
use crate::store::{Page, StoredEvent};
use crate::AppState;

/// Every event the registry sent, newest first, with what Herald did with it and why:
/// the first place to look when a webhook did not fire.
pub async fn list(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<Page<StoredEvent>>> {
    check_global(&user, GlobalAction::ReadEvents)?;
    let page = PageParams::parse(query.as_deref())?;
    Ok(Json(
        state.store.list_events(page.limit, page.cursor).await?,
    ))
}
