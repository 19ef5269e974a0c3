//! Secrets at rest: webhook passwords and header values are sealed with XChaCha20-Poly1305
//! before they reach the database, under a key that never lives in the database.

use std::io::Write;
use std::path::Path;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

/// Format marker of a sealed value, so a later key or cipher change can be told apart.
const VERSION: u8 = 1;
const NONCE_LEN: usize = 24;

/// Ciphertext as stored: version byte, nonce, then the AEAD output.
#[derive(Clone, PartialEq, Eq)]
pub struct Sealed(pub Vec<u8>);

impl std::fmt::Debug for Sealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sealed({} bytes)", self.0.len())
    }
}

#[derive(Clone)]
pub struct Cipher {
    aead: XChaCha20Poly1305,
    /// A value derived from the key that shows which key it is without revealing it.
    check: String,
}

impl std::fmt::Debug for Cipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cipher(..)")
    }
}

impl Cipher {
    pub fn from_key(key: &[u8; 32]) -> Self {
        use hmac::Mac;
        let mut mac = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(key)
            .expect("HMAC takes a key of any length");
        mac.update(b"herald secret key check v1");
        Self {
            aead: XChaCha20Poly1305::new(key.into()),
            check: B64.encode(mac.finalize().into_bytes()),
        }
    }

    /// Stored in the database on first start, so that a process with another key (one that
    /// could not open the sealed secrets) refuses to start instead of failing deliveries.
    pub fn check_value(&self) -> &str {
        &self.check
    }

    /// The key comes from `configured` (base64, from `HERALD_SECRET_KEY`) or from
    /// `<data_dir>/secret.key`, which the first start creates with mode 0600.
    pub fn load_or_create(data_dir: &Path, configured: Option<&str>) -> anyhow::Result<Self> {
        if let Some(b64) = configured {
            let key = decode_key(b64.trim())
                .map_err(|e| anyhow::anyhow!("HERALD_SECRET_KEY is not usable: {e}"))?;
            return Ok(Self::from_key(&key));
        }
        let path = data_dir.join("secret.key");
        if path.exists() {
            let text = std::fs::read_to_string(&path)?;
            let key = decode_key(text.trim())
                .map_err(|e| anyhow::anyhow!("{} is not usable: {e}", path.display()))?;
            return Ok(Self::from_key(&key));
        }
        let key: [u8; 32] = XChaCha20Poly1305::generate_key(&mut OsRng).into();
        write_private_file(&path, &format!("{}\n", B64.encode(key)))?;
        tracing::info!(path = %path.display(), "created a new secret key for secrets at rest");
        Ok(Self::from_key(&key))
    }

    pub fn seal(&self, plaintext: &str) -> Sealed {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let ct = self
            .aead
            .encrypt(&nonce, plaintext.as_bytes())
            .expect("XChaCha20-Poly1305 encryption cannot fail for in-memory buffers");
        let mut out = Vec::with_capacity(1 + NONCE_LEN + ct.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Sealed(out)
    }

    pub fn open(&self, sealed: &Sealed) -> Result<String, String> {
        let bytes = &sealed.0;
        if bytes.len() < 1 + NONCE_LEN || bytes[0] != VERSION {
            return Err("sealed value has an unknown format".into());
        }
        let nonce = XNonce::from_slice(&bytes[1..1 + NONCE_LEN]);
        let plain = self
            .aead
            .decrypt(nonce, &bytes[1 + NONCE_LEN..])
            .map_err(|_| "sealed value does not open with this key (wrong secret key?)")?;
        String::from_utf8(plain).map_err(|_| "sealed value is not UTF-8".into())
    }
}

/// What a key is, and how to make one, for every message that refuses one.
pub const KEY_HELP: &str = "a key is 32 random bytes in base64: make one with \
     `herald key generate` (or `openssl rand -base64 32`)";

fn decode_key(b64: &str) -> Result<[u8; 32], String> {
    let bytes = B64
        .decode(b64)
        .map_err(|e| format!("it is not base64 ({e}); {KEY_HELP}"))?;
    bytes
        .try_into()
        .map_err(|v: Vec<u8>| format!("it has {} bytes, not 32; {KEY_HELP}", v.len()))
}

/// Checks that `b64` is a usable key, saying why not.
pub fn check_key(b64: &str) -> Result<(), String> {
    decode_key(b64).map(|_| ())
}

/// A new random key, in base64: what `herald key generate` prints.
pub fn generate_key() -> String {
    let key: [u8; 32] = XChaCha20Poly1305::generate_key(&mut OsRng).into();
    B64.encode(key)
}

/// Writes a file only its owner may read: keys and tokens.
pub fn write_private_file(path: &Path, contents: &str) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()
}

/// Creates a directory only its owner may enter (0700); its parents get the usual mode.
pub fn create_private_dir(path: &Path) -> std::io::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    match builder.create(path) {
        // Another process may have created it meanwhile; `tighten` sees to its mode.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && path.is_dir() => Ok(()),
        other => other,
    }
}

/// Takes group and other permissions away from `path` (to `mode`, 0700 or 0600) when it
/// belongs to this process's user and grants more. Returns the mode it had when it
/// changed it; a missing file or someone else's is left alone (`None`).
pub fn tighten(path: &Path, mode: u32) -> std::io::Result<Option<u32>> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let meta = match std::fs::metadata(path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let had = meta.permissions().mode() & 0o777;
        // SAFETY: geteuid has no preconditions and cannot fail.
        let me = unsafe { libc::geteuid() };
        if had & 0o077 == 0 || meta.uid() != me {
            return Ok(None);
        }
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
        Ok(Some(had))
    }
    #[cfg(not(unix))]
    {
        let _ = (path, mode);
        Ok(None)
    }
}

/// A random token: `prefix` followed by 32 random bytes in URL-safe base64.
pub fn random_token(prefix: &str) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_and_open() {
        let cipher = Cipher::from_key(&[7u8; 32]);
        let sealed = cipher.seal("hunter2");
        assert!(!sealed.0.windows(7).any(|w| w == b"hunter2"));
        assert_eq!(cipher.open(&sealed).unwrap(), "hunter2");
        // Sealing twice gives different ciphertexts (fresh nonce).
        assert_ne!(cipher.seal("hunter2"), sealed);
        // Another key cannot open it, and tampering is detected.
        assert!(Cipher::from_key(&[8u8; 32]).open(&sealed).is_err());
        let mut tampered = sealed.clone();
        let last = tampered.0.len() - 1;
        tampered.0[last] ^= 1;
        assert!(cipher.open(&tampered).is_err());
    }

    #[test]
    fn key_file_is_created_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let a = Cipher::load_or_create(dir.path(), None).unwrap();
        let sealed = a.seal("x");
        let b = Cipher::load_or_create(dir.path(), None).unwrap();
        assert_eq!(b.open(&sealed).unwrap(), "x");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("secret.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn configured_key_must_be_32_bytes() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Cipher::load_or_create(dir.path(), Some("c2hvcnQ=")).is_err());
        let key = B64.encode([1u8; 32]);
        assert!(Cipher::load_or_create(dir.path(), Some(&key)).is_ok());
        assert!(!dir.path().join("secret.key").exists());
    }
}
