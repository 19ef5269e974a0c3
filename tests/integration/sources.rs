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

const ALL_ACTIONS: [&str; 14] = [
    "push",
    "pull",
    "mount",
    "delete",
    "scan_completed",
    "scan_failed",
    "scan_stopped",
    "quota_exceeded",
    "quota_warning",
    "lint_failed",
    "repository_created",
    "replication",
    "tag_retention",
    "rename",
];

const ZOT: [&str; 5] = [
    "zot/image-updated.json",
    "zot/image-deleted.json",
    "zot/image-lint-failed.json",
    "zot/image-scanned.json",
    "zot/repository-created.json",
];

/// Every Harbor fixture, each built from Harbor's source (see its README).
const HARBOR: [&str; 24] = [
    "harbor/push-artifact.json",
    "harbor/push-artifact-nested.json",
    "harbor/push-by-digest.json",
    "harbor/pull-artifact.json",
    "harbor/pull-by-digest.json",
    "harbor/delete-artifact.json",
    "harbor/delete-by-digest.json",
    "harbor/scanning-completed.json",
    "harbor/scanning-completed-scan-all.json",
    "harbor/scanning-failed.json",
    "harbor/scanning-stopped.json",
    "harbor/quota-exceed.json",
    "harbor/quota-exceed-blob.json",
    "harbor/quota-warning.json",
    "harbor/replication.json",
    "harbor/replication-push-mode.json",
    "harbor/replication-push-mode-failed.json",
    "harbor/replication-pull-mode.json",
    "harbor/replication-pull-mode-failed.json",
    "harbor/replication-running.json",
    "harbor/tag-retention.json",
    "harbor/cloudevents-push-artifact.json",
    "harbor/cloudevents-delete-artifact.json",
    "harbor/cloudevents-replication.json",
];

async fn send_harbor(app: &TestApp, body: Vec<u8>) -> Resp {
    send(
        app,
        "harbor1",
        Auth::Basic(HARBOR_USER, HARBOR_PASSWORD),
        "application/json",
        &[],
        body,
    )
    .await
}

async fn send_zot_binary(app: &TestApp, fixture_name: &str) -> Resp {
    let (headers, body) = zot_binary(fixture_name);
    send(
        app,
        "zot1",
        Auth::Bearer(ZOT_TOKEN),
        "application/json",
        &headers,
        body,
    )
    .await
}

/// The stored events, newest first.
async fn events(app: &TestApp) -> Vec<Value> {
    let r = app.api("GET", "/events?limit=200", None).await;
    r.body["items"].as_array().unwrap().clone()
}

/// Every fixture of every kind is accepted and delivered with its payload as the body; the
/// ones with an id of their own are stored once when sent twice (zot's second copy in the
/// other CloudEvents mode). zot's events, whichever mode they came in, are delivered in
/// structured form, so a receiver can read the `type` from the body.
#[tokio::test]
async fn every_source_kind_is_accepted_and_delivered() {
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
        let first = send_zot_binary(&app, name).await;
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
        // The fixture is the structured form: binary mode's event is delivered as that.
        expected.push(serde_json::from_slice(&fixture(name)).unwrap());
    }
    for name in HARBOR {
        let r = send_harbor(&app, fixture(name)).await;
        assert_eq!(r.status, 200, "{name}: {:?}", r.body);
        assert_eq!(r.body["accepted"], 1, "{name}: {:?}", r.body);
        assert_eq!(r.body["deliveries"], 1, "{name}: {:?}", r.body);
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
    let items = events(&app).await;
    assert_eq!(items.len(), expected.len(), "each event stored once");
    let actions: std::collections::BTreeSet<&str> =
        items.iter().filter_map(|e| e["action"].as_str()).collect();
    for a in ALL_ACTIONS {
        if !["mount", "rename"].contains(&a) {
            assert!(actions.contains(a), "no {a} event among {actions:?}");
        }
    }
}

/// (fixture, action, repository, tag, digest, actor)
type HarborCase<'a> = (
    &'a str,
    &'a str,
    Option<&'a str>,
    Option<&'a str>,
    Option<&'a str>,
    Option<&'a str>,
);

