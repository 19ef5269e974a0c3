use std::time::Duration;

use serde_json::json;

use crate::helpers::*;

const PUSH: &str = "distribution-2.8.2/push-manifest-tagged.json";

#[tokio::test]
async fn ingest_refuses_without_the_registry_token() {
    let app = spawn_app().await;
    let body = fixture(PUSH);
    let v1 = "application/vnd.docker.distribution.events.v1+json";
    let none = app.post_envelope_as(body.clone(), v1, None).await;
    assert_eq!(none.status, 401);
    assert_eq!(none.body["error"]["code"], "unauthorized");
    let wrong = app
        .post_envelope_as(body.clone(), v1, Some("test-registry-tokeN"))
        .await;
    assert_eq!(wrong.status, 401);
    // An API token is not the registry token either.
    let api = app
        .post_envelope_as(body, v1, Some(&app.token.clone()))
        .await;
    assert_eq!(api.status, 401);
    assert_eq!(
        app.api("GET", "/events", None).await.body["items"],
        json!([])
    );
}

#[tokio::test]
async fn ingest_accepts_the_registry_media_types_and_refuses_others() {
    let app = spawn_app().await;
    let token = app.registry_token.clone();
    let push = fixture(PUSH);
    let r = app
        .post_envelope_as(push.clone(), "text/plain", Some(&token))
        .await;
    assert_eq!(r.status, 415);
    assert!(r.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("events.v1+json"));
    for (i, media_type) in [
        "application/vnd.docker.distribution.events.v1+json",
        "application/vnd.docker.distribution.events.v2+json",
        "application/json; charset=utf-8",
    ]
    .iter()
    .enumerate()
    {
        // Distinct event ids, so each is stored.
        let body = String::from_utf8(push.clone())
            .unwrap()
            .replace("2045f19c", &format!("0000000{i}"));
        let r = app
            .post_envelope_as(body.into_bytes(), media_type, Some(&token))
            .await;
        assert_eq!(r.status, 200, "{media_type}: {:?}", r.body);
        assert_eq!(r.body["accepted"], 0, "namespace acme does not exist yet");
        assert_eq!(r.body["skipped"], 1);
    }
    let events = app.api("GET", "/events", None).await.body;
    assert_eq!(events["items"].as_array().unwrap().len(), 3);
    assert_eq!(
        events["items"][0]["reason"],
        "namespace 'acme' does not exist"
    );
}

#[tokio::test]
async fn ingest_refuses_malformed_envelopes_and_stores_nothing() {
    let app = spawn_app_with(&["--ingest-max-bytes", "2000"]).await;
    for (body, expect) in [
        (b"{\"events\": [".to_vec(), "not valid JSON"),
        (b"{\"evnts\": []}".to_vec(), "no `events` array"),
        (b"{\"events\": {\"id\": 1}}".to_vec(), "must be an array"),
        (b"[1, 2]".to_vec(), "JSON object"),
    ] {
        let r = app.post_envelope(body).await;
        assert_eq!(r.status, 400);
        assert_eq!(r.body["error"]["code"], "bad_request");
        let message = r.body["error"]["message"].as_str().unwrap();
        assert!(message.contains(expect), "{message}");
    }
    let mut big = b"{\"events\": [], \"pad\": \"".to_vec();
    big.extend(std::iter::repeat_n(b'x', 3000));
    big.extend(b"\"}");
    let r = app.post_envelope(big).await;
    assert_eq!(r.status, 413);
    assert!(r.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("2000 bytes"));
    assert_eq!(
        app.api("GET", "/events", None).await.body["items"],
        json!([])
    );
}

#[tokio::test]
async fn odd_events_are_acknowledged_and_kept_as_ignored() {
    let app = spawn_app().await;
    let body = json!({"events": [
        {"id": "e1", "action": "replicate", "target": {"repository": "acme/x"}},
        {"id": "e2", "action": "push", "target": {}},
        "not an event"
    ]});
    let r = app.post_envelope(serde_json::to_vec(&body).unwrap()).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["ignored"], 3);
    let events = app.api("GET", "/events", None).await.body;
    let reasons: Vec<&str> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["reason"].as_str().unwrap())
        .collect();
    assert_eq!(
        reasons,
        [
            "the event is not a JSON object",
            "the event's target has no repository",
            "unknown action 'replicate'"
        ]
    );
}

