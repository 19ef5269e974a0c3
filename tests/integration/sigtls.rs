//! Per-webhook delivery security: Standard Webhooks `v1a` (ed25519) signatures, checked with
//! an independent ed25519 implementation (Python's `cryptography`, on OpenSSL), and client
//! certificates for receivers behind mutual TLS, against a receiver that requires one.

use std::sync::{Arc, Mutex};

use reqwest::header::{COOKIE, SET_COOKIE};
use serde_json::{json, Value};

use crate::conformance::python_check;
use crate::helpers::*;

const PUSH: &str = "distribution-2.8.2/push-manifest-tagged.json";

fn push(id: &str) -> Vec<u8> {
    String::from_utf8(fixture(PUSH))
        .unwrap()
        .replace("2045f19c", id)
        .into_bytes()
}

/// Verifies every `v1a` signature of `header` with OpenSSL's ed25519 through Python's
/// `cryptography`: the signed one must pass, the same with a changed body must not.
const VERIFY_V1A: &str = r#"
import base64, json, sys
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

case = json.load(sys.stdin)
assert case["public_key"].startswith("whpk_"), case["public_key"]
key = Ed25519PublicKey.from_public_bytes(base64.b64decode(case["public_key"][len("whpk_"):]))

def verifies(body):
    signed = f'{case["id"]}.{case["timestamp"]}.'.encode() + body.encode()
    for sig in case["header"].split(" "):
        version, _, value = sig.partition(",")
        if version != "v1a":
            continue
        try:
            key.verify(base64.b64decode(value), signed)
            return True
        except InvalidSignature:
            pass
    return False

assert verifies(case["body"]), "Herald's v1a signature does not verify"
assert not verifies(case["body"] + " "), "a tampered body verifies"
assert not verifies(case["body"].replace("push", "pull", 1)), "a tampered body verifies"
print("ok")
"#;

fn v1a_case(public_key: &str, got: &Captured) -> String {
    json!({
        "public_key": public_key,
        "id": got.header("webhook-id").unwrap(),
        "timestamp": got.header("webhook-timestamp").unwrap(),
        "header": got.header("webhook-signature").unwrap(),
        "body": got.body,
    })
    .to_string()
}

#[tokio::test]
async fn v1a_signatures_verify_with_an_independent_ed25519() {
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    app.create_namespace("acme").await;
    let r = app
        .api(
            "POST",
            "/namespaces/acme/webhooks",
            Some(json!({"name": "asym", "url": rx.url("/a"), "request_method": "POST", "signature": "v1a"})),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["signature"], "v1a");
    assert!(
        r.body.get("signing_secret").is_none(),
        "a v1a webhook has no shared secret to show: {}",
        r.body
    );
    let id = r.body["id"].as_i64().unwrap();
    let public_key = r.body["signature_public_key"].as_str().unwrap().to_string();
    assert!(public_key.starts_with("whpk_"), "{public_key}");
    let path = format!("/namespaces/acme/webhooks/{id}");
    let shown = app.api("GET", &path, None).await;
    assert_eq!(shown.body["signature_public_key"], public_key.as_str());
    // The UI page shows the same public key.
    let (status, html) = sign_in(&app).await.get(&app, &path).await;
    assert_eq!(status, 200);
    let escaped = public_key.replace('/', "&#x2f;");
    assert!(
        [&public_key, &escaped]
            .iter()
            .any(|k| html.contains(&format!("id=\"signature-public-key\" class=\"token\">{k}<"))),
        "the webhook page shows {public_key}"
    );
    app.api("PATCH", &path, Some(json!({"enabled": true})))
        .await;

    app.post_envelope(push("aaaa0001")).await;
    let got = rx.next().await;
    let header = got.header("webhook-signature").unwrap();
    assert!(header.starts_with("v1a,"), "{header}");
    assert_eq!(header.split(' ').count(), 1, "{header}");
    python_check(&["cryptography"], VERIFY_V1A, &v1a_case(&public_key, &got));

    // Rotation: a new keypair, and the old key keeps signing alongside for the overlap.
    let r = app
        .api("POST", &format!("{path}/rotate-secret"), None)
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert!(r.body.get("signing_secret").is_none(), "{}", r.body);
    let rotated = r.body["signature_public_key"].as_str().unwrap().to_string();
    assert_ne!(rotated, public_key);
    assert!(r.body["previous_secret_valid_until"].is_string());
    app.post_envelope(push("aaaa0002")).await;
    let got = rx.next().await;
    let header = got.header("webhook-signature").unwrap();
    assert_eq!(header.split(' ').count(), 2, "{header}");
    assert!(header.split(' ').all(|s| s.starts_with("v1a,")), "{header}");
    for key in [&rotated, &public_key] {
        python_check(&["cryptography"], VERIFY_V1A, &v1a_case(key, &got));
    }
}

