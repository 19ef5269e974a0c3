//! Namespace operations shared by the API and the UI.

use crate::app::access::{namespace_access, team_for_new_namespace};
use crate::auth::policy::NamespaceAction;
use crate::domain::names::NamespaceName;
use crate::error::AppError;
use crate::store::{Audit, Namespace, User};
use crate::AppState;

/// The longest description of a namespace or team.
pub const MAX_DESCRIPTION: usize = 1000;

pub fn check_description(description: &str) -> Result<(), AppError> {
    if description.len() > MAX_DESCRIPTION {
        return Err(AppError::invalid(
            "description",
            "a description has at most 1000 characters",
        ));
    }
    Ok(())
}

/// Creates a namespace for `team` (a team the caller owns; none: admins only).
pub async fn create(
    state: &AppState,
    user: &User,
    name: Option<&str>,
    team: Option<&str>,
    description: &str,
) -> Result<Namespace, AppError> {
    let team_id = team_for_new_namespace(state, user, team).await?;
    let name = name.ok_or_else(|| AppError::invalid("name", "a namespace needs a name"))?;
    let name = NamespaceName::parse(name)?;
    check_description(description)?;
    let audit = Audit::new(&user.username, "namespace.create");
    Ok(state
        .store
        .create_namespace(&name, description.trim(), team_id, &audit)
        .await?)
}

/// Deletes a namespace with its webhooks and their deliveries; returns its name.
pub async fn delete(state: &AppState, user: &User, ns: &str) -> Result<NamespaceName, AppError> {
    let access = namespace_access(state, user, ns, NamespaceAction::DeleteNamespace).await?;
    let audit = Audit::new(&user.username, "namespace.destroy");
    state
        .store
        .delete_namespace(&access.namespace.name, &audit)
        .await?;
    tracing::info!(namespace = %access.namespace.name, by = %user.username, "namespace deleted");
    Ok(access.namespace.name)
}
