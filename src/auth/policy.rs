//! The single table of who may do what. Every API route (and the UI) asks here; no handler
//! decides on its own.
//!
//! | action                                              | who                                            |
//! |-----------------------------------------------------|------------------------------------------------|
//! | see a namespace, its webhooks, headers, deliveries  | admins; any member of the namespace's team     |
//! | create/delete a webhook, set/delete a header        | admins; team owners while `create_webhook` is on |
//! | update, enable/disable a webhook; retrigger         | admins; team owners while `manage_webhook` is on |
//! | delete a namespace                                  | admins; owners of its team                     |
//! | create a namespace                                  | admins; owners of the team it will belong to   |
//! | see a team; manage its members                      | members; admins and that team's owners         |
//! | create a team                                       | any user (who becomes its owner)               |
//! | manage users, see raw registry events               | admins (sign-up may be switched on)            |
//!
//! A namespace or team the caller cannot see at all answers 404, so names do not leak;
//! one they can see but not change answers 403.

use crate::domain::model::{Role, User, Visibility};
use crate::domain::names::Invalid;

/// Why the policy says no: the caller may not see it (404, so names do not leak), may see
/// it but not do this (403), or must say more (a 422, e.g. which team).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    NotFound(String),
    Forbidden(String),
    Invalid(Invalid),
}

