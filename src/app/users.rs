//! Users: accounts, passwords, sign-in. Every password is hashed and checked through the
//! password gate, and every rule about accounts (who may create one, the username and
//! password rules, admins keeping an admin) lives here once.

use std::net::IpAddr;

use serde::Serialize;

use super::access::check_global;
use super::{Actor, Context, Error, Result};
use crate::auth::policy::{self, GlobalAction};
use crate::auth::{validate_password, validate_username, SignInError};
use crate::domain::model::{Role, User, Visibility};

/// A new account as a caller gives it.
#[derive(Debug, Clone, Default)]
pub struct NewUser {
    pub username: String,
    pub password: String,
    pub email: Option<String>,
    pub admin: bool,
}

/// Creates an account. `caller` is who asks: an admin, the operator, or nobody (sign-up,
/// when `--allow-signup` is on, and never for an admin account).
pub async fn create(ctx: &Context, caller: Option<&Actor>, new: NewUser) -> Result<User> {
    match caller {
        Some(actor) => check_global(actor, GlobalAction::ManageUsers)?,
        None => policy::check_create_user(None, new.admin, &ctx.config.permissions())?,
    }
    let username = new.username.trim();
    let mut problems = Vec::new();
    problems.extend(validate_username(username).err());
    problems.extend(validate_password(&new.password).err());
    let email = new
        .email
        .as_deref()
        .map(str::trim)
        .filter(|e| !e.is_empty());
    if let Some(e) = email {
        if !e.contains('@') || e.len() > 254 || e.chars().any(char::is_whitespace) {
            problems.push(crate::domain::names::Invalid::new(
                "email",
                format!("'{e}' is not an email address"),
            ));
        }
    }
    if !problems.is_empty() {
        return Err(Error::invalid_all(problems));
    }
    let hash = ctx.password_gate.hash(new.password).await?;
    let user = ctx
        .store
        .create_user(username, &hash, email, new.admin)
        .await?;
    let by = caller.map_or("sign-up", Actor::name);
    tracing::info!(user = %user.username, admin = user.admin, by = %by, "user created");
    Ok(user)
}

pub async fn list(ctx: &Context, actor: &Actor) -> Result<Vec<User>> {
    check_global(actor, GlobalAction::ManageUsers)?;
    Ok(ctx.store.list_users().await?)
}

/// A user by name, for the operator's commands.
pub async fn get(ctx: &Context, actor: &Actor, username: &str) -> Result<User> {
    check_global(actor, GlobalAction::ManageUsers)?;
    ctx.store
        .user_credentials(username.trim())
        .await?
        .map(|(user, _)| user)
        .ok_or_else(|| Error::NotFound(format!("user '{}' not found", username.trim())))
}

/// Changes the actor's own password after checking the current one.
pub async fn change_own_password(
    ctx: &Context,
    user: &User,
    current: String,
    new: String,
) -> Result<()> {
    let hash = ctx
        .store
        .user_credentials(&user.username)
        .await?
        .map(|(_, hash)| hash);
    if !ctx.password_gate.verify(current, hash).await? {
        return Err(Error::invalid(
            "current_password",
            "the current password is not right",
        ));
    }
    set_hash(ctx, &user.username, new, &user.username).await
}

/// An admin (or the operator) sets another user's password.
pub async fn reset_password(
    ctx: &Context,
    actor: &Actor,
    username: &str,
    new: String,
) -> Result<()> {
    check_global(actor, GlobalAction::ManageUsers)?;
    validate_password(&new).map_err(|e| Error::invalid("new_password", e.message))?;
    if ctx.store.user_credentials(username).await?.is_none() {
        return Err(Error::NotFound(format!("user '{username}' not found")));
    }
    set_hash(ctx, username, new, actor.name()).await
}

