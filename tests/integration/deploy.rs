//! The deploy tools' formats, end to end: the real app gets a registry's notification (the
//! captured distribution fixtures) and delivers to a receiver on loopback, and each body is
//! checked as the tool's own code reads it: Flux's `X-Signature` verified by Python's hmac
//! the way go-github's `ValidateSignature` parses it, keel's and the Docker Hub readers'
//! bodies decoded into structs that mirror their Go types field for field (names and
//! types; every field they read required here), GitHub's body validated by Python's
//! jsonschema against the request schema of its OpenAPI description, GitLab's by the checks
//! its trigger API makes. The sources and commits are named in `src/hooks/formats/deploy.rs`.

use serde::Deserialize;
use serde_json::{json, Value};

use crate::conformance::python_check;
use crate::helpers::*;

const TAGGED: &str = "distribution-2.8.2/push-manifest-tagged.json";
const WITH_ACTOR: &str = "distribution-2.8.2/push-manifest-with-actor-and-references.json";
const DIGEST: &str = "sha256:7a6c8d1827831df4d97af55fb131c0c0f3146961996ce75cb482291fd1c81a31";

/// Alice's authenticated push (actor and references), of `acme/tool` instead of
/// `alice/tool` so that it is in the namespace of the tests' webhooks.
fn with_actor() -> Vec<u8> {
    String::from_utf8(fixture(WITH_ACTOR))
        .unwrap()
        .replace("\"alice/tool\"", "\"acme/tool\"")
        .into_bytes()
}

/// An app with namespace `acme` and a receiver.
async fn setup() -> (TestApp, Receiver) {
    let app = spawn_app().await;
    app.create_namespace("acme").await;
    (app, Receiver::start().await)
}

/// Creates and enables a webhook; its id and how the API shows it.
async fn deploy_hook(app: &TestApp, body: Value) -> (i64, Value) {
    let id = app.enabled_webhook("acme", body).await;
    let shown = app
        .api("GET", &format!("/namespaces/acme/webhooks/{id}"), None)
        .await;
    (id, shown.body)
}

/// The stored request of the webhook's only delivery, once it succeeded.
async fn stored_request(app: &TestApp, hook: i64) -> Value {
    let items = app
        .wait_deliveries("acme", hook, |d| d[0]["state"] == "succeeded")
        .await;
    let id = items[0]["id"].as_i64().unwrap();
    let detail = app
        .api(
            "GET",
            &format!("/namespaces/acme/webhooks/{hook}/deliveries/{id}"),
            None,
        )
        .await;
    assert_eq!(detail.status, 200);
    detail.body
}

#[tokio::test]
async fn flux_signature_verifies_as_the_notification_controller_checks_it() {
    let (app, rx) = setup().await;
    let token = "flux-receiver-token-5f2a";
    let (hook, created) = deploy_hook(
        &app,
        json!({
            "name": "flux",
            "url": rx.url("/hook/0f1e2d3c4b5a69788796a5b4c3d2e1f0"),
            "format": "flux",
            "token": token,
        }),
    )
    .await;
    assert_eq!(created["request_method"], "POST", "flux defaults to POST");
    assert_eq!(created["has_token"], true);
    assert_eq!(created["filters"]["actions"], json!(["push"]));
    assert!(
        !created.to_string().contains(token),
        "the token is write-only"
    );
    assert_eq!(app.post_envelope(with_actor()).await.status, 200);
    let got = rx.next().await;
    assert_eq!(got.method, "POST");
    assert_eq!(got.path, "/hook/0f1e2d3c4b5a69788796a5b4c3d2e1f0");
    // Flux gives its CEL filters the body as `req` only for exactly application/json.
    assert_eq!(got.header("content-type"), Some("application/json"));
    let signature = got.header("x-signature").expect("X-Signature").to_string();
    assert!(signature.starts_with("sha256="), "{signature}");
    let facts = got.json();
    assert_eq!(facts["repository"], "acme/tool");
    assert_eq!(facts["tag"], "v2");
    assert_eq!(facts["digest"], DIGEST);
    assert_eq!(facts["image"], "127.0.0.1:5001/acme/tool:v2");
    assert_eq!(facts["actor"], "alice");
    // go-github's ValidateSignature, in Python: the prefix picks the hash, the rest is the
    // hex MAC of the raw body keyed with the Receiver's token, compared in constant time.
    // A body changed by one byte must fail, or the check proves nothing.
    python_check(
        &["hmac", "hashlib"],
        r#"
import hashlib, hmac, json, sys
given = json.load(sys.stdin)
def validate(signature, payload, token):
    prefix, _, mac = signature.partition("=")
    algorithm = {"sha1": hashlib.sha1, "sha256": hashlib.sha256, "sha512": hashlib.sha512}[prefix]
    expected = hmac.new(token.encode(), payload.encode(), algorithm).digest()
    return hmac.compare_digest(bytes.fromhex(mac), expected)
assert validate(given["signature"], given["body"], given["token"]), "the signature does not verify"
assert not validate(given["signature"], given["body"] + " ", given["token"]), "a changed body verifies"
assert not validate(given["signature"], given["body"], given["token"] + "x"), "another key verifies"
"#,
        &json!({"signature": signature, "body": got.body, "token": token}).to_string(),
    );
    let stored = stored_request(&app, hook).await;
    assert!(!stored.to_string().contains(token));
}