#[tokio::test]
async fn a_manifest_push_reaches_every_enabled_webhook_of_its_namespace_only() {
    let app = spawn_app().await;
    let acme = Receiver::start().await;
    let acme_disabled = Receiver::start().await;
    let other = Receiver::start().await;
    app.create_namespace("acme").await;
    app.create_namespace("other").await;
    let hook = app
        .enabled_webhook("acme", json!({"name": "deploy", "url": acme.url("/hook")}))
        .await;
    let r = app
        .api(
            "POST",
            "/namespaces/acme/webhooks",
            Some(json!({"name": "off", "url": acme_disabled.url("/")})),
        )
        .await;
    assert_eq!(r.body["enabled"], false, "new webhooks start disabled");
    app.enabled_webhook("other", json!({"name": "other", "url": other.url("/")}))
        .await;

    let r = app.post_envelope(fixture(PUSH)).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["deliveries"], 1);

    let got = acme.next().await;
    assert_eq!(got.method, "GET", "GET is the default method (Portus)");
    assert_eq!(got.path, "/hook");
    assert_eq!(
        got.body,
        fixture_events(PUSH)[0],
        "the body is the event exactly as sent"
    );
    assert_eq!(got.header("content-type"), Some("application/json"));
    assert_eq!(got.header("x-herald-event"), Some("push"));
    assert!(got.header("user-agent").unwrap().starts_with("Herald/"));
    let delivery_id = got.header("x-herald-delivery").unwrap().to_string();

    acme_disabled.assert_quiet(Duration::from_millis(300)).await;
    other.assert_quiet(Duration::from_millis(10)).await;

    let items = app
        .wait_deliveries("acme", hook, |d| d[0]["state"] == "succeeded")
        .await;
    assert_eq!(items.as_array().unwrap().len(), 1);
    assert_eq!(items[0]["id"].to_string(), delivery_id);
    assert_eq!(items[0]["last_status"], 200);
    assert_eq!(items[0]["event"]["tag"], "1.0");
}

#[tokio::test]
async fn the_same_registry_event_twice_is_delivered_once() {
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    app.create_namespace("acme").await;
    app.enabled_webhook("acme", json!({"name": "d", "url": rx.url("/")}))
        .await;
    let first = app.post_envelope(fixture(PUSH)).await;
    assert_eq!(first.body["deliveries"], 1);
    let again = app.post_envelope(fixture(PUSH)).await;
    assert_eq!(again.status, 200, "a retried envelope is acknowledged");
    assert_eq!(again.body["duplicates"], 1);
    assert_eq!(again.body["deliveries"], 0);
    rx.next().await;
    rx.assert_quiet(Duration::from_millis(500)).await;
}

#[tokio::test]
async fn blobs_and_pulls_trigger_nothing_but_deletes_do() {
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    app.create_namespace("acme").await;
    app.enabled_webhook("acme", json!({"name": "d", "url": rx.url("/")}))
        .await;
    for name in [
        "push-layer-blob.json",
        "push-config-blob.json",
        "pull-manifest.json",
    ] {
        let r = app
            .post_envelope(fixture(&format!("distribution-2.8.2/{name}")))
            .await;
        assert_eq!(r.body["skipped"], 1, "{name}");
    }
    rx.assert_quiet(Duration::from_millis(300)).await;
    for name in ["delete-manifest-digest.json", "delete-tag.json"] {
        let r = app
            .post_envelope(fixture(&format!("distribution-2.8.2/{name}")))
            .await;
        assert_eq!(r.body["deliveries"], 1, "{name}");
        let got = rx.next().await;
        assert_eq!(got.header("x-herald-event"), Some("delete"));
        assert_eq!(
            got.body,
            fixture_events(&format!("distribution-2.8.2/{name}"))[0]
        );
    }
}

#[tokio::test]
async fn repositories_without_a_slash_belong_to_the_global_namespace() {
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    app.enabled_webhook("_global", json!({"name": "g", "url": rx.url("/")}))
        .await;
    let body = String::from_utf8(fixture(PUSH))
        .unwrap()
        .replace("acme/web", "busybox");
    let r = app.post_envelope(body.into_bytes()).await;
    assert_eq!(r.body["deliveries"], 1);
    assert!(rx.next().await.body.contains("\"busybox\""));
}

