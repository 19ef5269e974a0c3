//! What every managing command shares: the use cases' context over the existing database,
//! the operator as the actor, secrets read without echo, and errors as exit codes.

use std::io::{BufRead, IsTerminal};
use std::sync::Arc;

use anyhow::Context as _;
use herald::app::{self, Actor};

use super::StoreArgs;

/// The use cases' context for the Herald whose data `args` names: its existing database
/// and secret key; no dispatcher, so a send is queued for the running server.
pub async fn context(args: &StoreArgs) -> anyhow::Result<app::Context> {
    let config = args.to_config()?;
    let store = herald::open_existing_store(&config).await?;
    let cipher = herald::existing_cipher(&config)?;
    let templates =
        herald::hooks::templates::TemplateSandbox::unchecked(config.template_sandbox_exe()?);
    Ok(app::Context {
        store,
        cipher,
        password_gate: Arc::default(),
        login_throttle: Arc::default(),
        templates: Arc::new(templates),
        sender: None,
        registries: None,
        config: Arc::new(config),
    })
}

/// The operator at the command line.
pub fn operator() -> Actor {
    Actor::operator()
}

/// A secret: asked for without echo at a terminal (twice for a new one, which must match),
/// else the first line of standard input, for scripts.
pub fn read_secret(what: &str, new: bool) -> anyhow::Result<String> {
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password(format!("{what}: "))
            .with_context(|| format!("reading {what}"))?;
        if new {
            let again = rpassword::prompt_password(format!("{what} again: "))
                .with_context(|| format!("reading {what}"))?;
            anyhow::ensure!(
                first == again,
                "the two {what}s differ; nothing was changed"
            );
        }
        return Ok(first);
    }
    read_line(what)
}

/// The first line of standard input, without its line ending.
pub fn read_line(what: &str) -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .with_context(|| format!("reading {what} from standard input"))?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

/// The exit code for an error: what scripts can tell apart. 1: anything else.
pub fn exit_code(e: &anyhow::Error) -> u8 {
    use app::Error;
    match e.downcast_ref::<Error>() {
        Some(Error::NotFound(_)) => 3,
        Some(Error::Forbidden(_) | Error::Unauthorized(_)) => 4,
        Some(Error::Conflict(_)) => 5,
        Some(Error::Invalid(_)) => 6,
        Some(Error::TooManyAttempts { .. } | Error::Overloaded { .. }) => 7,
        Some(Error::Internal(_)) | None => {
            if e.is::<NotSentYet>() {
                7
            } else {
                1
            }
        }
    }
}

/// A send was queued but no running server made it within the wait.
#[derive(Debug)]
pub struct NotSentYet(pub String);

impl std::fmt::Display for NotSentYet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NotSentYet {}
