//! What happened: the registry's events and the activity log, as the actor may see them.

use super::access::{check_global, namespace_access};
use super::{Actor, Context, Result};
use crate::auth::policy::{self, GlobalAction, NamespaceAction};
use crate::domain::model::{Activity, Page, StoredEvent, Visibility};
use crate::domain::names::NamespaceName;

/// Every event the registries sent, newest first, with what Herald did with it and why:
/// the first place to look when a webhook did not fire (admins).
pub async fn events(
    ctx: &Context,
    actor: &Actor,
    limit: i64,
    cursor: Option<i64>,
) -> Result<Page<StoredEvent>> {
    check_global(actor, GlobalAction::ReadEvents)?;
    Ok(ctx.store.list_events(limit, cursor).await?)
}

/// What the actor may see in lists.
pub fn visibility(actor: &Actor) -> Visibility {
    match actor {
        Actor::User(user) => policy::visibility(user),
        Actor::Operator(_) => Visibility::All,
    }
}

/// The activity log, newest first, limited to what the actor may see; `namespace` narrows
/// it. An existing namespace must be visible; entries of a deleted one are still filtered
/// by team.
pub async fn activities(
    ctx: &Context,
    actor: &Actor,
    namespace: Option<&str>,
    limit: i64,
    cursor: Option<i64>,
) -> Result<Page<Activity>> {
    if let Some(ns) = namespace {
        if let Ok(name) = NamespaceName::parse(ns) {
            if ctx.store.get_namespace(&name).await.is_ok() {
                namespace_access(ctx, actor, ns, NamespaceAction::Read).await?;
            }
        }
    }
    Ok(ctx
        .store
        .list_activities(&visibility(actor), namespace, limit, cursor)
        .await?)
}
