//! Use cases: one function per operation, called by the REST API, the web UI and the CLI
//! alike, so that no rule (a limit, a policy check, an audit entry, a log line) is written
//! twice and the front ends cannot drift apart.
//!
//! Each takes a [`Context`] (what the operation needs of Herald) and an [`Actor`] (who asks),
//! and answers with its own [`Error`]: the API turns it into JSON, the UI into a page, the
//! CLI into a message and an exit code.

pub mod access;
pub mod deliveries;
mod error;
pub mod history;
pub mod namespaces;
pub mod sources;
pub mod teams;
pub mod tokens;
pub mod users;
pub mod webhook_view;
pub mod webhooks;

use std::sync::Arc;

pub use error::{Error, Result};

use crate::auth::{LoginThrottle, PasswordGate};
use crate::config::Config;
use crate::delivery::worker::Dispatcher;
use crate::domain::model::User;
use crate::hooks::templates::TemplateSandbox;
use crate::secrets::Cipher;
use crate::store::Store;

/// What the use cases need of a running Herald, or of the command line's view of one.
#[derive(Clone)]
pub struct Context {
    pub store: Arc<dyn Store>,
    pub cipher: Cipher,
    /// The bound on password hashes running at once (sign-ins, user creation alike).
    pub password_gate: Arc<PasswordGate>,
    /// Failed password sign-ins per username and per client address.
    pub login_throttle: Arc<LoginThrottle>,
    /// Renders `template` webhooks' bodies outside this process (and tries new templates).
    pub templates: Arc<TemplateSandbox>,
    /// Sends a retriggered or pinged delivery now and waits for its answer: the serving
    /// process's dispatcher. Without one (the command line) the delivery is queued for the
    /// running server, which sends it with its own settings.
    pub sender: Option<Arc<Dispatcher>>,
    /// The registries Herald reads, and how reading them went: the serving process's. The
    /// command line has none (it reads no registry; a reconcile it asks for is run by the
    /// server).
    pub registries: Option<Arc<crate::registry::reader::Registries>>,
    pub config: Arc<Config>,
}

/// Who asks for an operation.
#[derive(Debug, Clone)]
pub enum Actor {
    /// A signed-in user, through the API or the UI: the policy decides.
    User(User),
    /// Someone at the command line with the database itself: may do anything. Named
    /// `cli:<OS user>` in the activity log.
    Operator(String),
}

impl Actor {
    /// The name the activity log and the server log give the actor.
    pub fn name(&self) -> &str {
        match self {
            Self::User(u) => &u.username,
            Self::Operator(name) => name,
        }
    }

    /// The user, when the actor is one.
    pub fn user(&self) -> Option<&User> {
        match self {
            Self::User(u) => Some(u),
            Self::Operator(_) => None,
        }
    }

    /// The operator at the command line, named after the OS account: `$USER`, `$LOGNAME`,
    /// or the account of the process's user id.
    pub fn operator() -> Self {
        let from_env = ["USER", "LOGNAME"]
            .iter()
            .filter_map(|v| std::env::var(v).ok())
            .find(|u| !u.is_empty());
        let name = from_env
            .or_else(os_account)
            .unwrap_or_else(|| "unknown".into());
        Self::Operator(format!("cli:{name}"))
    }
}

/// The name of the account this process runs as, from the password database.
fn os_account() -> Option<String> {
    // SAFETY: getpwuid_r is the re-entrant form: it writes only into `pwd` and `buf`, which
    // outlive the call, and `pw_name` points into `buf`, read before `buf` is dropped.
    let uid = unsafe { libc::geteuid() };
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0u8; 4096];
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    let rc = unsafe {
        libc::getpwuid_r(
            uid,
            &mut pwd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut result,
        )
    };
    if rc != 0 || result.is_null() || pwd.pw_name.is_null() {
        return None;
    }
    let name = unsafe { std::ffi::CStr::from_ptr(pwd.pw_name) };
    name.to_str().ok().map(str::to_string)
}