#[tokio::test]
async fn switching_the_scheme_makes_the_new_key_and_keeps_the_old_one_signing() {
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    app.create_namespace("acme").await;
    let r = app
        .api(
            "POST",
            "/namespaces/acme/webhooks",
            Some(json!({"name": "sym", "url": rx.url("/s"), "request_method": "POST"})),
        )
        .await;
    assert_eq!(r.body["signature"], "v1", "v1 stays the default");
    assert!(r.body["signature_public_key"].is_null());
    let secret = r.body["signing_secret"].as_str().unwrap().to_string();
    let id = r.body["id"].as_i64().unwrap();
    let path = format!("/namespaces/acme/webhooks/{id}");
    let bad = app
        .api("PATCH", &path, Some(json!({"signature": "v2"})))
        .await;
    assert_eq!(bad.status, 422);
    assert_eq!(bad.body["error"]["field"], "signature");

    let r = app
        .api(
            "PATCH",
            &path,
            Some(json!({"signature": "v1a", "enabled": true})),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["signature"], "v1a");
    let public_key = r.body["signature_public_key"].as_str().unwrap().to_string();
    assert!(r.body.get("signing_secret").is_none());

    app.post_envelope(push("bbbb0001")).await;
    let got = rx.next().await;
    let header = got.header("webhook-signature").unwrap().to_string();
    let (v1a, v1): (Vec<&str>, Vec<&str>) = header.split(' ').partition(|s| s.starts_with("v1a,"));
    assert_eq!((v1a.len(), v1.len()), (1, 1), "{header}");
    python_check(&["cryptography"], VERIFY_V1A, &v1a_case(&public_key, &got));
    // The HMAC secret receivers still hold keeps verifying during the overlap.
    let wh = standardwebhooks::Webhook::new(&secret).unwrap();
    wh.verify(got.body.as_bytes(), &got.headers)
        .expect("the previous v1 secret still verifies");

    // A second switch within the overlap would drop the secret receivers still use.
    let r = app
        .api("PATCH", &path, Some(json!({"signature": "v1"})))
        .await;
    assert_eq!(r.status, 409, "{:?}", r.body);
    // Naming the scheme already in force changes nothing.
    let r = app
        .api("PATCH", &path, Some(json!({"signature": "v1a"})))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["signature_public_key"], public_key.as_str());
}

/// An HTTPS receiver on 127.0.0.1 that REQUIRES a client certificate issued by `client_ca`,
/// and records the DER of the client certificate of every request that got through.
struct MtlsReceiver {
    url: String,
    server_cert_pem: String,
    seen: Arc<Mutex<Vec<Vec<u8>>>>,
}

async fn mtls_receiver(client_ca: &rcgen::Certificate) -> MtlsReceiver {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::rustls;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::try_from(server.key_pair.serialize_der()).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(client_ca.der().clone()).unwrap();
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![server.cert.der().clone()], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, record) = (acceptor.clone(), record.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = vec![0u8; 64 * 1024];
                if tls.read(&mut buf).await.unwrap_or(0) > 0 {
                    let peer = tls.get_ref().1.peer_certificates().map(|c| c[0].to_vec());
                    record.lock().unwrap().extend(peer);
                    let _ = tls
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                        )
                        .await;
                    let _ = tls.shutdown().await;
                }
            });
        }
    });
    MtlsReceiver {
        url: format!("https://{addr}/hook"),
        server_cert_pem: server.cert.pem(),
        seen,
    }
}

struct Ca {
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
}

fn ca(name: &str) -> Ca {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    Ca { cert, key }
}

/// A client certificate issued by `ca`, as (certificate PEM, key PEM, certificate DER).
fn client_cert(ca: &Ca, name: &str) -> (String, String, Vec<u8>) {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca.cert, &ca.key).unwrap();
    (cert.pem(), key.serialize_pem(), cert.der().to_vec())
}

