//! The audit trail, filtered by namespace and actor.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use minijinja::context;
use serde::Deserialize;

use super::page;
use crate::auth::policy;
use crate::domain::model::ActivityFilter;
use crate::web::{WebResult, WebUser};
use crate::AppState;

#[derive(Deserialize)]
pub struct ActivityQuery {
    cursor: Option<i64>,
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    actor: String,
}

pub async fn activity(
    State(state): State<AppState>,
    web: WebUser,
    Query(q): Query<ActivityQuery>,
) -> WebResult {
    let namespace = q.namespace.trim();
    let actor = q.actor.trim();
    let filter = ActivityFilter {
        namespace: Some(namespace).filter(|n| !n.is_empty()),
        actor: Some(actor).filter(|a| !a.is_empty()),
    };
    // Visibility still decides what is listed: a filter can only narrow it.
    let page_of = state
        .store
        .list_activities_by(&policy::visibility(&web.user), filter, 50, q.cursor)
        .await?;
    // The filters ride along on "Older", so paging keeps them.
    let keep: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("namespace", namespace)
        .append_pair("actor", actor)
        .finish();
    Ok(page(
        &web,
        "activity.html",
        StatusCode::OK,
        context! {
            activities => page_of.items,
            next_cursor => page_of.next,
            namespace,
            actor,
            keep,
        },
    ))
}