#[tokio::test]
async fn a_distribution_3_envelope_with_several_events_is_handled() {
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    app.create_namespace("acme").await;
    app.enabled_webhook(
        "acme",
        json!({"name": "d", "url": rx.url("/"), "request_method": "POST"}),
    )
    .await;
    let r = app
        .post_envelope_as(
            fixture("distribution-3/push-and-delete.json"),
            "application/vnd.docker.distribution.events.v2+json",
            Some("test-registry-token"),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["accepted"], 2);
    assert_eq!(r.body["skipped"], 1);
    let events = fixture_events("distribution-3/push-and-delete.json");
    let mut bodies = [rx.next().await, rx.next().await];
    bodies.sort_by_key(|c| c.header("x-herald-event").unwrap().to_string());
    assert_eq!(bodies[0].body, events[1], "the tag delete");
    assert_eq!(
        bodies[1].body, events[0],
        "the index push, annotations kept"
    );
    assert!(bodies.iter().all(|c| c.method == "POST"));
}

/// Beyond `--ingest-max-in-flight` envelopes at once Herald answers 503 with Retry-After
/// before reading the body, and takes envelopes again as soon as a place is free.
#[tokio::test]
async fn ingest_beyond_the_in_flight_bound_is_refused_with_retry_after() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = spawn_app_with(&["--ingest-max-in-flight", "1"]).await;
    let body = fixture(PUSH);
    // A registry that has sent its headers and half its body holds the one place.
    let head = format!(
        "POST /v2/webhooks/events HTTP/1.1\r\nhost: herald\r\nconnection: close\r\n\
         authorization: Bearer {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        app.registry_token,
        body.len()
    );
    let half = body.len() / 2;
    let hold_the_place = || async {
        let mut slow = tokio::net::TcpStream::connect(app.addr).await.unwrap();
        slow.write_all(head.as_bytes()).await.unwrap();
        slow.write_all(&body[..half]).await.unwrap();
        slow
    };
    let slow = tokio::sync::Mutex::new(hold_the_place().await);
    // Held once an envelope without events (which stores nothing) is refused. A probe holds
    // the place for a moment itself: should the slow envelope have been refused meanwhile
    // (an answer before its body was sent), it starts again.
    eventually(
        Duration::from_secs(10),
        "the slow envelope holds the one place",
        || async {
            if app
                .post_envelope(br#"{"events": []}"#.to_vec())
                .await
                .status
                == 503
            {
                return true;
            }
            let mut slow = slow.lock().await;
            let mut peek = [0u8; 1];
            let answered = !matches!(slow.try_read(&mut peek),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
            if answered {
                *slow = hold_the_place().await;
            }
            false
        },
    )
    .await;
    let mut slow = slow.into_inner();

    let other = fixture(PUSH);
    let other = String::from_utf8(other)
        .unwrap()
        .replace("2045f19c", "3045f19c");
    let r = app.post_envelope(other.clone().into_bytes()).await;
    assert_eq!(r.status, 503, "{:?}", r.body);
    assert_eq!(r.body["error"]["code"], "overloaded");
    assert_eq!(r.headers["retry-after"], "1");

    // The slow envelope completes and is stored; then the refused one is taken.
    slow.write_all(&body[half..]).await.unwrap();
    let mut answer = String::new();
    slow.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let r = app.post_envelope(other.into_bytes()).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let events = app.api("GET", "/events", None).await;
    assert_eq!(events.body["items"].as_array().unwrap().len(), 2);
}

const V1: &str = "application/vnd.docker.distribution.events.v1+json";

/// Opens a connection and sends an envelope's request head and the first `body` bytes of
/// `length`, as a registry (or a stranger) would, without waiting for an answer.
async fn send_head(
    app: &TestApp,
    token: &str,
    content_type: &str,
    length: usize,
    body: &[u8],
) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let head = format!(
        "POST /v2/webhooks/events HTTP/1.1\r\nhost: herald\r\nauthorization: Bearer {token}\r\n\
         content-type: {content_type}\r\ncontent-length: {length}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    stream
}

/// The status and body of the answer on `stream`, or `None` if none came by `deadline`.
async fn answer_by(
    stream: &mut tokio::net::TcpStream,
    deadline: tokio::time::Instant,
) -> Option<(u16, String)> {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let head = &text[..end];
            let length = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap())
                })
                .unwrap_or(0);
            if text.len() >= end + 4 + length {
                let status = head.split(' ').nth(1).unwrap().parse().unwrap();
                return Some((status, text[end + 4..end + 4 + length].to_string()));
            }
        }
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return None,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// Strangers cannot block the registry: 300 connections with a wrong token that send
/// their headers and one byte of a 1000-byte body, and stay open, take none of the 256
/// in-flight places, so a real envelope is still taken at once.
#[tokio::test]
async fn idle_clients_with_a_wrong_token_cannot_block_ingest() {
    let app = spawn_app().await;
    let mut strangers = Vec::new();
    for _ in 0..300 {
        strangers.push(send_head(&app, "not-the-registry-token", V1, 1000, b"{").await);
    }
    // A round trip on a later connection: Herald has taken in the earlier ones.
    assert_eq!(app.call("GET", "/healthz", None, None).await.status, 200);
    let r = tokio::time::timeout(Duration::from_secs(5), app.post_envelope(fixture(PUSH)))
        .await
        .expect("the real envelope is answered promptly");
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["skipped"], 1);
    // Each stranger was answered 401 without Herald waiting for its body.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    for stream in &mut strangers {
        let (status, body) = answer_by(stream, deadline).await.expect("an answer");
        assert_eq!(status, 401, "{body}");
    }
}

