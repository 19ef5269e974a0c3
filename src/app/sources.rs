//! Sources (other registries feeding Herald): created, listed and deleted by admins from the
//! API, the UI and the CLI, with the same checks and the same audit entries.

use super::access::check_global;
use super::{Actor, Context, Error, Result};
use crate::auth::policy::GlobalAction;
use crate::auth::PasswordGate;
use crate::domain::events::{validate_name, SourceKind, DEFAULT_SOURCE};
use crate::domain::model::{Audit, NewSource, RegistryAccess, Source};
use crate::domain::registry::{
    check_registry_password, check_registry_username, ReconcileStatus, RegistryUrl,
};

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

/// The built-in source: the default endpoint, its registry access from the configuration.
fn builtin(ctx: &Context) -> Source {
    let config = &ctx.config;
    Source {
        name: DEFAULT_SOURCE.into(),
        kind: SourceKind::Distribution,
        auth: "bearer",
        username: None,
        builtin: true,
        created_at: None,
        registry_url: config.registry_url.as_ref().map(ToString::to_string),
        registry_username: config.registry_username.clone(),
        has_registry_password: config.registry_password.is_some(),
        registry_status: None,
        nats_url: None,
        nats_subject: None,
        nats_stream: None,
        nats_consumer: None,
    }
}

/// With how reading its registry went, as this process knows.
fn with_status(ctx: &Context, mut source: Source) -> Source {
    source.registry_status = ctx.registries.as_ref().and_then(|r| r.status(&source.name));
    source
}

/// The sources, the built-in `default` first (never their credentials).
pub async fn list(ctx: &Context, actor: &Actor) -> Result<Vec<Source>> {
    check_global(actor, GlobalAction::ManageSources)?;
    let mut all = vec![builtin(ctx)];
    all.extend(ctx.store.list_sources().await?);
    Ok(all.into_iter().map(|s| with_status(ctx, s)).collect())
}

/// A source by name, `default` included (never its credentials).
pub async fn get(ctx: &Context, actor: &Actor, name: &str) -> Result<Source> {
    check_global(actor, GlobalAction::ManageSources)?;
    if name == DEFAULT_SOURCE {
        return Ok(with_status(ctx, builtin(ctx)));
    }
    match ctx.store.source_credential(name).await? {
        Some((source, _)) => Ok(with_status(ctx, source)),
        None => Err(Error::NotFound(format!("source '{name}' not found"))),
    }
}

/// A change to a source's registry access: each field `None` is left as it is;
/// `Some(None)` (or an empty text) removes it.
#[derive(Debug, Clone, Default)]
pub struct RegistryAccessInput {
    pub registry_url: Option<Option<String>>,
    pub registry_username: Option<Option<String>>,
    pub registry_password: Option<Option<String>>,
}

/// An admin (or the operator) gives Herald read access to a source's registry, changes or
/// removes it. The password is sealed and never shown again.
pub async fn update(
    ctx: &Context,
    actor: &Actor,
    name: &str,
    input: RegistryAccessInput,
) -> Result<Source> {
    check_global(actor, GlobalAction::ManageSources)?;
    if name == DEFAULT_SOURCE {
        return Err(Error::invalid(
            "name",
            "the default endpoint's registry access is set by Herald's configuration              (--registry-url, --registry-username, --registry-password), not here",
        ));
    }
    let current = ctx
        .store
        .registry_access(name)
        .await?
        .ok_or_else(|| Error::NotFound(format!("source '{name}' not found")))?;
    let given = |field: Option<Option<String>>| {
        field.map(|v| v.map(|t| t.trim().to_string()).filter(|t| !t.is_empty()))
    };
    let url = match given(input.registry_url) {
        Some(Some(url)) => Some(RegistryUrl::parse(&url)?.to_string()),
        Some(None) => None,
        None => current.url.clone(),
    };
    let username = given(input.registry_username).unwrap_or(current.username.clone());
    if let Some(u) = &username {
        check_registry_username(u)?;
    }
    let password = match input.registry_password {
        Some(Some(p)) if !p.is_empty() => {
            check_registry_password(&p)?;
            Some(ctx.cipher.seal(&p))
        }
        Some(_) => None,
        None => current.password.clone(),
    };
    // Without an address there is nothing to read: credentials go with it.
    let access = match url {
        None => RegistryAccess::default(),
        Some(url) => {
            if username.is_some() != password.is_some() {
                return Err(Error::invalid(
                    if username.is_some() {
                        "registry_password"
                    } else {
                        "registry_username"
                    },
                    "give both registry_username and registry_password, or neither                      (for a registry that lets anyone read)",
                ));
            }
            RegistryAccess {
                url: Some(url),
                username,
                password,
            }
        }
    };
    let audit = Audit::new(actor.name(), "source.update").detail(match &access.url {
        Some(url) => format!("source '{name}' reads its registry at {url}"),
        None => format!("source '{name}' no longer reads its registry"),
    });
    let source = ctx.store.set_registry_access(name, &access, &audit).await?;
    if let Some(registries) = &ctx.registries {
        registries.forget(name);
    }
    if access.url.is_some() {
        // What happened before Herald could read it is learned now.
        ctx.store
            .request_reconcile(name, chrono::Utc::now())
            .await?;
        if let Some(registries) = &ctx.registries {
            registries.reconcile_wanted.notify_one();
        }
    }
    tracing::info!(source = %name, registry = access.url.as_deref().unwrap_or("(none)"), by = %actor.name(), "source's registry access changed");
    Ok(with_status(ctx, source))
}

