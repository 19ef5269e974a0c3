use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;

use super::{ApiJson, Items};
use crate::app::access::team_access;
use crate::auth::policy::{self, TeamAction};
use crate::auth::ApiUser;
use crate::error::ErrorBody;
use crate::error::{ApiResult, AppError};
use crate::store::{Audit, Role, Team};
use crate::AppState;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTeam {
    name: Option<String>,
    #[serde(default)]
    description: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MemberBody {
    role: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/teams", operation_id = "listTeams", tag = "teams", security(("bearer" = [])),
    responses((status = 200, body = Items<Team>), (status = 401, description = "No or bad token", body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
) -> ApiResult<Json<Items<Team>>> {
    let items = state.store.list_teams(&policy::visibility(&user)).await?;
    Ok(Json(Items { items }))
}

#[utoipa::path(post, path = "/api/v1/teams", operation_id = "createTeam", tag = "teams", security(("bearer" = [])), request_body = CreateTeam,
    responses((status = 201, body = Team), (status = 401, description = "No or bad token", body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    ApiJson(body): ApiJson<CreateTeam>,
) -> ApiResult<(StatusCode, Json<Team>)> {
    let name = body.name.unwrap_or_default();
    let team = crate::app::teams::create(&state, &user, &name, &body.description).await?;
    tracing::info!(team = %team.name, by = %user.username, "team created");
    Ok((StatusCode::CREATED, Json(team)))
}

#[utoipa::path(get, path = "/api/v1/teams/{team}", operation_id = "getTeam", tag = "teams", security(("bearer" = [])), params(("team" = String, Path, description = "Team name")),
    responses((status = 200, body = Team), (status = 401, description = "No or bad token", body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn show(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    Path(name): Path<String>,
) -> ApiResult<Json<Team>> {
    Ok(Json(
        team_access(&state, &user, &name, TeamAction::Read).await?.0,
    ))
}

#[utoipa::path(put, path = "/api/v1/teams/{team}/members/{user}", operation_id = "setTeamMember", tag = "teams", security(("bearer" = [])), params(("team" = String, Path, description = "Team name"), ("user" = String, Path, description = "Username")), request_body = MemberBody,
    responses((status = 201, body = Team), (status = 200, body = Team), (status = 401, description = "No or bad token", body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn set_member(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    Path((name, member)): Path<(String, String)>,
    ApiJson(body): ApiJson<MemberBody>,
) -> ApiResult<(StatusCode, Json<Team>)> {
    let team = team_access(&state, &user, &name, TeamAction::ManageMembers)
        .await?
        .0;
    if team.personal {
        return Err(AppError::conflict(
            "a personal team has exactly one member, its user",
        ));
    }
    let role_text = body.role.unwrap_or_default();
    let role = Role::parse(&role_text).ok_or_else(|| {
        AppError::invalid(
            "role",
            format!("role must be owner, contributor or viewer, not '{role_text}'"),
        )
    })?;
    let (target, _) = state
        .store
        .user_credentials(&member)
        .await?
        .ok_or_else(|| AppError::not_found(format!("user '{member}' not found")))?;
    let audit = Audit::new(&user.username, "team.member.set")
        .detail(format!("{member}: {}", role.as_str()));
    let added = state
        .store
        .set_member(&name, target.id, role, &audit)
        .await?;
    let status = if added {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(state.store.get_team(&name).await?)))
}

#[utoipa::path(delete, path = "/api/v1/teams/{team}/members/{user}", operation_id = "removeTeamMember", tag = "teams", security(("bearer" = [])), params(("team" = String, Path, description = "Team name"), ("user" = String, Path, description = "Username")),
    responses((status = 204), (status = 401, description = "No or bad token", body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn remove_member(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    Path((name, member)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let team = team_access(&state, &user, &name, TeamAction::ManageMembers)
        .await?
        .0;
    if team.personal {
        return Err(AppError::conflict(
            "a personal team has exactly one member, its user",
        ));
    }
    let (target, _) = state
        .store
        .user_credentials(&member)
        .await?
        .ok_or_else(|| AppError::not_found(format!("user '{member}' not found")))?;
    let audit = Audit::new(&user.username, "team.member.remove").detail(member.clone());
    state.store.remove_member(&name, target.id, &audit).await?;
    Ok(StatusCode::NO_CONTENT)
}
