//! Sources (other registries feeding Herald): created, listed and deleted by admins from the
//! API, the UI and the CLI, with the same checks and the same audit entries.

use crate::auth::policy::{self, GlobalAction};
use crate::auth::PasswordGate;
use crate::error::AppError;
use crate::registry::sources::{validate_name, SourceKind, DEFAULT_SOURCE};
use crate::store::{Audit, NewSource, Source, Store, User};
use crate::AppState;

/// The shortest token accepted: it is kept as its SHA-256 only, which guards a long random
/// secret, not a guessable one.
pub const MIN_TOKEN_CHARS: usize = 24;

/// A source to create as a caller gives it: either a bearer `token` or a `username` and
/// `password` (Basic auth).
#[derive(Debug, Clone, Default)]
pub struct SourceInput {
    pub name: String,
    pub kind: String,
    pub token: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
}

/// Checks a source's name and kind (what can be checked before a secret is read).
pub fn check_name_and_kind(name: &str, kind: &str) -> Result<SourceKind, AppError> {
    validate_name(name).map_err(|m| AppError::invalid("name", m))?;
    if name == DEFAULT_SOURCE {
        return Err(AppError::invalid(
            "name",
            "'default' is the registry token's source at /v2/webhooks/events; choose another name",
        ));
    }
    SourceKind::parse(kind).ok_or_else(|| {
        AppError::invalid(
            "kind",
            format!("kind must be distribution, zot, harbor or gitlab, not '{kind}'"),
        )
    })
}

/// Checks the input and hashes its secret: the source as the store keeps it.
async fn prepare(gate: &PasswordGate, input: SourceInput) -> Result<NewSource, AppError> {
    let kind = check_name_and_kind(&input.name, &input.kind)?;
    let (username, secret_hash) = match (input.token, input.username, input.password) {
        (Some(token), None, None) => {
            let token = token.trim().to_string();
            if token.chars().count() < MIN_TOKEN_CHARS
                || token.len() > 1024
                || token.chars().any(|c| c.is_control() || c == ' ')
            {
                return Err(AppError::invalid(
                    "token",
                    format!(
                        "a token has {MIN_TOKEN_CHARS} to 1024 characters without spaces or \
                         control characters: use a random one (openssl rand -base64 32)"
                    ),
                ));
            }
            (None, crate::auth::token_hash(&token))
        }
        (None, Some(username), Some(password)) => {
            if username.is_empty()
                || username.len() > 255
                || username.contains(':')
                || username.chars().any(char::is_control)
            {
                return Err(AppError::invalid(
                    "username",
                    "a username has 1 to 255 characters, without ':' or control characters",
                ));
            }
            crate::auth::validate_password(&password)
                .map_err(|e| AppError::invalid(e.field, e.message))?;
            (Some(username), gate.hash(password).await?)
        }
        _ => {
            return Err(AppError::invalid(
                "token",
                "give either a token, or a username and a password",
            ))
        }
    };
    Ok(NewSource {
        name: input.name,
        kind,
        username,
        secret_hash,
    })
}

/// An admin creates a source.
pub async fn create(state: &AppState, user: &User, input: SourceInput) -> Result<Source, AppError> {
    policy::check_global(user, GlobalAction::ManageSources)?;
    create_as(
        state.store.as_ref(),
        &state.password_gate,
        &user.username,
        input,
    )
    .await
}

/// Creates a source on behalf of `actor` without a policy check: for the CLI, whose
/// operator holds the database itself.
pub async fn create_as(
    store: &dyn Store,
    gate: &PasswordGate,
    actor: &str,
    input: SourceInput,
) -> Result<Source, AppError> {
    let new = prepare(gate, input).await?;
    let audit = Audit::new(actor, "source.create").detail(format!(
        "source '{}' ({})",
        new.name,
        new.kind.as_str()
    ));
    Ok(store.create_source(&new, &audit).await?)
}

/// An admin lists the sources (never their credentials).
pub async fn list(state: &AppState, user: &User) -> Result<Vec<Source>, AppError> {
    policy::check_global(user, GlobalAction::ManageSources)?;
    Ok(state.store.list_sources().await?)
}

/// An admin deletes a source.
pub async fn delete(state: &AppState, user: &User, name: &str) -> Result<(), AppError> {
    policy::check_global(user, GlobalAction::ManageSources)?;
    delete_as(state.store.as_ref(), &user.username, name).await
}

/// Deletes a source on behalf of `actor` without a policy check (the CLI).
pub async fn delete_as(store: &dyn Store, actor: &str, name: &str) -> Result<(), AppError> {
    let audit = Audit::new(actor, "source.destroy").detail(format!("source '{name}'"));
    Ok(store.delete_source(name, &audit).await?)
}
