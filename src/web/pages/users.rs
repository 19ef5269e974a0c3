//! Users (admins).

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Form;
use minijinja::context;
use serde::Deserialize;

use super::{page, Refused};
use crate::app;
use crate::auth::policy::{self, GlobalAction};
use crate::web::{redirect_with, WebResult, WebUser};
use crate::AppState;

pub async fn users(State(state): State<AppState>, web: WebUser) -> WebResult {
    users_page(&state, &web, StatusCode::OK, Refused::default()).await
}

async fn users_page(
    state: &AppState,
    web: &WebUser,
    status: StatusCode,
    refused: Refused,
) -> WebResult {
    policy::check_global(&web.user, GlobalAction::ManageUsers)?;
    let users = state.store.list_users().await?;
    Ok(page(
        web,
        "users.html",
        status,
        context! { users, ..refused.context(status, "/users") },
    ))
}

#[derive(Deserialize)]
pub struct UserForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    admin: Option<String>,
}

pub async fn create_user(
    State(state): State<AppState>,
    web: WebUser,
    Form(form): Form<UserForm>,
) -> WebResult {
    web.check_csrf(&form.csrf)?;
    let mut values = BTreeMap::from([
        ("username".to_string(), form.username.clone()),
        ("email".to_string(), form.email.clone()),
    ]);
    if form.admin.is_some() {
        values.insert("admin".to_string(), "1".to_string());
    }
    let new = app::users::NewUser {
        username: form.username,
        password: form.password,
        email: Some(form.email),
        admin: form.admin.is_some(),
    };
    match app::users::create(&state, Some(&web.actor()), new)
        .await
        .map_err(crate::error::AppError::from)
    {
        Ok(user) => Ok(redirect_with(
            "/users",
            "success",
            &format!("User '{}' created", user.username),
        )),
        // A field problem (422) or a taken name (409) goes next to its field.
        Err(e) if e.status.is_client_error() => {
            let field = e.field.clone().unwrap_or_else(|| "username".to_string());
            let refused = Refused::one("new-user", field, e.message).with_values(values);
            users_page(&state, &web, e.status, refused).await
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
pub struct UserFlagsForm {
    #[serde(default)]
    csrf: String,
    admin: Option<String>,
    disabled: Option<String>,
}

pub async fn update_user(
    State(state): State<AppState>,
    web: WebUser,
    Path(name): Path<String>,
    Form(form): Form<UserFlagsForm>,
) -> WebResult {
    web.check_csrf(&form.csrf)?;
    let admin = form.admin.map(|v| v == "true");
    let disabled = form.disabled.map(|v| v == "true");
    let user = match app::users::set_flags(&state, &web.actor(), &name, admin, disabled)
        .await
        .map_err(crate::error::AppError::from)
    {
        Ok(user) => user,
        Err(e) if e.status == StatusCode::UNPROCESSABLE_ENTITY => {
            return Ok(redirect_with(
                "/users",
                "error",
                "Admins cannot demote or disable themselves; ask another admin",
            ))
        }
        Err(e) => return Err(e.into()),
    };
    let what = match (admin, disabled) {
        (Some(true), _) => "is now an admin",
        (Some(false), _) => "is no longer an admin",
        (_, Some(true)) => "is now disabled",
        _ => "is enabled again",
    };
    Ok(redirect_with(
        "/users",
        "success",
        &format!("User '{}' {what}", user.username),
    ))
}

#[derive(Deserialize)]
pub struct ResetForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    new_password: String,
}

/// An admin sets another user's password (their own they change on the account page).
pub async fn reset_password(
    State(state): State<AppState>,
    web: WebUser,
    Path(name): Path<String>,
    Form(form): Form<ResetForm>,
) -> WebResult {
    web.check_csrf(&form.csrf)?;
    match crate::app::users::reset_password(&state, &web.actor(), &name, form.new_password)
        .await
        .map_err(crate::error::AppError::from)
    {
        Ok(()) => Ok(redirect_with(
            "/users",
            "success",
            &format!("The password of user '{name}' is reset"),
        )),
        Err(e) if e.status == StatusCode::UNPROCESSABLE_ENTITY => {
            let values = BTreeMap::from([("user".to_string(), name.clone())]);
            let refused = Refused::one("reset", "new_password", e.message).with_values(values);
            users_page(&state, &web, e.status, refused).await
        }
        Err(e) => Err(e.into()),
    }
}
