//! Who is calling: users, password hashes, API tokens, and the request extractor that
//! turns a bearer token into a user.
//!
//! Passwords are hashed and verified only through [`gate::PasswordGate`], and password
//! sign-ins (the UI's form, the API's Basic auth) all go through [`sign_in_with_password`]
//! and its [`throttle::LoginThrottle`].

pub mod gate;
pub mod password;
pub mod policy;
pub mod scheme;
pub mod throttle;

pub use gate::PasswordGate;
pub use throttle::{ClientAddr, LoginThrottle};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use sha2::{Digest, Sha256};

use crate::domain::names::{is_path_component, Invalid};
use crate::error::AppError;
use crate::store::User;
use crate::AppState;

/// API tokens start with this, so a leaked one is easy to recognise and scan for.
pub const TOKEN_PREFIX: &str = "hrld_";

pub fn validate_username(name: &str) -> Result<(), Invalid> {
    if name.len() > 255 || !is_path_component(name) {
        return Err(Invalid::new(
            "username",
            format!(
                "'{name}' is not a valid username: use lowercase letters and digits, \
                 separated by '.', '_', '__' or '-'"
            ),
        ));
    }
    Ok(())
}

pub fn validate_password(password: &str) -> Result<(), Invalid> {
    if password.chars().count() < 8 {
        return Err(Invalid::new(
            "password",
            "a password needs at least 8 characters",
        ));
    }
    if password.len() > 1024 {
        return Err(Invalid::new(
            "password",
            "a password has at most 1024 bytes",
        ));
    }
    Ok(())
}

/// Hashes on the calling thread, ungated: request paths use [`PasswordGate::hash`].
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    password::hash(&mut password::Scratch::default(), password)
}

/// Verifies on the calling thread, ungated: request paths use [`PasswordGate::verify`].
pub fn verify_password(password: &str, hash: &str) -> bool {
    password::verify(&mut password::Scratch::default(), password, hash)
}

/// Tokens are long and random, so a fast hash is enough to keep them out of the database.
pub fn token_hash(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn new_api_token() -> String {
    crate::secrets::random_token(TOKEN_PREFIX)
}

/// Validates a new account's fields, hashes the password and stores the user with their
/// personal namespace: the one way the API, the UI and the CLI's checks agree.
pub async fn register_user(
    store: &dyn crate::store::Store,
    gate: &PasswordGate,
    username: &str,
    password: String,
    email: Option<&str>,
    admin: bool,
) -> Result<User, AppError> {
    let username = username.trim();
    validate_username(username)?;
    validate_password(&password)?;
    let email = email.map(str::trim).filter(|e| !e.is_empty());
    if let Some(e) = email {
        if !e.contains('@') || e.len() > 254 || e.chars().any(char::is_whitespace) {
            return Err(AppError::invalid(
                "email",
                format!("'{e}' is not an email address"),
            ));
        }
    }
    let hash = gate.hash(password).await?;
    Ok(store.create_user(username, &hash, email, admin).await?)
}

/// A valid hash of nothing anyone knows, verified when a username does not exist so that
/// sign-in takes as long either way. Made with the same parameters as every real hash, on
/// first use inside the gate.
fn dummy_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| hash_password(&new_api_token()).unwrap_or_default())
}

/// The one answer to a wrong password, an unknown username and a disabled user alike, so
/// that no answer tells which (or that a disabled user's password was right).
pub const SIGN_IN_REJECTED: &str = "wrong username or password, or the user is disabled";

/// Why a password sign-in did not sign anyone in.
#[derive(Debug)]
pub enum SignInError {
    /// Too many failures for this username or from this address: no password was checked.
    Throttled(throttle::Throttled),
    /// A wrong password, an unknown username or a disabled user: deliberately one case.
    Rejected,
    /// No password was checked: too many checks at once (503), or the database failed.
    NotChecked(AppError),
}

