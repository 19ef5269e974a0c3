//! Teams and their members.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Form;
use minijinja::context;
use serde::Deserialize;

use super::{page, CsrfOnly};
use crate::app::access::team_access;
use crate::auth::policy::{self, TeamAction};
use crate::error::AppError;
use crate::store::{Audit, Role, Visibility};
use crate::web::{redirect_with, WebResult, WebUser};
use crate::AppState;

pub async fn teams(State(state): State<AppState>, web: WebUser) -> WebResult {
    teams_page(
        &state,
        &web,
        StatusCode::OK,
        BTreeMap::new(),
        BTreeMap::new(),
    )
    .await
}

async fn teams_page(
    state: &AppState,
    web: &WebUser,
    status: StatusCode,
    errors: BTreeMap<String, String>,
    values: BTreeMap<String, String>,
) -> WebResult {
    let teams = state
        .store
        .list_teams(&policy::visibility(&web.user))
        .await?;
    Ok(page(
        web,
        "teams.html",
        status,
        context! { teams, errors, values },
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
    match crate::app::teams::create(&state, &web.user, &name, &form.description).await {
        Ok(_) => Ok(redirect_with(
            &format!("/teams/{name}"),
            "success",
            &format!("Team '{name}' created; you are its owner"),
        )),
        Err(e) if e.status.is_client_error() => {
            let field = e.field.clone().unwrap_or_else(|| "name".to_string());
            let status = e.status;
            teams_page(
                &state,
                &web,
                status,
                BTreeMap::from([(field, e.message)]),
                values,
            )
            .await
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn team(
    State(state): State<AppState>,
    web: WebUser,
    Path(name): Path<String>,
) -> WebResult {
    let (team, role) = team_access(&state, &web.user, &name, TeamAction::Read).await?;
    let can_manage = !team.personal && (web.user.admin || role == Some(Role::Owner));
    let namespaces: Vec<_> = state
        .store
        .list_namespaces(&Visibility::All)
        .await?
        .into_iter()
        .filter(|n| n.team_id == Some(team.id))
        .collect();
    Ok(page(
        &web,
        "team.html",
        StatusCode::OK,
        context! { team, namespaces, can_manage },
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
    let (team, _) = team_access(&state, &web.user, &name, TeamAction::ManageMembers).await?;
    let back = format!("/teams/{name}");
    if team.personal {
        return Ok(redirect_with(
            &back,
            "error",
            "A personal team has exactly one member, its user",
        ));
    }
    let Some(role) = Role::parse(&form.role) else {
        return Ok(redirect_with(
            &back,
            "error",
            "Choose a role: owner, contributor or viewer",
        ));
    };
    let username = form.username.trim();
    let Some((user, _)) = state.store.user_credentials(username).await? else {
        return Ok(redirect_with(
            &back,
            "error",
            &format!("There is no user '{username}'"),
        ));
    };
    let audit = Audit::new(&web.user.username, "team.member.set")
        .detail(format!("{username}: {}", role.as_str()));
    match state.store.set_member(&name, user.id, role, &audit).await {
        Ok(_) => Ok(redirect_with(
            &back,
            "success",
            &format!("{username} is now {} of team '{name}'", role.as_str()),
        )),
        Err(e) => Ok(redirect_with(&back, "error", &AppError::from(e).message)),
    }
}

pub async fn remove_member(
    State(state): State<AppState>,
    web: WebUser,
    Path((name, user)): Path<(String, String)>,
    Form(form): Form<CsrfOnly>,
) -> WebResult {
    web.check_csrf(&form.csrf)?;
    let (team, _) = team_access(&state, &web.user, &name, TeamAction::ManageMembers).await?;
    let back = format!("/teams/{name}");
    if team.personal {
        return Ok(redirect_with(
            &back,
            "error",
            "A personal team has exactly one member, its user",
        ));
    }
    let Some((target, _)) = state.store.user_credentials(&user).await? else {
        return Ok(redirect_with(
            &back,
            "error",
            &format!("There is no user '{user}'"),
        ));
    };
    let audit = Audit::new(&web.user.username, "team.member.remove").detail(user.clone());
    match state.store.remove_member(&name, target.id, &audit).await {
        Ok(()) => Ok(redirect_with(
            &back,
            "success",
            &format!("{user} removed from team '{name}'"),
        )),
        Err(e) => Ok(redirect_with(&back, "error", &AppError::from(e).message)),
    }
}
