//! Team operations shared by the API and the UI.

use crate::app::access::team_access;
use crate::auth::policy::{self, GlobalAction, TeamAction};
use crate::domain::names::is_path_component;
use crate::error::AppError;
use crate::store::{Audit, Role, Team, User};
use crate::AppState;

/// Creates a team; the caller becomes its owner.
pub async fn create(
    state: &AppState,
    user: &User,
    name: &str,
    description: &str,
) -> Result<Team, AppError> {
    policy::check_global(user, GlobalAction::CreateTeam)?;
    if name.len() > 100 || !is_path_component(name) {
        return Err(AppError::invalid(
            "name",
            format!("'{name}' is not a valid team name: use lowercase letters and digits, separated by '.', '_', '__' or '-'"),
        ));
    }
    super::namespaces::check_description(description)?;
    let audit = Audit::new(&user.username, "team.create");
    Ok(state
        .store
        .create_team(name, description.trim(), user.id, &audit)
        .await?)
}

/// A member's user and the team they are changed in, after the policy allowed it: a
/// personal team has exactly one member and cannot be changed.
async fn member_change(
    state: &AppState,
    user: &User,
    team: &str,
    member: &str,
) -> Result<User, AppError> {
    let (found, _) = team_access(state, user, team, TeamAction::ManageMembers).await?;
    if found.personal {
        return Err(AppError::conflict(
            "a personal team has exactly one member, its user",
        ));
    }
    let (target, _) = state
        .store
        .user_credentials(member.trim())
        .await?
        .ok_or_else(|| AppError::not_found(format!("user '{}' not found", member.trim())))?;
    Ok(target)
}

/// Adds a member or changes their role (`role` as given: owner, contributor or viewer);
/// true when added. A team keeps at least one owner.
pub async fn set_member(
    state: &AppState,
    user: &User,
    team: &str,
    member: &str,
    role: &str,
) -> Result<(Role, bool), AppError> {
    let target = member_change(state, user, team, member).await?;
    let role = Role::parse(role).ok_or_else(|| {
        AppError::invalid(
            "role",
            format!("role must be owner, contributor or viewer, not '{role}'"),
        )
    })?;
    let audit = Audit::new(&user.username, "team.member.set").detail(format!(
        "{}: {}",
        target.username,
        role.as_str()
    ));
    let added = state
        .store
        .set_member(team, target.id, role, &audit)
        .await?;
    Ok((role, added))
}

/// Removes a member; a team keeps at least one owner.
pub async fn remove_member(
    state: &AppState,
    user: &User,
    team: &str,
    member: &str,
) -> Result<(), AppError> {
    let target = member_change(state, user, team, member).await?;
    let audit = Audit::new(&user.username, "team.member.remove").detail(target.username.clone());
    Ok(state.store.remove_member(team, target.id, &audit).await?)
}
