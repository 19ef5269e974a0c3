//! The raw registry events (admins): what arrived and what Herald did with each, the
//! UI's `GET /api/v1/events`.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use minijinja::context;

use super::{page, CursorQuery};
use crate::auth::policy::{self, GlobalAction};
use crate::web::{WebResult, WebUser};
use crate::AppState;

const EVENTS_PER_PAGE: i64 = 50;

pub async fn events(
    State(state): State<AppState>,
    web: WebUser,
    Query(q): Query<CursorQuery>,
) -> WebResult {
    policy::check_global(&web.user, GlobalAction::ReadEvents)?;
    let events = state.store.list_events(EVENTS_PER_PAGE, q.cursor).await?;
    Ok(page(
        &web,
        "events.html",
        StatusCode::OK,
        context! { events => events.items, next_cursor => events.next },
    ))
}
