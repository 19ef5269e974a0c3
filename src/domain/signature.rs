//! A webhook's Standard Webhooks signature scheme; making and checking signatures is
//! `hooks::signing`.

use serde::{Deserialize, Serialize};

use crate::domain::names::Invalid;

/// `v1`: HMAC-SHA256 with a secret Herald and the receiver share (the default, and what
/// every webhook made before the choice existed has). `v1a`: ed25519, so receivers verify
/// with a public key and hold nothing that could sign a request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum SignatureScheme {
    #[default]
    #[serde(rename = "v1")]
    V1,
    #[serde(rename = "v1a")]
    V1a,
}

impl SignatureScheme {
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        match s.trim() {
            "v1" => Ok(Self::V1),
            "v1a" => Ok(Self::V1a),
            other => Err(Invalid::new(
                "signature",
                format!(
                    "the signature scheme is 'v1' (HMAC-SHA256) or 'v1a' (ed25519), not '{other}'"
                ),
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::V1 => "v1",
            Self::V1a => "v1a",
        }
    }
}
