//! Teams and their members.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Form;
use minijinja::context;
use serde::Deserialize;

use super::{page, CsrfOnly, Refused};
use crate::app;
use crate::app::access::team_access;
use crate::auth::policy::{self, TeamAction};
use crate::domain::model::{Role, Visibility};
use crate::web::{redirect_with, WebResult, WebUser};
use crate::AppState;

pub async fn teams(State(state): State<AppState>, web: WebUser) -> WebResult {
    teams_page(&state, &web, StatusCode::OK, Refused::default()).await
}

async fn teams_page(
    state: &AppState,
    web: &WebUser,
    status: StatusCode,
    refused: Refused,
) -> WebResult {
    let teams = state
        .store
        .list_teams(&policy::visibility(&web.user))
        .await?;
    Ok(page(
        web,
        "teams.html",
        status,
        context! { teams, ..refused.context(status, "/teams") },
    ))
}

#[derive(Deserialize)]
pub struct TeamForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    description: String,
}

pub async fn create_team(
    State(state): State<AppState>,
    web: WebUser,
    Form(form): Form<TeamForm>,
) -> WebResult {
    web.check_csrf(&form.csrf)?;
    let name = form.name.trim().to_string();
    let values = BTreeMap::from([
        ("name".to_string(), name.clone()),
        ("description".to_string(), form.description.clone()),
    ]);
    // The same use case as the API: the same rules, the same messages.
    match crate::app::teams::create(&state, &web.actor(), &name, &form.description, None)
        .await
        .map_err(crate::error::AppError::from)
    {
        Ok(_) => Ok(redirect_with(
            &format!("/teams/{name}"),
            "success",
            &format!("Team '{name}' created; you are its owner"),
        )),
        Err(e) if e.status.is_client_error() => {
            let field = e.field.clone().unwrap_or_else(|| "name".to_string());
            let status = e.status;
            let refused = Refused::one("new-team", field, e.message).with_values(values);
            teams_page(&state, &web, status, refused).await
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn team(
    State(state): State<AppState>,
    web: WebUser,
    Path(name): Path<String>,
) -> WebResult {
    team_page(&state, &web, &name, StatusCode::OK, Refused::default()).await
}

async fn team_page(
    state: &AppState,
    web: &WebUser,
    name: &str,
    status: StatusCode,
    refused: Refused,
) -> WebResult {
    let (team, role) = team_access(state, &web.actor(), name, TeamAction::Read).await?;
    let can_manage = !team.personal && (web.user.admin || role == Some(Role::Owner));
    let namespaces: Vec<_> = state
        .store
        .list_namespaces(&Visibility::All)
        .await?
        .into_iter()
        .filter(|n| n.team_id == Some(team.id))
        .collect();
    let path = format!("/teams/{}", team.name);
    Ok(page(
        web,
        "team.html",
        status,
        context! { team, namespaces, can_manage, ..refused.context(status, &path) },
    ))
}

#[derive(Deserialize)]
pub struct MemberForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    role: String,
}

pub async fn set_member(
    State(state): State<AppState>,
    web: WebUser,
    Path(name): Path<String>,
    Form(form): Form<MemberForm>,
) -> WebResult {
    web.check_csrf(&form.csrf)?;
    let back = format!("/teams/{name}");
    let username = form.username.trim();
    match app::teams::set_member(&state, &web.actor(), &name, username, &form.role)
        .await
        .map_err(crate::error::AppError::from)
    {
        Ok((role, _)) => Ok(redirect_with(
            &back,
            "success",
            &format!("{username} is now {} of team '{name}'", role.as_str()),
        )),
        // An unknown user or role, or the last owner, is shown at its field.
        Err(e) if e.status.is_client_error() && e.status != StatusCode::FORBIDDEN => {
            let field = e.field.clone().unwrap_or_else(|| "username".to_string());
            let values = BTreeMap::from([
                ("username".to_string(), username.to_string()),
                ("role".to_string(), form.role.clone()),
            ]);
            let refused = Refused::one("add-member", field, e.message).with_values(values);
            let status = StatusCode::UNPROCESSABLE_ENTITY;
            team_page(&state, &web, &name, status, refused).await
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn remove_member(
    State(state): State<AppState>,
    web: WebUser,
    Path((name, user)): Path<(String, String)>,
    Form(form): Form<CsrfOnly>,
) -> WebResult {
    web.check_csrf(&form.csrf)?;
    let back = format!("/teams/{name}");
    match app::teams::remove_member(&state, &web.actor(), &name, &user)
        .await
        .map_err(crate::error::AppError::from)
    {
        Ok(()) => Ok(redirect_with(
            &back,
            "success",
            &format!("{user} removed from team '{name}'"),
        )),
        Err(e) if e.status.is_client_error() && e.status != StatusCode::FORBIDDEN => {
            Ok(redirect_with(&back, "error", &capitalized(&e.message)))
        }
        Err(e) => Err(e.into()),
    }
}

/// An error message as a sentence for a notice.
fn capitalized(message: &str) -> String {
    let mut chars = message.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}