/// What each Harbor event becomes, read from the stored events: Harbor's project is the
/// namespace (in a push-mode replication too, where Harbor swaps the two sides'
/// namespaces), nested repositories keep their project, a digest Harbor puts in `tag` is a
/// digest, and the registry's time is kept.
#[tokio::test]
async fn harbor_events_are_read_as_harbor_means_them() {
    let app = spawn_app().await;
    app.create_namespace("acme").await;
    app.create_namespace("backup").await;
    sources(&app).await;
    let acme = Receiver::start().await;
    let backup = Receiver::start().await;
    for (ns, rx) in [("acme", &acme), ("backup", &backup)] {
        app.enabled_webhook(
            ns,
            json!({"name": "all", "url": rx.url("/"), "filters": {"actions": ALL_ACTIONS}}),
        )
        .await;
    }
    const DIGEST: &str = "sha256:38ec0bc71032552c40d7f4bea48d791a2cc4c54b16bc39c45db3a4e1707d39fd";
    let cases: [HarborCase; 12] = [
        (
            "push-artifact",
            "push",
            Some("acme/web"),
            Some("1.0"),
            None,
            Some("alice"),
        ),
        (
            "push-artifact-nested",
            "push",
            Some("acme/team/app"),
            Some("2.3.1"),
            None,
            None,
        ),
        (
            "push-by-digest",
            "push",
            Some("acme/web"),
            None,
            Some(DIGEST),
            Some("alice"),
        ),
        ("pull-by-digest", "pull", Some("acme/web"), None, None, None),
        (
            "delete-by-digest",
            "delete",
            Some("acme/web"),
            None,
            None,
            None,
        ),
        (
            "scanning-stopped",
            "scan_stopped",
            Some("acme/web"),
            None,
            None,
            None,
        ),
        (
            "quota-warning",
            "quota_warning",
            Some("acme/web"),
            None,
            None,
            None,
        ),
        (
            "replication-push-mode",
            "replication",
            Some("acme/team/app"),
            None,
            None,
            Some("alice"),
        ),
        (
            "replication-pull-mode",
            "replication",
            Some("acme/tools/builder"),
            None,
            None,
            Some("admin"),
        ),
        ("replication-running", "replication", None, None, None, None),
        (
            "tag-retention",
            "tag_retention",
            Some("acme/team/app"),
            None,
            None,
            Some("harbor-jobservice"),
        ),
        (
            "cloudevents-push-artifact",
            "push",
            Some("acme/web"),
            Some("1.0"),
            None,
            Some("alice"),
        ),
    ];
    for (name, action, repository, tag, digest, actor) in cases {
        let payload: Value =
            serde_json::from_slice(&fixture(&format!("harbor/{name}.json"))).unwrap();
        let r = send_harbor(&app, fixture(&format!("harbor/{name}.json"))).await;
        assert_eq!(r.status, 200, "{name}: {:?}", r.body);
        assert_eq!(
            r.body["deliveries"], 1,
            "{name}: one webhook, acme's: {:?}",
            r.body
        );
        let e = &events(&app).await[0];
        assert_eq!(e["source"], "harbor1", "{name}");
        assert_eq!(e["namespace"], "acme", "{name}: {e}");
        assert_eq!(e["action"], action, "{name}: {e}");
        if let Some(repository) = repository {
            assert_eq!(e["repository"], repository, "{name}: {e}");
        }
        if let Some(actor) = actor {
            assert_eq!(e["actor"], actor, "{name}: {e}");
        }
        match tag {
            Some(tag) => assert_eq!(e["tag"], tag, "{name}: {e}"),
            // Never a digest taken for a tag.
            None => assert!(
                e["tag"].is_null() || !e["tag"].as_str().unwrap().contains(':'),
                "{name}: {e}"
            ),
        }
        if let Some(digest) = digest {
            assert_eq!(e["digest"], digest, "{name}: {e}");
        }
        let when = payload["occur_at"]
            .as_i64()
            .map(|s| chrono::DateTime::from_timestamp(s, 0).unwrap())
            .or_else(|| payload["time"].as_str().map(|t| t.parse().unwrap()))
            .unwrap();
        let stored: chrono::DateTime<chrono::Utc> =
            e["occurred_at"].as_str().unwrap().parse().unwrap();
        assert_eq!(stored, when, "{name}: the registry's time");
    }
    for _ in 0..cases.len() {
        acme.next().await;
    }
    // In the push-mode payload the remote namespace is `backup`: its webhooks hear nothing.
    backup.assert_quiet(Duration::from_millis(200)).await;
    acme.assert_quiet(Duration::from_millis(10)).await;
}

