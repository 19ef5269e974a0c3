//! Resolving what a request names (a namespace, a team, a webhook) together with the
//! actor's standing in it, through the policy. Every scoped use case starts here.

use super::{Actor, Context, Error, Result};
use crate::auth::policy::{self, GlobalAction, NamespaceAction, TeamAction};
use crate::domain::model::{Namespace, Role, Team, Webhook};
use crate::domain::names::NamespaceName;
use crate::store::StoreError;

/// Reading a namespace's webhooks and deliveries, the action most loads check.
pub const READ: NamespaceAction = NamespaceAction::Read;

pub struct NamespaceAccess {
    pub namespace: Namespace,
    pub role: Option<Role>,
}

impl NamespaceAccess {
    /// The decision without the error: for showing or hiding controls.
    pub fn allows(&self, ctx: &Context, actor: &Actor, action: NamespaceAction) -> bool {
        match actor {
            Actor::Operator(_) => true,
            Actor::User(user) => {
                policy::allows_namespace(user, self.role, action, &ctx.config.permissions())
            }
        }
    }
}

/// Checks a global `action` (managing users, sources, ...).
pub fn check_global(actor: &Actor, action: GlobalAction) -> Result<()> {
    match actor {
        Actor::Operator(_) => Ok(()),
        Actor::User(user) => Ok(policy::check_global(user, action)?),
    }
}

/// Loads the namespace and checks `action`: not found when the actor cannot see it,
/// forbidden when they can see it but not do this.
pub async fn namespace_access(
    ctx: &Context,
    actor: &Actor,
    raw: &str,
    action: NamespaceAction,
) -> Result<NamespaceAccess> {
    let name = path_namespace(raw)?;
    let namespace = ctx.store.get_namespace(&name).await?;
    let Actor::User(user) = actor else {
        return Ok(NamespaceAccess {
            namespace,
            role: None,
        });
    };
    let role = match namespace.team_id {
        Some(team) => ctx.store.role_in_team(team, user.id).await?,
        None => None,
    };
    policy::check_namespace(user, name.as_str(), role, action, &ctx.config.permissions())?;
    Ok(NamespaceAccess { namespace, role })
}

/// Loads a team and checks `action`: not found when it does not exist or the actor cannot
/// see it, forbidden when they may not do this. Only a missing team is not found: a
/// database that fails is an internal error, not a team that vanished.
pub async fn team_access(
    ctx: &Context,
    actor: &Actor,
    name: &str,
    action: TeamAction,
) -> Result<(Team, Option<Role>)> {
    let team = match ctx.store.get_team(name).await {
        Ok(team) => team,
        Err(StoreError::NotFound(_)) => {
            return Err(Error::NotFound(format!("team '{name}' not found")))
        }
        Err(e) => return Err(e.into()),
    };
    let Actor::User(user) = actor else {
        return Ok((team, None));
    };
    let role = ctx.store.role_in_team(team.id, user.id).await?;
    policy::check_team(user, name, role, action)?;
    Ok((team, role))
}

/// The team a new namespace will belong to: `None` (admins only) or a team the actor owns.
/// A team the actor cannot see reads as missing: a problem with `team`.
pub async fn team_for_new_namespace(
    ctx: &Context,
    actor: &Actor,
    team: Option<&str>,
) -> Result<Option<i64>> {
    let Some(name) = team.filter(|t| !t.is_empty()) else {
        check_global(actor, GlobalAction::CreateAdminNamespace)?;
        return Ok(None);
    };
    match team_access(ctx, actor, name, TeamAction::CreateNamespace).await {
        Ok((team, _)) => Ok(Some(team.id)),
        Err(Error::NotFound(_)) => {
            Err(Error::invalid("team", format!("there is no team '{name}'")))
        }
        Err(e) => Err(e),
    }
}

/// A namespace named in a request: a malformed name cannot exist, so it is not found.
pub fn path_namespace(raw: &str) -> Result<NamespaceName> {
    NamespaceName::parse(raw).map_err(|_| Error::NotFound(format!("namespace '{raw}' not found")))
}

/// An id named in a request: anything that is not one cannot exist, so it is not found.
pub fn parse_id(raw: &str, what: &str) -> Result<i64> {
    raw.parse()
        .map_err(|_| Error::NotFound(format!("{what} '{raw}' not found")))
}

/// How a request names a webhook: the API by id; the command line by name or id.
#[derive(Debug, Clone, Copy)]
pub enum WebhookRef<'a> {
    /// An id as the API's paths give it (anything else is not found).
    Id(&'a str),
    /// A name, or an id when no webhook of the namespace has that name.
    NameOrId(&'a str),
}

/// A webhook of `ns` and the actor's standing, after the policy allowed `action`.
pub async fn webhook(
    ctx: &Context,
    actor: &Actor,
    ns: &str,
    hook: WebhookRef<'_>,
    action: NamespaceAction,
) -> Result<(NamespaceAccess, Webhook)> {
    let access = namespace_access(ctx, actor, ns, action).await?;
    let name = &access.namespace.name;
    let id = match hook {
        WebhookRef::Id(raw) => parse_id(raw, "webhook")?,
        WebhookRef::NameOrId(raw) => {
            let hooks = ctx.store.list_webhooks(name).await?;
            match hooks.into_iter().find(|w| w.name.as_str() == raw) {
                Some(w) => return Ok((access, w)),
                None => raw.parse().map_err(|_| {
                    Error::NotFound(format!("webhook '{raw}' not found in namespace '{name}'"))
                })?,
            }
        }
    };
    let found = ctx.store.get_webhook(name, id).await?;
    Ok((access, found))
}