/// The registry access of a source that has one, else why not.
async fn check_readable(ctx: &Context, name: &str) -> Result<()> {
    let readable = if name == DEFAULT_SOURCE {
        ctx.config.registry_url.is_some()
    } else {
        ctx.store
            .registry_access(name)
            .await?
            .ok_or_else(|| Error::NotFound(format!("source '{name}' not found")))?
            .url
            .is_some()
    };
    if !readable {
        return Err(Error::Conflict(if name == DEFAULT_SOURCE {
            "Herald may not read the default endpoint's registry: start it with --registry-url"
                .into()
        } else {
            format!(
                "Herald may not read the registry of source '{name}': give it registry_url first"
            )
        }));
    }
    Ok(())
}

/// Asks for a reconcile of `name` now; a serving process runs it (the command line's too).
pub async fn reconcile(ctx: &Context, actor: &Actor, name: &str) -> Result<ReconcileStatus> {
    check_global(actor, GlobalAction::ManageSources)?;
    check_readable(ctx, name).await?;
    ctx.store
        .request_reconcile(name, chrono::Utc::now())
        .await?;
    if let Some(registries) = &ctx.registries {
        registries.reconcile_wanted.notify_one();
    }
    tracing::info!(source = %name, by = %actor.name(), "reconcile asked for");
    reconcile_status(ctx, actor, name).await
}

/// The reconcile of `name`: running or not, its progress and the last run's result.
pub async fn reconcile_status(ctx: &Context, actor: &Actor, name: &str) -> Result<ReconcileStatus> {
    check_global(actor, GlobalAction::ManageSources)?;
    check_readable(ctx, name).await?;
    Ok(ctx
        .store
        .reconcile_status(name)
        .await?
        .unwrap_or_else(|| ReconcileStatus {
            source: name.to_string(),
            state: "idle".into(),
            ..ReconcileStatus::default()
        }))
}

pub async fn delete(ctx: &Context, actor: &Actor, name: &str) -> Result<()> {
    check_global(actor, GlobalAction::ManageSources)?;
    if name == DEFAULT_SOURCE {
        return Err(Error::invalid(
            "name",
            "the default endpoint is built in: it cannot be deleted",
        ));
    }
    if let Some(registries) = &ctx.registries {
        registries.forget(name);
    }
    let audit = Audit::new(actor.name(), "source.destroy").detail(format!("source '{name}'"));
    ctx.store.delete_source(name, &audit).await?;
    tracing::info!(source = %name, by = %actor.name(), "source deleted");
    Ok(())
}

/// A change to where a source reads its events from NATS: a field left out stays as it is;
/// `url: Some(None)` (or an empty text) stops reading from NATS. Credentials come in the
/// URL's user part (`nats://user:password@host:4222`), are sealed, and are never shown.
#[derive(Debug, Clone, Default)]
pub struct NatsInput {
    pub url: Option<Option<String>>,
    pub subject: Option<String>,
    pub stream: Option<String>,
    pub consumer: Option<String>,
}

impl NatsInput {
    pub fn is_empty(&self) -> bool {
        self.url.is_none()
            && self.subject.is_none()
            && self.stream.is_none()
            && self.consumer.is_none()
    }
}

/// A JetStream stream's or consumer's name: what the server accepts in an API subject.
fn check_nats_name(field: &str, name: &str) -> Result<()> {
    if name.is_empty()
        || name.len() > 255
        || name.chars().any(|c| {
            c.is_whitespace() || c.is_control() || matches!(c, '.' | '*' | '>' | '/' | '\\')
        })
    {
        return Err(Error::invalid(
            field,
            format!("{field} is 1 to 255 characters without spaces, '.', '*', '>', '/' or '\\'"),
        ));
    }
    Ok(())
}

