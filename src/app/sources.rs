//! Sources (other registries feeding Herald): created, listed and deleted by admins from the
//! API, the UI and the CLI, with the same checks and the same audit entries.

use super::access::check_global;
use super::{Actor, Context, Error, Result};
use crate::auth::policy::GlobalAction;
use crate::auth::PasswordGate;
use crate::domain::events::{validate_name, SourceKind, DEFAULT_SOURCE};
use crate::domain::model::{Audit, NewSource, Source};

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
pub fn check_name_and_kind(name: &str, kind: &str) -> Result<SourceKind> {
    validate_name(name).map_err(|m| Error::invalid("name", m))?;
    if name == DEFAULT_SOURCE {
        return Err(Error::invalid(
            "name",
            "'default' is the registry token's source at /v2/webhooks/events; choose another name",
        ));
    }
    SourceKind::parse(kind).ok_or_else(|| {
        Error::invalid(
            "kind",
            format!("kind must be distribution, zot, harbor or gitlab, not '{kind}'"),
        )
    })
}

/// Checks the input and hashes its secret: the source as the store keeps it.
async fn prepare(gate: &PasswordGate, input: SourceInput) -> Result<NewSource> {
    let kind = check_name_and_kind(&input.name, &input.kind)?;
    let (username, secret_hash) = match (input.token, input.username, input.password) {
        (Some(token), None, None) => {
            let token = token.trim().to_string();
            if token.chars().count() < MIN_TOKEN_CHARS
                || token.len() > 1024
                || token.chars().any(|c| c.is_control() || c == ' ')
            {
                return Err(Error::invalid(
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
                return Err(Error::invalid(
                    "username",
                    "a username has 1 to 255 characters, without ':' or control characters",
                ));
            }
            crate::auth::validate_password(&password)?;
            (Some(username), gate.hash(password).await?)
        }
        _ => {
            return Err(Error::invalid(
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

/// An admin (or the operator) creates a source.
pub async fn create(ctx: &Context, actor: &Actor, input: SourceInput) -> Result<Source> {
    check_global(actor, GlobalAction::ManageSources)?;
    let new = prepare(&ctx.password_gate, input).await?;
    let audit = Audit::new(actor.name(), "source.create").detail(format!(
        "source '{}' ({})",
        new.name,
        new.kind.as_str()
    ));
    let source = ctx.store.create_source(&new, &audit).await?;
    tracing::info!(source = %source.name, kind = source.kind.as_str(), by = %actor.name(), "source created");
    Ok(source)
}

/// The sources (never their credentials).
pub async fn list(ctx: &Context, actor: &Actor) -> Result<Vec<Source>> {
    check_global(actor, GlobalAction::ManageSources)?;
    Ok(ctx.store.list_sources().await?)
}

/// A source by name (never its credential).
pub async fn get(ctx: &Context, actor: &Actor, name: &str) -> Result<Source> {
    check_global(actor, GlobalAction::ManageSources)?;
    match ctx.store.source_credential(name).await? {
        Some((source, _)) => Ok(source),
        None => Err(Error::NotFound(format!("source '{name}' not found"))),
    }
}

pub async fn delete(ctx: &Context, actor: &Actor, name: &str) -> Result<()> {
    check_global(actor, GlobalAction::ManageSources)?;
    let audit = Audit::new(actor.name(), "source.destroy").detail(format!("source '{name}'"));
    ctx.store.delete_source(name, &audit).await?;
    tracing::info!(source = %name, by = %actor.name(), "source deleted");
    Ok(())
}