#[tokio::test]
async fn a_client_certificate_gets_through_a_receiver_that_requires_one() {
    let client_ca = ca("test client CA");
    let rx = mtls_receiver(&client_ca.cert).await;
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("ca.pem");
    std::fs::write(&bundle, &rx.server_cert_pem).unwrap();
    let app = spawn_app_with(&[
        "--delivery-ca-bundle",
        bundle.to_str().unwrap(),
        "--retry-schedule",
        "0s",
    ])
    .await;
    app.create_namespace("acme").await;
    let id = app
        .enabled_webhook("acme", json!({"name": "gated", "url": rx.url}))
        .await;
    let path = format!("/namespaces/acme/webhooks/{id}");
    let plain = app.api("GET", &path, None).await;
    assert!(plain.body["client_certificate"].is_null());
    assert_eq!(plain.body["has_client_key"], false);

    // Without a client certificate the receiver's gateway refuses the handshake.
    app.post_envelope(push("cccc0001")).await;
    let items = app
        .wait_deliveries("acme", id, |d| d[0]["state"] == "failed")
        .await;
    let delivery = items[0]["id"].as_i64().unwrap();
    assert!(rx.seen.lock().unwrap().is_empty());

    let (cert_pem, key_pem, cert_der) = client_cert(&client_ca, "herald");
    let r = app
        .api(
            "PATCH",
            &path,
            Some(json!({"client_certificate": cert_pem, "client_key": key_pem})),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        r.body["client_certificate"].as_str().unwrap().trim(),
        cert_pem.trim()
    );
    assert_eq!(r.body["has_client_key"], true);
    assert!(r.body.get("client_key").is_none(), "{}", r.body);
    for seen in [
        r.body.to_string(),
        app.api("GET", &path, None).await.body.to_string(),
    ] {
        assert!(
            !seen.contains("PRIVATE KEY"),
            "the key is never shown: {seen}"
        );
    }
    let stored = app
        .store
        .get_webhook(
            &herald::domain::names::NamespaceName::parse("acme").unwrap(),
            id,
        )
        .await
        .unwrap();
    let sealed = stored.client_key.expect("the key is stored");
    assert!(
        !String::from_utf8_lossy(&sealed.0).contains("PRIVATE KEY"),
        "the key is sealed at rest"
    );

    let r = app
        .api(
            "POST",
            &format!("{path}/deliveries/{delivery}/retrigger"),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["state"], "succeeded", "{:?}", r.body);
    assert_eq!(
        *rx.seen.lock().unwrap(),
        vec![cert_der],
        "the receiver saw Herald's client certificate"
    );
    // A second delivery reuses the cached client and still presents the certificate.
    app.post_envelope(push("cccc0002")).await;
    eventually(
        std::time::Duration::from_secs(10),
        "a second mTLS delivery",
        || async { rx.seen.lock().unwrap().len() == 2 },
    )
    .await;

    // Clearing the certificate removes the key too; deliveries fail at the gateway again.
    let r = app
        .api("PATCH", &path, Some(json!({"client_certificate": null})))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert!(r.body["client_certificate"].is_null());
    assert_eq!(r.body["has_client_key"], false);
    let r = app
        .api(
            "POST",
            &format!("{path}/deliveries/{delivery}/retrigger"),
            None,
        )
        .await;
    assert_ne!(r.body["state"], "succeeded", "{:?}", r.body);
    assert_eq!(rx.seen.lock().unwrap().len(), 2);
}

