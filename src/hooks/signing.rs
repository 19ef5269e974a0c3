//! Standard Webhooks signatures (<https://www.standardwebhooks.com/>), so that receivers can
//! check a request came from Herald with the library they already have, rather than with
//! code written for Herald.
//!
//! A signature is `v1,` followed by the base64 HMAC-SHA256, keyed with the secret's bytes, of
//! `{webhook-id}.{webhook-timestamp}.{body}`. The `webhook-signature` header lists one
//! signature per active secret, separated by spaces, so a secret can be rotated without a
//! moment in which receivers reject requests.
//!
//! A webhook may choose the standard's asymmetric scheme instead: `v1a,` followed by the
//! base64 ed25519 signature of the same content. Herald keeps the private key sealed, like a
//! secret, and shows receivers the public key (`whpk_...`), which cannot sign.

use std::fmt;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::domain::names::Invalid;
use crate::domain::signature::SignatureScheme;

/// The message id: the same on every attempt of one delivery, for receivers to deduplicate.
pub const HEADER_ID: &str = "webhook-id";
/// Seconds since the Unix epoch of the attempt: receivers refuse old ones (replays).
pub const HEADER_TIMESTAMP: &str = "webhook-timestamp";
/// Space-separated `v1,<base64>` signatures, one per active secret.
pub const HEADER_SIGNATURE: &str = "webhook-signature";

/// How the standard marks a symmetric secret, so it is recognised wherever it is pasted.
pub const SECRET_PREFIX: &str = "whsec_";
/// Bytes in a generated secret; the standard asks for 24 to 64.
const GENERATED_LEN: usize = 32;
const MIN_LEN: usize = 24;
const MAX_LEN: usize = 64;

type HmacSha256 = Hmac<Sha256>;

/// A symmetric signing secret. Its `Debug` never shows the key.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningSecret(Vec<u8>);

impl SigningSecret {
    /// A fresh secret of 32 random bytes from the operating system.
    pub fn generate() -> Self {
        use rand::RngCore;
        let mut bytes = vec![0u8; GENERATED_LEN];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// Reads `whsec_<base64>`; the prefix is required so that a secret of another kind (hex,
    /// a password) is not silently taken for one.
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        let field = "signing_secret";
        let encoded = s.trim().strip_prefix(SECRET_PREFIX).ok_or_else(|| {
            Invalid::new(
                field,
                format!("a signing secret starts with '{SECRET_PREFIX}'"),
            )
        })?;
        let bytes = B64.decode(encoded).map_err(|_| {
            Invalid::new(
                field,
                format!("the part after '{SECRET_PREFIX}' must be standard base64"),
            )
        })?;
        if !(MIN_LEN..=MAX_LEN).contains(&bytes.len()) {
            return Err(Invalid::new(
                field,
                format!(
                    "a signing secret holds {MIN_LEN} to {MAX_LEN} bytes, not {}",
                    bytes.len()
                ),
            ));
        }
        Ok(Self(bytes))
    }

    /// The form shown to the receiver's owner once, and accepted by `parse`.
    pub fn to_whsec(&self) -> String {
        format!("{SECRET_PREFIX}{}", B64.encode(&self.0))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningSecret([redacted])")
    }
}

/// `None` cannot happen (HMAC takes keys of any length); callers fail closed on it rather
/// than panic on the request path.
fn mac(secret: &[u8], msg_id: &str, timestamp: i64, body: &[u8]) -> Option<HmacSha256> {
    let mut mac = HmacSha256::new_from_slice(secret).ok()?;
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Some(mac)
}

/// The header Flux's `generic-hmac` Receiver reads its signature from.
pub const X_SIGNATURE: &str = "X-Signature";

/// `sha256=<hex>`: the HMAC-SHA256 of `body` keyed with `key`, as go-github's
/// `ValidateSignature` (which Flux's notification-controller calls) parses and checks it.
/// It never fails (HMAC takes keys of any length); if it did, the bare `sha256=` would be
/// refused by the receiver rather than anything sent unsigned.
pub fn x_signature(key: &[u8], body: &[u8]) -> String {
    let hex = HmacSha256::new_from_slice(key)
        .map(|mut mac| {
            mac.update(body);
            mac.finalize()
                .into_bytes()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        })
        .unwrap_or_default();
    format!("sha256={hex}")
}

