//! Sources: other registries with their own credentials at `/v2/sources/{name}/events`.

use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::*;

const ZOT_TOKEN: &str = "zot-token-0123456789abcdefghij";
const GITLAB_TOKEN: &str = "gitlab-token-0123456789abcdefgh";
const DIST_TOKEN: &str = "dist-token-0123456789abcdefghijk";
const HARBOR_USER: &str = "harbor";
const HARBOR_PASSWORD: &str = "harbor-password-1";

enum Auth<'a> {
    Bearer(&'a str),
    Basic(&'a str, &'a str),
}

/// A request as the source's registry would send it.
async fn send(
    app: &TestApp,
    name: &str,
    auth: Auth<'_>,
    content_type: &str,
    headers: &[(String, String)],
    body: Vec<u8>,
) -> Resp {
    let mut req = app
        .client
        .post(app.url(&format!("/v2/sources/{name}/events")))
        .header("content-type", content_type)
        .body(body);
    req = match auth {
        Auth::Bearer(t) => req.bearer_auth(t),
        Auth::Basic(u, p) => req.basic_auth(u, Some(p)),
    };
    for (k, v) in headers {
        req = req.header(k, v);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let body = serde_json::from_slice(&res.bytes().await.unwrap()).unwrap_or(Value::Null);
    Resp {
        status,
        headers,
        body,
    }
}

/// A zot fixture in binary mode: its attributes as `ce-*` headers, its data as the body.
fn zot_binary(fixture_name: &str) -> (Vec<(String, String)>, Vec<u8>) {
    let ce: Value = serde_json::from_slice(&fixture(fixture_name)).unwrap();
    let headers = ["specversion", "id", "source", "type", "time"]
        .iter()
        .map(|a| (format!("ce-{a}"), ce[a].as_str().unwrap().to_string()))
        .collect();
    (headers, serde_json::to_vec(&ce["data"]).unwrap())
}

async fn sources(app: &TestApp) {
    for body in [
        json!({"name": "zot1", "kind": "zot", "token": ZOT_TOKEN}),
        json!({"name": "harbor1", "kind": "harbor", "username": HARBOR_USER, "password": HARBOR_PASSWORD}),
        json!({"name": "gitlab1", "kind": "gitlab", "token": GITLAB_TOKEN}),
        json!({"name": "dist1", "kind": "distribution", "token": DIST_TOKEN}),
    ] {
        let r = app.api("POST", "/sources", Some(body.clone())).await;
        assert_eq!(r.status, 201, "{body}: {:?}", r.body);
        assert!(r.body.get("token").is_none() && r.body.get("password").is_none());
    }
}

const ALL_ACTIONS: [&str; 11] = [
    "push",
    "pull",
    "mount",
    "delete",
    "scan_completed",
    "scan_failed",
    "quota_exceeded",
    "lint_failed",
    "repository_created",
    "replication",
    "tag_retention",
];

const ZOT: [&str; 4] = [
    "zot/image-updated.json",
    "zot/image-deleted.json",
    "zot/image-lint-failed.json",
    "zot/repository-created.json",
];

const HARBOR: [&str; 8] = [
    "harbor/push-artifact.json",
    "harbor/delete-artifact.json",
    "harbor/pull-artifact.json",
    "harbor/scanning-completed.json",
    "harbor/scanning-failed.json",
    "harbor/quota-exceed.json",
    "harbor/replication.json",
    "harbor/tag-retention.json",
];

/// Every fixture of every kind is accepted, stored once when sent twice (zot's second copy
/// in the other CloudEvents mode), and delivered with the payload unchanged as its body.
#[tokio::test]
async fn every_source_kind_is_accepted_once_and_delivered() {
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    app.create_namespace("acme").await;
    sources(&app).await;
    app.enabled_webhook(
        "acme",
        json!({"name": "all", "url": rx.url("/all"), "filters": {"actions": ALL_ACTIONS, "media": "all"}}),
    )
    .await;
    let mut expected: Vec<Value> = Vec::new();
    for name in ZOT {
        let (headers, body) = zot_binary(name);
        let first = send(
            &app,
            "zot1",
            Auth::Bearer(ZOT_TOKEN),
            "application/json",
            &headers,
            body.clone(),
        )
        .await;
        assert_eq!(first.status, 200, "{name}: {:?}", first.body);
        assert_eq!(first.body["accepted"], 1, "{name}: {:?}", first.body);
        assert_eq!(first.body["deliveries"], 1, "{name}");
        let again = send(
            &app,
            "zot1",
            Auth::Bearer(ZOT_TOKEN),
            "application/cloudevents+json",
            &[],
            fixture(name),
        )
        .await;
        assert_eq!(again.status, 200, "{name}: {:?}", again.body);
        assert_eq!(
            again.body["duplicates"], 1,
            "{name}: structured mode is the same event"
        );
        assert_eq!(again.body["deliveries"], 0);
        expected.push(serde_json::from_slice(&body).unwrap());
    }
    for name in HARBOR {
        for round in 0..2 {
            let r = send(
                &app,
                "harbor1",
                Auth::Basic(HARBOR_USER, HARBOR_PASSWORD),
                "application/json",
                &[],
                fixture(name),
            )
            .await;
            assert_eq!(r.status, 200, "{name}: {:?}", r.body);
            if round == 0 {
                assert_eq!(r.body["accepted"], 1, "{name}: {:?}", r.body);
            } else {
                assert_eq!(r.body["duplicates"], 1, "{name}: {:?}", r.body);
                assert_eq!(r.body["deliveries"], 0);
            }
        }
        expected.push(serde_json::from_slice(&fixture(name)).unwrap());
    }
    for (source, token) in [("gitlab1", GITLAB_TOKEN), ("dist1", DIST_TOKEN)] {
        let body = fixture("gitlab/push-and-delete.json");
        let r = send(
            &app,
            source,
            Auth::Bearer(token),
            "application/vnd.docker.distribution.events.v1+json",
            &[],
            body.clone(),
        )
        .await;
        assert_eq!(r.status, 200, "{source}: {:?}", r.body);
        assert_eq!(r.body["accepted"], 2, "{source}: {:?}", r.body);
        let again = send(
            &app,
            source,
            Auth::Bearer(token),
            "application/json",
            &[],
            body,
        )
        .await;
        assert_eq!(again.body["duplicates"], 2, "{source}: {:?}", again.body);
        let envelope: Value =
            serde_json::from_slice(&fixture("gitlab/push-and-delete.json")).unwrap();
        expected.extend(envelope["events"].as_array().unwrap().iter().cloned());
    }
    let mut got = Vec::new();
    for _ in 0..expected.len() {
        got.push(rx.next().await.json());
    }
    rx.assert_quiet(Duration::from_millis(200)).await;
    for e in &expected {
        let want = got.iter().filter(|g| *g == e).count();
        let twice = expected.iter().filter(|x| *x == e).count();
        assert_eq!(want, twice, "delivered unchanged: {e}");
    }
    let events = app.api("GET", "/events?limit=100", None).await;
    let items = events.body["items"].as_array().unwrap();
    assert_eq!(items.len(), expected.len(), "each event stored once");
    let actions: std::collections::BTreeSet<&str> =
        items.iter().filter_map(|e| e["action"].as_str()).collect();
    for a in [
        "push",
        "delete",
        "pull",
        "scan_completed",
        "scan_failed",
        "quota_exceeded",
        "lint_failed",
        "repository_created",
        "replication",
        "tag_retention",
    ] {
        assert!(actions.contains(a), "no {a} event among {actions:?}");
    }
    let harbor_push = items
        .iter()
        .find(|e| {
            e["registry_id"]
                .as_str()
                .is_some_and(|i| i.starts_with("harbor1:"))
                && e["action"] == "push"
        })
        .unwrap();
    assert_eq!(harbor_push["repository"], "acme/web");
    assert_eq!(harbor_push["namespace"], "acme");
    assert_eq!(harbor_push["tag"], "1.0");
}

/// A wrong Basic credential costs one password check whatever is wrong with it (no such
/// source, a bearer source, another username, the wrong password), so the time an answer
/// takes does not tell an unknown source or username from a wrong password. Counted by the
/// gate's finished checks, which is what the time is spent on.
#[tokio::test]
async fn every_wrong_basic_credential_costs_one_password_check() {
    let app = spawn_app().await;
    sources(&app).await;
    let body = fixture("harbor/push-artifact.json");
    let gate = &app.state.password_gate;
    for (name, user, password) in [
        ("nosuch", HARBOR_USER, HARBOR_PASSWORD),
        ("zot1", HARBOR_USER, HARBOR_PASSWORD),
        ("harbor1", "someone-else", HARBOR_PASSWORD),
        ("harbor1", HARBOR_USER, "wrong-password"),
    ] {
        let before = gate.completed();
        let r = send(
            &app,
            name,
            Auth::Basic(user, password),
            "application/json",
            &[],
            body.clone(),
        )
        .await;
        assert_eq!(r.status, 401, "{name} {user}: {:?}", r.body);
        assert_eq!(
            gate.completed() - before,
            1,
            "{name} as {user}: one password check, like a wrong password"
        );
    }
    // A bearer token is a hash comparison, the same for every source.
    let before = gate.completed();
    let r = send(
        &app,
        "nosuch",
        Auth::Bearer(ZOT_TOKEN),
        "application/json",
        &[],
        body,
    )
    .await;
    assert_eq!(r.status, 401);
    assert_eq!(gate.completed(), before);
}

#[tokio::test]
async fn sources_refuse_wrong_credentials_and_other_kinds() {
    let app = spawn_app().await;
    app.create_namespace("acme").await;
    sources(&app).await;
    let harbor = fixture("harbor/push-artifact.json");
    for (name, auth) in [
        ("zot1", Auth::Bearer("wrong-token-0123456789abcdefgh")),
        ("zot1", Auth::Basic("zot", ZOT_TOKEN)),
        ("harbor1", Auth::Basic(HARBOR_USER, "wrong-password")),
        ("harbor1", Auth::Bearer(HARBOR_PASSWORD)),
        ("nosuch", Auth::Bearer(ZOT_TOKEN)),
        ("default", Auth::Bearer(&app.registry_token)),
    ] {
        let r = send(&app, name, auth, "application/json", &[], harbor.clone()).await;
        assert_eq!(r.status, 401, "{name}: {:?}", r.body);
        let message = r.body["error"]["message"].as_str().unwrap();
        assert!(message.contains("credential is wrong"), "{message}");
    }
    // The registry token is the default source's only.
    let r = send(
        &app,
        "zot1",
        Auth::Bearer(&app.registry_token),
        "application/json",
        &[],
        harbor.clone(),
    )
    .await;
    assert_eq!(r.status, 401);
    let r = send(
        &app,
        "zot1",
        Auth::Bearer(ZOT_TOKEN),
        "application/json",
        &[],
        harbor,
    )
    .await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    let message = r.body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("kind zot") && message.contains("Harbor"),
        "{message}"
    );
    let (headers, body) = zot_binary("zot/image-updated.json");
    let r = send(
        &app,
        "gitlab1",
        Auth::Bearer(GITLAB_TOKEN),
        "application/json",
        &headers,
        body,
    )
    .await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    let message = r.body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("kind gitlab") && message.contains("CloudEvent"),
        "{message}"
    );
    // The default source is unchanged.
    let r = app
        .post_envelope(fixture("distribution-2.8.2/push-manifest-tagged.json"))
        .await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn sources_are_listed_without_credentials_and_deleted() {
    let app = spawn_app().await;
    sources(&app).await;
    let list = app.api("GET", "/sources", None).await;
    assert_eq!(list.status, 200);
    let items = list.body["items"].as_array().unwrap();
    let names: Vec<&str> = items.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["dist1", "gitlab1", "harbor1", "zot1"]);
    let text = list.body.to_string();
    for secret in [ZOT_TOKEN, GITLAB_TOKEN, HARBOR_PASSWORD] {
        assert!(!text.contains(secret));
    }
    assert!(!text.contains("hash"), "{text}");
    let harbor = items.iter().find(|s| s["name"] == "harbor1").unwrap();
    assert_eq!(harbor["auth"], "basic");
    assert_eq!(harbor["username"], HARBOR_USER);
    for (body, field, status) in [
        (
            json!({"name": "zot1", "kind": "zot", "token": ZOT_TOKEN}),
            None,
            409,
        ),
        (
            json!({"name": "default", "kind": "zot", "token": ZOT_TOKEN}),
            Some("name"),
            422,
        ),
        (
            json!({"name": "x", "kind": "quay", "token": ZOT_TOKEN}),
            Some("kind"),
            422,
        ),
        (
            json!({"name": "x", "kind": "zot", "token": "short"}),
            Some("token"),
            422,
        ),
        (json!({"name": "x", "kind": "zot"}), Some("token"), 422),
        (
            json!({"name": "Bad Name", "kind": "zot", "token": ZOT_TOKEN}),
            Some("name"),
            422,
        ),
    ] {
        let r = app.api("POST", "/sources", Some(body.clone())).await;
        assert_eq!(r.status, status, "{body}: {:?}", r.body);
        if let Some(f) = field {
            assert_eq!(r.body["error"]["field"], f, "{body}");
        }
    }
    let r = app.api("DELETE", "/sources/zot1", None).await;
    assert_eq!(r.status, 204);
    let (headers, body) = zot_binary("zot/image-updated.json");
    let r = send(
        &app,
        "zot1",
        Auth::Bearer(ZOT_TOKEN),
        "application/json",
        &headers,
        body,
    )
    .await;
    assert_eq!(r.status, 401);
    assert_eq!(app.api("DELETE", "/sources/zot1", None).await.status, 404);
}

