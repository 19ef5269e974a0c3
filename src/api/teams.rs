use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;

use super::ApiUser;
use super::{ApiJson, Items};
use crate::app;
use crate::domain::model::Team;
use crate::error::ApiResult;
use crate::error::ErrorBody;
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
    let items = app::teams::list(&state, &user).await?;
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
    let team = app::teams::create(&state, &user, &name, &body.description, None).await?;
    Ok((StatusCode::CREATED, Json(team)))
}

#[utoipa::path(get, path = "/api/v1/teams/{team}", operation_id = "getTeam", tag = "teams", security(("bearer" = [])), params(("team" = String, Path, description = "Team name")),
    responses((status = 200, body = Team), (status = 401, description = "No or bad token", body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn show(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    Path(name): Path<String>,
) -> ApiResult<Json<Team>> {
    Ok(Json(app::teams::show(&state, &user, &name).await?))
}

#[utoipa::path(put, path = "/api/v1/teams/{team}/members/{user}", operation_id = "setTeamMember", tag = "teams", security(("bearer" = [])), params(("team" = String, Path, description = "Team name"), ("user" = String, Path, description = "Username")), request_body = MemberBody,
    responses((status = 201, body = Team), (status = 200, body = Team), (status = 401, description = "No or bad token", body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn set_member(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    Path((name, member)): Path<(String, String)>,
    ApiJson(body): ApiJson<MemberBody>,
) -> ApiResult<(StatusCode, Json<Team>)> {
    let role = body.role.unwrap_or_default();
    let (_, added) = app::teams::set_member(&state, &user, &name, &member, &role).await?;
    let status = if added {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(app::teams::show(&state, &user, &name).await?)))
}

#[utoipa::path(delete, path = "/api/v1/teams/{team}/members/{user}", operation_id = "removeTeamMember", tag = "teams", security(("bearer" = [])), params(("team" = String, Path, description = "Team name"), ("user" = String, Path, description = "Username")),
    responses((status = 204), (status = 401, description = "No or bad token", body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn remove_member(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    Path((name, member)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    app::teams::remove_member(&state, &user, &name, &member).await?;
    Ok(StatusCode::NO_CONTENT)
}