/// One signature, `v1,<base64>`. `msg_id` must not contain a `.`: Herald generates it.
pub fn sign(secret: &[u8], msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    match mac(secret, msg_id, timestamp, body) {
        Some(mac) => format!("v1,{}", B64.encode(mac.finalize().into_bytes())),
        // An empty signature that no receiver accepts, never one under a made-up key.
        None => "v1,".to_string(),
    }
}

/// The `webhook-signature` value: one signature per secret, in the order given (current
/// secret first, then the ones being rotated out).
pub fn signature_header<'a>(
    secrets: impl IntoIterator<Item = &'a SigningSecret>,
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
) -> String {
    secrets
        .into_iter()
        .map(|s| sign(s.as_bytes(), msg_id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

/// True when one `v1` signature of `header` was made with `secret`, compared in constant
/// time. What a receiver does; kept here to test against and for a future test-send check.
/// The timestamp's age is the caller's to judge.
pub fn verify(secret: &[u8], msg_id: &str, timestamp: i64, body: &[u8], header: &str) -> bool {
    header.split(' ').any(|candidate| {
        let Some(encoded) = candidate.strip_prefix("v1,") else {
            return false;
        };
        let Ok(tag) = B64.decode(encoded) else {
            return false;
        };
        mac(secret, msg_id, timestamp, body).is_some_and(|m| m.verify_slice(&tag).is_ok())
    })
}

/// True when one `v1a` signature of `header` verifies with the public key `whpk_...`: what a
/// receiver does (`herald listen` among them).
pub fn verify_v1a(
    public_key: &str,
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
    header: &str,
) -> bool {
    let Some(key) = public_key
        .strip_prefix(PUBLIC_KEY_PREFIX)
        .and_then(|k| B64.decode(k).ok())
    else {
        return false;
    };
    let key = ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, key);
    let mut content = Vec::with_capacity(msg_id.len() + 24 + body.len());
    content.extend_from_slice(msg_id.as_bytes());
    content.push(b'.');
    content.extend_from_slice(timestamp.to_string().as_bytes());
    content.push(b'.');
    content.extend_from_slice(body);
    header.split(' ').any(|candidate| {
        candidate
            .strip_prefix("v1a,")
            .and_then(|s| B64.decode(s).ok())
            .is_some_and(|sig| key.verify(&content, &sig).is_ok())
    })
}

/// How the standard marks an asymmetric (ed25519) secret key. Herald never shows one: it
/// seals it and shows the public key instead.
pub const SECRET_KEY_PREFIX: &str = "whsk_";
/// How the standard marks an ed25519 public key, what receivers verify `v1a` with.
pub const PUBLIC_KEY_PREFIX: &str = "whpk_";

/// A fresh key of `scheme` in the form Herald seals: `whsec_...` or `whsk_...`.
pub fn generate(scheme: SignatureScheme) -> String {
    match scheme {
        SignatureScheme::V1 => SigningSecret::generate().to_whsec(),
        SignatureScheme::V1a => Ed25519Key::generate().to_whsk(),
    }
}

/// An ed25519 signing key, kept as its 32-byte seed. Its `Debug` never shows the key.
pub struct Ed25519Key {
    seed: [u8; 32],
    pair: ring::signature::Ed25519KeyPair,
}

impl Ed25519Key {
    /// A fresh key from the operating system's randomness.
    pub fn generate() -> Self {
        use rand::RngCore;
        let mut seed = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut seed);
        Self::from_seed(seed)
    }

    fn from_seed(seed: [u8; 32]) -> Self {
        let pair = ring::signature::Ed25519KeyPair::from_seed_unchecked(&seed)
            .expect("ring takes any 32 bytes as an ed25519 seed");
        Self { seed, pair }
    }

    /// Reads `whsk_<base64 of the 32-byte seed>`, the form Herald seals.
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        let field = "signing_secret";
        let encoded = s.trim().strip_prefix(SECRET_KEY_PREFIX).ok_or_else(|| {
            Invalid::new(
                field,
                format!("an ed25519 key starts with '{SECRET_KEY_PREFIX}'"),
            )
        })?;
        let bytes = B64
            .decode(encoded)
            .map_err(|_| Invalid::new(field, "an ed25519 key must be standard base64"))?;
        let seed: [u8; 32] = bytes
            .try_into()
            .map_err(|_| Invalid::new(field, "an ed25519 key holds 32 bytes"))?;
        Ok(Self::from_seed(seed))
    }

    pub fn to_whsk(&self) -> String {
        format!("{SECRET_KEY_PREFIX}{}", B64.encode(self.seed))
    }

    /// `whpk_<base64 of the 32-byte public key>`: what receivers verify with.
    pub fn public_key(&self) -> String {
        use ring::signature::KeyPair;
        format!(
            "{PUBLIC_KEY_PREFIX}{}",
            B64.encode(self.pair.public_key().as_ref())
        )
    }

    /// `v1a,<base64 of the ed25519 signature>` of `{msg_id}.{timestamp}.{body}`.
    pub fn sign(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
        let timestamp = timestamp.to_string();
        let mut content = Vec::with_capacity(msg_id.len() + timestamp.len() + body.len() + 2);
        content.extend_from_slice(msg_id.as_bytes());
        content.push(b'.');
        content.extend_from_slice(timestamp.as_bytes());
        content.push(b'.');
        content.extend_from_slice(body);
        format!("v1a,{}", B64.encode(self.pair.sign(&content)))
    }
}