/// keel's `types.Repository` (types/types.go), field for field; Go's int is i64 here.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct KeelRepository {
    #[serde(default)]
    host: String,
    name: String,
    tag: String,
    digest: String,
    #[serde(default)]
    platforms: Vec<Value>,
    #[serde(default, rename = "platformVerified")]
    platform_verified: bool,
}

#[tokio::test]
async fn keel_native_body_is_keels_repository_with_basic_auth() {
    let (app, rx) = setup().await;
    deploy_hook(
        &app,
        json!({
            "name": "keel",
            "url": rx.url("/v1/webhooks/native"),
            "format": "keel",
            "username": "keel-admin",
            "password": "keel-pass",
            "format_options": {"registry": "registry.example.org:5000"},
        }),
    )
    .await;
    assert_eq!(app.post_envelope(fixture(TAGGED)).await.status, 200);
    let got = rx.next().await;
    assert_eq!(got.method, "POST");
    // keel's authenticated webhooks take its admin's Basic credentials.
    assert_eq!(
        got.header("authorization"),
        Some("Basic a2VlbC1hZG1pbjprZWVsLXBhc3M=")
    );
    let repo: KeelRepository = serde_json::from_str(&got.body).unwrap_or_else(|e| {
        panic!("keel could not decode {}: {e}", got.body);
    });
    // nativeHandler answers 400 to an empty name or tag; keel matches `host/name:tag`
    // against its deployments' images.
    assert_eq!(repo.name, "registry.example.org:5000/acme/web");
    assert_eq!(repo.tag, "1.0");
    assert_eq!(repo.digest, DIGEST);
    assert_eq!(
        repo.host, "",
        "the address is in the name, as keel's own handler puts it"
    );
}