/// Harbor sends no event id and its times count seconds: two real pulls by one user in
/// the same second are byte for byte alike, and both are events. Harbor's CloudEvents carry
/// an id its retries repeat: a resend of one is a duplicate.
#[tokio::test]
async fn harbor_events_without_an_id_are_never_merged() {
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    app.create_namespace("acme").await;
    sources(&app).await;
    app.enabled_webhook(
        "acme",
        json!({"name": "pulls", "url": rx.url("/"), "filters": {"actions": ["pull", "delete"]}}),
    )
    .await;
    for _ in 0..2 {
        let r = send_harbor(&app, fixture("harbor/pull-artifact.json")).await;
        assert_eq!(r.body["accepted"], 1, "{:?}", r.body);
        assert_eq!(r.body["duplicates"], 0, "{:?}", r.body);
    }
    let first = send_harbor(&app, fixture("harbor/cloudevents-delete-artifact.json")).await;
    assert_eq!(first.body["accepted"], 1, "{:?}", first.body);
    let again = send_harbor(&app, fixture("harbor/cloudevents-delete-artifact.json")).await;
    assert_eq!(again.body["duplicates"], 1, "{:?}", again.body);
    for _ in 0..3 {
        rx.next().await;
    }
    rx.assert_quiet(Duration::from_millis(200)).await;
    let pulls = events(&app)
        .await
        .into_iter()
        .filter(|e| e["action"] == "pull")
        .count();
    assert_eq!(pulls, 2);
}

/// A payload that would become more events than one payload may make is stored once, as
/// received, ignored with the reason, and answered 200 (refusing it would make Harbor send
/// it again). Before, each of its entries copied the whole payload: 20,000 entries in under
/// a megabyte needed ~19.6 GB and the process aborted.
#[tokio::test]
async fn a_payload_that_would_expand_past_the_bound_is_stored_once_as_ignored() {
    let app = spawn_app().await;
    app.create_namespace("acme").await;
    sources(&app).await;
    let mut payload: Value = serde_json::from_slice(&fixture("harbor/push-artifact.json")).unwrap();
    payload["event_data"]["resources"] = Value::Array(vec![json!({"tag": "1"}); 20_000]);
    let body = serde_json::to_vec(&payload).unwrap();
    let r = send_harbor(&app, body.clone()).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["ignored"], 1, "{:?}", r.body);
    assert_eq!(r.body["accepted"], 0);
    let e = &events(&app).await[0];
    assert_eq!(e["status"], "ignored");
    assert!(
        e["reason"].as_str().unwrap().contains("too large to split"),
        "{e}"
    );
    // The same bound holds on every source: an envelope of more events than the bound.
    let many: Vec<Value> = (0..1_001)
        .map(|i| json!({"id": format!("e{i}"), "action": "pull", "target": {"repository": "acme/web"}}))
        .collect();
    let r = send(
        &app,
        "dist1",
        Auth::Bearer(DIST_TOKEN),
        "application/json",
        &[],
        serde_json::to_vec(&json!({ "events": many })).unwrap(),
    )
    .await;
    assert_eq!(r.body["ignored"], 1, "{:?}", r.body);
    let r = app
        .post_envelope(serde_json::to_vec(&json!({ "events": many })).unwrap())
        .await;
    assert_eq!(r.body["ignored"], 1, "{:?}", r.body);
    // Within the bound, an envelope is split as before.
    let r = app
        .post_envelope(serde_json::to_vec(&json!({ "events": many[..1_000] })).unwrap())
        .await;
    assert_eq!(r.body["skipped"], 1_000, "{:?}", r.body);
}

/// A payload nested past what can be read as a JSON value is kept and acknowledged as the
/// default endpoint keeps such an event, on every source, not refused with a 400 that the
/// registry would answer by sending it again.
#[tokio::test]
async fn deeply_nested_payloads_are_stored_as_ignored_on_every_source() {
    let app = spawn_app().await;
    sources(&app).await;
    let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
    let zot_data = format!(r#"{{"name":"acme/web","reference":"1.0","x":{deep}}}"#);
    let (headers, _) = zot_binary("zot/image-updated.json");
    let r = send(
        &app,
        "zot1",
        Auth::Bearer(ZOT_TOKEN),
        "application/json",
        &headers,
        zot_data.into_bytes(),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["ignored"], 1, "{:?}", r.body);
    let harbor = format!(
        r#"{{"type":"PUSH_ARTIFACT","occur_at":1,"operator":"a","event_data":{{"x":{deep}}}}}"#
    );
    let r = send_harbor(&app, harbor.into_bytes()).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["ignored"], 1, "{:?}", r.body);
    let e = &events(&app).await[0];
    assert!(
        e["reason"].as_str().unwrap().contains("cannot be read"),
        "{e}"
    );
}

