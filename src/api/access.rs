//! Resolving a namespace from the path together with the caller's standing in it, through
//! the policy. Every namespace-scoped handler starts here.

use super::namespaces::path_namespace;
use crate::auth::policy::{self, NamespaceAction};
use crate::error::ApiResult;
use crate::store::{Namespace, Role, User};
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