/// keel's `DockerHubWebhook` (pkg/http/dockerhub_webhook_trigger.go): every field typed,
/// every one required here so that the body is shown to carry them all.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct KeelDockerHub {
    push_data: KeelPushData,
    callback_url: String,
    repository: KeelHubRepository,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct KeelPushData {
    pushed_at: i64,
    images: Vec<Value>,
    tag: String,
    pusher: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct KeelHubRepository {
    status: String,
    description: String,
    is_trusted: bool,
    full_description: String,
    repo_url: String,
    owner: String,
    is_official: bool,
    is_private: bool,
    name: String,
    namespace: String,
    star_count: i64,
    comment_count: i64,
    date_created: i64,
    dockerfile: String,
    repo_name: String,
}

/// argocd-image-updater's payload (pkg/webhook/docker.go).
#[derive(Deserialize)]
struct ArgoDockerHub {
    repository: ArgoRepository,
    push_data: ArgoPushData,
}

#[derive(Deserialize)]
struct ArgoRepository {
    name: String,
    namespace: String,
    repo_name: String,
}

#[derive(Deserialize)]
struct ArgoPushData {
    tag: String,
}

/// Flux's `dockerhub` Receiver payload (internal/server/receiver_handlers.go).
#[derive(Deserialize)]
struct FluxDockerHub {
    push_data: FluxPushData,
    repository: FluxRepository,
}

#[derive(Deserialize)]
struct FluxPushData {
    tag: String,
}

#[derive(Deserialize)]
struct FluxRepository {
    repo_url: String,
}

#[tokio::test]
async fn dockerhub_body_is_read_by_keel_argo_cd_image_updater_and_flux() {
    let (app, rx) = setup().await;
    deploy_hook(
        &app,
        json!({"name": "hub", "url": rx.url("/v1/webhooks/dockerhub"), "format": "dockerhub"}),
    )
    .await;
    assert_eq!(app.post_envelope(with_actor()).await.status, 200);
    let got = rx.next().await;
    assert_eq!(got.method, "POST");
    let keel: KeelDockerHub = serde_json::from_str(&got.body)
        .unwrap_or_else(|e| panic!("keel could not decode {}: {e}", got.body));
    // dockerHubHandler answers 400 to an empty repo_name or tag.
    assert_eq!(keel.repository.repo_name, "acme/tool");
    assert_eq!(keel.push_data.tag, "v2");
    assert_eq!(keel.push_data.pusher, "alice");
    // 2026-11-26T21:38:19Z, in whole seconds as Docker Hub sends it.
    assert_eq!(keel.push_data.pushed_at, 1_795_729_099);
    let argo: ArgoDockerHub = serde_json::from_str(&got.body).unwrap();
    // argo takes repo_name, else namespace/name: both say the same repository.
    assert_eq!(argo.repository.repo_name, "acme/tool");
    assert_eq!(
        format!("{}/{}", argo.repository.namespace, argo.repository.name),
        "acme/tool"
    );
    assert_eq!(argo.push_data.tag, "v2");
    let flux: FluxDockerHub = serde_json::from_str(&got.body).unwrap();
    assert_eq!(flux.push_data.tag, "v2");
    assert_eq!(
        flux.repository.repo_url,
        "https://127.0.0.1:5001/v2/acme/tool/tags/list"
    );
}

#[tokio::test]
async fn github_dispatch_is_what_githubs_openapi_description_accepts() {
    let (app, rx) = setup().await;
    let token = "github_pat_11AAAAAAA0deploytoken";
    let (hook, created) = deploy_hook(
        &app,
        json!({
            "name": "actions",
            "url": rx.url("/repos/acme/web/dispatches"),
            "format": "github-dispatch",
            "token": token,
            "format_options": {"event_type": "registry-push"},
        }),
    )
    .await;
    assert_eq!(
        created["format_options"],
        json!({"event_type": "registry-push"})
    );
    assert_eq!(app.post_envelope(with_actor()).await.status, 200);
    let got = rx.next().await;
    assert_eq!(
        (got.method.as_str(), got.path.as_str()),
        ("POST", "/repos/acme/web/dispatches")
    );
    assert_eq!(
        got.header("authorization"),
        Some(format!("Bearer {token}").as_str())
    );
    assert_eq!(got.header("accept"), Some("application/vnd.github+json"));
    assert_eq!(got.header("x-github-api-version"), Some("2022-11-28"));
    let body = got.json();
    assert_eq!(body["event_type"], "registry-push");
    let payload = body["client_payload"].as_object().unwrap();
    assert!(payload.len() <= 10, "GitHub's limit: {payload:?}");
    assert_eq!(payload["image"], "127.0.0.1:5001/acme/tool:v2");
    // The request body schema of `repos/create-dispatch-event` in
    // descriptions/api.github.com/api.github.com.2022-11-28.yaml, with its 64 KB note.
    python_check(
        &["jsonschema"],
        r#"
import json, sys, jsonschema
body = json.load(sys.stdin)
schema = {
    "type": "object",
    "required": ["event_type"],
    "properties": {
        "event_type": {"type": "string", "minLength": 1, "maxLength": 100},
        "client_payload": {"type": "object", "additionalProperties": True, "maxProperties": 10},
    },
}
jsonschema.validate(body, schema)
assert len(json.dumps(body["client_payload"]).encode()) < 64 * 1024
too_many = dict(body, client_payload={f"k{i}": "" for i in range(11)})
try:
    jsonschema.validate(too_many, schema)
except jsonschema.ValidationError:
    pass
else:
    raise AssertionError("eleven properties passed the schema")
"#,
        &got.body,
    );
    let stored = stored_request(&app, hook).await;
    let headers = stored["request"]["headers"].as_array().unwrap();
    assert!(headers.contains(&json!(["Authorization", "[redacted]"])));
    assert!(!stored.to_string().contains(token));
}

#[tokio::test]
async fn gitlab_trigger_sends_what_the_trigger_api_reads_and_stores_no_token() {
    let (app, rx) = setup().await;
    let token = "glptt-0123456789abcdef";
    let (hook, _) = deploy_hook(
        &app,
        json!({
            "name": "pipeline",
            "url": rx.url("/api/v4/projects/42/trigger/pipeline"),
            "format": "gitlab-trigger",
            "token": token,
            "format_options": {"ref": "main", "variables": {"DEPLOY_ENV": "staging"}},
        }),
    )
    .await;
    assert_eq!(app.post_envelope(fixture(TAGGED)).await.status, 200);
    let got = rx.next().await;
    assert_eq!(got.method, "POST");
    assert_eq!(got.header("content-type"), Some("application/json"));
    let body = got.json();
    // lib/api/ci/triggers.rb: `requires :ref` (a non-blank String), `requires :token`,
    // `optional :variables, type: Hash`, and a 400 unless every key and value is a String.
    assert_eq!(body["token"], token);
    assert_eq!(body["ref"], "main");
    let variables = body["variables"].as_object().expect("variables is a Hash");
    assert!(variables.values().all(Value::is_string), "{variables:?}");
    assert_eq!(variables["HERALD_REPOSITORY"], "acme/web");
    assert_eq!(variables["HERALD_TAG"], "1.0");
    assert_eq!(variables["HERALD_DIGEST"], DIGEST);
    assert_eq!(variables["HERALD_IMAGE"], "127.0.0.1:5001/acme/web:1.0");
    assert_eq!(variables["DEPLOY_ENV"], "staging");
    assert_eq!(
        body.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["ref", "token", "variables"]
    );
    // The delivery log shows the request with the token redacted.
    let stored = stored_request(&app, hook).await;
    let shown: Value = serde_json::from_str(stored["request"]["body"].as_str().unwrap()).unwrap();
    assert_eq!(shown["token"], "[redacted]");
    assert_eq!(shown["variables"], body["variables"]);
    assert!(!stored.to_string().contains(token));
}

/// Deletes, pulls, blobs and pings never start a deploy, whatever the filters: the events
/// are stored with the reason, and only the tagged push reaches the tool.
#[tokio::test]
async fn deploy_formats_get_only_pushes_of_tagged_manifests() {
    let (app, rx) = setup().await;
    let (hook, created) = deploy_hook(
        &app,
        json!({
            "name": "flux",
            "url": rx.url("/hook/x"),
            "format": "flux",
            "token": "t",
            "filters": {"actions": ["push", "delete", "pull", "webhook.disabled"], "media": "all"},
        }),
    )
    .await;
    let warnings = created["warnings"].to_string();
    assert!(
        warnings.contains("only for pushes of tagged manifests")
            && warnings.contains("delete, pull, webhook.disabled"),
        "{warnings}"
    );
    for quiet in [
        "distribution-2.8.2/delete-tag.json",
        "distribution-2.8.2/delete-manifest-digest.json",
        "distribution-2.8.2/pull-manifest.json",
        "distribution-2.8.2/push-config-blob.json",
    ] {
        assert_eq!(
            app.post_envelope(fixture(quiet)).await.status,
            200,
            "{quiet}"
        );
    }
    let ping = app
        .api(
            "POST",
            &format!("/namespaces/acme/webhooks/{hook}/ping"),
            None,
        )
        .await;
    assert_eq!(ping.status, 409, "{:?}", ping.body);
    assert!(
        ping.body.to_string().contains("no ping is sent"),
        "{:?}",
        ping.body
    );
    assert_eq!(app.post_envelope(fixture(TAGGED)).await.status, 200);
    let got = rx.next().await;
    assert_eq!(
        got.json()["tag"],
        "1.0",
        "the first request is the tagged push"
    );
    rx.assert_quiet(std::time::Duration::from_millis(300)).await;
    let events = app.api("GET", "/events?limit=50", None).await.body;
    let deletes: Vec<&Value> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "delete")
        .collect();
    assert_eq!(deletes.len(), 2, "{events:#}");
    for d in deletes {
        assert_eq!(d["status"], "skipped");
        assert_eq!(
            d["reason"],
            herald::domain::delivery::DEPLOY_ONLY_TAGGED_PUSHES,
            "{d}"
        );
    }
    let list = app
        .api(
            "GET",
            &format!("/namespaces/acme/webhooks/{hook}/deliveries"),
            None,
        )
        .await;
    assert_eq!(list.body["items"].as_array().unwrap().len(), 1);
}

