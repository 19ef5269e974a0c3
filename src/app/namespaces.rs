//! Namespaces: where webhooks live, one per repository's first path segment.

use super::access::{namespace_access, team_for_new_namespace};
use super::history::visibility;
use super::{Actor, Context, Error, Result};
use crate::auth::policy::NamespaceAction;
use crate::domain::model::{Audit, Namespace};
use crate::domain::names::NamespaceName;

/// The longest description of a namespace or team.
pub const MAX_DESCRIPTION: usize = 1000;

pub fn check_description(description: &str) -> Result<()> {
    if description.len() > MAX_DESCRIPTION {
        return Err(Error::invalid(
            "description",
            format!("a description has at most {MAX_DESCRIPTION} characters"),
        ));
    }
    Ok(())
}

/// The namespaces the actor may see.
pub async fn list(ctx: &Context, actor: &Actor) -> Result<Vec<Namespace>> {
    Ok(ctx.store.list_namespaces(&visibility(actor)).await?)
}

pub async fn show(ctx: &Context, actor: &Actor, ns: &str) -> Result<Namespace> {
    Ok(namespace_access(ctx, actor, ns, NamespaceAction::Read)
        .await?
        .namespace)
}

/// Creates a namespace for `team` (a team the actor owns; none: admins and the operator).
pub async fn create(
    ctx: &Context,
    actor: &Actor,
    name: Option<&str>,
    team: Option<&str>,
    description: &str,
) -> Result<Namespace> {
    let team_id = team_for_new_namespace(ctx, actor, team).await?;
    let name = name.ok_or_else(|| Error::invalid("name", "a namespace needs a name"))?;
    let name = NamespaceName::parse(name)?;
    check_description(description)?;
    let audit = Audit::new(actor.name(), "namespace.create");
    let ns = ctx
        .store
        .create_namespace(&name, description.trim(), team_id, &audit)
        .await?;
    tracing::info!(namespace = %ns.name, by = %actor.name(), "namespace created");
    Ok(ns)
}

/// Deletes a namespace with its webhooks and their deliveries; returns its name.
pub async fn delete(ctx: &Context, actor: &Actor, ns: &str) -> Result<NamespaceName> {
    let access = namespace_access(ctx, actor, ns, NamespaceAction::DeleteNamespace).await?;
    let audit = Audit::new(actor.name(), "namespace.destroy");
    ctx.store
        .delete_namespace(&access.namespace.name, &audit)
        .await?;
    tracing::info!(namespace = %access.namespace.name, by = %actor.name(), "namespace deleted");
    Ok(access.namespace.name)
}
