//! The audit trail.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use minijinja::context;

use super::{page, CursorQuery};
use crate::auth::policy::{self};
use crate::web::{WebResult, WebUser};
use crate::AppState;

pub async fn activity(
    State(state): State<AppState>,
    web: WebUser,
    Query(q): Query<CursorQuery>,
) -> WebResult {
    let page_of = state
        .store
        .list_activities(&policy::visibility(&web.user), None, 50, q.cursor)
        .await?;
    Ok(page(
        &web,
        "activity.html",
        StatusCode::OK,
        context! { activities => page_of.items, next_cursor => page_of.next },
    ))
}
