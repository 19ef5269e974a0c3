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

use sha2::{Digest, Sha256};

use crate::domain::names::{is_path_component, Invalid};

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
    /// No password was checked: too many checks at once.
    Overloaded(gate::GateError),
    /// No password was checked: the database failed.
    StoreFailed(crate::store::StoreError),
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
