//! The web UI in a real headless Chromium: an owner sets up a webhook and follows a delivery;
//! a viewer finds no controls they may not use. Screenshots land in test-artifacts/.

use std::time::Duration;

use serde_json::json;

use crate::helpers::*;
use crate::webdriver::Browser;

async fn sign_in(b: &Browser, app: &TestApp, user: &str) {
    b.goto(&app.url("/login")).await;
    b.fill("input[name=username]", user).await;
    b.fill("input[name=password]", "password-1").await;
    b.click("form[action='/login'] button").await;
    assert!(
        b.exists("header.top").await,
        "signed in as {user}: {}",
        b.page_text().await
    );
}

/// Reloads until `check` holds for the page text (the deliveries arrive in the background).
async fn reload_until(b: &Browser, url: &str, what: &str, check: impl Fn(&str) -> bool) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        b.goto(url).await;
        let text = b.page_text().await;
        if check(&text) {
            return text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} never showed: {text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn an_owner_manages_a_webhook_and_a_viewer_only_reads() {
    let Some(b) = Browser::start().await else {
        return;
    };
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    let hash = herald::auth::hash_password("password-1").unwrap();
    app.store
        .create_user("olga", &hash, None, false)
        .await
        .unwrap();
    app.store
        .create_user("vera", &hash, None, false)
        .await
        .unwrap();
    assert_eq!(
        app.api("POST", "/teams", Some(json!({"name": "web"})))
            .await
            .status,
        201
    );
    app.api(
        "PUT",
        "/teams/web/members/olga",
        Some(json!({"role": "owner"})),
    )
    .await;
    app.api(
        "PUT",
        "/teams/web/members/vera",
        Some(json!({"role": "viewer"})),
    )
    .await;
    assert_eq!(
        app.api(
            "POST",
            "/namespaces",
            Some(json!({"name": "acme", "team": "web"}))
        )
        .await
        .status,
        201
    );
    let artifacts = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("test-artifacts");

    // The owner signs in and creates a webhook; a bad URL is refused next to its field.
    sign_in(&b, &app, "olga").await;
    assert!(b.page_text().await.contains("acme"));
    b.goto(&app.url("/namespaces/acme")).await;
    b.fill("#new-webhook input[name=name]", "deploy").await;
    b.fill("#new-webhook input[name=url]", "ftp://registry.example.org")
        .await;
    b.click("#new-webhook button[type=submit]").await;
    assert!(b.text("#url-error").await.contains("must be http or https"));
    assert_eq!(
        b.value("#new-webhook input[name=name]").await,
        "deploy",
        "the input is kept"
    );
    b.fill("#new-webhook input[name=url]", &rx.url("/hook"))
        .await;
    b.click("#new-webhook button[type=submit]").await;
    let text = b.page_text().await;
    assert!(text.contains("Webhook 'deploy' created"), "{text}");
    assert_eq!(b.text("#state").await, "disabled");
    assert!(b.text("#signing-secret").await.starts_with("whsec_"));
    // The answer names the webhook page's own address, so a reload sends no form again.
    let webhook_url = b.url().await;
    assert!(
        webhook_url.ends_with("/namespaces/acme/webhooks/1"),
        "{webhook_url}"
    );

    // Enable it.
    b.click("#toggle").await;
    assert!(b
        .page_text()
        .await
        .contains("Webhook 'deploy' is now enabled"));
    assert_eq!(b.text("#state").await, "enabled");

    // A real registry envelope arrives; the delivery shows up.
    let r = app
        .post_envelope(fixture("distribution-2.8.2/push-manifest-tagged.json"))
        .await;
    assert_eq!(r.body["deliveries"], 1);
    rx.next().await;
    reload_until(&b, &webhook_url, "a succeeded delivery", |t| {
        t.contains("succeeded") && t.contains("push acme/web:1.0")
    })
    .await;
    b.screenshot(&artifacts.join("webhook-page.png")).await;

    // Its detail page shows the request and one attempt; retrigger adds a second.
    b.click("#deliveries a[href*='/deliveries/']").await;
    let text = b.page_text().await;
    assert!(
        text.contains("Request")
            && text.contains("HTTP 200")
            && text.contains("\"action\": \"push\""),
        "{text}"
    );
    assert_eq!(b.find_all("article.attempt").await.len(), 1);
    b.click("#retrigger").await;
    assert!(b.page_text().await.contains("retriggered: answered 200"));
    assert_eq!(b.find_all("article.attempt").await.len(), 2);
    rx.next().await;
    b.screenshot(&artifacts.join("delivery-page.png")).await;

    // Add and remove a header.
    b.goto(&webhook_url).await;
    b.fill("#add-header input[name=header_name]", "X-Deploy-Key")
        .await;
    b.fill("#add-header input[name=header_value]", "k-123")
        .await;
    b.click("#add-header button").await;
    let text = b.page_text().await;
    assert!(
        text.contains("Header 'X-Deploy-Key' of webhook 'deploy' set"),
        "{text}"
    );
    assert!(b.exists("tr[data-header='X-Deploy-Key']").await);
    b.click("tr[data-header='X-Deploy-Key'] button").await;
    assert!(b
        .page_text()
        .await
        .contains("Header 'X-Deploy-Key' removed"));
    assert!(!b.exists("tr[data-header='X-Deploy-Key']").await);
    b.fill("#add-header input[name=header_name]", "X-Kept")
        .await;
    b.fill("#add-header input[name=header_value]", "secret-value")
        .await;
    b.click("#add-header button").await;

    // The viewer sees the webhook but none of the controls.
    b.click("form.signout button").await;
    sign_in(&b, &app, "vera").await;
    b.goto(&webhook_url).await;
    let text = b.page_text().await;
    assert!(
        text.contains("deploy") && text.contains("succeeded"),
        "{text}"
    );
    assert!(
        !text.contains("secret-value"),
        "header values are hidden from viewers"
    );
    for control in [
        "#toggle",
        "#delete",
        "#edit-webhook",
        "#add-header",
        "#deliveries button",
        "#headers button",
        "#ping",
        "#recover",
        "#rotate",
    ] {
        assert!(!b.exists(control).await, "a viewer must not see {control}");
    }
    b.goto(&app.url("/namespaces/acme")).await;
    for control in ["#webhooks button", "#new-webhook"] {
        assert!(!b.exists(control).await, "a viewer must not see {control}");
    }
}

/// Olga (owner of team web, namespace acme) and a webhook-free start.
async fn owner_setup(app: &TestApp) {
    let hash = herald::auth::hash_password("password-1").unwrap();
    app.store
        .create_user("olga", &hash, None, false)
        .await
        .unwrap();
    app.api("POST", "/teams", Some(json!({"name": "web"})))
        .await;
    app.api(
        "PUT",
        "/teams/web/members/olga",
        Some(json!({"role": "owner"})),
    )
    .await;
    let r = app
        .api(
            "POST",
            "/namespaces",
            Some(json!({"name": "acme", "team": "web"})),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
}

/// A loopback port nothing listens on: connections to it are refused at once.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[tokio::test]
async fn the_secret_shows_once_a_ping_arrives_and_a_dead_receiver_turns_failing() {
    let Some(b) = Browser::start().await else {
        return;
    };
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    owner_setup(&app).await;
    sign_in(&b, &app, "olga").await;

    // Create: the secret is on this answer only.
    b.goto(&app.url("/namespaces/acme")).await;
    b.fill("#new-webhook input[name=name]", "deploy").await;
    b.fill("#new-webhook input[name=url]", &rx.url("/hook"))
        .await;
    b.click("#new-webhook button[type=submit]").await;
    let secret = b.text("#signing-secret").await;
    assert!(secret.starts_with("whsec_"), "{secret}");
    let webhook_url = b.url().await;
    b.goto(&webhook_url).await;
    assert!(!b.exists("#signing-secret").await, "shown once only");
    assert!(!b.page_text().await.contains(&secret));

    // Ping from the UI reaches the receiver, even though the webhook is still disabled.
    b.click("#ping button").await;
    let ping = rx.next().await;
    assert_eq!(ping.header("x-herald-event"), Some("ping"));
    assert_eq!(ping.json()["target"]["repository"], "acme/herald-ping");
    let text = b.page_text().await;
    assert!(
        text.contains("Test event sent to webhook 'deploy': answered 200"),
        "{text}"
    );

    // A webhook to a closed port: its badge turns to failing on the open page, no reload.
    let dead = app
        .enabled_webhook(
            "acme",
            json!({"name": "dead", "url": format!("http://127.0.0.1:{}/", closed_port())}),
        )
        .await;
    let dead_url = app.url(&format!("/namespaces/acme/webhooks/{dead}"));
    b.goto(&dead_url).await;
    assert_eq!(b.text("#health").await, "healthy");
    app.post_envelope(fixture("distribution-2.8.2/push-manifest-tagged.json"))
        .await;
    let health = b
        .wait_for_text("#health", "the failing badge", |t| {
            t.starts_with("failing since")
        })
        .await;
    assert!(health.contains("UTC"), "{health}");
    b.wait_for_text("#deliveries tbody", "the failed delivery", |t| {
        t.contains("failed") && t.to_lowercase().contains("refused")
    })
    .await;

    // The dashboard lists it under "Needs attention".
    b.goto(&app.url("/")).await;
    let attention = b.text("#attention").await;
    assert!(
        attention.contains("dead") && attention.contains("failing"),
        "{attention}"
    );
    assert!(
        !attention.contains("deploy"),
        "healthy webhooks are not listed"
    );
    let shots = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/screenshots");
    b.set_window_size(390, 844).await;
    b.goto(&app.url("/")).await;
    b.screenshot(&shots.join("dashboard-attention-390.png"))
        .await;
    b.goto(&dead_url).await;
    b.screenshot(&shots.join("webhook-page-390.png")).await;
}

#[tokio::test]
async fn no_page_scrolls_sideways_at_390_px() {
    let Some(b) = Browser::start().await else {
        return;
    };
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    owner_setup(&app).await;
    // Long names, URLs and digests on every page: what pushed pages wider before.
    let long_url = rx.url(&format!("/hooks/{}", "very-long-path-segment".repeat(6)));
    let hook = app
        .enabled_webhook(
            "acme",
            json!({"name": "deploy-to-the-staging-cluster", "url": long_url,
                   "headers": {"X-A-Rather-Long-Header-Name": "a-long-header-value-".repeat(5)}}),
        )
        .await;
    let dead = app
        .enabled_webhook(
            "acme",
            json!({"name": "dead", "url": format!("http://127.0.0.1:{}/", closed_port())}),
        )
        .await;
    app.post_envelope(fixture("distribution-2.8.2/push-manifest-tagged.json"))
        .await;
    rx.next().await;
    let delivery = app
        .wait_deliveries("acme", hook, |d| d[0]["state"] == "succeeded")
        .await[0]["id"]
        .clone();
    app.wait_deliveries("acme", dead, |d| d[0]["state"] == "failed")
        .await;

    b.set_window_size(390, 844).await;
    // The admin sees every page, the users and events pages too.
    b.goto(&app.url("/login")).await;
    b.fill("input[name=username]", "admin").await;
    b.fill("input[name=password]", "admin-password").await;
    b.click("form[action='/login'] button").await;
    let webhook = format!("/namespaces/acme/webhooks/{hook}");
    let pages = [
        "/".to_string(),
        "/namespaces/acme".to_string(),
        webhook.clone(),
        format!("{webhook}?state=failed"),
        format!("{webhook}/deliveries/{delivery}"),
        format!("{webhook}/deliveries/{delivery}?view=pretty"),
        format!("/namespaces/acme/webhooks/{dead}"),
        "/teams".to_string(),
        "/teams/web".to_string(),
        "/tokens".to_string(),
        "/activity".to_string(),
        "/users".to_string(),
        "/sources".to_string(),
        "/events".to_string(),
        "/account".to_string(),
    ];
    let mut too_wide = Vec::new();
    for page in &pages {
        b.goto(&app.url(page)).await;
        assert!(
            b.exists("header.top").await,
            "{page}: {}",
            b.page_text().await
        );
        let (scroll, client) = b.scroll_width().await;
        assert!(client <= 390, "the window is {client} px wide");
        if scroll > 390 {
            too_wide.push(format!("{page}: {scroll} px"));
        }
    }
    assert!(too_wide.is_empty(), "pages wider than 390 px: {too_wide:?}");
}
