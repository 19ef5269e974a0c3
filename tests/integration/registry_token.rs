//! A registry behind token auth, as Harbor, GitLab and Docker Hub run theirs: a stand-in on
//! loopback that speaks the distribution API's bearer challenge
//! (`WWW-Authenticate: Bearer realm=...,service=...,scope=...`), its token server, and a tag
//! list redirected to another host. Debian's docker-registry has no token server of its own,
//! so this one is written to the challenge's rules; the rest of the API is the real
//! registry's in `registry_reads`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::helpers::*;
use crate::registry_reads::reconciled;

const USER: &str = "robot";
const PASSWORD: &str = "robot-secret";
const REPO: &str = "acme/web";

#[derive(Default)]
struct Seen {
    /// `Authorization` headers the other host was sent (none may carry credentials).
    elsewhere: Vec<Option<String>>,
    /// Scopes the token server granted.
    granted: Vec<String>,
}

struct Standin {
    /// tag -> manifest bytes.
    tags: Mutex<BTreeMap<String, Vec<u8>>>,
    seen: Mutex<Seen>,
    /// Where the tag list is redirected: another host on loopback.
    elsewhere: String,
    realm: String,
    /// A cache gone wrong: manifests asked for by digest come back as other bytes.
    corrupt: std::sync::atomic::AtomicBool,
}

fn digest(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

fn manifest(version: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": digest(version.as_bytes()), "size": version.len()},
        "layers": [],
        "annotations": {"org.opencontainers.image.version": version}
    }))
    .unwrap()
}

fn token_for(scope: &str) -> String {
    format!(
        "token-{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(scope)
    )
}

/// 401 with the challenge for `scope`, or `None` when the request has its token.
fn challenged(s: &Standin, headers: &HeaderMap, scope: &str) -> Option<Response> {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if given == format!("Bearer {}", token_for(scope)) {
        return None;
    }
    let challenge = format!(
        r#"Bearer realm="{}",service="standin.test",scope="{scope}""#,
        s.realm
    );
    Some(
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, challenge)],
            Json(
                json!({"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]}),
            ),
        )
            .into_response(),
    )
}

async fn token(
    State(s): State<Arc<Standin>>,
    headers: HeaderMap,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"))
    );
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if given != Some(expected.as_str())
        || q.get("service").map(String::as_str) != Some("standin.test")
    {
        return (
            StatusCode::UNAUTHORIZED,
            "bad credentials for the token server",
        )
            .into_response();
    }
    let scope = q.get("scope").cloned().unwrap_or_default();
    s.seen.lock().unwrap().granted.push(scope.clone());
    Json(json!({"token": token_for(&scope), "expires_in": 300})).into_response()
}

async fn registry(
    State(s): State<Arc<Standin>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let path = uri.path().trim_start_matches("/v2/").to_string();
    let pull = format!("repository:{REPO}:pull");
    if path.is_empty() || path == "_catalog" {
        if let Some(refused) = challenged(&s, &headers, "registry:catalog:*") {
            return refused;
        }
        return Json(json!({"repositories": [REPO]})).into_response();
    }
    if let Some(refused) = challenged(&s, &headers, &pull) {
        return refused;
    }
    if path == format!("{REPO}/tags/list") {
        // Somewhere else serves the list: the credentials must not follow.
        let to = format!("{}/v2/{REPO}/tags/list", s.elsewhere);
        return (StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, to)]).into_response();
    }
    let Some(reference) = path.strip_prefix(&format!("{REPO}/manifests/")) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let tags = s.tags.lock().unwrap();
    let found = tags
        .get(reference)
        .or_else(|| tags.values().find(|m| digest(m) == reference))
        .cloned();
    let by_digest = reference.starts_with("sha256:");
    let found = if by_digest && s.corrupt.load(std::sync::atomic::Ordering::SeqCst) {
        Some(manifest("not what was asked for"))
    } else {
        found
    };
    let Some(bytes) = found else {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"errors": [{"code": "MANIFEST_UNKNOWN"}]})),
        )
            .into_response();
    };
    let headers = [
        (
            header::CONTENT_TYPE,
            "application/vnd.oci.image.manifest.v1+json".to_string(),
        ),
        (
            header::HeaderName::from_static("docker-content-digest"),
            digest(&bytes),
        ),
    ];
    if method == Method::HEAD {
        (headers, ()).into_response()
    } else {
        (headers, bytes).into_response()
    }
}

async fn elsewhere(State(s): State<Arc<Standin>>, headers: HeaderMap) -> Response {
    s.seen.lock().unwrap().elsewhere.push(
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
    );
    let tags: Vec<String> = s.tags.lock().unwrap().keys().cloned().collect();
    Json(json!({"name": REPO, "tags": tags})).into_response()
}

