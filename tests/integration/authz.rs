//! Teams, roles and the policy: the whole matrix of routes × callers, the operator switches,
//! personal namespaces, tokens, and the audit trail.

use serde_json::{json, Value};

use crate::helpers::*;

const ROLES: [&str; 8] = [
    "admin",
    "owner",
    "contributor",
    "viewer",
    "outsider",
    "anonymous",
    "disabled",
    "revoked",
];

struct Callers {
    tokens: Vec<Option<String>>,
}

async fn user_with_token(app: &TestApp, name: &str, hash: &str) -> (i64, String) {
    let user = app
        .store
        .create_user(name, hash, None, false)
        .await
        .unwrap();
    let token = herald::auth::new_api_token();
    app.store
        .create_token(user.id, "t", &herald::auth::token_hash(&token))
        .await
        .unwrap();
    (user.id, token)
}

async fn put_member(app: &TestApp, team: &str, user: &str, role: &str) {
    let r = app
        .api(
            "PUT",
            &format!("/teams/{team}/members/{user}"),
            Some(json!({ "role": role })),
        )
        .await;
    assert!(r.status == 201 || r.status == 200, "{:?}", r.body);
}

/// Team `web` owns namespace `acme`: olga owns it, carl contributes, vera views; otto is in
/// team `ops`; dora (an owner) is disabled; rita (an owner) has only a revoked token.
async fn setup(app: &TestApp, hash: &str) -> Callers {
    let r = app
        .api("POST", "/teams", Some(json!({"name": "web"})))
        .await;
    assert_eq!(r.status, 201);
    let (_, olga) = user_with_token(app, "olga", hash).await;
    let (_, carl) = user_with_token(app, "carl", hash).await;
    let (_, vera) = user_with_token(app, "vera", hash).await;
    let (_, otto) = user_with_token(app, "otto", hash).await;
    let (_, dora) = user_with_token(app, "dora", hash).await;
    let (rita_id, rita) = user_with_token(app, "rita", hash).await;
    put_member(app, "web", "olga", "owner").await;
    put_member(app, "web", "carl", "contributor").await;
    put_member(app, "web", "vera", "viewer").await;
    put_member(app, "web", "dora", "owner").await;
    put_member(app, "web", "rita", "owner").await;
    let ops = app
        .call(
            "POST",
            "/api/v1/teams",
            Some(json!({"name": "ops"})),
            Some(&otto),
        )
        .await;
    assert_eq!(ops.status, 201, "any user may create a team");
    let r = app
        .api(
            "POST",
            "/namespaces",
            Some(json!({"name": "acme", "team": "web"})),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["team"], "web");
    app.api("PATCH", "/users/dora", Some(json!({"disabled": true})))
        .await;
    let tokens = app.store.list_tokens(rita_id).await.unwrap();
    app.store.revoke_token(rita_id, tokens[0].id).await.unwrap();
    Callers {
        tokens: vec![
            Some(app.token.clone()),
            Some(olga),
            Some(carl),
            Some(vera),
            Some(otto),
            None,
            Some(dora),
            Some(rita),
        ],
    }
}

/// Fresh objects for one case, so destructive routes never see each other's leftovers.
struct Fixture {
    hook: i64,
    delivery: i64,
    /// A spare token of the admin's, which only the admin may revoke.
    admin_token: i64,
    spare_namespace: String,
    spare_member: String,
    newcomer: String,
    uniq: String,
}