/// Runs `openssl` with `args` in `dir`, failing the test with its output if it fails.
fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl is installed");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A certificate made the usual way, `openssl x509 -req` without an extensions file, is
/// X.509 v1, which webpki (and so rustls) cannot present: it is refused when saved, in
/// words that give the command for one that works. Made so, the certificate gets through
/// OpenSSL's own mutual-TLS server (what nginx and HAProxy use).
#[tokio::test]
async fn client_certificates_made_with_openssl_work_or_are_refused_saying_how() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "30",
        "-subj",
        "/CN=client CA",
    ]);
    openssl(d, &ca);
    let mut csr = vec!["req"];
    csr.extend(ec);
    csr.extend([
        "-keyout",
        "client.key",
        "-out",
        "client.csr",
        "-subj",
        "/CN=herald",
    ]);
    openssl(d, &csr);
    let sign = [
        "x509",
        "-req",
        "-in",
        "client.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-days",
        "30",
    ];
    let mut v1 = sign.to_vec();
    v1.extend(["-out", "v1.crt"]);
    openssl(d, &v1);
    let mut server = vec!["req", "-x509"];
    server.extend(ec);
    server.extend([
        "-keyout",
        "server.key",
        "-out",
        "server.crt",
        "-days",
        "30",
        "-subj",
        "/CN=127.0.0.1",
        "-addext",
        "subjectAltName=IP:127.0.0.1",
        "-addext",
        "basicConstraints=critical,CA:FALSE",
    ]);
    openssl(d, &server);
    let key = std::fs::read_to_string(d.join("client.key")).unwrap();

    let bundle = d.join("server.crt");
    let app = spawn_app_with(&["--delivery-ca-bundle", bundle.to_str().unwrap()]).await;
    app.create_namespace("acme").await;
    let v1_pem = std::fs::read_to_string(d.join("v1.crt")).unwrap();
    let r = app
        .api(
            "POST",
            "/namespaces/acme/webhooks",
            Some(json!({"name": "v1", "url": "https://127.0.0.1:9/",
                        "client_certificate": v1_pem, "client_key": key})),
        )
        .await;
    assert_eq!(r.status, 422, "{:?}", r.body);
    assert_eq!(
        r.body["error"]["field"], "client_certificate",
        "{:?}",
        r.body
    );
    let message = r.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("X.509 v1"), "{message}");
    // The message's own recipe, as a user would follow it.
    std::fs::write(d.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    assert!(message.contains("-extfile client.ext"), "{message}");
    let mut v3 = sign.to_vec();
    v3.extend(["-extfile", "client.ext", "-out", "client.crt"]);
    openssl(d, &v3);
    let cert = std::fs::read_to_string(d.join("client.crt")).unwrap();

    // OpenSSL's test server, requiring a client certificate from the CA (`-Verify 1`).
    use std::io::BufRead;
    let mut s_server = std::process::Command::new("openssl")
        .current_dir(d)
        .args([
            "s_server",
            "-accept",
            "127.0.0.1:0",
            "-cert",
            "server.crt",
            "-key",
            "server.key",
            "-Verify",
            "1",
            "-CAfile",
            "ca.crt",
            "-www",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = s_server.stdout.take().unwrap();
    let port = std::io::BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find_map(|l| l.strip_prefix("ACCEPT 127.0.0.1:").map(str::to_string))
        .expect("s_server says where it listens");

    let bundle = d.join("server.crt");
    let app = spawn_app_with(&["--delivery-ca-bundle", bundle.to_str().unwrap()]).await;
    app.create_namespace("acme").await;
    let r = app
        .api(
            "POST",
            "/namespaces/acme/webhooks",
            Some(
                json!({"name": "gated", "url": format!("https://127.0.0.1:{port}/"),
                        "client_certificate": cert, "client_key": key}),
            ),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["warnings"], json!([]), "{:?}", r.body);
    let id = r.body["id"].as_i64().unwrap();
    let path = format!("/namespaces/acme/webhooks/{id}");
    assert_eq!(
        app.api("PATCH", &path, Some(json!({"enabled": true})))
            .await
            .status,
        200
    );
    app.post_envelope(push("cccc0101")).await;
    let items = app
        .wait_deliveries("acme", id, |d| {
            d[0]["state"] == "succeeded" || d[0]["state"] == "failed"
        })
        .await;
    let _ = s_server.kill();
    let _ = s_server.wait();
    assert_eq!(items[0]["state"], "succeeded", "{:?}", items[0]);
}

/// An expired or not yet valid certificate is saved (a renewal may be on its way), with a
/// warning the API shows on the webhook.
#[tokio::test]
async fn an_expired_client_certificate_is_saved_with_a_warning() {
    let app = spawn_app().await;
    app.create_namespace("acme").await;
    let ca = ca("test client CA");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "old");
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca.cert, &ca.key).unwrap();
    let r = app
        .api(
            "POST",
            "/namespaces/acme/webhooks",
            Some(json!({"name": "old", "url": "https://127.0.0.1:9/hook",
                        "client_certificate": cert.pem(), "client_key": key.serialize_pem()})),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let warnings = r.body["warnings"].to_string();
    assert!(warnings.contains("expired on 2021-01-01"), "{warnings}");
    let id = r.body["id"].as_i64().unwrap();
    let again = app
        .api("GET", &format!("/namespaces/acme/webhooks/{id}"), None)
        .await;
    assert!(again.body["warnings"].to_string().contains("expired"));
    let (status, html) = sign_in(&app)
        .await
        .get(&app, &format!("/namespaces/acme/webhooks/{id}"))
        .await;
    assert_eq!(status, 200);
    assert!(
        html.contains("id=\"client-certificate-warning\"")
            && html.contains("expired on 2021-01-01"),
        "the page says so too"
    );
}

#[tokio::test]
async fn mismatched_or_broken_client_identities_are_refused_naming_the_field() {
    let app = spawn_app().await;
    app.create_namespace("acme").await;
    let client_ca = ca("test client CA");
    let (cert_pem, key_pem, _) = client_cert(&client_ca, "one");
    let (_, other_key, _) = client_cert(&client_ca, "two");
    let create = |extra: Value| {
        let mut body = json!({"name": "m", "url": "https://127.0.0.1:9/hook"});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body
    };
    let cases = [
        (
            json!({"client_certificate": cert_pem, "client_key": other_key}),
            "client_key",
        ),
        (
            json!({"client_certificate": "not a certificate", "client_key": key_pem}),
            "client_certificate",
        ),
        (
            json!({"client_certificate": cert_pem, "client_key": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"}),
            "client_key",
        ),
        (
            json!({"client_certificate": format!("{cert_pem}{key_pem}"), "client_key": key_pem}),
            "client_certificate",
        ),
        (json!({"client_certificate": cert_pem}), "client_key"),
        (json!({"client_key": key_pem}), "client_certificate"),
    ];
    for (extra, field) in &cases {
        let r = app
            .api(
                "POST",
                "/namespaces/acme/webhooks",
                Some(create(extra.clone())),
            )
            .await;
        assert_eq!(r.status, 422, "{extra}: {:?}", r.body);
        assert_eq!(r.body["error"]["field"], *field, "{extra}: {:?}", r.body);
        assert!(!r.body.to_string().contains("PRIVATE KEY"), "{:?}", r.body);
    }
    let r = app
        .api(
            "POST",
            "/namespaces/acme/webhooks",
            Some(create(
                json!({"client_certificate": cert_pem, "client_key": key_pem}),
            )),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let id = r.body["id"].as_i64().unwrap();
    let r = app
        .api(
            "PATCH",
            &format!("/namespaces/acme/webhooks/{id}"),
            Some(json!({"client_certificate": cert_pem, "client_key": other_key})),
        )
        .await;
    assert_eq!(r.status, 422, "{:?}", r.body);
    assert_eq!(r.body["error"]["field"], "client_key");
    let message = r.body["error"]["message"].as_str().unwrap().to_string();

    // The UI's edit form refuses the same, with the same words next to the field, and
    // never echoes the key back.
    let web = sign_in(&app).await;
    let page = format!("/namespaces/acme/webhooks/{id}");
    let (_, html) = web.get(&app, &format!("{page}/edit")).await;
    let csrf = csrf_in(&html);
    assert!(
        html.contains("name=\"client_certificate\""),
        "the edit form has the field"
    );
    assert!(
        html.contains("name=\"signature\""),
        "the edit form has the signature choice"
    );
    let res = web
        .post(
            &app,
            &format!("{page}/edit"),
            &[
                ("csrf", csrf.as_str()),
                ("name", "m"),
                ("url", "https://127.0.0.1:9/hook"),
                ("request_method", "GET"),
                ("content_type", "application/json"),
                ("client_certificate", cert_pem.as_str()),
                ("client_key", other_key.as_str()),
            ],
        )
        .await;
    assert_eq!(res.status(), 422);
    let html = res.text().await.unwrap();
    assert!(html.contains(&message), "{message} not in the page");
    assert!(!html.contains("PRIVATE KEY"), "the key is not echoed back");
    let still = app
        .store
        .get_webhook(
            &herald::domain::names::NamespaceName::parse("acme").unwrap(),
            id,
        )
        .await
        .unwrap();
    assert!(still.client_key.is_some());
}

/// A browser session of the admin that `spawn_app` creates.
struct Web {
    http: reqwest::Client,
    cookie: String,
}

fn csrf_in(html: &str) -> String {
    let start = html.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    html[start..].split('"').next().unwrap().to_string()
}

fn cookie_named(res: &reqwest::Response, name: &str) -> String {
    res.headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|c| c.starts_with(name))
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string()
}

async fn sign_in(app: &TestApp) -> Web {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let page = http.get(app.url("/login")).send().await.unwrap();
    let cookie = cookie_named(&page, "herald_login_csrf=");
    let csrf = csrf_in(&page.text().await.unwrap());
    let res = http
        .post(app.url("/login"))
        .header(COOKIE, cookie)
        .form(&[
            ("username", "admin"),
            ("password", "admin-password"),
            ("csrf", csrf.as_str()),
            ("next", "/"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    Web {
        cookie: cookie_named(&res, "herald_session="),
        http,
    }
}

impl Web {
    async fn get(&self, app: &TestApp, path: &str) -> (u16, String) {
        let res = self
            .http
            .get(app.url(path))
            .header(COOKIE, &self.cookie)
            .send()
            .await
            .unwrap();
        (res.status().as_u16(), res.text().await.unwrap())
    }

    async fn post(&self, app: &TestApp, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
        self.http
            .post(app.url(path))
            .header(COOKIE, &self.cookie)
            .form(form)
            .send()
            .await
            .unwrap()
    }
}
