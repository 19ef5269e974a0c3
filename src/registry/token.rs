//! The shared secret the registry sends as `Authorization: Bearer <token>`.

use std::path::Path;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::secrets::{random_token, write_private_file};

#[derive(Clone)]
pub struct RegistryToken(String);

impl std::fmt::Debug for RegistryToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RegistryToken(..)")
    }
}

impl RegistryToken {
    /// The configured token, or the one kept in `<data_dir>/registry-token`, created with
    /// mode 0600 on the first start.
    pub fn load_or_create(data_dir: &Path, configured: Option<&str>) -> anyhow::Result<Self> {
        if let Some(t) = configured.map(str::trim).filter(|t| !t.is_empty()) {
            return Ok(Self(t.to_string()));
        }
        let path = data_dir.join("registry-token");
        if path.exists() {
            let t = std::fs::read_to_string(&path)?.trim().to_string();
            anyhow::ensure!(!t.is_empty(), "{} is empty", path.display());
            return Ok(Self(t));
        }
        let token = random_token("");
        write_private_file(&path, &format!("{token}\n"))?;
        tracing::info!(path = %path.display(), "created a registry token; `herald registry-config` shows it");
        Ok(Self(token))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Constant-time check of an `Authorization` header value. Both sides are hashed first
    /// so that not even the length of the token leaks through timing.
    pub fn verify_header(&self, header: Option<&str>) -> bool {
        let Some(given) = header.and_then(|h| crate::auth::scheme::credentials(h, "Bearer")) else {
            return false;
        };
        let a = Sha256::digest(given.trim().as_bytes());
        let b = Sha256::digest(self.0.as_bytes());
        a.ct_eq(&b).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifies_only_the_exact_bearer_token() {
        let t = RegistryToken("sekrit".into());
        assert!(t.verify_header(Some("Bearer sekrit")));
        assert!(
            t.verify_header(Some("bearer sekrit")),
            "the scheme is case-insensitive"
        );
        assert!(!t.verify_header(Some("Bearer sekrit2")));
        assert!(!t.verify_header(Some("Basic sekrit")));
        assert!(!t.verify_header(None));
    }

    #[test]
    fn generated_token_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let a = RegistryToken::load_or_create(dir.path(), None).unwrap();
        let b = RegistryToken::load_or_create(dir.path(), None).unwrap();
        assert_eq!(a.expose(), b.expose());
        assert!(a.expose().len() >= 40);
        let c = RegistryToken::load_or_create(dir.path(), Some("configured")).unwrap();
        assert_eq!(c.expose(), "configured");
    }
}
