//! Teams: who owns which namespaces, and with what role each member sees them.

use super::access::{check_global, team_access};
use super::history::visibility;
use super::{Actor, Context, Error, Result};
use crate::auth::policy::{GlobalAction, TeamAction};
use crate::domain::model::{Audit, Role, Team, User};
use crate::domain::names::is_path_component;

pub async fn list(ctx: &Context, actor: &Actor) -> Result<Vec<Team>> {
    Ok(ctx.store.list_teams(&visibility(actor)).await?)
}

pub async fn show(ctx: &Context, actor: &Actor, name: &str) -> Result<Team> {
    Ok(team_access(ctx, actor, name, TeamAction::Read).await?.0)
}

/// Creates a team. A user becomes its owner; the operator names the owner.
pub async fn create(
    ctx: &Context,
    actor: &Actor,
    name: &str,
    description: &str,
    owner: Option<&str>,
) -> Result<Team> {
    check_global(actor, GlobalAction::CreateTeam)?;
    if name.len() > 100 || !is_path_component(name) {
        return Err(Error::invalid(
            "name",
            format!("'{name}' is not a valid team name: use lowercase letters and digits, separated by '.', '_', '__' or '-'"),
        ));
    }
    super::namespaces::check_description(description)?;
    let owner = match (actor, owner) {
        (Actor::User(user), None) => user.clone(),
        (Actor::User(user), Some(o)) if o == user.username => user.clone(),
        (Actor::User(_), Some(_)) => {
            return Err(Error::invalid(
                "owner",
                "a user creates teams they own; add other owners as members",
            ))
        }
        (Actor::Operator(_), Some(o)) => super::users::get(ctx, actor, o).await?,
        (Actor::Operator(_), None) => {
            return Err(Error::invalid(
                "owner",
                "name the user who will own the team",
            ))
        }
    };
    let audit = Audit::new(actor.name(), "team.create");
    let team = ctx
        .store
        .create_team(name, description.trim(), owner.id, &audit)
        .await?;
    tracing::info!(team = %team.name, owner = %owner.username, by = %actor.name(), "team created");
    Ok(team)
}

/// A member's user, after the policy allowed changing the team's members: a personal team
/// has exactly one member and cannot be changed.
async fn member_change(ctx: &Context, actor: &Actor, team: &str, member: &str) -> Result<User> {
    let (found, _) = team_access(ctx, actor, team, TeamAction::ManageMembers).await?;
    if found.personal {
        return Err(Error::Conflict(
            "a personal team has exactly one member, its user".into(),
        ));
    }
    let (target, _) = ctx
        .store
        .user_credentials(member.trim())
        .await?
        .ok_or_else(|| Error::NotFound(format!("user '{}' not found", member.trim())))?;
    Ok(target)
}

/// Adds a member or changes their role (`role` as given: owner, contributor or viewer);
/// true when added. A team keeps at least one owner.
pub async fn set_member(
    ctx: &Context,
    actor: &Actor,
    team: &str,
    member: &str,
    role: &str,
) -> Result<(Role, bool)> {
    let target = member_change(ctx, actor, team, member).await?;
    let role = Role::parse(role).ok_or_else(|| {
        Error::invalid(
            "role",
            format!("role must be owner, contributor or viewer, not '{role}'"),
        )
    })?;
    let audit = Audit::new(actor.name(), "team.member.set").detail(format!(
        "{}: {}",
        target.username,
        role.as_str()
    ));
    let added = ctx.store.set_member(team, target.id, role, &audit).await?;
    tracing::info!(team, member = %target.username, role = role.as_str(), by = %actor.name(), "team member set");
    Ok((role, added))
}

/// Removes a member; a team keeps at least one owner.
pub async fn remove_member(ctx: &Context, actor: &Actor, team: &str, member: &str) -> Result<()> {
    let target = member_change(ctx, actor, team, member).await?;
    let audit = Audit::new(actor.name(), "team.member.remove").detail(target.username.clone());
    ctx.store.remove_member(team, target.id, &audit).await?;
    tracing::info!(team, member = %target.username, by = %actor.name(), "team member removed");
    Ok(())
}