impl fmt::Debug for Ed25519Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Ed25519Key([redacted])")
    }
}

/// A key as Herald seals it, of either scheme: the prefix tells which, as the standard
/// intends, so a webhook's current and rotated-out keys may be of different schemes.
#[derive(Debug)]
pub enum SigningKey {
    Symmetric(SigningSecret),
    Ed25519(Ed25519Key),
}

impl SigningKey {
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        if s.trim_start().starts_with(SECRET_KEY_PREFIX) {
            Ed25519Key::parse(s).map(Self::Ed25519)
        } else {
            SigningSecret::parse(s).map(Self::Symmetric)
        }
    }

    /// One signature, `v1,...` or `v1a,...`.
    pub fn sign(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
        match self {
            Self::Symmetric(secret) => sign(secret.as_bytes(), msg_id, timestamp, body),
            Self::Ed25519(key) => key.sign(msg_id, timestamp, body),
        }
    }
}

/// The `webhook-signature` value for keys of either scheme, current key first.
pub fn header_for_keys(keys: &[SigningKey], msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    keys.iter()
        .map(|k| k.sign(msg_id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 4231's second HMAC-SHA256 case, in the `sha256=<hex>` form Flux reads.
    #[test]
    fn x_signature_is_the_hex_hmac_sha256() {
        assert_eq!(
            x_signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    const SPEC_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const SPEC_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const SPEC_TS: i64 = 1614265330;
    const SPEC_BODY: &[u8] = br#"{"test": 2432232314}"#;

    /// The vector of the Standard Webhooks reference libraries (e.g. the Go library's
    /// TestWebhookSign): matching it is what makes receivers' libraries accept Herald.
    #[test]
    fn the_published_test_vector() {
        let secret = SigningSecret::parse(SPEC_SECRET).unwrap();
        assert_eq!(secret.as_bytes().len(), 24);
        assert_eq!(
            sign(secret.as_bytes(), SPEC_ID, SPEC_TS, SPEC_BODY),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        assert!(verify(
            secret.as_bytes(),
            SPEC_ID,
            SPEC_TS,
            SPEC_BODY,
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        ));
    }

    #[test]
    fn several_secrets_for_rotation() {
        let old = SigningSecret::parse(SPEC_SECRET).unwrap();
        let new = SigningSecret::generate();
        let header = signature_header([&new, &old], SPEC_ID, SPEC_TS, SPEC_BODY);
        let parts: Vec<&str> = header.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0], sign(new.as_bytes(), SPEC_ID, SPEC_TS, SPEC_BODY));
        assert_eq!(parts[1], "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        for s in [&old, &new] {
            assert!(verify(s.as_bytes(), SPEC_ID, SPEC_TS, SPEC_BODY, &header));
        }
        assert_eq!(signature_header([], SPEC_ID, SPEC_TS, SPEC_BODY), "");
    }

    #[test]
    fn anything_changed_fails_verification() {
        let secret = SigningSecret::generate();
        let key = secret.as_bytes();
        let header = sign(key, "msg_1", 1000, b"{}");
        assert!(verify(key, "msg_1", 1000, b"{}", &header));
        assert!(!verify(key, "msg_2", 1000, b"{}", &header));
        assert!(!verify(key, "msg_1", 1001, b"{}", &header));
        assert!(!verify(key, "msg_1", 1000, b"{ }", &header));
        let other = SigningSecret::generate();
        assert!(!verify(other.as_bytes(), "msg_1", 1000, b"{}", &header));
        let tag = header.trim_start_matches("v1,");
        for bad in ["", "v1,", "v1a,abc", "v2,", "garbage", "v1,!!!"] {
            assert!(!verify(key, "msg_1", 1000, b"{}", bad), "{bad:?}");
        }
        // Only the v1 scheme counts: the same tag under another label is not accepted.
        assert!(!verify(key, "msg_1", 1000, b"{}", &format!("v1a,{tag}")));
        assert!(verify(
            key,
            "msg_1",
            1000,
            b"{}",
            &format!("v1a,xyz {header}")
        ));
    }

    #[test]
    fn secrets_are_generated_parsed_and_never_printed() {
        let a = SigningSecret::generate();
        let b = SigningSecret::generate();
        assert_ne!(a, b);
        assert_eq!(a.as_bytes().len(), 32);
        let text = a.to_whsec();
        assert!(text.starts_with("whsec_"));
        assert_eq!(SigningSecret::parse(&text).unwrap(), a);
        assert_eq!(format!("{a:?}"), "SigningSecret([redacted])");

        let short = format!("whsec_{}", B64.encode([7u8; 16]));
        let long = format!("whsec_{}", B64.encode([7u8; 65]));
        for bad in [
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", // no prefix
            "whsec_not base64!",
            "whsec_",
            short.as_str(),
            long.as_str(),
        ] {
            let e = SigningSecret::parse(bad).unwrap_err();
            assert_eq!(e.field, "signing_secret", "{bad}");
        }
    }

    #[test]
    fn ed25519_keys_sign_the_standard_content_and_round_trip() {
        use ring::signature::{UnparsedPublicKey, ED25519};
        let key = Ed25519Key::generate();
        let stored = key.to_whsk();
        assert!(stored.starts_with("whsk_"));
        let again = Ed25519Key::parse(&stored).unwrap();
        assert_eq!(again.public_key(), key.public_key());
        assert_ne!(Ed25519Key::generate().public_key(), key.public_key());
        assert_eq!(format!("{key:?}"), "Ed25519Key([redacted])");

        let header = key.sign(SPEC_ID, SPEC_TS, SPEC_BODY);
        let sig = B64.decode(header.strip_prefix("v1a,").unwrap()).unwrap();
        assert_eq!(sig.len(), 64);
        let public = B64
            .decode(key.public_key().strip_prefix("whpk_").unwrap())
            .unwrap();
        let verifier = UnparsedPublicKey::new(&ED25519, public);
        let content = format!(
            "{SPEC_ID}.{SPEC_TS}.{}",
            std::str::from_utf8(SPEC_BODY).unwrap()
        );
        assert!(verifier.verify(content.as_bytes(), &sig).is_ok());
        assert!(verifier.verify(b"msg_x.1.{}", &sig).is_err());

        for bad in ["whsk_", "whsk_!!", "whsk_AAAA", "whsec_AAAA"] {
            assert!(Ed25519Key::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn keys_of_both_schemes_sign_side_by_side() {
        let v1 = SigningKey::parse(SPEC_SECRET).unwrap();
        let v1a = SigningKey::parse(&generate(SignatureScheme::V1a)).unwrap();
        assert!(matches!(v1a, SigningKey::Ed25519(_)));
        let header = header_for_keys(&[v1a, v1], SPEC_ID, SPEC_TS, SPEC_BODY);
        let parts: Vec<&str> = header.split(' ').collect();
        assert!(parts[0].starts_with("v1a,"));
        assert_eq!(parts[1], "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert!(generate(SignatureScheme::V1).starts_with("whsec_"));
    }
}
