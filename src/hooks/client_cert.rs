//! Client certificates for receivers behind mutual-TLS gateways: a webhook's PEM certificate
//! chain and private key, checked when saved (both parse, and the key is the certificate's)
//! so that a mistake is a 422 naming the field, not a failed delivery hours later.

use rustls::pki_types::pem::{self, PemObject, SectionKind};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use x509_cert::der::Decode;
use x509_cert::Certificate;

use crate::domain::names::Invalid;

/// Longest PEM accepted for either field: a chain of a few certificates fits many times.
pub const MAX_PEM_BYTES: usize = 64 * 1024;

const CERT_FIELD: &str = "client_certificate";
const KEY_FIELD: &str = "client_key";

/// A checked certificate chain and its key, both as PEM text (the key still in clear: the
/// caller seals it).
pub struct ClientIdentityPem {
    pub certificate: String,
    pub key: String,
}

/// PEM sections of `text`, or a message for `field` when it is not PEM at all.
fn sections(field: &str, text: &str) -> Result<Vec<(SectionKind, Vec<u8>)>, Invalid> {
    if text.len() > MAX_PEM_BYTES {
        return Err(Invalid::new(
            field,
            format!("at most {MAX_PEM_BYTES} bytes of PEM, not {}", text.len()),
        ));
    }
    let mut out = Vec::new();
    let mut reader = text.as_bytes();
    loop {
        match pem::from_buf(&mut reader) {
            Ok(Some(section)) => out.push(section),
            Ok(None) => break,
            Err(e) => return Err(Invalid::new(field, format!("not valid PEM: {e}"))),
        }
    }
    Ok(out)
}

/// Checks a certificate chain (end-entity certificate first) and its private key; both must
/// be given together.
pub fn check(certificate: &str, key: &str) -> Result<ClientIdentityPem, Vec<Invalid>> {
    let mut problems = Vec::new();
    let certs = match sections(CERT_FIELD, certificate) {
        Ok(found) => {
            let mut certs = Vec::new();
            for (kind, der) in found {
                match kind {
                    SectionKind::Certificate => certs.push(CertificateDer::from(der)),
                    SectionKind::PrivateKey
                    | SectionKind::RsaPrivateKey
                    | SectionKind::EcPrivateKey => problems.push(Invalid::new(
                        CERT_FIELD,
                        "this holds a private key: it goes in client_key, apart from the certificate",
                    )),
                    _ => problems.push(Invalid::new(
                        CERT_FIELD,
                        "only CERTIFICATE blocks belong here (the client certificate first, then its chain)",
                    )),
                }
            }
            if certs.is_empty() && problems.is_empty() {
                problems.push(Invalid::new(
                    CERT_FIELD,
                    "no PEM certificate (-----BEGIN CERTIFICATE-----) found",
                ));
            }
            certs
        }
        Err(e) => {
            problems.push(e);
            Vec::new()
        }
    };
    let signing_key = match parse_key(key) {
        Ok(k) => Some(k),
        Err(e) => {
            problems.push(e);
            None
        }
    };
    if let (Some(signing_key), Some(first), true) =
        (signing_key, certs.first(), problems.is_empty())
    {
        if let Some(problem) = presentable(first, &certs, signing_key) {
            problems.push(problem);
        }
    }
    if problems.is_empty() {
        Ok(ClientIdentityPem {
            certificate: certificate.trim().to_string() + "\n",
            key: key.trim().to_string() + "\n",
        })
    } else {
        Err(problems)
    }
}

/// How to make a certificate Herald can present, for the messages that refuse one.
const HOW_TO_SIGN: &str = "sign the request again as X.509 v3 with a client-auth \
     extension: `printf 'extendedKeyUsage=clientAuth\\n' > client.ext` then `openssl x509 \
     -req -in client.csr -CA ca.crt -CAkey ca.key -days 365 -extfile client.ext -out \
     client.crt`";
/// Why the TLS library could not present `first` (the chain's end-entity certificate) with
/// `key`, in words that say what to do; `None` when it can.
fn presentable(
    first: &CertificateDer<'static>,
    chain: &[CertificateDer<'static>],
    key: std::sync::Arc<dyn rustls::sign::SigningKey>,
) -> Option<Invalid> {
    let cert = match Certificate::from_der(first.as_ref()) {
        Ok(cert) => cert,
        Err(e) => {
            return Some(Invalid::new(
                CERT_FIELD,
                format!("the first certificate is not a valid X.509 certificate ({e})"),
            ))
        }
    };
    // `openssl x509 -req` without an extensions file makes v1 certificates. OpenSSL servers
    // take them, but rustls presents only what webpki can parse, and webpki refuses v1.
    if cert.tbs_certificate.version == x509_cert::Version::V1 {
        return Some(Invalid::new(
            CERT_FIELD,
            format!(
                "this is an X.509 v1 certificate (what `openssl x509 -req` makes without \
                 extensions), which Herald's TLS library cannot present; {HOW_TO_SIGN}"
            ),
        ));
    }
    match rustls::sign::CertifiedKey::new(chain.to_vec(), key).keys_match() {
        // A key type that cannot tell its public key: as rustls, accept it.
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => None,
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            Some(Invalid::new(
                KEY_FIELD,
                "this private key does not belong to the client certificate (the first certificate of client_certificate)",
            ))
        }
        Err(e) => Some(Invalid::new(
            CERT_FIELD,
            format!("Herald's TLS library cannot present this certificate ({e}); {HOW_TO_SIGN}"),
        )),
    }
}

