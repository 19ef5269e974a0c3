//! The dashboard: the namespaces the user can see, recent activity, a new namespace.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use minijinja::context;

use super::page;
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
    Ok(page(
        web,
        "dashboard.html",
        status,
        context! { namespaces, activities => activities.items, teams, errors, values },
    ))
}
