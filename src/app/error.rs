//! What a use case can answer besides success, in words every front end can show: the API
//! maps it to a status and JSON (`crate::error`), the UI to a page, the CLI to a message and
//! an exit code. It knows nothing of HTTP.

use std::time::Duration;

use crate::domain::names::Invalid;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No such thing, or one the actor may not see (so that names do not leak).
    #[error("{0}")]
    NotFound(String),
    /// The actor may see it but not do this.
    #[error("{0}")]
    Forbidden(String),
    /// No credentials, or wrong ones.
    #[error("{0}")]
    Unauthorized(String),
    /// It clashes with what exists (a taken name, a rotation still overlapping).
    #[error("{0}")]
    Conflict(String),
    /// The input breaks rules: every problem, in the order found (never empty).
    #[error("{}", first_message(.0))]
    Invalid(Vec<Invalid>),
    /// Too many attempts by this caller: try again after `wait`.
    #[error("{message}")]
    TooManyAttempts { message: String, wait: Duration },
    /// Herald is at a limit it sets itself: try again after `wait`.
    #[error("{message}")]
    Overloaded { message: String, wait: Duration },
    /// Something Herald could not do (the database failed); the detail is in the log.
    #[error("{0}")]
    Internal(String),
}

fn first_message(problems: &[Invalid]) -> &str {
    problems
        .first()
        .map_or("invalid input", |p| p.message.as_str())
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// One problem with `field`.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid(vec![Invalid::new(field, message)])
    }

    /// Every problem at once; an empty list (which no caller should give) is one generic
    /// problem rather than none.
    pub fn invalid_all(mut problems: Vec<Invalid>) -> Self {
        if problems.is_empty() {
            problems.push(Invalid::new("body", "the input is not valid"));
        }
        Self::Invalid(problems)
    }

    /// The first problem's field, for a 422.
    pub fn field(&self) -> Option<&str> {
        match self {
            Self::Invalid(p) => p.first().map(|p| p.field.as_str()),
            _ => None,
        }
    }
}

impl From<Invalid> for Error {
    fn from(e: Invalid) -> Self {
        Self::Invalid(vec![e])
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => Self::NotFound(format!("{what} not found")),
            StoreError::Conflict(what) => Self::Conflict(what),
            StoreError::Database(_) | StoreError::Sqlite(_) | StoreError::Writer(_) => {
                // The detail goes to the log, not to the caller: it may name tables or values.
                tracing::error!(error = %e, "database error");
                Self::Internal("the database failed; see the server log".into())
            }
            StoreError::Crypto(msg) => {
                tracing::error!(error = %msg, "secret decryption failed");
                Self::Internal("a stored secret could not be decrypted; see the server log".into())
            }
        }
    }
}

impl From<crate::auth::policy::Denied> for Error {
    fn from(d: crate::auth::policy::Denied) -> Self {
        use crate::auth::policy::Denied;
        match d {
            Denied::NotFound(m) => Self::NotFound(m),
            Denied::Forbidden(m) => Self::Forbidden(m),
            Denied::Invalid(i) => Self::Invalid(vec![i]),
        }
    }
}

impl From<crate::auth::gate::GateError> for Error {
    fn from(e: crate::auth::gate::GateError) -> Self {
        use crate::auth::gate::GateError;
        match e {
            GateError::Overloaded { wait } => Self::Overloaded {
                message: GateError::OVERLOADED.into(),
                wait,
            },
            GateError::Failed(m) => Self::Internal(m),
        }
    }
}

impl From<crate::auth::SignInError> for Error {
    fn from(e: crate::auth::SignInError) -> Self {
        use crate::auth::{throttle::ThrottledBy, SignInError, SIGN_IN_REJECTED};
        match e {
            SignInError::Throttled(t) => {
                let whose = match t.by {
                    ThrottledBy::User => "for this user",
                    ThrottledBy::Address => "from this address",
                };
                Self::TooManyAttempts {
                    message: format!(
                        "too many failed sign-ins {whose}; try again in {} s",
                        t.secs()
                    ),
                    wait: t.wait,
                }
            }
            SignInError::Rejected => Self::Unauthorized(SIGN_IN_REJECTED.into()),
            SignInError::Overloaded(e) => e.into(),
            SignInError::StoreFailed(e) => e.into(),
        }
    }
}
