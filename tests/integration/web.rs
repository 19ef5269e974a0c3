//! The web UI over plain HTTP: sessions, CSRF, throttling, and that the server refuses what
//! a page would not show. (The browser test covers what a person sees.)

use std::time::Duration;

use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use reqwest::redirect::Policy;
use serde_json::json;

use crate::helpers::*;

pub(crate) struct WebClient {
    http: reqwest::Client,
    cookie: String,
}

fn set_cookies(res: &reqwest::Response) -> Vec<String> {
    res.headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect()
}

fn csrf_in(html: &str) -> String {
    let start = html.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    html[start..].split('"').next().unwrap().to_string()
}

async fn try_sign_in(
    app: &TestApp,
    user: &str,
    password: &str,
    extra: &[(&str, &str)],
) -> reqwest::Response {
    let http = reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap();
    let page = http.get(app.url("/login")).send().await.unwrap();
    let cookie = set_cookies(&page)
        .into_iter()
        .find(|c| c.starts_with("herald_login_csrf="))
        .unwrap();
    let cookie = cookie.split(';').next().unwrap().to_string();
    let csrf = csrf_in(&page.text().await.unwrap());
    let mut req = http.post(app.url("/login")).header(COOKIE, cookie).form(&[
        ("username", user),
        ("password", password),
        ("csrf", &csrf),
        ("next", "/"),
    ]);
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap()
}

async fn sign_in(app: &TestApp, user: &str) -> WebClient {
    let res = try_sign_in(app, user, "password-1", &[]).await;
    assert_eq!(res.status(), 303, "sign-in of {user}");
    let cookie = set_cookies(&res)
        .into_iter()
        .find(|c| c.starts_with("herald_session="))
        .unwrap();
    WebClient {
        http: reqwest::Client::builder()
            .redirect(Policy::none())
            .build()
            .unwrap(),
        cookie: cookie.split(';').next().unwrap().to_string(),
    }
}

impl WebClient {
    pub(crate) async fn get(&self, app: &TestApp, path: &str) -> (u16, String) {
        let res = self
            .http
            .get(app.url(path))
            .header(COOKIE, &self.cookie)
            .send()
            .await
            .unwrap();
        (res.status().as_u16(), res.text().await.unwrap())
    }

    pub(crate) async fn post(
        &self,
        app: &TestApp,
        path: &str,
        form: &[(&str, &str)],
    ) -> reqwest::Response {
        self.http
            .post(app.url(path))
            .header(COOKIE, &self.cookie)
            .form(form)
            .send()
            .await
            .unwrap()
    }

    pub(crate) async fn csrf(&self, app: &TestApp) -> String {
        csrf_in(&self.get(app, "/").await.1)
    }
}

async fn team_setup(app: &TestApp) -> i64 {
    let hash = herald::auth::hash_password("password-1").unwrap();
    for name in ["olga", "vera"] {
        app.store
            .create_user(name, &hash, None, false)
            .await
            .unwrap();
    }
    app.api("POST", "/teams", Some(json!({"name": "web"})))
        .await;
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
    app.api(
        "POST",
        "/namespaces",
        Some(json!({"name": "acme", "team": "web"})),
    )
    .await;
    let r = app
        .api(
            "POST",
            "/namespaces/acme/webhooks",
            Some(json!({"name": "deploy", "url": "example.org"})),
        )
        .await;
    r.body["id"].as_i64().unwrap()
}

#[tokio::test]
async fn pages_need_a_session_and_sessions_are_guarded_cookies() {
    let app = spawn_app().await;
    team_setup(&app).await;
    let http = reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap();
    let anonymous = http.get(app.url("/namespaces/acme")).send().await.unwrap();
    assert_eq!(anonymous.status(), 303);
    assert_eq!(
        anonymous.headers()[LOCATION],
        "/login?next=%2Fnamespaces%2Facme"
    );

    let res = try_sign_in(&app, "olga", "password-1", &[]).await;
    let session = set_cookies(&res)
        .into_iter()
        .find(|c| c.starts_with("herald_session="))
        .unwrap();
    assert!(
        session.contains("HttpOnly") && session.contains("SameSite=Lax"),
        "{session}"
    );
    assert!(
        !session.contains("Secure"),
        "plain HTTP cannot carry a Secure cookie"
    );
    let behind_tls = try_sign_in(
        &app,
        "olga",
        "password-1",
        &[("x-forwarded-proto", "https")],
    )
    .await;
    let session = set_cookies(&behind_tls)
        .into_iter()
        .find(|c| c.starts_with("herald_session="))
        .unwrap();
    assert!(session.contains("Secure"), "{session}");

    let olga = sign_in(&app, "olga").await;
    // A webhook with a header, enabled, with one delivery: every page has something to show.
    let hook = app.api("GET", "/namespaces/acme/webhooks", None).await.body["items"][0]["id"]
        .as_i64()
        .unwrap();
    let base = format!("/namespaces/acme/webhooks/{hook}");
    app.api(
        "PUT",
        &format!("{base}/headers/X-Key"),
        Some(json!({"value": "v"})),
    )
    .await;
    app.api(
        "PATCH",
        &base,
        Some(json!({"enabled": true, "url": "http://127.0.0.1:9/"})),
    )
    .await;
    app.post_envelope(fixture("distribution-2.8.2/push-manifest-tagged.json"))
        .await;
    let delivery = app
        .wait_deliveries("acme", hook, |d| d[0]["attempt_count"].as_i64() >= Some(1))
        .await[0]["id"]
        .clone();
    let webhook_page = base.clone();
    let delivery_page = format!("{base}/deliveries/{delivery}");
    for page in [
        "/",
        "/namespaces/acme",
        &webhook_page,
        &delivery_page,
        "/teams",
        "/teams/web",
        "/tokens",
        "/activity",
    ] {
        let (status, html) = olga.get(&app, page).await;
        assert_eq!(status, 200, "{page}: {html}");
        assert!(html.contains("olga"), "{page} shows who is signed in");
    }
    assert_eq!(
        olga.get(&app, "/users").await.0,
        403,
        "only admins manage users"
    );
    assert_eq!(olga.get(&app, "/namespaces/_global").await.0, 404);
}

