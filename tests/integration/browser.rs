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
    let webhook_url = b.url().await;

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
    ] {
        assert!(!b.exists(control).await, "a viewer must not see {control}");
    }
    b.goto(&app.url("/namespaces/acme")).await;
    for control in ["#webhooks button", "#new-webhook"] {
        assert!(!b.exists(control).await, "a viewer must not see {control}");
    }
}
