//! The dashboard: the namespaces the user can see, recent activity, a new namespace.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use minijinja::{context, Value};

use super::{health_view, page};
use crate::auth::policy::{self};
use crate::store::Role;
use crate::web::{WebResult, WebUser};
use crate::AppState;

pub async fn dashboard(State(state): State<AppState>, web: WebUser) -> WebResult {
    dashboard_page(
        &state,
        &web,
        StatusCode::OK,
        BTreeMap::new(),
        BTreeMap::new(),
    )
    .await
}

pub(super) async fn dashboard_page(
    state: &AppState,
    web: &WebUser,
    status: StatusCode,
    errors: BTreeMap<String, String>,
    values: BTreeMap<String, String>,
) -> WebResult {
    let visibility = policy::visibility(&web.user);
    let namespaces = state.store.list_namespaces(&visibility).await?;
    let activities = state
        .store
        .list_activities(&visibility, None, 10, None)
        .await?;
    // Teams the user may create namespaces for.
    let teams: Vec<String> = state
        .store
        .list_teams(&visibility)
        .await?
        .into_iter()
        .filter(|t| {
            web.user.admin
                || t.members
                    .iter()
                    .any(|m| m.username == web.user.username && m.role == Role::Owner)
        })
        .map(|t| t.name)
        .collect();
    // Failing and auto-disabled webhooks, only in namespaces this user may read.
    // Failing (a delivery failed for good, the circuit is open, or every attempt has
    // failed for --attention-after) and auto-disabled.
    let since = chrono::Utc::now() - chrono::Duration::hours(24);
    let (now, after) = (chrono::Utc::now(), state.config.attention_after);
    let attention: Vec<Value> = state
        .store
        .webhooks_needing_attention(&visibility, since)
        .await?
        .iter()
        .filter(|s| s.needs_attention(now, after))
        .map(|s| {
            context! {
                namespace => s.namespace,
                name => s.name,
                id => s.webhook_id,
                ..health_view(s, after)
            }
        })
        .collect();
    Ok(page(
        web,
        "dashboard.html",
        status,
        context! { namespaces, attention, activities => activities.items, teams, errors, values },
    ))
}