async fn fresh(app: &TestApp, rx: &Receiver, hash: &str, n: usize) -> Fixture {
    let hook = app
        .enabled_webhook(
            "acme",
            json!({"name": format!("hook-{n}"), "url": rx.url("/")}),
        )
        .await;
    let r = app
        .api(
            "PUT",
            &format!("/namespaces/acme/webhooks/{hook}/headers/X-Existing"),
            Some(json!({"value": "v"})),
        )
        .await;
    assert_eq!(r.status, 201);
    let push = String::from_utf8(fixture_bytes())
        .unwrap()
        .replace("2045f19c", &format!("{n:08}"));
    let r = app.post_envelope(push.into_bytes()).await;
    assert!(r.body["deliveries"].as_u64().unwrap() >= 1);
    let list = app
        .api(
            "GET",
            &format!("/namespaces/acme/webhooks/{hook}/deliveries"),
            None,
        )
        .await;
    let delivery = list.body["items"][0]["id"].as_i64().unwrap();
    let spare_namespace = format!("spare{n}");
    let r = app
        .api(
            "POST",
            "/namespaces",
            Some(json!({"name": spare_namespace, "team": "web"})),
        )
        .await;
    assert_eq!(r.status, 201);
    let spare_member = format!("member{n}");
    app.store
        .create_user(&spare_member, hash, None, false)
        .await
        .unwrap();
    put_member(app, "web", &spare_member, "viewer").await;
    let newcomer = format!("newcomer{n}");
    app.store
        .create_user(&newcomer, hash, None, false)
        .await
        .unwrap();
    let (admin, _) = app.store.user_credentials("admin").await.unwrap().unwrap();
    let spare = herald::auth::new_api_token();
    let admin_token = app
        .store
        .create_token(admin.id, "spare", &herald::auth::token_hash(&spare))
        .await
        .unwrap()
        .id;
    Fixture {
        hook,
        delivery,
        admin_token,
        spare_namespace,
        spare_member,
        newcomer,
        uniq: format!("n{n}"),
    }
}

fn fixture_bytes() -> Vec<u8> {
    fixture("distribution-2.8.2/push-manifest-tagged.json")
}

fn fill(template: &str, f: &Fixture) -> String {
    template
        .replace("{hook}", &f.hook.to_string())
        .replace("{delivery}", &f.delivery.to_string())
        .replace("{admin_token}", &f.admin_token.to_string())
        .replace("{spare_ns}", &f.spare_namespace)
        .replace("{spare_member}", &f.spare_member)
        .replace("{newcomer}", &f.newcomer)
        .replace("{uniq}", &f.uniq)
}

/// One row per API route (and a few per route where the body decides): method, path under
/// `/api/v1` with `{placeholders}` that `fill` replaces, body, and the status expected for
/// each of `ROLES`. `every_api_route_has_a_row_in_the_matrix` keeps it complete.
type Row = (&'static str, &'static str, Option<Value>, [u16; 8]);