#[tokio::test]
async fn an_over_limit_content_length_is_refused_before_the_body_is_sent() {
    let app = spawn_app_with(&["--ingest-max-bytes", "2000"]).await;
    let token = app.registry_token.clone();
    let mut stream = send_head(&app, &token, V1, 5000, b"").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let (status, body) = answer_by(&mut stream, deadline)
        .await
        .expect("answered without the body");
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("2000 bytes"), "{body}");
}

#[tokio::test]
async fn a_wrong_content_type_is_refused_before_the_body_is_sent() {
    let app = spawn_app().await;
    let token = app.registry_token.clone();
    let mut stream = send_head(&app, &token, "text/plain", 1000, b"").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let (status, body) = answer_by(&mut stream, deadline)
        .await
        .expect("answered without the body");
    assert_eq!(status, 415, "{body}");
    assert!(body.contains("events.v1+json"), "{body}");
}

/// A registry (with the right token) whose body stalls holds its place only for
/// `--ingest-read-timeout`, then gets 408, and the place is free again.
#[tokio::test]
async fn a_body_that_stalls_gets_408_after_the_read_timeout() {
    let app = spawn_app_with(&["--ingest-read-timeout", "1s", "--ingest-max-in-flight", "1"]).await;
    let token = app.registry_token.clone();
    let body = fixture(PUSH);
    let started = tokio::time::Instant::now();
    let mut slow = send_head(&app, &token, V1, body.len(), &body[..body.len() / 2]).await;
    let (status, answer) = answer_by(&mut slow, started + Duration::from_secs(10))
        .await
        .expect("an answer once the read timeout is up");
    assert_eq!(status, 408, "{answer}");
    assert!(
        answer.contains("--ingest-read-timeout") && answer.contains("1s"),
        "{answer}"
    );
    assert!(started.elapsed() >= Duration::from_millis(900));
    // The one place was given back.
    let r = app.post_envelope(body).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
}

/// A chunked body declares no length: it is refused as soon as it outgrows the limit.
#[tokio::test]
async fn a_chunked_body_over_the_limit_is_refused() {
    use tokio::io::AsyncWriteExt;
    let app = spawn_app_with(&["--ingest-max-bytes", "2000"]).await;
    let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let head = format!(
        "POST /v2/webhooks/events HTTP/1.1\r\nhost: herald\r\nauthorization: Bearer {}\r\n\
         content-type: {V1}\r\ntransfer-encoding: chunked\r\n\r\n",
        app.registry_token
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let chunk = format!("5dc\r\n{}\r\n", "x".repeat(1500));
    stream.write_all(chunk.as_bytes()).await.unwrap();
    stream.write_all(chunk.as_bytes()).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let (status, body) = answer_by(&mut stream, deadline)
        .await
        .expect("answered before the body ends");
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("2000 bytes"), "{body}");
    assert_eq!(
        app.api("GET", "/events", None).await.body["items"],
        json!([])
    );
}
