//! Argon2 hashes computed in working memory the caller owns.
//!
//! The argon2 crate's own `hash_password` / `verify_password` allocate ~19 MiB per call.
//! Run on tokio's blocking threads, each thread's allocator arena keeps that memory after
//! the call, so a flood of wrong sign-ins left resident memory near 1 GiB. The gate now
//! keeps one [`Scratch`] per permit and reuses it: memory is bounded by the permits, not
//! by how many threads happened to hash.

use argon2::password_hash::{rand_core::OsRng, Output, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use subtle::ConstantTimeEq;

/// The largest memory cost a stored hash may ask for (KiB): 64 MiB, more than three times
/// the default. A hash asking for more is treated as not matching rather than allocated.
const MAX_MEMORY_KIB: u32 = 64 * 1024;

/// Argon2's working memory, grown to what a hash needs and then kept.
#[derive(Default)]
pub struct Scratch(Vec<Block>);

impl Scratch {
    /// Memory for the default parameters, allocated once up front.
    pub fn for_default_params() -> Self {
        let mut s = Self::default();
        s.blocks(&Params::DEFAULT);
        s
    }

    fn blocks(&mut self, params: &Params) -> &mut [Block] {
        let needed = params.block_count();
        if self.0.len() < needed {
            self.0.resize(needed, Block::default());
        }
        &mut self.0[..needed]
    }

    /// Bytes held, for tests and the gate's accounting.
    pub fn bytes(&self) -> usize {
        self.0.len() * std::mem::size_of::<Block>()
    }
}

/// A new Argon2id hash of `password` with the default parameters, as a PHC string.
pub fn hash(scratch: &mut Scratch, password: &str) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    let params = Params::DEFAULT;
    let mut salt_bytes = [0u8; 64];
    let salt_raw = salt
        .decode_b64(&mut salt_bytes)
        .map_err(|e| anyhow::anyhow!("hashing the password failed: {e}"))?;
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
        .hash_password_into_with_memory(
            password.as_bytes(),
            salt_raw,
            &mut out,
            scratch.blocks(&params),
        )
        .map_err(|e| anyhow::anyhow!("hashing the password failed: {e}"))?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: (&params)
            .try_into()
            .map_err(|e| anyhow::anyhow!("hashing the password failed: {e}"))?,
        salt: Some(salt.as_salt()),
        hash: Some(
            Output::new(&out).map_err(|e| anyhow::anyhow!("hashing the password failed: {e}"))?,
        ),
    };
    Ok(phc.to_string())
}

/// Whether `password` matches the PHC string `hash`; false for anything that is not an
/// Argon2 hash Herald could have written.
pub fn verify(scratch: &mut Scratch, password: &str, hash: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    let (Ok(algorithm), Ok(params)) = (
        Algorithm::try_from(parsed.algorithm),
        Params::try_from(&parsed),
    ) else {
        return false;
    };
    let version = match parsed.version.map(Version::try_from).transpose() {
        Ok(v) => v.unwrap_or_default(),
        Err(_) => return false,
    };
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return false;
    };
    if params.m_cost() > MAX_MEMORY_KIB {
        return false;
    }
    let mut salt_bytes = [0u8; 64];
    let Ok(salt_raw) = salt.decode_b64(&mut salt_bytes) else {
        return false;
    };
    let mut out = vec![0u8; expected.len()];
    let computed = Argon2::new(algorithm, version, params.clone()).hash_password_into_with_memory(
        password.as_bytes(),
        salt_raw,
        &mut out,
        scratch.blocks(&params),
    );
    computed.is_ok() && bool::from(out.as_slice().ct_eq(expected.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::password_hash::{PasswordHasher, PasswordVerifier};

    #[test]
    fn hashes_agree_with_the_argon2_crate_both_ways() {
        let mut scratch = Scratch::default();
        let ours = hash(&mut scratch, "correct horse").unwrap();
        assert!(ours.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(Argon2::default()
            .verify_password(b"correct horse", &parsed)
            .is_ok());
        let theirs = Argon2::default()
            .hash_password(b"battery staple", &SaltString::generate(&mut OsRng))
            .unwrap()
            .to_string();
        assert!(verify(&mut scratch, "battery staple", &theirs));
        assert!(!verify(&mut scratch, "battery stapler", &theirs));
        assert!(!verify(&mut scratch, "x", "not a hash"));
    }

    #[test]
    fn the_memory_is_reused_not_grown() {
        let mut scratch = Scratch::for_default_params();
        let held = scratch.bytes();
        assert_eq!(held, 19 * 1024 * 1024);
        let h = hash(&mut scratch, "correct horse").unwrap();
        for _ in 0..3 {
            assert!(!verify(&mut scratch, "wrong", &h));
        }
        assert_eq!(scratch.bytes(), held);
    }

    #[test]
    fn a_hash_asking_for_huge_memory_is_not_allocated() {
        let mut scratch = Scratch::default();
        let huge = "$argon2id$v=19$m=4194304,t=1,p=1$c29tZXNhbHRzb21lc2FsdA$\
                    aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g";
        assert!(!verify(&mut scratch, "x", huge));
        assert_eq!(scratch.bytes(), 0);
    }
}
