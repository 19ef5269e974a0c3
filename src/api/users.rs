use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::ApiUser;
use super::{ApiJson, Items};
use crate::app;
use crate::domain::model::User;
use crate::error::ErrorBody;
use crate::error::{ApiResult, AppError};
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
pub struct Me {
    #[serde(flatten)]
    user: User,
    teams: Vec<app::users::Membership>,
}

#[utoipa::path(get, path = "/api/v1/users/me", operation_id = "getCurrentUser", tag = "users", security(("bearer" = [])),
    responses((status = 200, body = Me), (status = 401, description = "No or bad token", body = ErrorBody)))]
pub async fn me(State(state): State<AppState>, ApiUser(actor): ApiUser) -> ApiResult<Json<Me>> {
    let user = actor
        .user()
        .cloned()
        .ok_or_else(|| AppError::unauthorized("an API token is required"))?;
    let teams = app::users::memberships(&state, &user).await?;
    Ok(Json(Me { user, teams }))
}

#[utoipa::path(get, path = "/api/v1/users", operation_id = "listUsers", tag = "users", security(("bearer" = [])),
    responses((status = 200, body = Items<User>), (status = 401, description = "No or bad token", body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
) -> ApiResult<Json<Items<User>>> {
    let items = app::users::list(&state, &user).await?;
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
    // Authentication is asked for unless sign-up is on and the request carries none; who
    // may create which account is the use case's rule.
    let has_auth = headers.contains_key(header::AUTHORIZATION);
    let caller = if has_auth || !state.config.allow_signup {
        Some(app::Actor::User(
            super::user_from_bearer(&state, &headers).await?,
        ))
    } else {
        None
    };
    let new = app::users::NewUser {
        username: body.username.unwrap_or_default(),
        password: body.password.unwrap_or_default(),
        email: body.email,
        admin: body.admin,
    };
    let user = app::users::create(&state, caller.as_ref(), new).await?;
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
    Ok(Json(user))
}