async fn set_hash(ctx: &Context, username: &str, new: String, by: &str) -> Result<()> {
    validate_password(&new).map_err(|e| Error::invalid("new_password", e.message))?;
    let hash = ctx.password_gate.hash(new).await?;
    ctx.store.set_password(username, &hash).await?;
    tracing::info!(user = %username, by = %by, "password changed");
    Ok(())
}

/// Makes a user admin or not, disabled or not. Admins cannot demote or disable themselves,
/// so there is always an admin left.
pub async fn set_flags(
    ctx: &Context,
    actor: &Actor,
    username: &str,
    make_admin: Option<bool>,
    disabled: Option<bool>,
) -> Result<User> {
    check_global(actor, GlobalAction::ManageUsers)?;
    let demotes_self = actor.user().is_some_and(|u| u.username == username)
        && (make_admin == Some(false) || disabled == Some(true));
    if demotes_self {
        return Err(Error::invalid(
            if make_admin.is_some() {
                "admin"
            } else {
                "disabled"
            },
            "admins cannot demote or disable themselves; ask another admin",
        ));
    }
    let user = ctx
        .store
        .update_user(username, make_admin, disabled)
        .await?;
    tracing::info!(user = %user.username, admin = user.admin, disabled = user.disabled, by = %actor.name(), "user updated");
    Ok(user)
}

/// Signs in with a username and password, for the UI's form and the API's Basic auth alike:
/// the throttle first (a throttled attempt runs no hash), then one gated verification,
/// against a dummy hash when there is no such user, so that timing does not tell.
pub async fn sign_in(
    ctx: &Context,
    username: &str,
    password: String,
    client: Option<IpAddr>,
) -> std::result::Result<User, SignInError> {
    let throttle = &ctx.login_throttle;
    let attempt = throttle.begin(username, client).map_err(|t| {
        // Debug only: a flood of throttled guesses must not flood the log too.
        tracing::debug!(username = %username, client = ?client, wait_s = t.secs(), "sign-in throttled");
        SignInError::Throttled(t)
    })?;
    let credentials = match ctx.store.user_credentials(username).await {
        Ok(c) => c,
        Err(e) => {
            throttle.not_checked(attempt);
            return Err(SignInError::StoreFailed(e));
        }
    };
    let (user, hash) = match credentials {
        Some((user, hash)) => (Some(user), Some(hash)),
        None => (None, None),
    };
    // A disabled user's password is verified too, and its result ignored: the answer and
    // its timing are the same as for a wrong password.
    let valid = match ctx.password_gate.verify(password, hash).await {
        Ok(valid) => valid,
        Err(e) => {
            throttle.not_checked(attempt);
            return Err(SignInError::Overloaded(e));
        }
    };
    match user {
        Some(user) if valid && !user.disabled => {
            throttle.succeeded(attempt);
            Ok(user)
        }
        _ => {
            throttle.failed(attempt);
            tracing::warn!(username = %username, client = ?client, "failed sign-in");
            Err(SignInError::Rejected)
        }
    }
}

/// The user an API token belongs to.
pub async fn from_token(ctx: &Context, token: &str) -> Result<User> {
    let user = ctx
        .store
        .authenticate_token(&crate::auth::token_hash(token), chrono::Utc::now())
        .await?
        .ok_or_else(|| {
            Error::Unauthorized("the API token is not valid (unknown or revoked)".into())
        })?;
    if user.disabled {
        return Err(Error::Unauthorized(
            "the user of this token is disabled".into(),
        ));
    }
    Ok(user)
}

/// A team the user belongs to, and their role in it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Membership {
    pub team: String,
    pub role: Role,
}

/// The user's teams.
pub async fn memberships(ctx: &Context, user: &User) -> Result<Vec<Membership>> {
    Ok(ctx
        .store
        .list_teams(&Visibility::MemberOf(user.id))
        .await?
        .into_iter()
        .filter_map(|t| {
            let role = t.members.iter().find(|m| m.username == user.username)?.role;
            Some(Membership { team: t.name, role })
        })
        .collect())
}