/// `filters.sources` picks sources, and the actions distribution has no word for are only
/// delivered to webhooks that ask for them.
#[tokio::test]
async fn filters_choose_sources_and_new_actions_are_opt_in() {
    let app = spawn_app().await;
    let plain = Receiver::start().await;
    let zot_only = Receiver::start().await;
    app.create_namespace("acme").await;
    sources(&app).await;
    app.enabled_webhook("acme", json!({"name": "plain", "url": plain.url("/")}))
        .await;
    app.enabled_webhook("acme", json!({"name": "zot", "url": zot_only.url("/"), "filters": {"sources": ["zot1"], "actions": ["push", "lint_failed"]}})).await;
    let bad = app
        .api(
            "POST",
            "/namespaces/acme/webhooks",
            Some(json!({"name": "x", "url": "example.org", "filters": {"sources": ["No Such"]}})),
        )
        .await;
    assert_eq!(bad.status, 422);
    assert_eq!(bad.body["error"]["field"], "filters.sources");
    let r = app
        .post_envelope(fixture("distribution-2.8.2/push-manifest-tagged.json"))
        .await;
    assert_eq!(
        r.body["deliveries"], 1,
        "the default source reaches only the plain webhook"
    );
    assert_eq!(plain.next().await.json()["target"]["tag"], "1.0");
    let (headers, body) = zot_binary("zot/image-lint-failed.json");
    let r = send(
        &app,
        "zot1",
        Auth::Bearer(ZOT_TOKEN),
        "application/json",
        &headers,
        body,
    )
    .await;
    assert_eq!(
        r.body["deliveries"], 1,
        "lint_failed only where asked for: {:?}",
        r.body
    );
    assert_eq!(zot_only.next().await.json()["reference"], "1.1");
    let (headers, body) = zot_binary("zot/image-updated.json");
    let r = send(
        &app,
        "zot1",
        Auth::Bearer(ZOT_TOKEN),
        "application/json",
        &headers,
        body,
    )
    .await;
    assert_eq!(r.body["deliveries"], 2, "{:?}", r.body);
    assert_eq!(plain.next().await.json()["reference"], "1.0");
    assert_eq!(zot_only.next().await.json()["reference"], "1.0");
    plain.assert_quiet(Duration::from_millis(200)).await;
    zot_only.assert_quiet(Duration::from_millis(10)).await;
}

