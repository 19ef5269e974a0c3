//! The web UI in a real headless Chromium: an owner sets up a webhook and follows a delivery;
//! a viewer finds no controls they may not use. Screenshots land in test-artifacts/.

use std::time::Duration;

use serde_json::json;

use crate::helpers::*;
use crate::webdriver::{keys, Browser};

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
    assert!(b
        .text("#new-webhook-url-error")
        .await
        .contains("must be http, https, nats, amqp, redis or mqtt"));
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
        "#edit",
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
    // Disabled: its Enable button and "disabled" badge are on the pages too.
    let r = app
        .api(
            "POST",
            "/namespaces/acme/webhooks",
            Some(json!({"name": "paused", "url": rx.url("/paused")})),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
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

/// An app with something on every page: a webhook that succeeds (with a header and a
/// delivery), one whose receiver refuses connections (a failed delivery), a source and a
/// token. Returns the pages an admin can visit, and the receiver.
async fn populated_app() -> (TestApp, Receiver, Vec<String>) {
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    owner_setup(&app).await;
    let hook = app
        .enabled_webhook(
            "acme",
            json!({"name": "deploy", "url": rx.url("/hook"), "headers": {"X-Deploy-Key": "k-1"}}),
        )
        .await;
    let dead = app
        .enabled_webhook(
            "acme",
            json!({"name": "dead", "url": format!("http://127.0.0.1:{}/", closed_port())}),
        )
        .await;
    // Disabled: its Enable button and "disabled" badge are on the pages too.
    let r = app
        .api(
            "POST",
            "/namespaces/acme/webhooks",
            Some(json!({"name": "paused", "url": rx.url("/paused")})),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    app.post_envelope(fixture("distribution-2.8.2/push-manifest-tagged.json"))
        .await;
    rx.next().await;
    let delivery = app
        .wait_deliveries("acme", hook, |d| d[0]["state"] == "succeeded")
        .await[0]["id"]
        .clone();
    let failed = app
        .wait_deliveries("acme", dead, |d| d[0]["state"] == "failed")
        .await[0]["id"]
        .clone();
    let r = app
        .api(
            "POST",
            "/sources",
            Some(json!({"name": "zot1", "kind": "zot", "token": "zot-token-0123456789abcdefghij"})),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    // Read access to a registry that is not there (nothing listens on loopback's port 9):
    // its page shows the access, the problem and the reconcile.
    let r = app
        .api(
            "PATCH",
            "/sources/zot1",
            Some(json!({"registry_url": "http://127.0.0.1:9", "registry_username": "reader", "registry_password": "reader-password"})),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let webhook = format!("/namespaces/acme/webhooks/{hook}");
    let dead_page = format!("/namespaces/acme/webhooks/{dead}");
    let pages = vec![
        "/".to_string(),
        "/namespaces/acme".to_string(),
        webhook.clone(),
        format!("{webhook}?state=failed"),
        format!("{webhook}/deliveries/{delivery}"),
        format!("{webhook}/deliveries/{delivery}?view=pretty"),
        dead_page.clone(),
        format!("{dead_page}/deliveries/{failed}"),
        "/teams".to_string(),
        "/teams/web".to_string(),
        "/tokens".to_string(),
        "/activity".to_string(),
        "/users".to_string(),
        "/sources".to_string(),
        "/events".to_string(),
        "/account".to_string(),
        "/namespaces/nowhere".to_string(),
        format!("{webhook}/edit"),
        "/sources/zot1".to_string(),
        "/sources/default".to_string(),
    ];
    (app, rx, pages)
}

async fn sign_in_admin(b: &Browser, app: &TestApp) {
    b.goto(&app.url("/login")).await;
    b.fill("input[name=username]", "admin").await;
    b.fill("input[name=password]", "admin-password").await;
    b.click("form[action='/login'] button").await;
    assert!(b.exists("header.top").await, "{}", b.page_text().await);
}

#[tokio::test]
async fn axe_finds_nothing_serious_on_any_page_in_either_theme() {
    let Some(b) = Browser::start().await else {
        return;
    };
    let Some(axe) = crate::axe::Axe::load() else {
        return;
    };
    let (app, _rx, pages) = populated_app().await;
    let mut report = Vec::new();
    let mut failures = Vec::new();
    for scheme in ["light", "dark"] {
        b.prefer_color_scheme(scheme).await;

        // Signed out: the sign-in page, and its answer to a wrong password.
        b.goto(&app.url("/login")).await;
        let mut visits: Vec<(String, Vec<crate::axe::Violation>)> = Vec::new();
        visits.push(("/login".into(), axe.in_theme(&b, scheme).await));
        b.fill("input[name=username]", "admin").await;
        b.fill("input[name=password]", "wrong-password").await;
        b.click("form[action='/login'] button").await;
        visits.push(("/login (refused)".into(), axe.in_theme(&b, scheme).await));
        sign_in_admin(&b, &app).await;
        for page in &pages {
            b.goto(&app.url(page)).await;
            visits.push((page.clone(), axe.in_theme(&b, scheme).await));
        }
        // Refused forms: a new webhook with a bad URL, an edit, a header, a member.
        b.goto(&app.url("/namespaces/acme")).await;
        b.fill("#new-webhook input[name=name]", "x").await;
        b.fill("#new-webhook input[name=url]", "ftp://nope").await;
        b.click("#new-webhook button[type=submit]").await;
        visits.push((
            "/namespaces/acme (refused webhook)".into(),
            axe.in_theme(&b, scheme).await,
        ));
        b.goto(&app.url("/namespaces/acme/webhooks/1/edit")).await;
        b.fill("#edit-webhook input[name=url]", "ftp://nope").await;
        b.fill("#edit-webhook input[name=rate_limit]", "fast").await;
        b.click("#edit-webhook button[type=submit]").await;
        visits.push((
            "/namespaces/acme/webhooks/1/edit (refused)".into(),
            axe.in_theme(&b, scheme).await,
        ));
        b.goto(&app.url("/namespaces/acme/webhooks/1")).await;
        b.fill("#add-header input[name=header_name]", "Bad Header")
            .await;
        b.click("#add-header button").await;
        visits.push((
            "/namespaces/acme/webhooks/1 (refused header)".into(),
            axe.in_theme(&b, scheme).await,
        ));
        b.goto(&app.url("/teams/web")).await;
        b.fill("#add-member input[name=username]", "nobody").await;
        b.click("#add-member button").await;
        visits.push((
            "/teams/web (refused member)".into(),
            axe.in_theme(&b, scheme).await,
        ));
        for (page, violations) in visits {
            report.push(format!(
                "{scheme:5} {page}: {}",
                crate::axe::by_impact(&violations)
            ));
            for v in violations.iter().filter(|v| v.fails()) {
                failures.push(format!("{scheme} {page}: {v}"));
            }
            for v in &violations {
                eprintln!("  {scheme} {page}: {v}");
            }
        }
        b.click("form.signout button").await;
    }
    eprintln!("axe-core, violations by impact:\n{}", report.join("\n"));
    assert!(
        failures.is_empty(),
        "serious or critical accessibility violations:\n{}",
        failures.join("\n")
    );
}

/// The webhook page in both themes, for the README (docs/screenshots), and a refused
/// edit in test-artifacts/.
#[tokio::test]
async fn screenshots_of_both_themes() {
    let Some(b) = Browser::start().await else {
        return;
    };
    let (app, _rx, _) = populated_app().await;
    sign_in_admin(&b, &app).await;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    b.set_window_size(1280, 900).await;
    for scheme in ["light", "dark"] {
        b.prefer_color_scheme(scheme).await;
        b.goto(&app.url("/namespaces/acme/webhooks/1")).await;
        b.screenshot(&root.join(format!("docs/screenshots/webhook-{scheme}.png")))
            .await;
        b.goto(&app.url("/namespaces/acme/webhooks/1/edit")).await;
        b.fill("#edit-webhook input[name=url]", "ftp://nope").await;
        b.fill("#edit-webhook input[name=rate_limit]", "fast").await;
        b.click("#edit-webhook button[type=submit]").await;
        b.screenshot(&root.join(format!("test-artifacts/{scheme}-refused-edit.png")))
            .await;
    }
}

/// Olga signed in, on the namespace page with a webhook form refused for its URL.
#[tokio::test]
async fn a_refused_form_takes_focus_names_its_fields_and_a_reload_sends_nothing() {
    let Some(b) = Browser::start().await else {
        return;
    };
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    owner_setup(&app).await;
    sign_in(&b, &app, "olga").await;
    b.goto(&app.url("/namespaces/acme")).await;
    let plain_title = b.title().await;
    assert_eq!(
        plain_title, "Namespace acme · Herald",
        "titles carry context"
    );
    b.fill("#new-webhook input[name=name]", "deploy").await;
    b.fill("#new-webhook input[name=url]", "ftp://registry.example.org")
        .await;
    b.click("#new-webhook button[type=submit]").await;

    // The summary has focus, the title says so, the address is the page's own.
    assert!(
        b.focused_is("#error-summary").await,
        "focus is on {}",
        b.focused().await
    );
    assert_eq!(b.title().await, format!("Error: {plain_title}"));
    assert_eq!(b.url().await, app.url("/namespaces/acme"));
    let summary = b.text("#error-summary").await;
    assert!(
        summary.contains("URL: the URL scheme must be http, https, nats, amqp, redis or mqtt"),
        "{summary}"
    );
    // The field: invalid, described by its message, which is not part of its name.
    let field = b
        .execute(
            "const i = document.getElementById('new-webhook-url');
             const m = document.getElementById(i.getAttribute('aria-describedby'));
             return [i.getAttribute('aria-invalid'), m ? m.textContent : null,
                     m ? !!m.closest('label') : null]",
        )
        .await;
    assert_eq!(field[0], "true");
    assert!(field[1]
        .as_str()
        .unwrap_or_default()
        .contains("must be http, https, nats, amqp, redis or mqtt"));
    assert_eq!(field[2], false, "the message is outside the label");
    let url_field = b.find("#new-webhook-url").await;
    assert_eq!(b.computed_label(&url_field).await, "URL");
    assert_eq!(b.value("#new-webhook-name").await, "deploy", "input kept");

    // The summary's link leads to the field, by keyboard.
    b.press(&[keys::TAB]).await;
    assert!(
        b.focused_is("#error-summary a").await,
        "{}",
        b.focused().await
    );
    b.press(&[keys::ENTER]).await;
    eventually(Duration::from_secs(5), "focus on the URL field", || async {
        b.focused_is("#new-webhook-url").await
    })
    .await;

    // A reload asks for the page: no form is sent again, so no problem is shown.
    b.refresh().await;
    assert!(!b.exists("#error-summary").await, "the form was sent again");
    assert_eq!(b.title().await, plain_title);

    // A refused form further down its page: the page is at the form, its summary in view.
    let hook = app
        .enabled_webhook("acme", json!({"name": "ci", "url": rx.url("/ci")}))
        .await;
    let webhook_url = app.url(&format!("/namespaces/acme/webhooks/{hook}"));
    b.goto(&webhook_url).await;
    b.fill("#add-header input[name=header_name]", "Bad Header")
        .await;
    b.click("#add-header button").await;
    assert!(
        b.focused_is("#error-summary").await,
        "{}",
        b.focused().await
    );
    assert_eq!(b.url().await, webhook_url);
    let in_view = b
        .execute(
            "const r = document.getElementById('error-summary').getBoundingClientRect();
             return r.top >= 0 && r.bottom <= window.innerHeight",
        )
        .await;
    assert_eq!(in_view, true, "the refused form's summary is in view");
    assert!(b.title().await.starts_with("Error: Webhook ci in acme"));

    // The edit form is a page of its own: refused there, saved with a redirect.
    b.goto(&format!("{webhook_url}/edit")).await;
    b.fill("#edit-webhook input[name=url]", "ftp://nope").await;
    b.click("#edit-webhook button[type=submit]").await;
    assert!(b.focused_is("#error-summary").await);
    assert_eq!(b.url().await, format!("{webhook_url}/edit"));
    assert_eq!(
        b.execute(
            "return document.getElementById('edit-webhook-url').getAttribute('aria-invalid')"
        )
        .await,
        "true"
    );
    b.fill("#edit-webhook input[name=url]", &rx.url("/ci2"))
        .await;
    b.click("#edit-webhook button[type=submit]").await;
    assert_eq!(b.url().await, webhook_url, "redirected after success");
    assert!(b.page_text().await.contains("Webhook 'ci' saved"));
}

/// Sign in, create a namespace and a webhook, fix a refused form and retrigger a delivery
/// with Tab and Enter only.
#[tokio::test]
async fn the_main_flows_work_with_the_keyboard_alone() {
    let Some(b) = Browser::start().await else {
        return;
    };
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    owner_setup(&app).await;

    b.goto(&app.url("/login")).await;
    assert!(
        b.focused_is("input[name=username]").await,
        "{}",
        b.focused().await
    );
    b.press(&["olga", keys::TAB, "password-1"]).await;
    b.press_and_load(&[keys::ENTER]).await;
    assert!(b.exists("header.top").await, "{}", b.page_text().await);

    // A namespace of team web.
    b.tab_to("#new-namespace-name", 60).await;
    b.press(&["shop"]).await;
    b.press_and_load(&[keys::ENTER]).await;
    assert_eq!(b.url().await, app.url("/namespaces/shop"));
    assert!(b.page_text().await.contains("Namespace 'shop' created"));

    // A webhook, refused first for its URL; the summary leads back to the field.
    b.tab_to("#new-webhook-name", 80).await;
    b.press(&["deploy", keys::TAB]).await;
    assert!(
        b.focused_is("#new-webhook-url").await,
        "{}",
        b.focused().await
    );
    b.press(&["ftp://nope"]).await;
    b.press_and_load(&[keys::ENTER]).await;
    assert!(
        b.focused_is("#error-summary").await,
        "{}",
        b.focused().await
    );
    b.press(&[keys::TAB, keys::ENTER]).await;
    eventually(Duration::from_secs(5), "focus on the URL field", || async {
        b.focused_is("#new-webhook-url").await
    })
    .await;
    b.chord(keys::CONTROL, "a").await;
    b.press(&[&rx.url("/hook")]).await;
    b.press_and_load(&[keys::ENTER]).await;
    let text = b.page_text().await;
    assert!(text.contains("Webhook 'deploy' created"), "{text}");

    // Enable it.
    b.tab_to("#toggle", 80).await;
    b.press_and_load(&[keys::ENTER]).await;
    assert!(b
        .page_text()
        .await
        .contains("Webhook 'deploy' is now enabled"));

    // A delivery fails; retrigger it from the webhook's page.
    rx.answer(500);
    let push = String::from_utf8(fixture("distribution-2.8.2/push-manifest-tagged.json"))
        .unwrap()
        .replace("acme/", "shop/");
    app.post_envelope(push.into_bytes()).await;
    let hook = app.api("GET", "/namespaces/shop/webhooks", None).await.body["items"][0]["id"]
        .as_i64()
        .unwrap();
    app.wait_deliveries("shop", hook, |d| d[0]["state"] == "failed")
        .await;
    while rx.next_within(Duration::from_millis(300)).await.is_some() {}
    rx.answer(200);
    b.refresh().await;
    b.tab_to("#deliveries button", 120).await;
    b.press_and_load(&[keys::ENTER]).await;
    let text = b.page_text().await;
    assert!(text.contains("retriggered: answered 200"), "{text}");
    assert_eq!(rx.next().await.header("x-herald-event"), Some("push"));
}

/// The live parts announce a change of state, once, and never a clock tick.
#[tokio::test]
async fn live_regions_announce_a_change_of_state_and_nothing_else() {
    let Some(b) = Browser::start().await else {
        return;
    };
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    owner_setup(&app).await;
    let hook = app
        .enabled_webhook("acme", json!({"name": "deploy", "url": rx.url("/hook")}))
        .await;
    app.post_envelope(fixture("distribution-2.8.2/push-manifest-tagged.json"))
        .await;
    rx.next().await;
    app.wait_deliveries("acme", hook, |d| d[0]["state"] == "succeeded")
        .await;
    sign_in(&b, &app, "olga").await;
    b.goto(&app.url(&format!("/namespaces/acme/webhooks/{hook}")))
        .await;
    // Record what every live region says, and every change to the health section.
    b.execute(
        "window.heard = []; window.healthChanges = 0;
         for (const el of document.querySelectorAll('[aria-live], [role=status], [role=alert], [role=log]')) {
           new MutationObserver(() => window.heard.push((el.id || el.tagName) + ': ' + el.textContent.trim()))
             .observe(el, {childList: true, subtree: true, characterData: true});
         }
         new MutationObserver(() => window.healthChanges++)
           .observe(document.getElementById('live-health'), {childList: true, subtree: true, characterData: true});
         return true",
    )
    .await;
    assert_eq!(
        b.execute(
            "return document.querySelectorAll('[aria-live] time, [role=status] time').length"
        )
        .await,
        0,
        "no clock inside a live region"
    );
    // Two refreshes of the live parts, with the "last attempt" seconds ticking by.
    assert_stays(
        Duration::from_secs(5),
        "silence while nothing changes",
        || async {
            let v = b
                .execute("return [window.heard.length, window.healthChanges]")
                .await;
            v[0] == 0 && v[1] == 0
        },
    )
    .await;

    // The receiver dies: the health turns to failing, which is announced once.
    rx.answer(500);
    app.post_envelope(
        String::from_utf8(fixture("distribution-2.8.2/push-manifest-tagged.json"))
            .unwrap()
            .replace("2045f19c-7a89-451b-8ea6-bfb7cac6a943", "second-event")
            .into_bytes(),
    )
    .await;
    b.wait_for_text("#health", "the failing badge", |t| t.starts_with("failing"))
        .await;
    let heard = eventually(Duration::from_secs(10), "the announcement", || async {
        let v = b.execute("return window.heard").await;
        let heard: Vec<String> = v
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        heard
            .iter()
            .any(|h| h.contains("is failing"))
            .then_some(heard)
    })
    .await;
    for h in &heard {
        assert!(
            h.starts_with("announcer: Webhook deploy is "),
            "only the announcer speaks, and only of the state: {heard:?}"
        );
    }
    assert!(
        heard.windows(2).all(|w| w[0] != w[1]),
        "each state once: {heard:?}"
    );
    let before = heard.len();
    assert_stays(
        Duration::from_secs(3),
        "no repeats while failing",
        || async { b.execute("return window.heard.length").await == before },
    )
    .await;
}

/// At 1280 px no word of a heading, cell, badge or button breaks across lines; only URLs,
/// digests, tokens and code may.
#[tokio::test]
async fn words_break_only_inside_urls_digests_and_code_at_1280_px() {
    let Some(b) = Browser::start().await else {
        return;
    };
    let (app, _rx, pages) = populated_app().await;
    sign_in_admin(&b, &app).await;
    b.set_window_size(1280, 900).await;
    let script = "
        const skip = 'code, pre, .url, .digest, .token, svg, script, style, textarea, input, select, .sr';
        const broken = [];
        const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
        while (walker.nextNode()) {
          const node = walker.currentNode, el = node.parentElement;
          if (!el || el.closest(skip) || !el.getClientRects().length) continue;
          const words = /[^\\s\\-\\/·,;:]+/g;
          let m;
          while ((m = words.exec(node.textContent))) {
            if (m[0].length < 2) continue;
            const r = document.createRange();
            r.setStart(node, m.index);
            r.setEnd(node, m.index + m[0].length);
            const lines = new Set([...r.getClientRects()].filter(x => x.width > 0).map(x => Math.round(x.top)));
            if (lines.size > 1) broken.push(m[0] + ' (' + el.tagName.toLowerCase() + (el.className ? '.' + el.className : '') + ')');
          }
        }
        return broken";
    let mut found = Vec::new();
    for page in &pages {
        b.goto(&app.url(page)).await;
        let broken = b.execute(script).await;
        if broken.as_array().is_some_and(|a| !a.is_empty()) {
            found.push(format!("{page}: {broken}"));
        }
    }
    assert!(
        found.is_empty(),
        "words broken mid-word:\n{}",
        found.join("\n")
    );
}

/// Every button says what it acts on (no two alike on a page), and every page's title names
/// what it shows.
#[tokio::test]
async fn every_row_action_names_its_row_and_titles_carry_context() {
    let Some(b) = Browser::start().await else {
        return;
    };
    let (app, _rx, pages) = populated_app().await;
    app.api(
        "PUT",
        "/teams/web/members/admin",
        Some(json!({"role": "owner"})),
    )
    .await;
    let r = app
        .api("POST", "/tokens", Some(json!({"label": "laptop"})))
        .await;
    assert!(r.status < 300, "{:?}", r.body);
    sign_in_admin(&b, &app).await;
    let mut duplicates = Vec::new();
    for page in &pages {
        b.goto(&app.url(page)).await;
        let mut seen = std::collections::BTreeMap::<String, usize>::new();
        for button in b.find_all("main button").await {
            *seen.entry(b.computed_label(&button).await).or_default() += 1;
        }
        for (name, n) in seen.iter().filter(|(_, n)| **n > 1) {
            duplicates.push(format!("{page}: {n} buttons named {name:?}"));
        }
    }
    assert!(duplicates.is_empty(), "{}", duplicates.join("\n"));
    b.goto(&app.url("/namespaces/acme")).await;
    let delete = b.find("tr[data-webhook=deploy] button.danger").await;
    assert_eq!(b.computed_label(&delete).await, "Delete webhook deploy");

    for (page, title) in [
        ("/namespaces/acme", "Namespace acme · Herald"),
        (
            "/namespaces/acme/webhooks/1",
            "Webhook deploy in acme · Herald",
        ),
        (
            "/namespaces/acme/webhooks/1/deliveries/1",
            "Delivery #1 of webhook deploy in acme · Herald",
        ),
        (
            "/namespaces/acme/webhooks/1/edit",
            "Edit webhook deploy in acme · Herald",
        ),
        ("/sources/zot1", "Source zot1 · Herald"),
    ] {
        b.goto(&app.url(page)).await;
        assert_eq!(b.title().await, title);
    }
}

/// The contrast of what is not text: form fields' borders and the chart's marks reach 3:1
/// against what they sit on, in both themes and in forced colours; the chart has one
/// legend, marks that differ in shape, and its numbers as a table.
#[tokio::test]
async fn fields_and_the_chart_reach_3_to_1_in_every_theme() {
    let Some(b) = Browser::start().await else {
        return;
    };
    let (app, _rx, _) = populated_app().await;
    sign_in_admin(&b, &app).await;
    let script = "
        const rgb = s => (s.match(/[\\d.]+/g) || []).map(Number);
        const lin = c => { c /= 255; return c <= 0.03928 ? c / 12.92 : Math.pow((c + 0.055) / 1.055, 2.4); };
        const lum = ([r, g, b]) => 0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b);
        const ratio = (a, b) => { const [x, y] = [lum(a), lum(b)].sort((p, q) => q - p); return (x + 0.05) / (y + 0.05); };
        const under = el => {
          for (let e = el.parentElement; e; e = e.parentElement) {
            const c = rgb(getComputedStyle(e).backgroundColor);
            if (c.length === 3 || (c.length === 4 && c[3] > 0)) return c;
          }
          return [255, 255, 255];
        };
        const low = [];
        const check = (what, el, colour) => {
          const r = ratio(rgb(colour), under(el));
          if (!(r >= 3)) low.push(what + ' ' + colour + ' on ' + under(el) + ': ' + r.toFixed(2));
        };
        for (const f of document.querySelectorAll('main input:not([type=hidden]):not([type=checkbox]), main select, main textarea')) {
          check('border of ' + (f.name || f.tagName), f, getComputedStyle(f).borderTopColor);
        }
        const svg = document.querySelector('svg.chart');
        if (!svg) return ['no chart'];
        const mark = css => svg.querySelector(css);
        check('succeeded bars', svg, getComputedStyle(mark('rect.bar.ok')).fill);
        check('failed bars', svg, getComputedStyle(mark('pattern .hatch-fill')).fill);
        check('waiting bars', svg, getComputedStyle(mark('rect.bar.waiting')).stroke);
        check('latency line', svg, getComputedStyle(mark('line.latency')).stroke);
        const legends = [...document.querySelectorAll('main *')].filter(e => e.children.length === 0 && e.textContent.trim() === 'mean latency');
        if (legends.length !== 1) low.push('legends: ' + legends.length);
        if (!getComputedStyle(mark('rect.bar.failed')).fill.startsWith('url(')) low.push('failed bars are not hatched');
        if (getComputedStyle(mark('rect.bar.waiting')).strokeDasharray === 'none') low.push('waiting bars are not dashed');
        return low";
    let page = app.url("/namespaces/acme/webhooks/2");
    for (scheme, forced) in [("light", false), ("dark", false), ("light", true)] {
        b.emulate_media(scheme, forced).await;
        b.goto(&page).await;
        let low = b.execute(script).await;
        assert_eq!(low, json!([]), "{scheme}, forced colours {forced}");
    }
    // A failed delivery on that page: its numbers are in the chart's table.
    let numbers = b
        .execute("return document.querySelector('#chart-numbers table tbody').textContent")
        .await;
    assert!(numbers
        .as_str()
        .is_some_and(|t| t.contains("UTC") || t.contains(":00")));
}