/// The registry (with its token server at `/token`) on 127.0.0.1 and the other host on
/// 127.0.0.2; the registry's address.
async fn start_standin() -> (String, Arc<Standin>) {
    let main = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let other = tokio::net::TcpListener::bind("127.0.0.2:0").await.unwrap();
    let base = format!("http://{}", main.local_addr().unwrap());
    let state = Arc::new(Standin {
        tags: Mutex::new(BTreeMap::from([("1.0".to_string(), manifest("1.0"))])),
        seen: Mutex::default(),
        elsewhere: format!("http://{}", other.local_addr().unwrap()),
        realm: format!("{base}/token"),
        corrupt: Default::default(),
    });
    let app = Router::new()
        .route("/token", get(token))
        .fallback(registry)
        .with_state(state.clone());
    tokio::spawn(async move { axum::serve(main, app).await.unwrap() });
    let app = Router::new().fallback(elsewhere).with_state(state.clone());
    tokio::spawn(async move { axum::serve(other, app).await.unwrap() });
    (base, state)
}

fn reading(url: &str, password: &str) -> Vec<String> {
    [
        "--registry-url",
        url,
        "--registry-username",
        USER,
        "--registry-password",
        password,
        "--reconcile-interval",
        "0s",
        "--facts-wait",
        "3s",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_auth_registry_is_read_and_credentials_never_follow_a_redirect() {
    let (url, standin) = start_standin().await;

    // The token server refuses a wrong password: reported as such, naming the token server.
    let args = reading(&url, "not-the-password");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let wrong = spawn_app_with(&args).await;
    let status = eventually(
        Duration::from_secs(20),
        "the refusal is reported",
        || async {
            let s = wrong.api("GET", "/sources/default", None).await.body;
            match s["registry_status"]["problem"].as_str() {
                Some("unauthorized") => Ok(s),
                _ => Err(format!("{s:#}")),
            }
        },
    )
    .await;
    let error = status["registry_status"]["error"].as_str().unwrap();
    assert!(error.contains("token server"), "{error}");
    assert!(!status.to_string().contains("not-the-password"));
    drop(wrong);

    let args = reading(&url, PASSWORD);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let app = spawn_app_with(&args).await;
    app.create_namespace("acme").await;
    let hook = Receiver::start().await;
    app.enabled_webhook("acme", json!({"name": "all", "url": hook.url("/")}))
        .await;
    let first = reconciled(&app, None).await;
    assert_eq!(
        (first["repositories"].as_i64(), first["tags"].as_i64()),
        (Some(1), Some(1)),
        "{first:#}"
    );

    // A tag the registry never notified: a reconcile makes the push, with what it was.
    standin
        .tags
        .lock()
        .unwrap()
        .insert("2.0".into(), manifest("2.0"));
    assert_eq!(
        app.api("POST", "/sources/default/reconcile", None)
            .await
            .status,
        202
    );
    let done = reconciled(&app, first["finished_at"].as_str()).await;
    assert_eq!(done["pushes"], 1, "{done:#}");
    let got = hook
        .next_within(Duration::from_secs(10))
        .await
        .expect("the made-up push");
    let event = got.json();
    assert_eq!(event["target"]["tag"], "2.0");
    assert_eq!(event["target"]["digest"], digest(&manifest("2.0")).as_str());
    let stored = eventually(Duration::from_secs(10), "the facts are read", || async {
        let e = app.api("GET", "/events?limit=1", None).await.body;
        if e["items"][0]["facts_state"] == "read" {
            Ok(e["items"][0].clone())
        } else {
            Err(format!("{e:#}"))
        }
    })
    .await;
    assert_eq!(stored["facts"]["kind"], "image", "{stored:#}");
    assert_eq!(
        stored["facts"]["annotations"]["org.opencontainers.image.version"],
        "2.0"
    );

    // Bytes that are not the digest's are refused, not kept as its facts.
    standin
        .corrupt
        .store(true, std::sync::atomic::Ordering::SeqCst);
    standin
        .tags
        .lock()
        .unwrap()
        .insert("3.0".into(), manifest("3.0"));
    assert_eq!(
        app.api("POST", "/sources/default/reconcile", None)
            .await
            .status,
        202
    );
    reconciled(&app, done["finished_at"].as_str()).await;
    let refused = eventually(Duration::from_secs(20), "the facts are refused", || async {
        let e = app.api("GET", "/events?limit=1", None).await.body;
        if e["items"][0]["facts_state"] == "failed" {
            Ok(e["items"][0].clone())
        } else {
            Err(format!("{e:#}"))
        }
    })
    .await;
    assert_eq!(refused["tag"], "3.0");
    assert!(
        refused["facts_error"]
            .as_str()
            .unwrap()
            .contains("its content's digest is sha256:"),
        "{refused:#}"
    );
    assert!(refused["facts"].is_null());

    let seen = standin.seen.lock().unwrap();
    assert!(
        seen.granted.iter().any(|s| s == "registry:catalog:*")
            && seen
                .granted
                .iter()
                .any(|s| s == &format!("repository:{REPO}:pull")),
        "tokens for the catalog and the repository: {:?}",
        seen.granted
    );
    assert!(
        !seen.elsewhere.is_empty(),
        "the redirected tag list was read"
    );
    assert!(
        seen.elsewhere.iter().all(Option::is_none),
        "no credentials went to the other host: {:?}",
        seen.elsewhere
    );
}