/// GitLab's registry reports repository and namespace renames with `target.rename`: an
/// action filters can select (never in the default filter), and chat says what became what.
#[tokio::test]
async fn gitlab_renames_are_events_filters_can_ask_for() {
    let app = spawn_app().await;
    let plain = Receiver::start().await;
    let renames = Receiver::start().await;
    app.create_namespace("acme").await;
    sources(&app).await;
    app.enabled_webhook("acme", json!({"name": "plain", "url": plain.url("/")}))
        .await;
    app.enabled_webhook(
        "acme",
        json!({"name": "renames", "url": renames.url("/"), "format": "slack", "filters": {"actions": ["rename"]}}),
    )
    .await;
    for (name, text) in [
        (
            "gitlab/rename-repository.json",
            "alice renamed acme/web to acme/webapp",
        ),
        (
            "gitlab/rename-namespace.json",
            "renamed acme/team-a/web to acme/team-b/web",
        ),
    ] {
        let r = send(
            &app,
            "gitlab1",
            Auth::Bearer(GITLAB_TOKEN),
            "application/vnd.docker.distribution.events.v1+json",
            &[],
            fixture(name),
        )
        .await;
        assert_eq!(r.body["accepted"], 1, "{name}: {:?}", r.body);
        assert_eq!(r.body["deliveries"], 1, "{name}: {:?}", r.body);
        let m = renames.next().await.json();
        assert!(m["text"].as_str().unwrap().contains(text), "{name}: {m}");
        let e = &events(&app).await[0];
        assert_eq!(e["action"], "rename");
        assert_eq!(e["namespace"], "acme");
    }
    plain.assert_quiet(Duration::from_millis(200)).await;
}

/// CloudEvents attributes of another registry's events: `time` is the registry's own
/// (zot's `ce-time`, Harbor's `occur_at`), `source` names the source.
#[tokio::test]
async fn cloudevents_of_sources_carry_the_registrys_time_and_the_sources_name() {
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    app.create_namespace("acme").await;
    sources(&app).await;
    app.enabled_webhook(
        "acme",
        json!({"name": "ce", "url": rx.url("/"), "format": "cloudevents", "filters": {"actions": ALL_ACTIONS}}),
    )
    .await;
    let r = send_zot_binary(&app, "zot/image-updated.json").await;
    assert_eq!(r.body["deliveries"], 1, "{:?}", r.body);
    let ce = rx.next().await.json();
    // zot's `ce-time` (2026-11-26T21:40:00.123456789Z), kept to the millisecond.
    assert_eq!(ce["time"], "2026-11-26T21:40:00.123Z", "{ce}");
    assert_eq!(ce["source"], "/herald/sources/zot1", "{ce}");
    let r = send_harbor(&app, fixture("harbor/push-artifact.json")).await;
    assert_eq!(r.body["deliveries"], 1, "{:?}", r.body);
    let ce = rx.next().await.json();
    let occur_at: Value = serde_json::from_slice(&fixture("harbor/push-artifact.json")).unwrap();
    let when = chrono::DateTime::from_timestamp(occur_at["occur_at"].as_i64().unwrap(), 0).unwrap();
    assert_eq!(
        ce["time"],
        when.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        "{ce}"
    );
    assert_eq!(ce["source"], "/herald/sources/harbor1", "{ce}");
    assert_eq!(ce["type"], "io.herald.registry.push", "{ce}");
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
    assert_eq!(names, ["default", "dist1", "gitlab1", "harbor1", "zot1"]);
    assert_eq!(
        items[0]["builtin"], true,
        "the default endpoint is the built-in source"
    );
    assert!(
        items[0]["registry_url"].is_null(),
        "it reads no registry here"
    );
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
    assert_eq!(zot_only.next().await.json()["data"]["reference"], "1.1");
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
    assert_eq!(plain.next().await.json()["data"]["reference"], "1.0");
    assert_eq!(zot_only.next().await.json()["data"]["reference"], "1.0");
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
        assert!(String::from_utf8_lossy(&out.stderr).contains("source 'nosuch' not found"));
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
            // The data is the event as Herald stores it: zot's CloudEvent, structured.
            let data: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(m["data"]["data"], data, "zot's data itself");
            assert_eq!(m["data"]["type"], "zotregistry.image.updated");
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