/// The API's answers.
impl From<SignInError> for AppError {
    fn from(e: SignInError) -> Self {
        match e {
            SignInError::Throttled(t) => {
                let whose = match t.by {
                    throttle::ThrottledBy::User => "for this user",
                    throttle::ThrottledBy::Address => "from this address",
                };
                AppError::too_many_requests(
                    format!(
                        "too many failed sign-ins {whose}; try again in {} s",
                        t.secs()
                    ),
                    t.wait,
                )
            }
            SignInError::Rejected => AppError::unauthorized(SIGN_IN_REJECTED),
            SignInError::NotChecked(e) => e,
        }
    }
}

/// Signs in with a username and password, for the UI's form and the API's Basic auth alike:
/// the throttle first (a throttled attempt runs no hash), then one gated verification,
/// against a dummy hash when there is no such user, so that timing does not tell.
pub async fn sign_in_with_password(
    state: &AppState,
    username: &str,
    password: String,
    client: ClientAddr,
) -> Result<User, SignInError> {
    let attempt = state
        .login_throttle
        .begin(username, client.0)
        .map_err(|t| {
            // Debug only: a flood of throttled guesses must not flood the log too.
            tracing::debug!(username = %username, client = ?client.0, wait_s = t.secs(), "sign-in throttled");
            SignInError::Throttled(t)
        })?;
    let credentials = match state.store.user_credentials(username).await {
        Ok(c) => c,
        Err(e) => {
            state.login_throttle.not_checked(attempt);
            return Err(SignInError::NotChecked(e.into()));
        }
    };
    let (user, hash) = match credentials {
        Some((user, hash)) => (Some(user), Some(hash)),
        None => (None, None),
    };
    // A disabled user's password is verified too, and its result ignored: the answer and
    // its timing are the same as for a wrong password.
    let valid = match state.password_gate.verify(password, hash).await {
        Ok(valid) => valid,
        Err(e) => {
            state.login_throttle.not_checked(attempt);
            return Err(SignInError::NotChecked(e));
        }
    };
    match user {
        Some(user) if valid && !user.disabled => {
            state.login_throttle.succeeded(attempt);
            Ok(user)
        }
        _ => {
            state.login_throttle.failed(attempt);
            tracing::warn!(username = %username, client = ?client.0, "failed sign-in");
            Err(SignInError::Rejected)
        }
    }
}

/// The user behind `Authorization: Bearer <api token>`.
pub async fn user_from_bearer(
    state: &AppState,
    headers: &axum::http::HeaderMap,
) -> Result<User, AppError> {
    let header = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            AppError::unauthorized("an API token is required: Authorization: Bearer <token>")
        })?;
    let token = scheme::credentials(header, "Bearer").ok_or_else(|| {
        AppError::unauthorized("the Authorization header must be 'Bearer <token>'")
    })?;
    let user = state
        .store
        .authenticate_token(&token_hash(token), chrono::Utc::now())
        .await?
        .ok_or_else(|| AppError::unauthorized("the API token is not valid (unknown or revoked)"))?;
    if user.disabled {
        return Err(AppError::unauthorized("the user of this token is disabled"));
    }
    Ok(user)
}

/// The authenticated caller of an API route.
pub struct ApiUser(pub User);

impl FromRequestParts<AppState> for ApiUser {
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        user_from_bearer(state, &parts.headers).await.map(ApiUser)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_and_verify() {
        let hash = hash_password("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &hash));
        assert!(!verify_password("wrong horse", &hash));
        assert!(!verify_password("correct horse", "not a hash"));
    }

    #[test]
    fn tokens_are_random_and_hashed() {
        let a = new_api_token();
        assert!(a.starts_with(TOKEN_PREFIX) && a.len() > 40);
        assert_ne!(a, new_api_token());
        assert_eq!(token_hash(&a).len(), 64);
        assert_ne!(token_hash(&a), a);
    }

    #[test]
    fn usernames_follow_the_path_component_grammar() {
        assert!(validate_username("alice").is_ok());
        assert!(validate_username("Alice").is_err());
        assert!(validate_password("short").is_err());
    }
}