/// An admin (or the operator) makes a `zot` or `distribution` source read its events from
/// a NATS subject, changes where, or stops it. The running `herald serve` picks the change
/// up within seconds.
pub async fn set_nats(
    ctx: &Context,
    actor: &Actor,
    name: &str,
    input: NatsInput,
) -> Result<Source> {
    use crate::domain::model::NatsIntake;
    check_global(actor, GlobalAction::ManageSources)?;
    if name == DEFAULT_SOURCE {
        return Err(Error::invalid(
            "name",
            "the default endpoint receives over HTTP; create a source to read from NATS",
        ));
    }
    let source = get(ctx, actor, name).await?;
    let current = ctx
        .store
        .nats_intakes()
        .await?
        .into_iter()
        .find(|(s, _)| s.name == name)
        .map(|(_, i)| i);
    let url_given = input
        .url
        .clone()
        .map(|u| u.map(|t| t.trim().to_string()).filter(|t| !t.is_empty()));
    let intake = match url_given {
        Some(None) => None,
        url => {
            if !matches!(source.kind, SourceKind::Zot | SourceKind::Distribution) {
                return Err(Error::invalid(
                    "nats_url",
                    format!(
                        "a {} source receives over HTTP; NATS is for zot and distribution sources",
                        source.kind.as_str()
                    ),
                ));
            }
            let (url, username, password) = match url {
                Some(Some(given)) => {
                    let (plain, credentials) =
                        crate::domain::destination::split_credentials(&given);
                    let parsed = url::Url::parse(&plain).map_err(|_| {
                        Error::invalid("nats_url", "nats_url is not a URL: give nats://host:4222")
                    })?;
                    if parsed.scheme() != "nats"
                        || parsed.host_str().is_none_or(str::is_empty)
                        || !matches!(parsed.path(), "" | "/")
                        || parsed.query().is_some()
                    {
                        return Err(Error::invalid(
                            "nats_url",
                            "nats_url is the server's address alone: nats://host:4222 \
                             (the subject goes in nats_subject)",
                        ));
                    }
                    let url = format!(
                        "nats://{}:{}",
                        parsed.host_str().unwrap_or_default(),
                        parsed.port().unwrap_or(4222)
                    );
                    let (username, password) = match credentials {
                        Some(c) => (c.username, c.password.map(|p| ctx.cipher.seal(&p))),
                        None => (None, None),
                    };
                    (url, username, password)
                }
                _ => match &current {
                    Some(c) => (c.url.clone(), c.username.clone(), c.password.clone()),
                    None => return Err(Error::invalid(
                        "nats_url",
                        "give nats_url (nats://host:4222) to read this source's events from NATS",
                    )),
                },
            };
            let pick = |given: &Option<String>, now: Option<&String>| {
                given
                    .as_ref()
                    .map(|t| t.trim().to_string())
                    .or_else(|| now.cloned())
                    .filter(|t| !t.is_empty())
            };
            let subject =
                pick(&input.subject, current.as_ref().map(|c| &c.subject)).ok_or_else(|| {
                    Error::invalid(
                        "nats_subject",
                        "give nats_subject: the subject zot publishes to",
                    )
                })?;
            if subject.len() > 255
                || subject.chars().any(|c| c.is_whitespace() || c.is_control())
                || subject.split('.').any(str::is_empty)
            {
                return Err(Error::invalid(
                    "nats_subject",
                    "nats_subject is tokens separated by '.', without spaces",
                ));
            }
            let stream =
                pick(&input.stream, current.as_ref().map(|c| &c.stream)).ok_or_else(|| {
                    Error::invalid(
                        "nats_stream",
                        "give nats_stream: the JetStream stream that captures the subject",
                    )
                })?;
            check_nats_name("nats_stream", &stream)?;
            let consumer = pick(&input.consumer, current.as_ref().map(|c| &c.consumer))
                .unwrap_or_else(|| format!("herald-{name}"));
            check_nats_name("nats_consumer", &consumer)?;
            Some(NatsIntake {
                url,
                subject,
                stream,
                consumer,
                username,
                password,
            })
        }
    };
    let audit = Audit::new(actor.name(), "source.update").detail(match &intake {
        Some(i) => format!(
            "source '{name}' reads its events from NATS {} subject {} (stream {})",
            i.url, i.subject, i.stream
        ),
        None => format!("source '{name}' no longer reads from NATS"),
    });
    let source = ctx
        .store
        .set_nats_intake(name, intake.as_ref(), &audit)
        .await?;
    tracing::info!(source = %name, nats = source.nats_url.as_deref().unwrap_or("(none)"), by = %actor.name(), "source's NATS intake changed");
    Ok(with_status(ctx, source))
}