#[tokio::test]
async fn registry_config_prints_each_sources_snippet() {
    let app = spawn_app().await;
    sources(&app).await;
    for (name, expect) in [
        ("zot1", "\"type\": \"http\""),
        (
            "harbor1",
            "auth header:          Basic <base64 of harbor:password>",
        ),
        ("gitlab1", "Authorization: [Bearer <the source's token>]"),
    ] {
        let mut cmd = herald_cmd(app.dir.path());
        if let Some(db) = &app.db {
            cmd.args(["--database", &db.url]);
        }
        let out = cmd
            .args([
                "--public-url",
                "https://herald.internal",
                "registry-config",
                "--source",
                name,
            ])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            text.contains(&format!("https://herald.internal/v2/sources/{name}/events")),
            "{text}"
        );
        assert!(text.contains(expect), "{name}: {text}");
        assert!(!text.contains(ZOT_TOKEN) && !text.contains(HARBOR_PASSWORD));
    }
    let out = herald_cmd(app.dir.path())
        .args(["registry-config", "--source", "nosuch"])
        .output()
        .unwrap();
    if app.db.is_none() {
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("no source 'nosuch'"));
    }
}

/// Formats that speak of the event (chat messages, CloudEvents attributes) read what ingest
/// understood of another registry's payload, not distribution's fields it does not have.
#[tokio::test]
async fn chat_and_cloudevents_speak_of_zot_and_harbor_events() {
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    app.create_namespace("acme").await;
    sources(&app).await;
    app.enabled_webhook(
        "acme",
        json!({"name": "chat", "url": rx.url("/slack"), "format": "slack"}),
    )
    .await;
    app.enabled_webhook(
        "acme",
        json!({"name": "ce", "url": rx.url("/ce"), "format": "cloudevents"}),
    )
    .await;
    let zot: Value = serde_json::from_slice(&fixture("zot/image-updated.json")).unwrap();
    let repository = zot["data"]["name"].as_str().unwrap().to_string();
    let (headers, body) = zot_binary("zot/image-updated.json");
    let r = send(
        &app,
        "zot1",
        Auth::Bearer(ZOT_TOKEN),
        "application/json",
        &headers,
        body.clone(),
    )
    .await;
    assert_eq!(r.body["deliveries"], 2, "{:?}", r.body);
    for _ in 0..2 {
        let got = rx.next().await;
        let m = got.json();
        if got.path == "/slack" {
            let text = m["text"].as_str().unwrap();
            assert!(text.contains(&repository), "{text}");
            assert!(text.contains("pushed"), "{text}");
        } else {
            assert_eq!(m["type"], "io.herald.registry.push", "{m}");
            assert!(
                m["subject"].as_str().unwrap().starts_with(&repository),
                "{m}"
            );
            let data: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(m["data"], data, "the data is zot's payload itself");
        }
    }
}

