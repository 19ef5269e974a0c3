//! The dashboard: the namespaces the user can see, recent activity, a new namespace.

use axum::extract::State;
use axum::http::StatusCode;
use minijinja::{context, Value};

use super::{health_view, page, Refused};
use crate::auth::policy::{self};
use crate::domain::model::Role;
use crate::web::{WebResult, WebUser};
use crate::AppState;

pub async fn dashboard(State(state): State<AppState>, web: WebUser) -> WebResult {
    dashboard_page(&state, &web, StatusCode::OK, Refused::default()).await
}

pub(super) async fn dashboard_page(
    state: &AppState,
    web: &WebUser,
    status: StatusCode,
    refused: Refused,
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
    // The team select's options: admins may also make a namespace without a team.
    let team_options: Vec<(String, String)> = web
        .user
        .admin
        .then(|| (String::new(), "admins (no team)".to_string()))
        .into_iter()
        .chain(teams.iter().map(|t| (t.clone(), t.clone())))
        .collect();
    // Failing (a delivery failed for good, the circuit is open, or every attempt has
    // failed for --attention-after) and auto-disabled webhooks, only in namespaces this
    // user may read.
    let since = chrono::Utc::now() - chrono::Duration::hours(24);
    let now = chrono::Utc::now();
    let after = state.config.attention_after;
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
        context! {
            namespaces,
            attention,
            activities => activities.items,
            teams,
            team_options,
            ..refused.context(status, "/")
        },
    ))
}