#[tokio::test]
async fn forms_without_the_csrf_token_or_permission_are_refused() {
    let app = spawn_app().await;
    let hook = team_setup(&app).await;
    let toggle = format!("/namespaces/acme/webhooks/{hook}/toggle");
    let olga = sign_in(&app, "olga").await;
    let forged = olga.post(&app, &toggle, &[("enabled", "true")]).await;
    assert_eq!(forged.status(), 403);
    assert!(forged.text().await.unwrap().contains("CSRF"));
    let wrong = olga
        .post(&app, &toggle, &[("enabled", "true"), ("csrf", "guess")])
        .await;
    assert_eq!(wrong.status(), 403);

    let vera = sign_in(&app, "vera").await;
    let csrf = vera.csrf(&app).await;
    let refused = vera
        .post(&app, &toggle, &[("enabled", "true"), ("csrf", &csrf)])
        .await;
    assert_eq!(
        refused.status(),
        403,
        "the server refuses what the page does not show"
    );
    let refused = vera
        .post(
            &app,
            &format!("/namespaces/acme/webhooks/{hook}/headers"),
            &[
                ("header_name", "X-A"),
                ("header_value", "1"),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(refused.status(), 403);
    assert_eq!(
        vera.get(&app, &format!("/namespaces/acme/webhooks/{hook}/edit"))
            .await
            .0,
        403,
        "a viewer gets no edit page"
    );
    let hook_now = app
        .api("GET", &format!("/namespaces/acme/webhooks/{hook}"), None)
        .await;
    assert_eq!(hook_now.body["enabled"], false);
    assert_eq!(hook_now.body["headers"], json!({}));

    let csrf = olga.csrf(&app).await;
    let ok = olga
        .post(&app, &toggle, &[("enabled", "true"), ("csrf", &csrf)])
        .await;
    assert_eq!(ok.status(), 303);
    let flash = set_cookies(&ok)
        .into_iter()
        .find(|c| c.starts_with("herald_flash="))
        .unwrap();
    assert!(
        flash.contains("Webhook%20%27deploy%27%20is%20now%20enabled")
            || flash.contains("Webhook+%27deploy%27+is+now+enabled"),
        "{flash}"
    );
    assert_eq!(
        app.api("GET", &format!("/namespaces/acme/webhooks/{hook}"), None)
            .await
            .body["enabled"],
        true
    );
}

#[tokio::test]
async fn repeated_failed_sign_ins_are_slowed_down() {
    let app = spawn_app().await;
    team_setup(&app).await;
    for _ in 0..3 {
        assert_eq!(
            try_sign_in(&app, "olga", "wrong-password", &[])
                .await
                .status(),
            401
        );
    }
    let res = try_sign_in(&app, "olga", "password-1", &[]).await;
    assert_eq!(
        res.status(),
        429,
        "even the right password waits after three failures"
    );
    assert!(res.text().await.unwrap().contains("try again in"));
    assert_eq!(
        try_sign_in(&app, "vera", "password-1", &[]).await.status(),
        303,
        "other users are not affected"
    );
}

#[tokio::test]
async fn parallel_failed_sign_ins_cannot_all_pass_the_throttle() {
    let app = std::sync::Arc::new(spawn_app().await);
    team_setup(&app).await;
    let checks = app.state.password_gate.completed();
    let mut tries = tokio::task::JoinSet::new();
    for _ in 0..30 {
        let app = app.clone();
        tries.spawn(async move {
            try_sign_in(&app, "olga", "wrong-password", &[])
                .await
                .status()
                .as_u16()
        });
    }
    let statuses = tries.join_all().await;
    let count = |s: u16| statuses.iter().filter(|x| **x == s).count();
    assert!(
        statuses.iter().all(|s| matches!(s, 401 | 429 | 503)),
        "{statuses:?}"
    );
    assert!(
        count(401) <= herald::auth::throttle::USER_FREE_FAILURES as usize,
        "only the first three tries may check the password: {statuses:?}"
    );
    assert!(count(429) >= 1, "{statuses:?}");
    assert!(
        app.state.password_gate.completed() - checks <= 3,
        "throttled tries check no password"
    );
    assert_eq!(
        try_sign_in(&app, "vera", "password-1", &[]).await.status(),
        303,
        "another user from the same address may still sign in"
    );
}

#[tokio::test]
async fn the_api_and_the_ui_share_one_sign_in_throttle() {
    let app = spawn_app().await;
    team_setup(&app).await;
    for _ in 0..3 {
        let res = app
            .client
            .post(app.url("/api/v1/tokens"))
            .basic_auth("olga", Some("wrong-password"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401);
    }
    let res = try_sign_in(&app, "olga", "password-1", &[]).await;
    assert_eq!(
        res.status(),
        429,
        "failures through the API count in the UI"
    );
    assert!(res.headers().contains_key("retry-after"));
    assert!(res
        .text()
        .await
        .unwrap()
        .contains("Too many failed sign-ins for this user; try again in"));
}

#[tokio::test]
async fn a_disabled_user_sees_the_same_sign_in_error_whatever_the_password() {
    let app = spawn_app().await;
    team_setup(&app).await;
    let r = app
        .api("PATCH", "/users/vera", Some(json!({"disabled": true})))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let mut answers = Vec::new();
    for password in ["wrong-password", "password-1"] {
        let res = try_sign_in(&app, "vera", password, &[]).await;
        let status = res.status().as_u16();
        // Each form carries a fresh CSRF token; everything else must be the same.
        let html = res.text().await.unwrap();
        let csrf = csrf_in(&html);
        answers.push((status, html.replace(&csrf, "CSRF")));
    }
    assert_eq!(answers[0].0, 401);
    assert_eq!(answers[0], answers[1]);
}

#[tokio::test]
async fn a_token_made_in_the_browser_is_shown_once_and_works() {
    let app = spawn_app().await;
    team_setup(&app).await;
    let olga = sign_in(&app, "olga").await;
    let csrf = olga.csrf(&app).await;
    let res = olga
        .post(&app, "/tokens", &[("label", "laptop"), ("csrf", &csrf)])
        .await;
    assert_eq!(res.status(), 201);
    let html = res.text().await.unwrap();
    let start = html.find("id=\"new-token\" class=\"token\">").unwrap() + 29;
    let token = html[start..].split('<').next().unwrap();
    assert!(token.starts_with("hrld_"));
    let me = app.call("GET", "/api/v1/users/me", None, Some(token)).await;
    assert_eq!(me.body["username"], "olga");
    let (_, list) = olga.get(&app, "/tokens").await;
    assert!(
        list.contains("laptop") && !list.contains(token),
        "listed, never shown again"
    );
}

#[tokio::test]
async fn the_users_page_checks_new_accounts_like_the_api() {
    let app = spawn_app().await;
    let res = try_sign_in(&app, "admin", "admin-password", &[]).await;
    let cookie = set_cookies(&res)
        .into_iter()
        .find(|c| c.starts_with("herald_session="))
        .unwrap();
    let admin = WebClient {
        http: reqwest::Client::builder()
            .redirect(Policy::none())
            .build()
            .unwrap(),
        cookie: cookie.split(';').next().unwrap().to_string(),
    };
    let csrf = admin.csrf(&app).await;
    let form = [
        ("username", "eve"),
        ("password", "long-enough-pw"),
        ("email", "not an email"),
        ("csrf", csrf.as_str()),
    ];
    let res = admin.post(&app, "/users", &form).await;
    assert_eq!(res.status(), 422);
    assert!(res
        .text()
        .await
        .unwrap()
        .contains("is not an email address"));
    assert!(
        app.store.user_credentials("eve").await.unwrap().is_none(),
        "nothing stored"
    );
    let form = [
        ("username", "eve"),
        ("password", "long-enough-pw"),
        ("email", "eve@example.org"),
        ("csrf", csrf.as_str()),
    ];
    assert_eq!(admin.post(&app, "/users", &form).await.status(), 303);
    let taken = admin.post(&app, "/users", &form).await;
    assert_eq!(taken.status(), 409);
    assert!(taken.text().await.unwrap().contains("already exists"));
}

/// The UI's header form keeps to the same limits as the API.
#[tokio::test]
async fn the_header_form_refuses_a_51st_header_like_the_api() {
    let app = spawn_app().await;
    let hook = team_setup(&app).await;
    let headers: serde_json::Map<String, serde_json::Value> =
        (0..50).map(|i| (format!("X-H{i}"), json!("v"))).collect();
    let r = app
        .api(
            "PATCH",
            &format!("/namespaces/acme/webhooks/{hook}"),
            Some(json!({ "headers": headers })),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let olga = sign_in(&app, "olga").await;
    let form = format!("/namespaces/acme/webhooks/{hook}/headers");
    let csrf = olga.csrf(&app).await;
    let refused = olga
        .post(
            &app,
            &form,
            &[
                ("header_name", "X-New"),
                ("header_value", "1"),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(refused.status(), 422);
    assert!(refused
        .text()
        .await
        .unwrap()
        .contains("at most 50 custom headers"));
    let long_name = format!("X-{}", "n".repeat(255));
    let refused = olga
        .post(
            &app,
            &form,
            &[
                ("header_name", &long_name),
                ("header_value", "1"),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(refused.status(), 422);
    assert!(refused.text().await.unwrap().contains("at most 256 bytes"));
    let replaced = olga
        .post(
            &app,
            &form,
            &[
                ("header_name", "X-H3"),
                ("header_value", "2"),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(replaced.status(), 303, "replacing one is not adding one");
    let now = app
        .api("GET", &format!("/namespaces/acme/webhooks/{hook}"), None)
        .await;
    assert_eq!(now.body["headers"].as_object().unwrap().len(), 50);
    assert_eq!(now.body["headers"]["X-H3"], "2");
}

pub(crate) async fn sign_in_as(app: &TestApp, user: &str, password: &str) -> WebClient {
    let res = try_sign_in(app, user, password, &[]).await;
    assert_eq!(res.status(), 303, "sign-in of {user}");
    let cookie = set_cookies(&res)
        .into_iter()
        .find(|c| c.starts_with("herald_session="))
        .unwrap();
    WebClient {
        http: reqwest::Client::builder()
            .redirect(Policy::none())
            .build()
            .unwrap(),
        cookie: cookie.split(';').next().unwrap().to_string(),
    }
}

/// The message a redirect carries for the next page, decoded.
pub(crate) fn flash_of(res: &reqwest::Response) -> String {
    let cookie = set_cookies(res)
        .into_iter()
        .find(|c| c.starts_with("herald_flash="))
        .unwrap_or_default();
    let value = cookie
        .trim_start_matches("herald_flash=")
        .split(';')
        .next()
        .unwrap_or_default()
        .to_string();
    url::form_urlencoded::parse(format!("v={value}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// The UI refuses what the API refuses, with the same words: both call the same use case.
#[tokio::test]
async fn the_ui_refuses_what_the_api_refuses_through_the_same_rules() {
    let app = spawn_app().await;
    team_setup(&app).await;
    let olga = sign_in(&app, "olga").await;
    let csrf = olga.csrf(&app).await;
    let long = "d".repeat(1001);

    let ui = olga
        .post(
            &app,
            "/namespaces",
            &[
                ("name", "shop"),
                ("team", "web"),
                ("description", &long),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(ui.status(), 422);
    let html = ui.text().await.unwrap();
    let api = app
        .api(
            "POST",
            "/namespaces",
            Some(json!({"name": "shop", "team": "web", "description": long})),
        )
        .await;
    assert_eq!(api.status, 422);
    assert_eq!(api.body["error"]["field"], "description");
    let message = api.body["error"]["message"].as_str().unwrap();
    assert!(
        html.contains(
            "id=\"new-namespace-description-error\"><span class=\"sr\">Error: </span>\
             a description has at most 1000 characters"
        ),
        "the UI shows the API's message next to the field: {html}"
    );
    assert!(
        html.contains(
            "id=\"new-namespace-description\" aria-invalid=\"true\" \
             aria-describedby=\"new-namespace-description-error\""
        ),
        "the field is marked invalid and described by its message"
    );
    assert_eq!(message, "a description has at most 1000 characters");
    assert!(html.contains(&long), "the input is kept");

    let ui = olga
        .post(&app, "/teams", &[("name", "Bad Name"), ("csrf", &csrf)])
        .await;
    assert_eq!(ui.status(), 422);
    let html = ui.text().await.unwrap();
    let api = app
        .api("POST", "/teams", Some(json!({"name": "Bad Name"})))
        .await;
    assert_eq!(api.status, 422);
    let message = api.body["error"]["message"].as_str().unwrap();
    assert!(
        html.contains(&message.replace('\'', "&#x27;")) || html.contains(message),
        "{message} not in the page"
    );
    assert!(
        app.store.get_team("bad-name").await.is_err(),
        "nothing stored"
    );
}

#[tokio::test]
async fn the_webhook_page_shows_the_secret_once_rotates_pings_and_recovers() {
    let app = spawn_app().await;
    team_setup(&app).await;
    let rx = Receiver::start().await;
    let olga = sign_in(&app, "olga").await;
    let csrf = olga.csrf(&app).await;

    // Create with filters and a format: the create form has them too.
    let res = olga
        .post(
            &app,
            "/namespaces/acme/webhooks",
            &[
                ("name", "ci"),
                ("url", &rx.url("/ci")),
                ("request_method", "POST"),
                ("filters_present", "1"),
                ("action_push", "1"),
                ("tags", "1.*"),
                ("format", "registry-envelope"),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(res.status(), 201);
    let html = res.text().await.unwrap();
    let start = html.find("id=\"signing-secret\" class=\"token\">").unwrap() + 34;
    let secret = html[start..].split('<').next().unwrap().to_string();
    assert!(secret.starts_with("whsec_"), "{secret}");
    let hooks = app.api("GET", "/namespaces/acme/webhooks", None).await;
    let made = hooks.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["name"] == "ci")
        .unwrap()
        .clone();
    assert_eq!(made["filters"]["tags"], json!(["1.*"]));
    assert_eq!(made["filters"]["actions"], json!(["push"]));
    assert_eq!(made["format"], "registry-envelope");
    let id = made["id"].as_i64().unwrap();
    let base = format!("/namespaces/acme/webhooks/{id}");
    let (_, again) = olga.get(&app, &base).await;
    assert!(!again.contains(&secret) && !again.contains("id=\"signing-secret\""));

    // Rotation: a new secret once, then the API's 409 in words.
    let res = olga
        .post(&app, &format!("{base}/rotate-secret"), &[("csrf", &csrf)])
        .await;
    assert_eq!(res.status(), 201);
    let html = res.text().await.unwrap();
    let start = html.find("id=\"signing-secret\" class=\"token\">").unwrap() + 34;
    let rotated = html[start..].split('<').next().unwrap().to_string();
    assert!(rotated.starts_with("whsec_") && rotated != secret);
    assert!(html.contains("signed with both the new and the previous secret"));
    let res = olga
        .post(&app, &format!("{base}/rotate-secret"), &[("csrf", &csrf)])
        .await;
    assert_eq!(res.status(), 303);
    let flash = flash_of(&res);
    let api = app
        .api("POST", &format!("{base}/rotate-secret"), None)
        .await;
    assert_eq!(api.status, 409);
    let api_message = api.body["error"]["message"].as_str().unwrap();
    assert_eq!(flash, format!("error:Not rotated: {api_message}"));

    // Ping: the receiver gets it and the answer leads to its delivery.
    let res = olga
        .post(&app, &format!("{base}/ping"), &[("csrf", &csrf)])
        .await;
    assert_eq!(res.status(), 303);
    let ping = rx.next().await;
    assert_eq!(ping.header("x-herald-event"), Some("ping"));
    assert!(res.headers()[LOCATION]
        .to_str()
        .unwrap()
        .starts_with(&format!("{base}/deliveries/")));
    assert!(
        flash_of(&res).contains("answered 200"),
        "{}",
        flash_of(&res)
    );

    // Recover: a failed delivery is queued again from the datetime-local form.
    rx.answer(500);
    app.api("PATCH", &base, Some(json!({"enabled": true})))
        .await;
    app.post_envelope(fixture("distribution-2.8.2/push-manifest-tagged.json"))
        .await;
    app.wait_deliveries("acme", id, |d| d[0]["state"] == "failed")
        .await;
    let (_, failed_only) = olga.get(&app, &format!("{base}?state=failed")).await;
    assert!(failed_only.contains("data-state=\"failed\""));
    assert!(
        !failed_only.contains("data-state=\"succeeded\""),
        "the ping's delivery is filtered out"
    );
    assert!(
        failed_only.contains("the receiver answered 500"),
        "the last error is shown"
    );
    while rx
        .next_within(std::time::Duration::from_millis(300))
        .await
        .is_some()
    {}
    rx.answer(200);
    let since = (chrono::Utc::now() - chrono::Duration::hours(1))
        .format("%Y-%m-%dT%H:%M")
        .to_string();
    let res = olga
        .post(
            &app,
            &format!("{base}/recover"),
            &[("since", &since), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(res.status(), 303);
    assert_eq!(
        flash_of(&res),
        "success:1 failed deliveries of webhook 'ci' are queued again"
    );
    rx.next().await;
    app.wait_deliveries("acme", id, |d| d[0]["state"] == "succeeded")
        .await;

    // A viewer may do none of it: the same policy refuses.
    let vera = sign_in(&app, "vera").await;
    let vcsrf = vera.csrf(&app).await;
    for action in ["ping", "rotate-secret", "recover"] {
        let res = vera
            .post(
                &app,
                &format!("{base}/{action}"),
                &[("since", &since), ("csrf", &vcsrf)],
            )
            .await;
        assert_eq!(res.status(), 403, "{action}");
    }
}

#[tokio::test]
async fn passwords_change_with_the_current_one_and_admins_reset_them() {
    let app = spawn_app().await;
    team_setup(&app).await;
    let olga = sign_in(&app, "olga").await;
    let csrf = olga.csrf(&app).await;
    let wrong = olga
        .post(
            &app,
            "/account/password",
            &[
                ("current_password", "not-my-password"),
                ("new_password", "a-new-password"),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(wrong.status(), 422);
    assert!(wrong
        .text()
        .await
        .unwrap()
        .contains("the current password is not right"));
    let short = olga
        .post(
            &app,
            "/account/password",
            &[
                ("current_password", "password-1"),
                ("new_password", "short"),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(short.status(), 422);
    let ok = olga
        .post(
            &app,
            "/account/password",
            &[
                ("current_password", "password-1"),
                ("new_password", "a-new-password"),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(ok.status(), 303);
    assert_eq!(
        try_sign_in(&app, "olga", "password-1", &[]).await.status(),
        401
    );
    sign_in_as(&app, "olga", "a-new-password").await;
    let (hash, _) = (
        app.store.user_credentials("olga").await.unwrap().unwrap().1,
        (),
    );
    assert!(hash.starts_with("$argon2id$"), "hashed, never stored as is");

    // Only admins reset other people's passwords.
    let refused = olga
        .post(
            &app,
            "/users/vera/password",
            &[("new_password", "olgas-choice"), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(refused.status(), 403);
    let admin = sign_in_as(&app, "admin", "admin-password").await;
    let acsrf = admin.csrf(&app).await;
    let reset = admin
        .post(
            &app,
            "/users/vera/password",
            &[("new_password", "reset-by-admin"), ("csrf", &acsrf)],
        )
        .await;
    assert_eq!(reset.status(), 303);
    sign_in_as(&app, "vera", "reset-by-admin").await;
    let forged = admin
        .post(
            &app,
            "/users/vera/password",
            &[("new_password", "x-x-x-x-x-x")],
        )
        .await;
    assert_eq!(forged.status(), 403, "the CSRF token is checked");
}

/// The attention panel lists failing webhooks only from namespaces the user may read.
#[tokio::test]
async fn the_dashboard_lists_failing_webhooks_where_the_user_may_read() {
    let app = spawn_app().await;
    team_setup(&app).await;
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dead_url = format!("http://127.0.0.1:{closed}/");
    app.create_namespace("ops").await;
    let ops = app
        .enabled_webhook("ops", json!({"name": "ops-dead", "url": dead_url}))
        .await;
    let acme = app
        .enabled_webhook("acme", json!({"name": "acme-dead", "url": dead_url}))
        .await;
    app.post_envelope(fixture("distribution-2.8.2/push-manifest-tagged.json"))
        .await;
    let ops_push = String::from_utf8(fixture("distribution-2.8.2/push-manifest-tagged.json"))
        .unwrap()
        .replace("acme/", "ops/")
        .replace("2045f19c-7a89-451b-8ea6-bfb7cac6a943", "ops-event-1");
    app.post_envelope(ops_push.into_bytes()).await;
    app.wait_deliveries("acme", acme, |d| d[0]["state"] == "failed")
        .await;
    app.wait_deliveries("ops", ops, |d| d[0]["state"] == "failed")
        .await;

    let vera = sign_in(&app, "vera").await;
    let (_, html) = vera.get(&app, "/").await;
    assert!(html.contains("id=\"attention\""), "{html}");
    assert!(html.contains("acme-dead"));
    assert!(
        !html.contains("ops-dead"),
        "vera may not read namespace ops"
    );
    let admin = sign_in_as(&app, "admin", "admin-password").await;
    let (_, html) = admin.get(&app, "/").await;
    assert!(html.contains("acme-dead") && html.contains("ops-dead"));
    let (_, list) = vera.get(&app, "/namespaces/acme").await;
    assert!(list.contains("class=\"health failing\""), "{list}");

    // Raw events are for admins, with their status and reason.
    assert_eq!(vera.get(&app, "/events").await.0, 403);
    let (status, events) = admin.get(&app, "/events").await;
    assert_eq!(status, 200);
    assert!(events.contains("accepted"), "{events}");
}

/// The sources page: admins create and delete sources with the API's checks; others are
/// refused, and the link is only in an admin's navigation.
#[tokio::test]
async fn admins_manage_sources_on_the_sources_page_with_the_apis_checks() {
    let app = spawn_app().await;
    let hash = herald::auth::hash_password("password-1").unwrap();
    app.store
        .create_user("olga", &hash, None, false)
        .await
        .unwrap();
    let olga = sign_in(&app, "olga").await;
    assert_eq!(olga.get(&app, "/sources").await.0, 403, "admins only");
    assert!(!olga.get(&app, "/").await.1.contains("href=\"/sources\""));
    let olga_csrf = olga.csrf(&app).await;
    let token = "zot-token-0123456789abcdefghij";
    let form = [
        ("csrf", olga_csrf.as_str()),
        ("name", "zot1"),
        ("kind", "zot"),
        ("token", token),
    ];
    assert_eq!(olga.post(&app, "/sources", &form).await.status(), 403);

    let admin = sign_in_as(&app, "admin", "admin-password").await;
    let (status, html) = admin.get(&app, "/sources").await;
    assert_eq!(status, 200, "{html}");
    assert!(
        html.contains("href=\"/sources\""),
        "in an admin's navigation"
    );
    let csrf = admin.csrf(&app).await;

    // What the API refuses, the form refuses too, next to the field and storing nothing.
    for (name, kind, token, field_text) in [
        ("Bad Name", "zot", token, "is not one"),
        ("default", "zot", token, "choose another name"),
        ("zot1", "quay", token, "kind must be"),
        ("zot1", "zot", "short-token", "a token has 24 to 1024"),
        ("zot1", "zot", "", "give either a token"),
    ] {
        let form = [
            ("csrf", csrf.as_str()),
            ("name", name),
            ("kind", kind),
            ("token", token),
            ("username", ""),
            ("password", ""),
        ];
        let res = admin.post(&app, "/sources", &form).await;
        assert_eq!(res.status(), 422, "{name} {kind} {token}");
        let page = res.text().await.unwrap();
        assert!(page.contains(field_text), "{field_text}: {page}");
        let api = app
            .api(
                "POST",
                "/sources",
                Some(json!({"name": name, "kind": kind, "token": token})),
            )
            .await;
        assert_eq!(
            api.status, 422,
            "the API refuses it as well: {:?}",
            api.body
        );
    }
    assert!(app.store.list_sources().await.unwrap().is_empty());

    let form = [
        ("csrf", csrf.as_str()),
        ("name", "zot1"),
        ("kind", "zot"),
        ("token", token),
        ("username", ""),
        ("password", ""),
    ];
    let res = admin.post(&app, "/sources", &form).await;
    assert_eq!(res.status(), 303);
    assert!(flash_of(&res).contains("Source 'zot1' created"));
    assert_eq!(admin.post(&app, "/sources", &form).await.status(), 409);
    let basic = [
        ("csrf", csrf.as_str()),
        ("name", "harbor1"),
        ("kind", "harbor"),
        ("token", ""),
        ("username", "harbor"),
        ("password", "harbor-password-1"),
    ];
    assert_eq!(admin.post(&app, "/sources", &basic).await.status(), 303);
    let listed = app.api("GET", "/sources", None).await;
    let names: Vec<&str> = listed.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");
    assert!(names.contains(&"default") && names.contains(&"zot1") && names.contains(&"harbor1"));
    let (_, html) = admin.get(&app, "/sources").await;
    assert!(html.contains("data-source=\"zot1\"") && html.contains("basic (harbor)"));
    assert!(!html.contains(token), "the token is never shown");

    // Delete: the CSRF token is required, and others cannot.
    let no_csrf = admin
        .post(&app, "/sources/zot1/delete", &[("csrf", "wrong")])
        .await;
    assert_ne!(no_csrf.status(), 303);
    assert_eq!(
        olga.post(
            &app,
            "/sources/zot1/delete",
            &[("csrf", olga_csrf.as_str())]
        )
        .await
        .status(),
        403
    );
    let res = admin
        .post(&app, "/sources/zot1/delete", &[("csrf", csrf.as_str())])
        .await;
    assert_eq!(res.status(), 303);
    let left = app.store.list_sources().await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].name, "harbor1");
    assert_eq!(
        admin
            .post(&app, "/sources/zot1/delete", &[("csrf", csrf.as_str())])
            .await
            .status(),
        404
    );
}

#[tokio::test]
async fn the_webhook_form_subscribes_to_operational_events_and_keeps_them() {
    let app = spawn_app().await;
    app.create_namespace("acme").await;
    let admin = sign_in_as(&app, "admin", "admin-password").await;
    let csrf = admin.csrf(&app).await;
    let res = admin
        .post(
            &app,
            "/namespaces/acme/webhooks",
            &[
                ("name", "ops"),
                ("url", "https://ops.example.org/hook"),
                ("request_method", "POST"),
                ("filters_present", "1"),
                ("op_webhook_disabled", "1"),
                ("op_delivery_exhausted", "1"),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(res.status(), 201);
    let hooks = app.api("GET", "/namespaces/acme/webhooks", None).await;
    let made = &hooks.body["items"][0];
    assert_eq!(
        made["filters"]["actions"],
        json!(["webhook.disabled", "delivery.exhausted"])
    );
    let base = format!("/namespaces/acme/webhooks/{}", made["id"]);
    let (_, page) = admin.get(&app, &format!("{base}/edit")).await;
    for (kind, on) in [("webhook_disabled", true), ("webhook_recovered", false)] {
        let field = format!("name=\"op_{kind}\" value=\"1\" ");
        let at = page
            .find(&field)
            .unwrap_or_else(|| panic!("{field} in the edit form"));
        assert_eq!(
            page[at + field.len()..].starts_with("checked"),
            on,
            "{kind}"
        );
    }
    // The create form starts with none of them ticked.
    let (_, namespace) = admin.get(&app, "/namespaces/acme").await;
    assert!(namespace.contains("name=\"op_webhook_disabled\" value=\"1\" >"));
}

/// A loopback port nothing listens on: connections to it are refused at once.
fn refused_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://127.0.0.1:{}/", l.local_addr().unwrap().port())
}

/// A dead receiver whose circuit opened needs attention at once, not after a delivery has
/// used all its retries; its page never says events are delivered, and a delivery held
/// back names the probe's time rather than a past "next attempt".
#[tokio::test]
async fn an_open_circuit_needs_attention_and_its_waiting_deliveries_name_the_probe() {
    let app = spawn_app_with(&["--circuit-failures", "1", "--circuit-cooldown", "1h"]).await;
    team_setup(&app).await;
    let hook = app
        .enabled_webhook("acme", json!({"name": "dead", "url": refused_url()}))
        .await;
    app.post_envelope(fixture("distribution-2.8.2/push-manifest-tagged.json"))
        .await;
    // One attempt failed and opened the circuit; the retry, due 200 ms later, waits.
    let delivery = app
        .wait_deliveries("acme", hook, |d| {
            d[0]["state"] == "retrying" && d[0]["attempt_count"] == 1
        })
        .await[0]["id"]
        .as_i64()
        .unwrap();
    let vera = sign_in(&app, "vera").await;
    let (_, html) = vera.get(&app, "/").await;
    let attention = html
        .split("id=\"attention\"")
        .nth(1)
        .unwrap_or_else(|| panic!("no attention panel: {html}"));
    let attention = attention.split("</section>").next().unwrap();
    assert!(
        attention.contains("dead")
            && attention.contains("circuit open")
            && attention.contains("nothing is delivered"),
        "{attention}"
    );
    let base = format!("/namespaces/acme/webhooks/{hook}");
    let (_, page) = vera.get(&app, &base).await;
    assert!(
        page.contains("id=\"health\">failing"),
        "the badge says failing"
    );
    let delivering = page.split("id=\"delivering\">").nth(1).unwrap();
    let delivering = delivering.split("</p>").next().unwrap();
    assert!(
        !delivering.contains("events are delivered")
            && delivering.contains("nothing is delivered while its circuit is open"),
        "{delivering}"
    );
    // The waiting delivery's next attempt is the probe, an hour from now.
    eventually(
        Duration::from_secs(5),
        "the retry's own time to pass",
        || async {
            let d = app
                .api("GET", &format!("{base}/deliveries/{delivery}"), None)
                .await;
            d.body["next_attempt_at"]
                .as_str()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .is_some_and(|t| t < chrono::Utc::now())
        },
    )
    .await;
    let (_, page) = vera.get(&app, &base).await;
    let row = page
        .split(&format!("data-delivery=\"{delivery}\""))
        .nth(1)
        .unwrap()
        .split("</tr>")
        .next()
        .unwrap()
        .to_string();
    assert!(row.contains("when the circuit's probe is due"), "{row}");
    let shown = row
        .split("class=\"next-attempt\">")
        .nth(1)
        .and_then(|c| c.split("datetime=\"").nth(1))
        .and_then(|t| t.split('"').next())
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .unwrap_or_else(|| panic!("no time in {row}"));
    assert!(
        shown > chrono::Utc::now() + chrono::Duration::minutes(50),
        "the probe's time, not a past one: {shown}"
    );
    let (_, detail) = vera
        .get(&app, &format!("{base}/deliveries/{delivery}"))
        .await;
    assert!(
        detail.contains("next attempt when the circuit's probe is due"),
        "{detail}"
    );
}

/// A receiver failing for --attention-after needs attention, although no delivery has
/// used all its retries; before that it is only retrying.
#[tokio::test]
async fn a_webhook_failing_for_attention_after_needs_attention() {
    for (after, listed) in [("1h", false), ("1s", true)] {
        let app = spawn_app_with(&[
            "--circuit-failures",
            "0",
            "--retry-schedule",
            "0s,1h",
            "--attention-after",
            after,
        ])
        .await;
        team_setup(&app).await;
        let hook = app
            .enabled_webhook("acme", json!({"name": "dead", "url": refused_url()}))
            .await;
        app.post_envelope(fixture("distribution-2.8.2/push-manifest-tagged.json"))
            .await;
        app.wait_deliveries("acme", hook, |d| d[0]["state"] == "retrying")
            .await;
        let olga = sign_in(&app, "olga").await;
        if listed {
            let html = eventually(Duration::from_secs(10), "the attention panel", || async {
                let (_, html) = olga.get(&app, "/").await;
                html.contains("id=\"attention\"").then_some(html)
            })
            .await;
            assert!(
                html.contains("data-webhook=\"acme/dead\"")
                    && html.contains("every attempt failed since"),
                "{html}"
            );
            let (_, list) = olga.get(&app, "/namespaces/acme").await;
            assert!(list.contains("class=\"health failing\""), "{list}");
        } else {
            let (_, html) = olga.get(&app, "/").await;
            assert!(!html.contains("id=\"attention\""), "{after}: {html}");
            let (_, list) = olga.get(&app, "/namespaces/acme").await;
            assert!(list.contains("class=\"health retrying\""), "{list}");
        }
    }
}

/// The sources page lists the default endpoint too, and when each source last sent an
/// event; a new source's page shows its registry's configuration, never its token.
#[tokio::test]
async fn the_sources_page_shows_every_endpoint_its_last_event_and_a_new_sources_snippet() {
    let app = spawn_app().await;
    let admin = sign_in_as(&app, "admin", "admin-password").await;
    let csrf = admin.csrf(&app).await;
    let token = "dist-token-0123456789abcdefghijk";
    let res = admin
        .post(
            &app,
            "/sources",
            &[
                ("csrf", csrf.as_str()),
                ("name", "dist1"),
                ("kind", "distribution"),
                ("token", token),
            ],
        )
        .await;
    assert_eq!(res.status(), 303);
    assert_eq!(res.headers()[LOCATION], "/sources/dist1");
    let (status, page) = admin.get(&app, "/sources/dist1").await;
    assert_eq!(status, 200, "{page}");
    let snippet = page.split("id=\"snippet\"").nth(1).unwrap();
    let snippet = snippet.split("</pre>").next().unwrap();
    // As the browser shows it: minijinja escapes quotes, slashes and angle brackets.
    let snippet = [
        ("&#x2f;", "/"),
        ("&#x27;", "'"),
        ("&quot;", "\""),
        ("&lt;", "<"),
        ("&gt;", ">"),
        ("&amp;", "&"),
    ]
    .iter()
    .fold(snippet.to_string(), |s, (from, to)| s.replace(from, to));
    assert!(
        snippet.contains(&format!("url: {}", app.url("/v2/sources/dist1/events")))
            && snippet.contains("Authorization: [Bearer <the source's token>]"),
        "{snippet}"
    );
    assert!(!page.contains(token), "the token is never shown");

    let (_, list) = admin.get(&app, "/sources").await;
    let last_of = |html: &str, source: &str| -> String {
        let row = html
            .split(&format!("data-source=\"{source}\""))
            .nth(1)
            .unwrap_or_else(|| panic!("no row for {source}: {html}"));
        let row = row.split("</tr>").next().unwrap();
        row.split("class=\"last-event\">")
            .nth(1)
            .unwrap()
            .split("</td>")
            .next()
            .unwrap()
            .to_string()
    };
    assert!(last_of(&list, "default").contains("never"));
    assert!(last_of(&list, "dist1").contains("never"));
    assert!(list.contains("/v2/webhooks/events"), "the default endpoint");

    // An event at each endpoint.
    app.post_envelope(fixture("distribution-2.8.2/push-manifest-tagged.json"))
        .await;
    let res = app
        .client
        .post(app.url("/v2/sources/dist1/events"))
        .header(
            "content-type",
            "application/vnd.docker.distribution.events.v1+json",
        )
        .bearer_auth(token)
        .body(
            String::from_utf8(fixture("distribution-2.8.2/push-manifest-tagged.json"))
                .unwrap()
                .replace("2045f19c", "from-dist1"),
        )
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    let (_, list) = admin.get(&app, "/sources").await;
    for source in ["default", "dist1"] {
        let last = last_of(&list, source);
        assert!(last.contains("<time datetime="), "{source}: {last}");
    }
    let (_, page) = admin.get(&app, "/sources/dist1").await;
    assert!(!page.contains("none received yet"));
    assert_eq!(admin.get(&app, "/sources/nosuch").await.0, 404);
    let olga = {
        let hash = herald::auth::hash_password("password-1").unwrap();
        app.store
            .create_user("olga", &hash, None, false)
            .await
            .unwrap();
        sign_in(&app, "olga").await
    };
    assert_eq!(olga.get(&app, "/sources/dist1").await.0, 403, "admins only");
}

/// Each registry event links to the deliveries it made.
#[tokio::test]
async fn registry_events_link_to_their_deliveries() {
    let app = spawn_app().await;
    let hook = team_setup(&app).await;
    app.api(
        "PATCH",
        &format!("/namespaces/acme/webhooks/{hook}"),
        Some(json!({"enabled": true, "url": refused_url()})),
    )
    .await;
    app.post_envelope(fixture("distribution-2.8.2/push-manifest-tagged.json"))
        .await;
    let delivery = app
        .wait_deliveries("acme", hook, |d| d[0]["attempt_count"].as_i64() >= Some(1))
        .await[0]["id"]
        .clone();
    let admin = sign_in_as(&app, "admin", "admin-password").await;
    let (_, html) = admin.get(&app, "/events").await;
    let link = format!("href=\"/namespaces/acme/webhooks/{hook}/deliveries/{delivery}\"");
    let row = html
        .split("data-event=")
        .nth(1)
        .unwrap()
        .split("</tr>")
        .next()
        .unwrap();
    assert!(row.contains(&link), "{row}");
    assert!(row.contains("acme/deploy"), "{row}");
}

/// Every form shows refused input the same way: an error status, a summary that takes
/// focus, the failing field marked invalid and described by its message, the title
/// starting with "Error:", and the page's own address for the address bar.
#[tokio::test]
async fn every_refused_form_answers_the_same_way_at_its_pages_address() {
    let app = spawn_app().await;
    let hook = team_setup(&app).await;
    let olga = sign_in(&app, "olga").await;
    let admin = sign_in_as(&app, "admin", "admin-password").await;
    let csrf = olga.csrf(&app).await;
    let acsrf = admin.csrf(&app).await;
    let webhook = format!("/namespaces/acme/webhooks/{hook}");
    let long = "d".repeat(1001);
    // (who, form's address, fields, the page's address, the failing field's id)
    type Case<'a> = (
        &'a WebClient,
        String,
        Vec<(&'a str, &'a str)>,
        String,
        &'a str,
    );
    let cases: Vec<Case> = vec![
        (
            &olga,
            "/namespaces".into(),
            vec![("name", "shop"), ("team", "web"), ("description", &long)],
            "/".into(),
            "new-namespace-description",
        ),
        (
            &olga,
            "/namespaces/acme/webhooks".into(),
            vec![("name", "x"), ("url", "ftp://nope")],
            "/namespaces/acme".into(),
            "new-webhook-url",
        ),
        (
            &olga,
            format!("{webhook}/edit"),
            vec![("name", "deploy"), ("url", "ftp://nope")],
            format!("{webhook}/edit"),
            "edit-webhook-url",
        ),
        (
            &olga,
            format!("{webhook}/headers"),
            vec![("header_name", "Bad Header"), ("header_value", "1")],
            webhook.clone(),
            "add-header-header_name",
        ),
        (
            &olga,
            format!("{webhook}/recover"),
            vec![("since", "")],
            webhook.clone(),
            "recover-since",
        ),
        (
            &olga,
            "/teams".into(),
            vec![("name", "Bad Name")],
            "/teams".into(),
            "new-team-name",
        ),
        (
            &olga,
            "/teams/web/members".into(),
            vec![("username", "nobody"), ("role", "viewer")],
            "/teams/web".into(),
            "add-member-username",
        ),
        (
            &olga,
            "/account/password".into(),
            vec![
                ("current_password", "wrong"),
                ("new_password", "long-enough-1"),
            ],
            "/account".into(),
            "change-password-current_password",
        ),
        (
            &admin,
            "/users".into(),
            vec![("username", "eve"), ("password", "short"), ("email", "")],
            "/users".into(),
            "new-user-password",
        ),
        (
            &admin,
            "/users/vera/password".into(),
            vec![("new_password", "short")],
            "/users".into(),
            "reset-vera-new_password",
        ),
        (
            &admin,
            "/sources".into(),
            vec![("name", "Bad Name"), ("kind", "zot"), ("token", "")],
            "/sources".into(),
            "new-source-name",
        ),
    ];
    for (who, action, fields, own, field) in cases {
        let token = if std::ptr::eq(who, &admin) {
            &acsrf
        } else {
            &csrf
        };
        let mut form = fields.clone();
        form.push(("csrf", token));
        let res = who.post(&app, &action, &form).await;
        let status = res.status();
        let html = res.text().await.unwrap();
        assert!(status.is_client_error(), "{action}: {status} {html}");
        for (what, expected) in [
            (
                "the summary",
                "id=\"error-summary\" role=\"alert\" tabindex=\"-1\" autofocus".to_string(),
            ),
            ("the title", "<title>Error: ".to_string()),
            (
                "the address",
                format!("data-location=\"{}\"", own.replace('/', "&#x2f;")),
            ),
            (
                "the invalid field",
                format!("id=\"{field}\" aria-invalid=\"true\" aria-describedby=\"{field}-error\""),
            ),
            (
                "its message",
                format!("<p class=\"error\" id=\"{field}-error\">"),
            ),
        ] {
            assert!(
                html.contains(&expected),
                "{action}: no {what} ({expected}) in {html}"
            );
        }
    }
    // The sign-in form too.
    let res = try_sign_in(&app, "olga", "wrong-password", &[]).await;
    let html = res.text().await.unwrap();
    assert!(html.contains("<title>Error: Sign in"), "{html}");
    assert!(html.contains("id=\"error-summary\""));
    assert!(html.contains("id=\"login-password\" aria-invalid=\"true\""));
}
