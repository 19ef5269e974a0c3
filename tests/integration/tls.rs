//! TLS to receivers: certificates are verified by default; a webhook may opt out (with a
//! warning), and an operator may trust an extra CA bundle.

use std::sync::atomic::Ordering;

use serde_json::json;

use crate::helpers::*;

const PUSH: &str = "distribution-2.8.2/push-manifest-tagged.json";

#[tokio::test]
async fn certificates_are_verified_unless_a_webhook_opts_out() {
    let app = spawn_app_with(&["--retry-schedule", "0s"]).await;
    let rx = tls_receiver().await;
    app.create_namespace("acme").await;
    let strict = app
        .enabled_webhook("acme", json!({"name": "strict", "url": rx.url}))
        .await;
    app.post_envelope(fixture(PUSH)).await;
    let items = app
        .wait_deliveries("acme", strict, |d| d[0]["state"] == "failed")
        .await;
    let error = items[0]["last_error"].as_str().unwrap();
    assert!(error.to_lowercase().contains("certificate"), "{error}");
    assert_eq!(
        rx.requests.load(Ordering::SeqCst),
        0,
        "no request passed an unverified handshake"
    );

    let r = app
        .api(
            "POST",
            "/namespaces/acme/webhooks",
            Some(json!({"name": "lax", "url": rx.url, "tls_verify": false})),
        )
        .await;
    assert_eq!(r.body["tls_verify"], false);
    assert!(r.body["warnings"][0]
        .as_str()
        .unwrap()
        .contains("not verified"));
    let lax = r.body["id"].as_i64().unwrap();
    app.api(
        "PATCH",
        &format!("/namespaces/acme/webhooks/{lax}"),
        Some(json!({"enabled": true})),
    )
    .await;
    let push = String::from_utf8(fixture(PUSH))
        .unwrap()
        .replace("2045f19c", "aaaa0001");
    app.post_envelope(push.into_bytes()).await;
    app.wait_deliveries("acme", lax, |d| d[0]["state"] == "succeeded")
        .await;
    assert_eq!(rx.requests.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_operator_ca_bundle_is_trusted() {
    let rx = tls_receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("ca.pem");
    std::fs::write(&bundle, &rx.cert_pem).unwrap();
    let app = spawn_app_with(&["--delivery-ca-bundle", bundle.to_str().unwrap()]).await;
    app.create_namespace("acme").await;
    let hook = app
        .enabled_webhook("acme", json!({"name": "internal", "url": rx.url}))
        .await;
    app.post_envelope(fixture(PUSH)).await;
    app.wait_deliveries("acme", hook, |d| d[0]["state"] == "succeeded")
        .await;
    assert_eq!(rx.requests.load(Ordering::SeqCst), 1);
}