/// Operator switches (Portus's `permissions.*`).
#[derive(Debug, Clone, Copy)]
pub struct Permissions {
    pub create_webhook: bool,
    pub manage_webhook: bool,
    pub allow_signup: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NamespaceAction {
    Read,
    CreateWebhook,
    DeleteWebhook,
    ManageHeaders,
    UpdateWebhook,
    Retrigger,
    DeleteNamespace,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TeamAction {
    Read,
    ManageMembers,
    CreateNamespace,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GlobalAction {
    CreateTeam,
    ManageUsers,
    ReadEvents,
    /// Create, list and delete sources (other registries and their credentials).
    ManageSources,
    /// A namespace owned by the admins rather than by a team.
    CreateAdminNamespace,
}

/// What the caller may see in lists.
pub fn visibility(user: &User) -> Visibility {
    if user.admin {
        Visibility::All
    } else {
        Visibility::MemberOf(user.id)
    }
}

/// The decision without the error: for showing or hiding controls.
pub fn allows_namespace(
    user: &User,
    role: Option<Role>,
    action: NamespaceAction,
    perms: &Permissions,
) -> bool {
    if user.admin {
        return true;
    }
    let Some(role) = role else { return false };
    match action {
        NamespaceAction::Read => true,
        NamespaceAction::CreateWebhook
        | NamespaceAction::DeleteWebhook
        | NamespaceAction::ManageHeaders => role == Role::Owner && perms.create_webhook,
        NamespaceAction::UpdateWebhook | NamespaceAction::Retrigger => {
            role == Role::Owner && perms.manage_webhook
        }
        NamespaceAction::DeleteNamespace => role == Role::Owner,
    }
}

pub fn check_namespace(
    user: &User,
    namespace: &str,
    role: Option<Role>,
    action: NamespaceAction,
    perms: &Permissions,
) -> Result<(), Denied> {
    if allows_namespace(user, role, action, perms) {
        return Ok(());
    }
    match role {
        None => Err(Denied::NotFound(format!(
            "namespace '{namespace}' not found"
        ))),
        Some(role) => Err(Denied::Forbidden(format!(
            "as {} of namespace '{namespace}', user '{}' may not {}",
            role_phrase(role),
            user.username,
            describe(action, perms)
        ))),
    }
}

pub fn check_team(
    user: &User,
    team: &str,
    role: Option<Role>,
    action: TeamAction,
) -> Result<(), Denied> {
    if user.admin {
        return Ok(());
    }
    let Some(role) = role else {
        return Err(Denied::NotFound(format!("team '{team}' not found")));
    };
    match action {
        TeamAction::Read => Ok(()),
        TeamAction::ManageMembers | TeamAction::CreateNamespace if role == Role::Owner => Ok(()),
        TeamAction::ManageMembers => Err(Denied::Forbidden(format!(
            "only owners of team '{team}' may change its members"
        ))),
        TeamAction::CreateNamespace => Err(Denied::Forbidden(format!(
            "only owners of team '{team}' may create namespaces for it"
        ))),
    }
}

pub fn check_global(user: &User, action: GlobalAction) -> Result<(), Denied> {
    match action {
        GlobalAction::CreateTeam => Ok(()),
        _ if user.admin => Ok(()),
        GlobalAction::ManageUsers => Err(Denied::Forbidden("only admins may manage users".into())),
        GlobalAction::ReadEvents => Err(Denied::Forbidden(
            "only admins may see raw registry events".into(),
        )),
        GlobalAction::ManageSources => {
            Err(Denied::Forbidden("only admins may manage sources".into()))
        }
        GlobalAction::CreateAdminNamespace => Err(Denied::Invalid(Invalid::new(
            "team",
            "name the team that will own the namespace (you must be one of its owners)",
        ))),
    }
}

/// Who may create a user account: admins any account; with sign-up switched on, anyone
/// (`caller` is `None` when the request carries no credentials) a non-admin one.
pub fn check_create_user(
    caller: Option<&User>,
    admin: bool,
    perms: &Permissions,
) -> Result<(), Denied> {
    match caller {
        Some(user) => check_global(user, GlobalAction::ManageUsers),
        None if !perms.allow_signup => Err(Denied::Forbidden(
            "sign-up is switched off: an admin creates accounts (--allow-signup lets anyone)"
                .into(),
        )),
        None if admin => Err(Denied::Invalid(Invalid::new(
            "admin",
            "signing up cannot create an admin",
        ))),
        None => Ok(()),
    }
}

fn role_phrase(role: Role) -> &'static str {
    match role {
        Role::Owner => "an owner",
        Role::Contributor => "a contributor",
        Role::Viewer => "a viewer",
    }
}

fn describe(action: NamespaceAction, perms: &Permissions) -> &'static str {
    match action {
        NamespaceAction::Read => "see it",
        NamespaceAction::CreateWebhook if !perms.create_webhook => {
            "create webhooks (only admins may, by configuration)"
        }
        NamespaceAction::CreateWebhook => "create webhooks (owners may)",
        NamespaceAction::DeleteWebhook if !perms.create_webhook => {
            "delete webhooks (only admins may, by configuration)"
        }
        NamespaceAction::DeleteWebhook => "delete webhooks (owners may)",
        NamespaceAction::ManageHeaders if !perms.create_webhook => {
            "change webhook headers (only admins may, by configuration)"
        }
        NamespaceAction::ManageHeaders => "change webhook headers (owners may)",
        NamespaceAction::UpdateWebhook if !perms.manage_webhook => {
            "change webhooks (only admins may, by configuration)"
        }
        NamespaceAction::UpdateWebhook => "change webhooks (owners may)",
        NamespaceAction::Retrigger if !perms.manage_webhook => {
            "retrigger deliveries (only admins may, by configuration)"
        }
        NamespaceAction::Retrigger => "retrigger deliveries (owners may)",
        NamespaceAction::DeleteNamespace => "delete it (owners may)",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(admin: bool) -> User {
        User {
            id: 1,
            username: "u".into(),
            email: None,
            admin,
            disabled: false,
            created_at: chrono::Utc::now(),
        }
    }

    #[test]
    fn the_table() {
        use NamespaceAction::*;
        let on = Permissions {
            create_webhook: true,
            manage_webhook: true,
            allow_signup: false,
        };
        let off = Permissions {
            create_webhook: false,
            manage_webhook: false,
            allow_signup: false,
        };
        let all = [
            Read,
            CreateWebhook,
            DeleteWebhook,
            ManageHeaders,
            UpdateWebhook,
            Retrigger,
            DeleteNamespace,
        ];
        for action in all {
            assert!(
                allows_namespace(&user(true), None, action, &off),
                "admins may always"
            );
            assert!(allows_namespace(
                &user(false),
                Some(Role::Owner),
                action,
                &on
            ));
            let reader = action == Read;
            assert_eq!(
                allows_namespace(&user(false), Some(Role::Contributor), action, &on),
                reader
            );
            assert_eq!(
                allows_namespace(&user(false), Some(Role::Viewer), action, &on),
                reader
            );
            assert!(
                !allows_namespace(&user(false), None, action, &on),
                "outsiders see nothing"
            );
            let owner_when_off = matches!(action, Read | DeleteNamespace);
            assert_eq!(
                allows_namespace(&user(false), Some(Role::Owner), action, &off),
                owner_when_off
            );
        }
        let hidden = check_namespace(&user(false), "acme", None, Read, &on).unwrap_err();
        assert!(matches!(hidden, Denied::NotFound(_)), "{hidden:?}");
        let denied = check_namespace(&user(false), "acme", Some(Role::Viewer), UpdateWebhook, &on)
            .unwrap_err();
        assert!(matches!(denied, Denied::Forbidden(_)), "{denied:?}");
    }
}
