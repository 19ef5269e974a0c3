//! Standard Webhooks signatures (<https://www.standardwebhooks.com/>), so that receivers can
//! check a request came from Herald with the library they already have, rather than with
//! code written for Herald.
//!
//! A signature is `v1,` followed by the base64 HMAC-SHA256, keyed with the secret's bytes, of
//! `{webhook-id}.{webhook-timestamp}.{body}`. The `webhook-signature` header lists one
//! signature per active secret, separated by spaces, so a secret can be rotated without a
//! moment in which receivers reject requests.

use std::fmt;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::domain::names::Invalid;

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