/// A Basic-auth source's password costs an Argon2 hash from the gate sign-ins share, so a
/// client that keeps guessing is slowed down by address (as a password guesser is), and a
/// refused guess runs no hash. Only the address counts: a stranger failing in a source's
/// name cannot lock its registry out.
#[tokio::test]
async fn guessing_a_sources_password_is_throttled_by_address() {
    let app = spawn_app().await;
    sources(&app).await;
    let body = fixture("harbor/push-artifact.json");
    let mut statuses = Vec::new();
    for _ in 0..24 {
        let r = send(
            &app,
            "harbor1",
            Auth::Basic(HARBOR_USER, "a-wrong-password"),
            "application/json",
            &[],
            body.clone(),
        )
        .await;
        statuses.push(r.status);
        if r.status == 429 {
            assert!(r.headers.get("retry-after").is_some());
            break;
        }
    }
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
    assert!(
        statuses[..statuses.len() - 1].iter().all(|s| *s == 401),
        "{statuses:?}"
    );
    let hashed = app.state.password_gate.completed();
    let r = send(
        &app,
        "harbor1",
        Auth::Basic(HARBOR_USER, HARBOR_PASSWORD),
        "application/json",
        &[],
        body,
    )
    .await;
    assert_eq!(r.status, 429, "still refused while the wait runs");
    assert_eq!(
        app.state.password_gate.completed(),
        hashed,
        "and no hash ran"
    );
}
