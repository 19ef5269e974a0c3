//! Resolving a namespace or team named in a request together with the caller's standing
//! in it, through the policy. Every namespace-scoped use case and handler starts here.

use crate::auth::policy::{self, NamespaceAction};
use crate::domain::names::NamespaceName;
use crate::error::{ApiResult, AppError};
use crate::store::{Namespace, Role, StoreError, User};
use crate::AppState;

pub struct NamespaceAccess {
    pub namespace: Namespace,
    pub role: Option<Role>,
}

impl NamespaceAccess {
    pub fn allows(&self, state: &AppState, user: &User, action: NamespaceAction) -> bool {
        policy::allows_namespace(user, self.role, action, &state.config.permissions())
    }
}

/// Loads the namespace and checks `action`: 404 when the caller cannot see it, 403 when they
/// can see it but not do this.
pub async fn namespace_access(
    state: &AppState,
    user: &User,
    raw: &str,
    action: NamespaceAction,
) -> ApiResult<NamespaceAccess> {
    let name = path_namespace(raw)?;
    let namespace = state.store.get_namespace(&name).await?;
    let role = match namespace.team_id {
        Some(team) => state.store.role_in_team(team, user.id).await?,
        None => None,
    };
    policy::check_namespace(
        user,
        name.as_str(),
        role,
        action,
        &state.config.permissions(),
    )?;
    Ok(NamespaceAccess { namespace, role })
}

/// Loads a team and checks `action`: 404 when it does not exist or the caller cannot see
/// it, 403 when they may not do this. Returns the caller's role too. Only a missing team is
/// a 404: a database that fails is a 500, not a team that vanished.
pub async fn team_access(
    state: &AppState,
    user: &User,
    name: &str,
    action: crate::auth::policy::TeamAction,
) -> ApiResult<(crate::store::Team, Option<Role>)> {
    let team = match state.store.get_team(name).await {
        Ok(team) => team,
        Err(StoreError::NotFound(_)) => {
            return Err(crate::error::AppError::not_found(format!(
                "team '{name}' not found"
            )))
        }
        Err(e) => return Err(e.into()),
    };
    let role = state.store.role_in_team(team.id, user.id).await?;
    policy::check_team(user, name, role, action)?;
    Ok((team, role))
}

/// The team a new namespace will belong to: `None` (admins only) or a team the caller owns.
/// A team the caller cannot see reads as missing, a 422 on `team`.
pub async fn team_for_new_namespace(
    state: &AppState,
    user: &User,
    team: Option<&str>,
) -> ApiResult<Option<i64>> {
    use crate::auth::policy::{GlobalAction, TeamAction};
    use crate::error::AppError;
    let Some(name) = team.filter(|t| !t.is_empty()) else {
        policy::check_global(user, GlobalAction::CreateAdminNamespace)?;
        return Ok(None);
    };
    let missing = || AppError::invalid("team", format!("there is no team '{name}'"));
    match team_access(state, user, name, TeamAction::CreateNamespace).await {
        Ok((team, _)) => Ok(Some(team.id)),
        Err(e) if e.status == axum::http::StatusCode::NOT_FOUND => Err(missing()),
        Err(e) => Err(e),
    }
}

/// A namespace in a path: a malformed name cannot exist, so it is a 404, not a 422.
pub fn path_namespace(raw: &str) -> ApiResult<NamespaceName> {
    NamespaceName::parse(raw)
        .map_err(|_| AppError::not_found(format!("namespace '{raw}' not found")))
}

/// Ids in paths: anything that is not one cannot exist, so it is a 404.
pub fn parse_id(raw: &str, what: &str) -> Result<i64, AppError> {
    raw.parse()
        .map_err(|_| AppError::not_found(format!("{what} '{raw}' not found")))
}
