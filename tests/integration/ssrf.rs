//! The SSRF guard against real listeners: a refused delivery must never open a connection,
//! and its attempt must say why. Only loopback addresses are used.

use std::time::Duration;

use serde_json::json;

use crate::helpers::*;

const PUSH: &str = "distribution-2.8.2/push-manifest-tagged.json";

async fn last_error(app: &TestApp, hook: i64) -> String {
    let items = app
        .wait_deliveries("acme", hook, |d| d[0]["state"] == "failed")
        .await;
    assert_eq!(items[0]["last_status"], json!(null));
    items[0]["last_error"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn literal_addresses_outside_the_allow_list_are_refused_without_a_connection() {
    // spawn_app allows 127.0.0.1/32 only.
    let app = spawn_app_with(&["--retry-schedule", "0s"]).await;
    let allowed = Receiver::start().await;
    let v4 = Trap::bind("127.0.0.2:0")
        .await
        .expect("Linux routes all of 127.0.0.0/8 to loopback");
    // IPv6 may be switched off on a CI machine; then only the IPv4 case runs.
    let v6 = Trap::bind("[::1]:0").await;
    app.create_namespace("acme").await;
    let ok_hook = app
        .enabled_webhook("acme", json!({"name": "allowed", "url": allowed.url("/")}))
        .await;
    let v4_hook = app
        .enabled_webhook("acme", json!({"name": "v4", "url": v4.url()}))
        .await;
    let v6_hook = match &v6 {
        Some(trap) => Some(
            app.enabled_webhook("acme", json!({"name": "v6", "url": trap.url()}))
                .await,
        ),
        None => {
            eprintln!("::1 cannot be bound here: only the IPv4 case of the SSRF guard runs");
            None
        }
    };
    app.post_envelope(fixture(PUSH)).await;

    allowed.next().await;
    app.wait_deliveries("acme", ok_hook, |d| d[0]["state"] == "succeeded")
        .await;
    assert_eq!(
        last_error(&app, v4_hook).await,
        "blocked by the SSRF guard: 127.0.0.2 is a loopback address \
         (allow it with HERALD_DELIVERY_ALLOW_NETWORKS)"
    );
    if let Some(hook) = v6_hook {
        assert_eq!(
            last_error(&app, hook).await,
            "blocked by the SSRF guard: ::1 is a loopback address \
             (allow it with HERALD_DELIVERY_ALLOW_NETWORKS)"
        );
    }
    // The refusals are recorded; no connection may follow them either.
    assert_stays(
        Duration::from_millis(200),
        "the guard lets no connection to 127.0.0.2 or ::1 through",
        || async { !v4.was_reached() && !v6.as_ref().is_some_and(|t| t.was_reached()) },
    )
    .await;
}

#[tokio::test]
async fn a_name_that_resolves_to_loopback_is_refused_when_loopback_is_not_allowed() {
    let app = spawn_app_with(&["--retry-schedule", "0s", "--delivery-allow-networks", ""]).await;
    let rx = Receiver::start().await;
    // localhost may also resolve to ::1: watch that port too when it can be bound.
    let v6 = Trap::bind(&format!("[::1]:{}", rx.addr.port())).await;
    app.create_namespace("acme").await;
    let hook = app
        .enabled_webhook(
            "acme",
            json!({"name": "local", "url": format!("http://localhost:{}/", rx.addr.port())}),
        )
        .await;
    app.post_envelope(fixture(PUSH)).await;
    let error = last_error(&app, hook).await;
    assert!(
        error.starts_with("blocked by the SSRF guard: localhost resolves")
            && error.contains("a loopback address")
            && error.contains("HERALD_DELIVERY_ALLOW_NETWORKS"),
        "{error}"
    );
    rx.assert_quiet(Duration::from_millis(200)).await;
    if let Some(trap) = v6 {
        assert!(
            !trap.was_reached(),
            "the guard let a connection to ::1 through"
        );
    }
}

#[tokio::test]
async fn a_name_is_delivered_to_its_allowed_addresses_only() {
    // localhost resolves to 127.0.0.1 (allowed) and perhaps ::1 (dropped by the guard).
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    let v6 = Trap::bind(&format!("[::1]:{}", rx.addr.port())).await;
    app.create_namespace("acme").await;
    let hook = app
        .enabled_webhook(
            "acme",
            json!({"name": "local", "url": format!("http://localhost:{}/in", rx.addr.port())}),
        )
        .await;
    app.post_envelope(fixture(PUSH)).await;
    assert_eq!(rx.next().await.path, "/in");
    app.wait_deliveries("acme", hook, |d| d[0]["state"] == "succeeded")
        .await;
    if let Some(trap) = v6 {
        assert!(
            !trap.was_reached(),
            "::1 is not allowed and must not be tried"
        );
    }
}

#[tokio::test]
async fn saving_a_webhook_the_guard_would_block_answers_with_a_warning() {
    // The allow-list is 127.0.0.1/32 only (the test default).
    let app = spawn_app().await;
    app.create_namespace("acme").await;
    let r = app
        .api(
            "POST",
            "/namespaces/acme/webhooks",
            Some(json!({"name": "blocked", "url": "http://127.0.0.2:9/"})),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let warnings = r.body["warnings"].as_array().unwrap();
    assert!(
        warnings.iter().any(|w| {
            let w = w.as_str().unwrap();
            w.contains("127.0.0.2")
                && w.contains("loopback")
                && w.contains("--delivery-allow-networks")
        }),
        "{warnings:?}"
    );
    let id = r.body["id"].as_i64().unwrap();

    let r = app
        .api(
            "POST",
            "/namespaces/acme/webhooks",
            Some(json!({"name": "allowed", "url": "http://127.0.0.1:9/"})),
        )
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(r.body["warnings"], json!([]), "an allowed address");

    // A change answers with the warning as well, and an allowed URL clears it.
    let r = app
        .api(
            "PATCH",
            &format!("/namespaces/acme/webhooks/{id}"),
            Some(json!({"enabled": true})),
        )
        .await;
    assert_eq!(r.status, 200);
    assert!(r.body["warnings"][0]
        .as_str()
        .unwrap()
        .contains("127.0.0.2"));
    let r = app
        .api(
            "PATCH",
            &format!("/namespaces/acme/webhooks/{id}"),
            Some(json!({"url": "http://127.0.0.1:9/"})),
        )
        .await;
    assert_eq!(r.body["warnings"], json!([]));
}