fn matrix() -> Vec<Row> {
    const A: u16 = 401;
    // (method, path, body, expected for admin, owner, contributor, viewer, outsider, anonymous, disabled, revoked)
    vec![
        (
            "GET",
            "/namespaces/acme/webhooks",
            None,
            [200, 200, 200, 200, 404, A, A, A],
        ),
        (
            "POST",
            "/namespaces/acme/webhooks",
            Some(json!({"name": "new-{uniq}", "url": "example.org"})),
            [201, 201, 403, 403, 404, A, A, A],
        ),
        (
            "GET",
            "/namespaces/acme/webhooks/{hook}",
            None,
            [200, 200, 200, 200, 404, A, A, A],
        ),
        (
            "PATCH",
            "/namespaces/acme/webhooks/{hook}",
            Some(json!({"url": "example.com"})),
            [200, 200, 403, 403, 404, A, A, A],
        ),
        (
            "PATCH",
            "/namespaces/acme/webhooks/{hook}",
            Some(json!({"enabled": false})),
            [200, 200, 403, 403, 404, A, A, A],
        ),
        (
            "DELETE",
            "/namespaces/acme/webhooks/{hook}",
            None,
            [204, 204, 403, 403, 404, A, A, A],
        ),
        (
            "PUT",
            "/namespaces/acme/webhooks/{hook}/headers/X-New",
            Some(json!({"value": "1"})),
            [201, 201, 403, 403, 404, A, A, A],
        ),
        (
            "DELETE",
            "/namespaces/acme/webhooks/{hook}/headers/X-Existing",
            None,
            [204, 204, 403, 403, 404, A, A, A],
        ),
        (
            "GET",
            "/namespaces/acme/webhooks/{hook}/deliveries",
            None,
            [200, 200, 200, 200, 404, A, A, A],
        ),
        (
            "GET",
            "/namespaces/acme/webhooks/{hook}/deliveries/{delivery}",
            None,
            [200, 200, 200, 200, 404, A, A, A],
        ),
        (
            "POST",
            "/namespaces/acme/webhooks/{hook}/deliveries/{delivery}/retrigger",
            None,
            [200, 200, 403, 403, 404, A, A, A],
        ),
        (
            "GET",
            "/namespaces",
            None,
            [200, 200, 200, 200, 200, A, A, A],
        ),
        (
            "GET",
            "/namespaces/acme",
            None,
            [200, 200, 200, 200, 404, A, A, A],
        ),
        (
            "POST",
            "/namespaces",
            Some(json!({"name": "ns-{uniq}", "team": "web"})),
            [201, 201, 403, 403, 422, A, A, A],
        ),
        (
            "DELETE",
            "/namespaces/{spare_ns}",
            None,
            [204, 204, 403, 403, 404, A, A, A],
        ),
        ("GET", "/teams", None, [200, 200, 200, 200, 200, A, A, A]),
        (
            "POST",
            "/teams",
            Some(json!({"name": "team-{uniq}"})),
            [201, 201, 201, 201, 201, A, A, A],
        ),
        (
            "GET",
            "/teams/web",
            None,
            [200, 200, 200, 200, 404, A, A, A],
        ),
        (
            "PUT",
            "/teams/web/members/{newcomer}",
            Some(json!({"role": "viewer"})),
            [201, 201, 403, 403, 404, A, A, A],
        ),
        (
            "DELETE",
            "/teams/web/members/{spare_member}",
            None,
            [204, 204, 403, 403, 404, A, A, A],
        ),
        ("GET", "/users/me", None, [200, 200, 200, 200, 200, A, A, A]),
        ("GET", "/users", None, [200, 403, 403, 403, 403, A, A, A]),
        (
            "POST",
            "/users",
            Some(json!({"username": "u-{uniq}", "password": "password-1"})),
            [201, 403, 403, 403, 403, A, A, A],
        ),
        (
            "PATCH",
            "/users/{newcomer}",
            Some(json!({"disabled": true})),
            [200, 403, 403, 403, 403, A, A, A],
        ),
        ("GET", "/tokens", None, [200, 200, 200, 200, 200, A, A, A]),
        (
            "POST",
            "/tokens",
            Some(json!({"label": "more"})),
            [201, 201, 201, 201, 201, A, A, A],
        ),
        (
            "GET",
            "/activities?namespace=acme",
            None,
            [200, 200, 200, 200, 404, A, A, A],
        ),
        ("GET", "/events", None, [200, 403, 403, 403, 403, A, A, A]),
        (
            "POST",
            "/namespaces/acme/webhooks/{hook}/rotate-secret",
            None,
            [200, 200, 403, 403, 404, A, A, A],
        ),
        (
            "POST",
            "/namespaces/acme/webhooks/{hook}/recover",
            Some(json!({"since": "2000-01-01T00:00:00Z"})),
            [200, 200, 403, 403, 404, A, A, A],
        ),
        (
            "POST",
            "/namespaces/acme/webhooks/{hook}/ping",
            None,
            [200, 200, 403, 403, 404, A, A, A],
        ),
        (
            "DELETE",
            "/tokens/{admin_token}",
            None,
            [204, 404, 404, 404, 404, A, A, A],
        ),
        ("GET", "/sources", None, [200, 403, 403, 403, 403, A, A, A]),
        (
            "POST",
            "/sources",
            Some(
                json!({"name": "src-{uniq}", "kind": "zot", "token": "a-source-token-of-some-length"}),
            ),
            [201, 403, 403, 403, 403, A, A, A],
        ),
        (
            "DELETE",
            "/sources/nosuch",
            None,
            [404, 403, 403, 403, 403, A, A, A],
        ),
        (
            "GET",
            "/sources/default",
            None,
            [200, 403, 403, 403, 403, A, A, A],
        ),
        (
            "PATCH",
            "/sources/nosuch",
            Some(json!({"registry_url": "http://127.0.0.1:1"})),
            [404, 403, 403, 403, 403, A, A, A],
        ),
        // The default endpoint reads no registry in these tests: nothing to reconcile.
        (
            "POST",
            "/sources/default/reconcile",
            None,
            [409, 403, 403, 403, 403, A, A, A],
        ),
        (
            "GET",
            "/sources/default/reconcile",
            None,
            [409, 403, 403, 403, 403, A, A, A],
        ),
    ]
}

