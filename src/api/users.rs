use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::{ApiJson, Items};
use crate::app;
use crate::auth::policy::{self, GlobalAction};
use crate::auth::{self, ApiUser};
use crate::error::ErrorBody;
use crate::error::{ApiResult, AppError};
use crate::store::{Role, User};
use crate::AppState;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    username: Option<String>,
    password: Option<String>,
    email: Option<String>,
    #[serde(default)]
    admin: bool,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUser {
    admin: Option<bool>,
    disabled: Option<bool>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Membership {
    team: String,
    role: Role,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Me {
    #[serde(flatten)]
    user: User,
    teams: Vec<Membership>,
}

#[utoipa::path(get, path = "/api/v1/users/me", operation_id = "getCurrentUser", tag = "users", security(("bearer" = [])),
    responses((status = 200, body = Me), (status = 401, description = "No or bad token", body = ErrorBody)))]
pub async fn me(State(state): State<AppState>, ApiUser(user): ApiUser) -> ApiResult<Json<Me>> {
    let teams = state
        .store
        .list_teams(&crate::store::Visibility::MemberOf(user.id))
        .await?
        .into_iter()
        .filter_map(|t| {
            let role = t.members.iter().find(|m| m.username == user.username)?.role;
            Some(Membership { team: t.name, role })
        })
        .collect();
    Ok(Json(Me { user, teams }))
}

#[utoipa::path(get, path = "/api/v1/users", operation_id = "listUsers", tag = "users", security(("bearer" = [])),
    responses((status = 200, body = Items<User>), (status = 401, description = "No or bad token", body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
) -> ApiResult<Json<Items<User>>> {
    policy::check_global(&user, GlobalAction::ManageUsers)?;
    let items = state.store.list_users().await?;
    Ok(Json(Items { items }))
}

/// Admins create users; with sign-up switched on, anyone may create a non-admin account.
#[utoipa::path(post, path = "/api/v1/users", operation_id = "createUser", tag = "users", security(("bearer" = [])), request_body = CreateUser,
    responses((status = 201, body = User), (status = 401, description = "No or bad token", body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<CreateUser>,
) -> ApiResult<(StatusCode, Json<User>)> {
    let has_auth = headers.contains_key(header::AUTHORIZATION);
    let caller = if has_auth || !state.config.allow_signup {
        let user = auth::user_from_bearer(&state, &headers).await?;
        Some(user)
    } else {
        None
    };
    match &caller {
        Some(user) => policy::check_global(user, GlobalAction::ManageUsers)?,
        None if body.admin => {
            return Err(AppError::invalid(
                "admin",
                "signing up cannot create an admin",
            ));
        }
        None => {}
    }
    let user = auth::register_user(
        state.store.as_ref(),
        &state.password_gate,
        &body.username.unwrap_or_default(),
        body.password.unwrap_or_default(),
        body.email.as_deref(),
        body.admin,
    )
    .await?;
    tracing::info!(user = %user.username, admin = user.admin, by = ?caller.map(|c| c.username), "user created");
    Ok((StatusCode::CREATED, Json(user)))
}

#[utoipa::path(patch, path = "/api/v1/users/{name}", operation_id = "updateUser", tag = "users", security(("bearer" = [])), params(("name" = String, Path, description = "Username")), request_body = UpdateUser,
    responses((status = 200, body = User), (status = 401, description = "No or bad token", body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update(
    State(state): State<AppState>,
    ApiUser(caller): ApiUser,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<UpdateUser>,
) -> ApiResult<Json<User>> {
    let user = app::users::set_flags(&state, &caller, &name, body.admin, body.disabled).await?;
    tracing::info!(user = %user.username, admin = user.admin, disabled = user.disabled, by = %caller.username, "user updated");
    Ok(Json(user))
}
