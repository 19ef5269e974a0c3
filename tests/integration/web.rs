//! The web UI over plain HTTP: sessions, CSRF, throttling, and that the server refuses what
//! a page would not show. (The browser test covers what a person sees.)

use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use reqwest::redirect::Policy;
use serde_json::json;

use crate::helpers::*;

struct WebClient {
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

    async fn csrf(&self, app: &TestApp) -> String {
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
