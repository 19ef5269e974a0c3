//! The raw registry events (admins): what arrived and what Herald did with each, the
//! UI's `GET /api/v1/events`.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use minijinja::{context, Value};

use super::{page, CursorQuery};
use crate::auth::policy::{self, GlobalAction};
use crate::web::{WebResult, WebUser};
use crate::AppState;

const EVENTS_PER_PAGE: i64 = 50;
/// Links per event; an event that reached more webhooks says how many more.
const DELIVERIES_PER_EVENT: usize = 5;
/// The most deliveries read for one page of events.
const DELIVERIES_LISTED: i64 = 2000;

pub async fn events(
    State(state): State<AppState>,
    web: WebUser,
    Query(q): Query<CursorQuery>,
) -> WebResult {
    policy::check_global(&web.user, GlobalAction::ReadEvents)?;
    let events = state.store.list_events(EVENTS_PER_PAGE, q.cursor).await?;
    // The page's events are consecutive ids: their deliveries are one range's.
    let (first, last) = (
        events.items.iter().map(|e| e.id).min().unwrap_or(0),
        events.items.iter().map(|e| e.id).max().unwrap_or(-1),
    );
    let made = state
        .store
        .deliveries_of_events(first, last, DELIVERIES_LISTED)
        .await?;
    let rows: Vec<Value> = events
        .items
        .iter()
        .map(|e| {
            let all: Vec<_> = made.iter().filter(|d| d.event_id == e.id).collect();
            let shown: Vec<_> = all.iter().take(DELIVERIES_PER_EVENT).collect();
            context! {
                deliveries => shown,
                more_deliveries => all.len().saturating_sub(DELIVERIES_PER_EVENT),
                ..Value::from_serialize(e)
            }
        })
        .collect();
    Ok(page(
        &web,
        "events.html",
        StatusCode::OK,
        context! { events => rows, next_cursor => events.next },
    ))
}