/// The same rule from the API, the web form and the command line: a format that needs a
/// token or an option refuses a webhook without it, naming the field; a token nothing
/// sends is refused too; the token is never shown.
#[tokio::test]
async fn settings_are_refused_alike_from_api_and_web() {
    let (app, rx) = setup().await;
    let url = rx.url("/x");
    for (body, field) in [
        (json!({"format": "flux"}), "token"),
        (
            json!({"format": "github-dispatch", "token": "t"}),
            "format_options.event_type",
        ),
        (
            json!({"format": "github-dispatch", "token": "t", "format_options": {"event_type": "x".repeat(101)}}),
            "format_options.event_type",
        ),
        (
            json!({"format": "gitlab-trigger", "token": "t"}),
            "format_options.ref",
        ),
        (json!({"format": "keel", "token": "t"}), "token"),
        (
            json!({"format": "registry-event", "format_options": {"ref": "main"}}),
            "format_options.ref",
        ),
        (
            json!({"format": "github-dispatch", "token": "t", "format_options": {"event_type": "x"}, "username": "u", "password": "p"}),
            "password",
        ),
    ] {
        let mut body = body;
        body["name"] = json!("w");
        body["url"] = json!(url);
        let r = app
            .api("POST", "/namespaces/acme/webhooks", Some(body.clone()))
            .await;
        assert_eq!(r.status, 422, "{body}: {:?}", r.body);
        assert!(r.body.to_string().contains(field), "{body}: {:?}", r.body);
    }
    // An update is checked as the webhook will be: switching format needs the new format's
    // settings, and a token cannot be removed while the format sends it.
    let (hook, _) = deploy_hook(&app, json!({"name": "reg", "url": url})).await;
    let path = format!("/namespaces/acme/webhooks/{hook}");
    let r = app
        .api(
            "PATCH",
            &path,
            Some(json!({"format": "gitlab-trigger", "token": "t"})),
        )
        .await;
    assert_eq!(r.status, 422);
    assert!(
        r.body.to_string().contains("format_options.ref"),
        "{:?}",
        r.body
    );
    let r = app
        .api(
            "PATCH",
            &path,
            Some(json!({"format": "gitlab-trigger", "token": "t", "format_options": {"ref": "main"}})),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        r.body["request_method"], "POST",
        "a GET webhook moves to POST"
    );
    assert_eq!(r.body["has_token"], true);
    let r = app.api("PATCH", &path, Some(json!({"token": null}))).await;
    assert_eq!(r.status, 422);
    assert!(r.body.to_string().contains("token"), "{:?}", r.body);
    let r = app
        .api("PATCH", &path, Some(json!({"format": "registry-event"})))
        .await;
    assert_eq!(
        r.status, 422,
        "the token and ref would stay unused: {:?}",
        r.body
    );
    let r = app
        .api(
            "PATCH",
            &path,
            Some(json!({"format": "registry-event", "token": null, "format_options": {}})),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        (
            r.body["has_token"].clone(),
            r.body["format_options"].clone()
        ),
        (json!(false), json!({}))
    );

    // The web form: the same refusal next to the token field, then a flux webhook.
    let web = crate::web::sign_in_as(&app, "admin", "admin-password").await;
    let csrf = web.csrf(&app).await;
    let form = |token: &'static str, options: &'static str| {
        vec![
            ("csrf", csrf.clone()),
            ("name", "from-web".to_string()),
            ("url", url.clone()),
            ("request_method", "POST".into()),
            ("content_type", "application/json".into()),
            ("format", "flux".into()),
            ("filters_present", "1".into()),
            ("action_push", "1".into()),
            ("token", token.into()),
            ("format_options", options.into()),
        ]
    };
    let post = |fields: Vec<(&'static str, String)>| {
        let web = &web;
        let app = &app;
        async move {
            let pairs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let res = web.post(app, "/namespaces/acme/webhooks", &pairs).await;
            (res.status().as_u16(), res.text().await.unwrap())
        }
    };
    let (status, html) = post(form("", "")).await;
    assert_eq!(status, 422);
    assert!(html.contains("the flux format needs a token"), "{html}");
    assert!(
        html.contains("new-webhook-token-error"),
        "the message sits by the field"
    );
    let (status, html) = post(form("web-token", "{not json")).await;
    assert_eq!(status, 422);
    assert!(html.contains("format options are a JSON object"), "{html}");
    assert!(
        !html.contains("web-token"),
        "a refused form does not echo the token"
    );
    let (status, html) = post(form("web-token", "{\"registry\": \"r.example.org\"}")).await;
    assert_eq!(status, 201, "{html}");
    let hooks = app.api("GET", "/namespaces/acme/webhooks", None).await.body;
    let made = hooks["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == "from-web")
        .unwrap();
    assert_eq!(made["has_token"], true);
    assert_eq!(made["format_options"], json!({"registry": "r.example.org"}));
    assert!(!hooks.to_string().contains("web-token"));
    // Its page offers no test event, and a ping posted anyway comes back with the reason.
    let page = format!("/namespaces/acme/webhooks/{}", made["id"]);
    let (status, html) = web.get(&app, &page).await;
    assert_eq!(status, 200);
    assert!(html.contains("No test event for the flux format"), "{html}");
    assert!(!html.contains("web-token"));
    let res = web
        .post(&app, &format!("{page}/ping"), &[("csrf", csrf.as_str())])
        .await;
    assert_eq!(res.status(), 303);
    assert_eq!(res.headers()["location"], page.as_str());
}

/// The command line: `--token` reads the token from standard input (after the password),
/// `--format-options` takes the API's JSON, and a missing token is refused with the
/// exit code of invalid input, naming the field.
#[tokio::test]
async fn the_cli_sets_the_token_and_options_and_is_refused_alike() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str], stdin: &str| crate::cli::herald(dir.path(), args, stdin);
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    assert!(run(&["migrate"], "").status.success());
    assert!(run(&["namespace", "create", "acme"], "").status.success());
    let out = run(
        &[
            "webhook",
            "create",
            "acme",
            "actions",
            "--url",
            "http://127.0.0.1:9/repos/acme/web/dispatches",
            "--format",
            "github-dispatch",
            "--token",
            "--format-options",
            r#"{"event_type":"registry-push"}"#,
            "--json",
        ],
        "ghp_from_stdin_0123\n",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let view: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(view["has_token"], true);
    assert_eq!(view["format_options"]["event_type"], "registry-push");
    assert_eq!(view["request_method"], "POST");
    assert!(
        !text(&out.stdout).contains("ghp_from_stdin")
            && !text(&out.stderr).contains("ghp_from_stdin")
    );
    let out = run(&["webhook", "show", "acme", "actions"], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains(r#"token set, format options {"event_type":"registry-push"}"#),
        "{}",
        text(&out.stdout)
    );
    let out = run(
        &[
            "webhook",
            "create",
            "acme",
            "flux",
            "--url",
            "http://127.0.0.1:9/hook/x",
            "--format",
            "flux",
        ],
        "",
    );
    assert_eq!(out.status.code(), Some(6), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("token"), "{}", text(&out.stderr));
    let out = run(&["webhook", "update", "acme", "actions", "--no-token"], "");
    assert_eq!(out.status.code(), Some(6), "{}", text(&out.stderr));
    let out = run(
        &[
            "webhook",
            "update",
            "acme",
            "actions",
            "--format-options",
            r#"{"event_type":""}"#,
        ],
        "",
    );
    assert_eq!(out.status.code(), Some(6), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("event_type"),
        "{}",
        text(&out.stderr)
    );
    let out = run(
        &[
            "webhook",
            "update",
            "acme",
            "actions",
            "--username",
            "u",
            "--json",
        ],
        "pw\n",
    );
    assert_eq!(
        out.status.code(),
        Some(6),
        "a Bearer token and Basic auth: {}",
        text(&out.stderr)
    );
}