#[tokio::test]
async fn every_route_answers_every_caller_as_the_policy_says() {
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    let hash = herald::auth::hash_password("password-1").unwrap();
    let callers = setup(&app, &hash).await;
    let table = matrix();
    let mut n = 0;
    let mut failures = Vec::new();
    // Reads share one set of objects; every write gets its own.
    let shared = fresh(&app, &rx, &hash, 0).await;
    for (method, path, body, expected) in &table {
        for (i, role) in ROLES.iter().enumerate() {
            n += 1;
            let own;
            let f = if *method == "GET" {
                &shared
            } else {
                own = fresh(&app, &rx, &hash, n).await;
                &own
            };
            let path = fill(path, f);
            let body = body
                .as_ref()
                .map(|b| serde_json::from_str(&fill(&b.to_string(), f)).unwrap());
            let r = app
                .call(
                    method,
                    &format!("/api/v1{path}"),
                    body,
                    callers.tokens[i].as_deref(),
                )
                .await;
            if r.status != expected[i] {
                failures.push(format!(
                    "{method} {path} as {role}: got {}, expected {} ({})",
                    r.status, expected[i], r.body
                ));
            }
            if r.status >= 400 {
                assert!(
                    r.body["error"]["message"].is_string(),
                    "errors explain themselves: {method} {path}"
                );
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {n} cases differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Routes of the OpenAPI document that are not the token API, so not in the matrix: the
/// registry's ingest (its own token) and the operations endpoints (no token).
const NOT_IN_THE_MATRIX: [(&str, &str); 5] = [
    ("POST", "/v2/webhooks/events"),
    ("POST", "/v2/sources/{name}/events"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
];

/// Whether a concrete path (`/api/v1/teams/web`) is an instance of an OpenAPI path template
/// (`/api/v1/teams/{team}`).
fn instance_of(path: &str, template: &str) -> bool {
    let (p, t): (Vec<&str>, Vec<&str>) = (path.split('/').collect(), template.split('/').collect());
    p.len() == t.len()
        && p.iter()
            .zip(&t)
            .all(|(p, t)| p == t || (t.starts_with('{') && t.ends_with('}')))
}

/// The router is built from the OpenAPI annotations, so the document lists every route: each
/// must have a row in the authorization matrix (or be excluded above, by name), and each row
/// must be a route.
#[tokio::test]
async fn every_api_route_has_a_row_in_the_matrix() {
    let app = spawn_app().await;
    let doc = app.call("GET", "/api/v1/openapi.json", None, None).await;
    assert_eq!(doc.status, 200);
    let mut routes = Vec::new();
    for (template, item) in doc.body["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if ["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                routes.push((method.to_uppercase(), template.clone()));
            }
        }
    }
    let dummy = Fixture {
        hook: 1,
        delivery: 1,
        admin_token: 1,
        spare_namespace: "spare".into(),
        spare_member: "member".into(),
        newcomer: "newcomer".into(),
        uniq: "n".into(),
    };
    let rows: Vec<(String, String)> = matrix()
        .iter()
        .map(|(method, path, _, _)| {
            let path = fill(path, &dummy);
            let path = path.split('?').next().unwrap_or_default();
            (method.to_string(), format!("/api/v1{path}"))
        })
        .collect();
    let mut missing = Vec::new();
    for (method, template) in &routes {
        let excluded = NOT_IN_THE_MATRIX.contains(&(method.as_str(), template.as_str()));
        let covered = rows
            .iter()
            .any(|(m, p)| m == method && instance_of(p, template));
        if !excluded && !covered {
            missing.push(format!("{method} {template}"));
        }
    }
    assert!(
        missing.is_empty(),
        "routes without a row in the authorization matrix: {missing:#?}"
    );
    for (method, path) in &rows {
        assert!(
            routes
                .iter()
                .any(|(m, t)| m == method && instance_of(path, t)),
            "the matrix row {method} {path} is no route of the OpenAPI document"
        );
    }
    for (method, path) in NOT_IN_THE_MATRIX {
        assert!(
            routes.iter().any(|(m, t)| m == method && t == path),
            "{method} {path} is excluded from the matrix but is no route any more"
        );
    }
}

#[tokio::test]
async fn with_both_switches_off_only_admins_write() {
    let app = spawn_app_with(&[
        "--permissions-create-webhook",
        "false",
        "--permissions-manage-webhook",
        "false",
    ])
    .await;
    let rx = Receiver::start().await;
    let hash = herald::auth::hash_password("password-1").unwrap();
    let callers = setup(&app, &hash).await;
    let owner = callers.tokens[1].clone();
    let f = fresh(&app, &rx, &hash, 1).await;
    let base = format!("/api/v1/namespaces/acme/webhooks/{}", f.hook);
    let cases: Vec<(&str, String, Option<Value>)> = vec![
        (
            "POST",
            "/api/v1/namespaces/acme/webhooks".into(),
            Some(json!({"name": "x", "url": "example.org"})),
        ),
        ("PATCH", base.clone(), Some(json!({"enabled": false}))),
        (
            "PUT",
            format!("{base}/headers/X-A"),
            Some(json!({"value": "1"})),
        ),
        ("DELETE", format!("{base}/headers/X-Existing"), None),
        (
            "POST",
            format!("{base}/deliveries/{}/retrigger", f.delivery),
            None,
        ),
        ("DELETE", base.clone(), None),
    ];
    for (method, path, body) in &cases {
        let r = app.call(method, path, body.clone(), owner.as_deref()).await;
        assert_eq!(r.status, 403, "owner: {method} {path}");
        assert!(
            r.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("only admins may"),
            "{}",
            r.body
        );
    }
    let seen = app.call("GET", &base, None, owner.as_deref()).await;
    assert_eq!(
        seen.body["permissions"],
        json!({"update": false, "delete": false})
    );
    for (method, path, body) in &cases {
        let r = app.call(method, path, body.clone(), Some(&app.token)).await;
        assert!(r.status < 300, "admin: {method} {path}: {}", r.body);
    }
}

#[tokio::test]
async fn a_user_manages_webhooks_in_their_personal_namespace() {
    let app = spawn_app().await;
    let hash = herald::auth::hash_password("password-1").unwrap();
    let (_, pat) = user_with_token(&app, "pat", &hash).await;
    let (_, sam) = user_with_token(&app, "sam", &hash).await;
    let r = app
        .call(
            "POST",
            "/api/v1/namespaces/pat/webhooks",
            Some(json!({"name": "mine", "url": "example.org"})),
            Some(&pat),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.body["id"].as_i64().unwrap();
    let r = app
        .call(
            "PATCH",
            &format!("/api/v1/namespaces/pat/webhooks/{id}"),
            Some(json!({"enabled": true})),
            Some(&pat),
        )
        .await;
    assert_eq!(r.status, 200);
    let ns = app
        .call("GET", "/api/v1/namespaces/pat", None, Some(&pat))
        .await;
    assert_eq!(ns.body["team"], "~pat");
    let other = app
        .call("GET", "/api/v1/namespaces/pat/webhooks", None, Some(&sam))
        .await;
    assert_eq!(other.status, 404, "nobody else sees it");
    let clash = app
        .api(
            "POST",
            "/users",
            Some(json!({"username": "acme2", "password": "password-1"})),
        )
        .await;
    assert_eq!(clash.status, 201);
    let taken = app
        .api("POST", "/namespaces", Some(json!({"name": "acme2"})))
        .await;
    assert_eq!(
        taken.status, 409,
        "the personal namespace already has that name"
    );
}

#[tokio::test]
async fn secrets_stay_with_those_who_may_change_the_webhook() {
    let app = spawn_app().await;
    let hash = herald::auth::hash_password("password-1").unwrap();
    let callers = setup(&app, &hash).await;
    let r = app
        .api("POST", "/namespaces/acme/webhooks", Some(json!({"name": "s", "url": "example.org", "username": "u", "password": "pw-secret", "headers": {"X-Key": "k-secret"}})))
        .await;
    let path = format!("/api/v1/namespaces/acme/webhooks/{}", r.body["id"]);
    let viewer = app
        .call("GET", &path, None, callers.tokens[3].as_deref())
        .await;
    assert_eq!(viewer.body["headers"], json!({"X-Key": null}));
    assert_eq!(
        viewer.body["permissions"],
        json!({"update": false, "delete": false})
    );
    let owner = app
        .call("GET", &path, None, callers.tokens[1].as_deref())
        .await;
    assert_eq!(owner.body["headers"], json!({"X-Key": "k-secret"}));
    assert_eq!(
        owner.body["permissions"],
        json!({"update": true, "delete": true})
    );
    for body in [&viewer.body, &owner.body] {
        assert!(
            !body.to_string().contains("pw-secret"),
            "passwords are never returned"
        );
    }
}

#[tokio::test]
async fn tokens_come_from_basic_auth_and_can_be_revoked() {
    let app = spawn_app().await;
    let hash = herald::auth::hash_password("password-1").unwrap();
    app.store
        .create_user("tess", &hash, None, false)
        .await
        .unwrap();
    let res = app
        .client
        .post(app.url("/api/v1/tokens"))
        .basic_auth("tess", Some("password-1"))
        .header("content-type", "application/json")
        .body(r#"{"label":"laptop"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let body: Value = serde_json::from_slice(&res.bytes().await.unwrap()).unwrap();
    let token = body["token"].as_str().unwrap().to_string();
    assert_eq!(body["label"], "laptop");
    let wrong = app
        .client
        .post(app.url("/api/v1/tokens"))
        .basic_auth("tess", Some("nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let nobody = app
        .client
        .post(app.url("/api/v1/tokens"))
        .basic_auth("nobody", Some("x"))
        .send()
        .await
        .unwrap();
    assert_eq!(nobody.status(), 401);
    let me = app
        .call("GET", "/api/v1/users/me", None, Some(&token))
        .await;
    assert_eq!(me.body["username"], "tess");
    let list = app.call("GET", "/api/v1/tokens", None, Some(&token)).await;
    assert_eq!(list.body["items"][0]["label"], "laptop");
    assert!(
        list.body.to_string().find(&token).is_none(),
        "a token is shown only once"
    );
    let id = body["id"].as_i64().unwrap();
    assert_eq!(
        app.call(
            "DELETE",
            &format!("/api/v1/tokens/{id}"),
            None,
            Some(&token)
        )
        .await
        .status,
        204
    );
    assert_eq!(
        app.call("GET", "/api/v1/users/me", None, Some(&token))
            .await
            .status,
        401
    );
}

#[tokio::test]
async fn a_team_keeps_at_least_one_owner() {
    let app = spawn_app().await;
    let r = app
        .api("POST", "/teams", Some(json!({"name": "solo"})))
        .await;
    assert_eq!(
        r.body["members"],
        json!([{"username": "admin", "role": "owner"}])
    );
    let demote = app
        .api(
            "PUT",
            "/teams/solo/members/admin",
            Some(json!({"role": "viewer"})),
        )
        .await;
    assert_eq!(demote.status, 409);
    let remove = app.api("DELETE", "/teams/solo/members/admin", None).await;
    assert_eq!(remove.status, 409);
    let bad = app
        .api(
            "PUT",
            "/teams/solo/members/admin",
            Some(json!({"role": "boss"})),
        )
        .await;
    assert_eq!(bad.status, 422);
    assert_eq!(bad.body["error"]["field"], "role");
}

#[tokio::test]
async fn every_change_adds_one_audit_entry_visible_to_members_only() {
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    let hash = herald::auth::hash_password("password-1").unwrap();
    let callers = setup(&app, &hash).await;
    let owner = callers.tokens[1].clone().unwrap();
    let count = |body: &Value| body["items"].as_array().unwrap().len();
    let trail = || {
        app.call(
            "GET",
            "/api/v1/activities?namespace=acme&limit=500",
            None,
            Some(&owner),
        )
    };
    let before = count(&trail().await.body);

    let call = |m: &'static str, p: String, b: Option<Value>| {
        let owner = owner.clone();
        let app = &app;
        async move { app.call(m, &format!("/api/v1{p}"), b, Some(&owner)).await }
    };
    let created = call(
        "POST",
        "/namespaces/acme/webhooks".into(),
        Some(json!({"name": "audited", "url": rx.url("/x")})),
    )
    .await;
    let id = created.body["id"].as_i64().unwrap();
    let base = format!("/namespaces/acme/webhooks/{id}");
    let steps: Vec<(&str, String, Option<Value>, &str)> = vec![
        (
            "PATCH",
            base.clone(),
            Some(json!({"enabled": true})),
            "webhook.enabled",
        ),
        (
            "PATCH",
            base.clone(),
            Some(json!({"name": "audited2"})),
            "webhook.update",
        ),
        (
            "PUT",
            format!("{base}/headers/X-A"),
            Some(json!({"value": "1"})),
            "webhook.header.set",
        ),
        (
            "DELETE",
            format!("{base}/headers/X-A"),
            None,
            "webhook.header.delete",
        ),
        (
            "PATCH",
            base.clone(),
            Some(json!({"enabled": false})),
            "webhook.disabled",
        ),
    ];
    let mut expected = vec!["webhook.create"];
    for (m, p, b, action) in steps {
        let r = call(m, p, b).await;
        assert!(r.status < 300, "{}", r.body);
        expected.push(action);
        let now = trail().await.body;
        assert_eq!(
            count(&now),
            before + expected.len(),
            "exactly one entry for {action}"
        );
        assert_eq!(now["items"][0]["action"], action);
    }
    // A delivery to retrigger.
    app.api("PATCH", &base, Some(json!({"enabled": true})))
        .await;
    let push = String::from_utf8(fixture_bytes())
        .unwrap()
        .replace("2045f19c", "audit000");
    app.post_envelope(push.into_bytes()).await;
    let list = app.api("GET", &format!("{base}/deliveries"), None).await;
    let delivery = list.body["items"][0]["id"].as_i64().unwrap();
    let r = call(
        "POST",
        format!("{base}/deliveries/{delivery}/retrigger"),
        None,
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(call("DELETE", base.clone(), None).await.status, 204);

    let trail = trail().await.body;
    let top: Vec<&str> = trail["items"].as_array().unwrap()[..3]
        .iter()
        .map(|a| a["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        top,
        [
            "webhook.destroy",
            "webhook.delivery.retrigger",
            "webhook.enabled"
        ]
    );
    let destroyed = &trail["items"][0];
    assert_eq!(destroyed["actor"], "olga");
    assert_eq!(destroyed["namespace"], "acme");
    assert_eq!(
        destroyed["webhook_name"], "audited2",
        "readable after the webhook is gone"
    );
    assert_eq!(destroyed["webhook_host"], "127.0.0.1");
    assert!(destroyed["created_at"].is_string());

    let viewer = app
        .call(
            "GET",
            "/api/v1/activities?namespace=acme",
            None,
            callers.tokens[3].as_deref(),
        )
        .await;
    assert_eq!(viewer.status, 200);
    assert_eq!(viewer.body["items"][0]["action"], "webhook.destroy");
    let outsider = app
        .call(
            "GET",
            "/api/v1/activities?namespace=acme",
            None,
            callers.tokens[4].as_deref(),
        )
        .await;
    assert_eq!(outsider.status, 404);
    let outsider_all = app
        .call(
            "GET",
            "/api/v1/activities",
            None,
            callers.tokens[4].as_deref(),
        )
        .await;
    assert!(
        outsider_all.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["team"] == "ops"),
        "an outsider sees only their own team's trail: {}",
        outsider_all.body
    );
}

/// `POST /api/v1/tokens` with Basic auth: status, `Retry-After` and the exact body bytes.
async fn basic_token(app: &TestApp, user: &str, password: &str) -> (u16, Option<String>, Vec<u8>) {
    basic_token_at(
        app.client.clone(),
        app.url("/api/v1/tokens"),
        user,
        password,
    )
    .await
}

async fn basic_token_at(
    client: reqwest::Client,
    url: String,
    user: &str,
    password: &str,
) -> (u16, Option<String>, Vec<u8>) {
    let res = client
        .post(url)
        .basic_auth(user, Some(password))
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let retry_after = res
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    (status, retry_after, res.bytes().await.unwrap().to_vec())
}

#[tokio::test]
async fn parallel_password_guesses_run_a_bounded_number_of_hashes() {
    let app = spawn_app().await;
    let hash = herald::auth::hash_password("password-1").unwrap();
    app.store
        .create_user("tess", &hash, None, false)
        .await
        .unwrap();
    let gate = app.state.password_gate.clone();
    // Unknown users too: they verify a dummy hash, through the same gate.
    let mut guesses = tokio::task::JoinSet::new();
    for i in 0..64 {
        let user = if i % 4 == 0 {
            "tess".to_string()
        } else {
            format!("ghost{i}")
        };
        let (client, url) = (app.client.clone(), app.url("/api/v1/tokens"));
        guesses.spawn(async move { basic_token_at(client, url, &user, "wrong-password").await });
    }
    let answers = guesses.join_all().await;
    let mut by_status = std::collections::BTreeMap::<u16, usize>::new();
    for (status, retry_after, body) in &answers {
        *by_status.entry(*status).or_default() += 1;
        assert!(
            matches!(status, 401 | 429 | 503),
            "{status}: {}",
            String::from_utf8_lossy(body)
        );
        if *status != 401 {
            assert!(retry_after.is_some(), "a {status} says when to come back");
        }
    }
    assert!(
        gate.high_water() <= gate.limit(),
        "{} hashes ran at once, the bound is {} ({by_status:?})",
        gate.high_water(),
        gate.limit()
    );
    assert!(
        gate.high_water() >= 1,
        "the guesses were checked: {by_status:?}"
    );
    assert!(
        by_status.get(&401).copied().unwrap_or(0)
            <= herald::auth::throttle::ADDRESS_FREE_FAILURES as usize,
        "one address gets only so many checks before it must wait: {by_status:?}"
    );
    assert_eq!(gate.running(), 0);
}

#[tokio::test]
async fn basic_auth_guessing_is_throttled_per_user() {
    let app = spawn_app().await;
    let hash = herald::auth::hash_password("password-1").unwrap();
    for name in ["tess", "una"] {
        app.store
            .create_user(name, &hash, None, false)
            .await
            .unwrap();
    }
    let mut statuses = Vec::new();
    for _ in 0..10 {
        statuses.push(basic_token(&app, "tess", "wrong-password").await.0);
    }
    assert_eq!(&statuses[..3], [401, 401, 401], "{statuses:?}");
    assert!(statuses[3..].iter().all(|s| *s == 429), "{statuses:?}");
    let checks = app.state.password_gate.completed();
    let (status, retry_after, body) = basic_token(&app, "tess", "password-1").await;
    assert_eq!(status, 429, "even the right password waits after failures");
    let retry_after: u64 = retry_after.expect("Retry-After").parse().unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error"]["code"], "too_many_requests");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("try again in"),
        "{body}"
    );
    assert_eq!(
        app.state.password_gate.completed(),
        checks,
        "a throttled attempt checks no password"
    );
    assert_eq!(
        basic_token(&app, "una", "password-1").await.0,
        201,
        "another user from the same address is not locked out"
    );
}

#[tokio::test]
async fn a_disabled_user_gets_one_answer_whatever_the_password() {
    let app = spawn_app().await;
    let hash = herald::auth::hash_password("password-1").unwrap();
    app.store
        .create_user("dana", &hash, None, false)
        .await
        .unwrap();
    let r = app
        .api("PATCH", "/users/dana", Some(json!({"disabled": true})))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let wrong = basic_token(&app, "dana", "wrong-password").await;
    let right = basic_token(&app, "dana", "password-1").await;
    let nobody = basic_token(&app, "nobody", "password-1").await;
    let text = |answer: &(u16, Option<String>, Vec<u8>)| {
        format!("{} {}", answer.0, String::from_utf8_lossy(&answer.2))
    };
    assert_eq!(wrong.0, 401, "{}", text(&wrong));
    assert!(
        right.0 == wrong.0 && right.2 == wrong.2,
        "the right password must not be told apart: {} vs {}",
        text(&right),
        text(&wrong)
    );
    assert!(
        nobody.0 == wrong.0 && nobody.2 == wrong.2,
        "nor a disabled user from an unknown one: {} vs {}",
        text(&nobody),
        text(&wrong)
    );
}

/// Only a team that is not there is a 404: a database that fails to read teams is a 500, so
/// an outage is not mistaken for a missing team (and a namespace's team for a bad field).
#[tokio::test]
async fn a_failing_team_lookup_is_a_server_error_not_a_missing_team() {
    let app = spawn_app().await;
    let r = app
        .api("POST", "/teams", Some(json!({"name": "web"})))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(app.api("GET", "/teams/nope", None).await.status, 404);
    // The teams table goes away behind Herald's back; tokens and users still work.
    app.raw_sql(
        "ALTER TABLE teams RENAME TO teams_gone",
        "ALTER TABLE teams RENAME TO teams_gone",
    )
    .await;
    for (method, path, body) in [
        ("GET", "/teams/web", None),
        (
            "PUT",
            "/teams/web/members/admin",
            Some(json!({"role": "owner"})),
        ),
        (
            "POST",
            "/namespaces",
            Some(json!({"name": "ns1", "team": "web"})),
        ),
    ] {
        let r = app.api(method, path, body).await;
        assert_eq!(r.status, 500, "{method} {path}: {}", r.body);
        assert_eq!(r.body["error"]["code"], "internal", "{}", r.body);
    }
    assert_eq!(app.api("GET", "/tokens", None).await.status, 200);
}
