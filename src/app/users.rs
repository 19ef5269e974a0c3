//! Password changes: one's own (with the current password) and an admin's reset.
//! Hashes go through the password gate like every other hash.

use crate::auth::policy::{self, GlobalAction};
use crate::auth::validate_password;
use crate::error::AppError;
use crate::store::User;
use crate::AppState;

/// Changes the caller's own password after checking the current one.
pub async fn change_own_password(
    state: &AppState,
    user: &User,
    current: String,
    new: String,
) -> Result<(), AppError> {
    let hash = state
        .store
        .user_credentials(&user.username)
        .await?
        .map(|(_, hash)| hash);
    if !state.password_gate.verify(current, hash).await? {
        return Err(AppError::invalid(
            "current_password",
            "the current password is not right",
        ));
    }
    validate_password(&new).map_err(|e| AppError::invalid("new_password", e.message))?;
    let hash = state.password_gate.hash(new).await?;
    Ok(state.store.set_password(&user.username, &hash).await?)
}

/// An admin sets another user's password.
pub async fn reset_password(
    state: &AppState,
    admin: &User,
    username: &str,
    new: String,
) -> Result<(), AppError> {
    policy::check_global(admin, GlobalAction::ManageUsers)?;
    validate_password(&new).map_err(|e| AppError::invalid("new_password", e.message))?;
    if state.store.user_credentials(username).await?.is_none() {
        return Err(AppError::not_found(format!("user '{username}' not found")));
    }
    let hash = state.password_gate.hash(new).await?;
    Ok(state.store.set_password(username, &hash).await?)
}

/// An admin makes a user admin or not, disabled or not; admins cannot demote or disable
/// themselves, so there is always an admin left.
pub async fn set_flags(
    state: &AppState,
    admin: &User,
    username: &str,
    make_admin: Option<bool>,
    disabled: Option<bool>,
) -> Result<User, AppError> {
    policy::check_global(admin, GlobalAction::ManageUsers)?;
    if username == admin.username && (make_admin == Some(false) || disabled == Some(true)) {
        return Err(AppError::invalid(
            if make_admin.is_some() {
                "admin"
            } else {
                "disabled"
            },
            "admins cannot demote or disable themselves; ask another admin",
        ));
    }
    Ok(state
        .store
        .update_user(username, make_admin, disabled)
        .await?)
}