/// A PEM private key (PKCS#8, PKCS#1 RSA or SEC1 EC) that rustls can sign with.
fn parse_key(key: &str) -> Result<std::sync::Arc<dyn rustls::sign::SigningKey>, Invalid> {
    let found = sections(KEY_FIELD, key)?;
    let keys: Vec<PrivateKeyDer<'static>> = found
        .into_iter()
        .filter_map(|(kind, der)| match kind {
            SectionKind::PrivateKey => Some(PrivateKeyDer::Pkcs8(der.into())),
            SectionKind::RsaPrivateKey => Some(PrivateKeyDer::Pkcs1(der.into())),
            SectionKind::EcPrivateKey => Some(PrivateKeyDer::Sec1(der.into())),
            _ => None,
        })
        .collect();
    let key = match <[_; 1]>::try_from(keys) {
        Ok([key]) => key,
        Err(keys) if keys.is_empty() => {
            return Err(Invalid::new(
                KEY_FIELD,
                "no PEM private key (-----BEGIN PRIVATE KEY-----, RSA or EC) found",
            ))
        }
        Err(_) => return Err(Invalid::new(KEY_FIELD, "give exactly one private key")),
    };
    rustls::crypto::ring::sign::any_supported_type(&key).map_err(|e| {
        Invalid::new(
            KEY_FIELD,
            format!("not a usable private key (RSA, ECDSA P-256/P-384 or Ed25519): {e}"),
        )
    })
}

/// Why the first certificate of `certificate` (PEM) would be refused for its dates now:
/// expired, or not yet valid. Saved all the same (a renewal may be on its way, or the
/// clock be wrong), but the webhook says so wherever it is shown.
pub fn validity_warning(certificate: &str, now: std::time::SystemTime) -> Option<String> {
    let der = CertificateDer::pem_slice_iter(certificate.as_bytes())
        .next()?
        .ok()?;
    let cert = Certificate::from_der(der.as_ref()).ok()?;
    let validity = &cert.tbs_certificate.validity;
    let (from, until) = (
        std::time::UNIX_EPOCH + validity.not_before.to_unix_duration(),
        std::time::UNIX_EPOCH + validity.not_after.to_unix_duration(),
    );
    let day = |t: std::time::SystemTime| {
        chrono::DateTime::<chrono::Utc>::from(t)
            .format("%Y-%m-%d %H:%M UTC")
            .to_string()
    };
    if now > until {
        Some(format!(
            "the client certificate expired on {}: receivers that ask for it will refuse \
             every delivery",
            day(until)
        ))
    } else if now < from {
        Some(format!(
            "the client certificate is not valid until {}: receivers that ask for it will \
             refuse deliveries before then",
            day(from)
        ))
    } else {
        None
    }
}

/// SHA-256 fingerprint of the first certificate, `AB:CD:...`, for people to recognise it.
pub fn fingerprint(certificate: &str) -> Option<String> {
    let der = CertificateDer::pem_slice_iter(certificate.as_bytes())
        .next()?
        .ok()?;
    let digest = Sha256::digest(der.as_ref());
    Some(
        digest
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":"),
    )
}

/// A webhook's certificate and key in clear, for one send: what `reqwest::Identity::from_pem`
/// reads. Its `Debug` never shows the key.
#[derive(Clone)]
pub struct ClientIdentity {
    pem: String,
    digest: [u8; 32],
}

impl ClientIdentity {
    pub fn new(certificate: &str, key: &str) -> Self {
        let pem = format!("{}\n{}\n", certificate.trim(), key.trim());
        let digest = Sha256::digest(pem.as_bytes()).into();
        Self { pem, digest }
    }

    pub fn pem(&self) -> &[u8] {
        self.pem.as_bytes()
    }

    /// Names this identity among the delivery client's cached TLS configurations.
    pub fn digest(&self) -> [u8; 32] {
        self.digest
    }
}

impl std::fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientIdentity([redacted])")
    }
}
