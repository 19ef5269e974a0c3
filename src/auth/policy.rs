//! The single place that decides who may do what. Handlers ask; they never decide.
//!
//! For now every API action is reserved to admins; team roles refine this table.

use crate::error::AppError;
use crate::store::User;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    ListNamespaces,
    ReadNamespace,
    CreateNamespace,
    DeleteNamespace,
    ReadWebhooks,
    CreateWebhook,
    UpdateWebhook,
    DeleteWebhook,
    ManageHeaders,
    ReadDeliveries,
    RetriggerDelivery,
    ReadEvents,
}

pub fn authorize(user: &User, action: Action) -> Result<(), AppError> {
    if user.admin {
        return Ok(());
    }
    Err(AppError::forbidden(format!(
        "user '{}' may not {}: only admins may use the API",
        user.username,
        describe(action)
    )))
}

fn describe(action: Action) -> &'static str {
    match action {
        Action::ListNamespaces => "list namespaces",
        Action::ReadNamespace => "see this namespace",
        Action::CreateNamespace => "create namespaces",
        Action::DeleteNamespace => "delete namespaces",
        Action::ReadWebhooks => "see webhooks",
        Action::CreateWebhook => "create webhooks",
        Action::UpdateWebhook => "change webhooks",
        Action::DeleteWebhook => "delete webhooks",
        Action::ManageHeaders => "change webhook headers",
        Action::ReadDeliveries => "see deliveries",
        Action::RetriggerDelivery => "retrigger deliveries",
        Action::ReadEvents => "see registry events",
    }
}
