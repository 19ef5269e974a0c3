//! Broker destinations against the real brokers on this machine (NATS with JetStream on
//! 127.0.0.1:4222, RabbitMQ on 5672 as guest, Redis on 6379, Mosquitto on 1883), each
//! message read back with the broker's own client and its signature checked with the
//! Standard Webhooks library. Every test uses names of its own (streams, exchanges, keys,
//! topics), so they run side by side; a test that restarts or disconnects a broker does it
//! to a server of its own, or to connections only it made. Without a broker the test says
//! it is skipped, except under `CI=true`, where it fails.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::*;
use crate::require::{program, require};

const PUSH: &str = "distribution-2.8.2/push-manifest-tagged.json";

/// A name no other test (or earlier run) uses.
fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{prefix}{}x{}x{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// The tagged-push fixture with its own event id (Herald deduplicates on it).
fn push(id: &str) -> Vec<u8> {
    let mut envelope: Value = serde_json::from_slice(&fixture(PUSH)).unwrap();
    envelope["events"][0]["id"] = json!(id);
    serde_json::to_vec(&envelope).unwrap()
}

/// Creates an enabled webhook; returns its id and its signing secret.
async fn hook(app: &TestApp, name: &str, url: &str) -> (i64, String) {
    let r = app
        .api(
            "POST",
            "/namespaces/acme/webhooks",
            Some(json!({"name": name, "url": url})),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let id = r.body["id"].as_i64().unwrap();
    let secret = r.body["signing_secret"].as_str().unwrap().to_string();
    let r = app
        .api(
            "PATCH",
            &format!("/namespaces/acme/webhooks/{id}"),
            Some(json!({"enabled": true})),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    (id, secret)
}

/// Checks a message's Standard Webhooks signature with the official library.
fn verify(secret: &str, body: &[u8], headers: &[(String, String)]) {
    let mut map = axum::http::HeaderMap::new();
    for (name, value) in headers {
        map.insert(
            axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    standardwebhooks::Webhook::new(secret)
        .unwrap()
        .verify(body, &map)
        .unwrap_or_else(|e| panic!("the signature does not verify: {e}; headers {headers:?}"));
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// The one delivery's detail, once it is in `state`.
async fn delivery_in(app: &TestApp, hook: i64, state: &str) -> Value {
    let items = app
        .wait_deliveries("acme", hook, |d| d[0]["state"] == state)
        .await;
    let id = items[0]["id"].as_i64().unwrap();
    app.api(
        "GET",
        &format!("/namespaces/acme/webhooks/{hook}/deliveries/{id}"),
        None,
    )
    .await
    .body
}

/// What every received message must be: the event as the registry sent it, with the
/// webhook's headers and a valid signature.
fn check_message(secret: &str, body: &[u8], headers: &[(String, String)]) {
    let got: Value = serde_json::from_slice(body).unwrap();
    let mut expected: Value = serde_json::from_str(&fixture_events(PUSH)[0]).unwrap();
    expected["id"] = got["id"].clone();
    assert_eq!(got, expected);
    assert_eq!(header(headers, "content-type"), Some("application/json"));
    assert_eq!(header(headers, "x-herald-event"), Some("push"));
    assert!(header(headers, "webhook-id").is_some(), "{headers:?}");
    assert!(header(headers, "authorization").is_none(), "{headers:?}");
    verify(secret, body, headers);
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn port_open(port: u16) -> bool {
    tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_ok()
}

/// A child process killed when dropped (a test that fails must not leave it behind).
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

// ---------------------------------------------------------------- URLs and credentials

#[tokio::test]
async fn broker_urls_are_checked_and_their_credentials_sealed_never_shown() {
    let app = spawn_app().await;
    app.create_namespace("acme").await;
    for (url, says) in [
        (
            "amqp://127.0.0.1:5672/%2f?routing_key=x",
            "needs ?exchange=",
        ),
        ("redis://127.0.0.1:6379/0", "needs ?stream="),
        ("nats://127.0.0.1:4222/", "needs the subject"),
        ("mqtt://127.0.0.1:1883/a/+/b", "wildcards"),
        (
            "amqps://u:hunter2@127.0.0.1/?exchange=x",
            "not supported yet",
        ),
    ] {
        let r = app
            .api(
                "POST",
                "/namespaces/acme/webhooks",
                Some(json!({"name": "bad", "url": url})),
            )
            .await;
        assert_eq!(r.status, 422, "{url}: {:?}", r.body);
        let text = r.body.to_string();
        assert!(text.contains(says), "{url}: {text}");
        assert!(!text.contains("hunter2"), "{text}");
    }
    // Credentials given in the URL and as fields at once: refused.
    let r = app
        .api(
            "POST",
            "/namespaces/acme/webhooks",
            Some(
                json!({"name": "twice", "url": "amqp://bot:pw@127.0.0.1/?exchange=x",
                        "username": "bot", "password": "pw"}),
            ),
        )
        .await;
    assert_eq!(r.status, 422, "{:?}", r.body);

    let r = app
        .api(
            "POST",
            "/namespaces/acme/webhooks",
            Some(json!({"name": "mq",
                        "url": "amqp://bot:s%40cret-pw@127.0.0.1:5672/%2f?exchange=ex&routing_key=k"})),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let id = r.body["id"].as_i64().unwrap();
    let acme = herald::domain::names::NamespaceName::parse("acme").unwrap();
    assert_eq!(
        r.body["url"],
        "amqp://127.0.0.1:5672/%2f?exchange=ex&routing_key=k"
    );
    assert_eq!(r.body["username"], "bot");
    assert_eq!(r.body["has_password"], true);
    let shown = app
        .api("GET", &format!("/namespaces/acme/webhooks/{id}"), None)
        .await;
    assert!(
        !shown.body.to_string().contains("s@cret-pw"),
        "{}",
        shown.body
    );
    let hook = app.store.get_webhook(&acme, id).await.unwrap();
    assert!(!hook.url.as_str().contains("cret"));
    let sealed = hook.password.unwrap();
    assert_eq!(app.state.cipher.open(&sealed).unwrap(), "s@cret-pw");

    // An update's URL credentials replace the username and password.
    let r = app
        .api(
            "PATCH",
            &format!("/namespaces/acme/webhooks/{id}"),
            Some(json!({"url": "redis://:other-pw@127.0.0.1:6379/3?stream=s&maxlen=10"})),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["url"], "redis://127.0.0.1:6379/3?stream=s&maxlen=10");
    assert_eq!(r.body["username"], Value::Null);
    let hook = app.store.get_webhook(&acme, id).await.unwrap();
    assert_eq!(
        app.state.cipher.open(&hook.password.unwrap()).unwrap(),
        "other-pw"
    );
}

#[tokio::test]
async fn the_ssrf_guard_vets_the_brokers_address() {
    // Nothing but a documentation range is allowed: loopback brokers are refused.
    let app = spawn_app_with(&[
        "--delivery-allow-networks",
        "192.0.2.1/32",
        "--retry-schedule",
        "0s",
    ])
    .await;
    app.create_namespace("acme").await;
    let (hook_id, _) = hook(&app, "nats", "nats://localhost:4222/herald.blocked").await;
    app.post_envelope(push(&unique("ev"))).await;
    let d = delivery_in(&app, hook_id, "failed").await;
    let error = d["attempts"][0]["error"].as_str().unwrap();
    assert!(error.contains("blocked by the SSRF guard"), "{error}");
    assert!(error.contains("HERALD_DELIVERY_ALLOW_NETWORKS"), "{error}");
}

// ---------------------------------------------------------------- NATS

async fn nats_client(port: u16) -> Option<async_nats::Client> {
    let found = async_nats::connect(format!("nats://127.0.0.1:{port}"))
        .await
        .map_err(|e| format!("no NATS server on 127.0.0.1:{port}: {e}"));
    require("NATS", found)
}

fn nats_headers(headers: &async_nats::HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .flat_map(|(n, vs)| {
            vs.iter()
                .map(move |v| (n.to_string(), v.as_str().to_string()))
        })
        .collect()
}

#[tokio::test]
async fn nats_deliveries_are_jetstream_publishes_acked_by_the_stream() {
    let Some(client) = nats_client(4222).await else {
        return;
    };
    let js = async_nats::jetstream::new(client);
    let stream = unique("HERALD_");
    let subject = format!("herald.{stream}");
    js.create_stream(async_nats::jetstream::stream::Config {
        name: stream.clone(),
        subjects: vec![subject.clone()],
        ..Default::default()
    })
    .await
    .unwrap();
    let app = spawn_app().await;
    app.create_namespace("acme").await;
    let (id, secret) = hook(&app, "nats", &format!("nats://127.0.0.1:4222/{subject}")).await;
    let (lost, _) = hook(
        &app,
        "nowhere",
        &format!("nats://127.0.0.1:4222/{subject}.none"),
    )
    .await;
    app.post_envelope(push(&unique("ev"))).await;

    let d = delivery_in(&app, id, "succeeded").await;
    let answer: Value =
        serde_json::from_str(d["attempts"][0]["response_body"].as_str().unwrap()).unwrap();
    assert_eq!(answer["stream"], stream.as_str());
    assert_eq!(d["attempts"][0]["status"], 200);
    let seq = answer["seq"].as_u64().unwrap();
    let message = js
        .get_stream(&stream)
        .await
        .unwrap()
        .get_raw_message(seq)
        .await
        .unwrap();
    let headers = nats_headers(&message.headers);
    check_message(&secret, &message.payload, &headers);
    assert_eq!(
        header(&headers, "Nats-Msg-Id"),
        header(&headers, "webhook-id")
    );

    // No stream captures the subject: JetStream's "no responders" fails the attempt.
    let d = delivery_in(&app, lost, "failed").await;
    let error = d["attempts"][0]["error"].as_str().unwrap();
    assert!(error.contains("no JetStream stream captures"), "{error}");

    js.delete_stream(&stream).await.unwrap();
}

#[tokio::test]
async fn a_nats_server_restarted_mid_burst_loses_nothing() {
    let Some(exe) = require("nats-server", program("nats-server")) else {
        return;
    };
    let port = free_port();
    let store = tempfile::tempdir().unwrap();
    let start = || {
        Server(
            Command::new(&exe)
                .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
                .arg(store.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        )
    };
    let mut server = start();
    eventually(Duration::from_secs(10), "nats-server listens", || {
        port_open(port)
    })
    .await;
    let client = async_nats::connect(format!("nats://127.0.0.1:{port}"))
        .await
        .unwrap();
    let js = async_nats::jetstream::new(client);
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "BURST".into(),
        subjects: vec!["burst".into()],
        storage: async_nats::jetstream::stream::StorageType::File,
        ..Default::default()
    })
    .await
    .unwrap();
    let schedule = ["0s"; 1]
        .into_iter()
        .chain(["300ms"; 60])
        .collect::<Vec<_>>()
        .join(",");
    let app = spawn_app_with(&["--retry-schedule", &schedule, "--delivery-timeout", "2s"]).await;
    app.create_namespace("acme").await;
    let (id, _) = hook(&app, "nats", &format!("nats://127.0.0.1:{port}/burst")).await;
    const N: usize = 30;
    for i in 0..N {
        app.post_envelope(push(&format!("burst-{i}"))).await;
        if i == N / 2 {
            drop(server);
            server = start();
        }
    }
    app.wait_deliveries("acme", id, |d| {
        d.as_array().unwrap().len() == N
            && d.as_array()
                .unwrap()
                .iter()
                .all(|x| x["state"] == "succeeded")
    })
    .await;
    // Every delivery is in the stream once (resends were dropped by their Nats-Msg-Id).
    let client = async_nats::connect(format!("nats://127.0.0.1:{port}"))
        .await
        .unwrap();
    let js = async_nats::jetstream::new(client);
    let mut stream = js.get_stream("BURST").await.unwrap();
    let info = stream.info().await.unwrap();
    assert_eq!(info.state.messages, N as u64);
    drop(server);
}

// ---------------------------------------------------------------- RabbitMQ

async fn amqp_channel(vhost: &str) -> Option<(lapin::Connection, lapin::Channel)> {
    let uri = format!("amqp://guest:guest@127.0.0.1:5672/{}", urlencode(vhost));
    let found = lapin::Connection::connect(&uri, lapin::ConnectionProperties::default())
        .await
        .map_err(|e| format!("no RabbitMQ on 127.0.0.1:5672: {e}"));
    let connection = require("RabbitMQ", found)?;
    let channel = connection.create_channel().await.unwrap();
    Some((connection, channel))
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// An exchange bound to a durable queue by `key`, both named after the test.
async fn amqp_topology(channel: &lapin::Channel, name: &str, key: &str) {
    use lapin::options::*;
    use lapin::types::FieldTable;
    channel
        .exchange_declare(
            name.into(),
            lapin::ExchangeKind::Direct,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    channel
        .queue_declare(
            name.into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    channel
        .queue_bind(
            name.into(),
            name.into(),
            key.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
}

async fn amqp_cleanup(channel: &lapin::Channel, name: &str) {
    use lapin::options::*;
    let _ = channel
        .queue_delete(name.into(), QueueDeleteOptions::default())
        .await;
    let _ = channel
        .exchange_delete(name.into(), ExchangeDeleteOptions::default())
        .await;
}

fn amqp_headers(properties: &lapin::BasicProperties) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Some(table) = properties.headers() {
        for (name, value) in table.inner() {
            if let lapin::types::AMQPValue::LongString(s) = value {
                out.push((name.to_string(), s.to_string()));
            }
        }
    }
    if let Some(ct) = properties.content_type() {
        out.retain(|(n, _)| n != "content-type");
        out.push(("content-type".into(), ct.to_string()));
    }
    out
}

#[tokio::test]
async fn amqp_deliveries_are_confirmed_persistent_and_unroutable_ones_fail() {
    let Some((_connection, channel)) = amqp_channel("/").await else {
        return;
    };
    let name = unique("herald-");
    amqp_topology(&channel, &name, "push").await;
    let app = spawn_app().await;
    app.create_namespace("acme").await;
    let base = format!("amqp://127.0.0.1:5672/%2f?exchange={name}");
    let (id, secret) = hook(&app, "mq", &format!("{base}&routing_key=push")).await;
    let (lost, _) = hook(&app, "unbound", &format!("{base}&routing_key=nobody")).await;
    app.post_envelope(push(&unique("ev"))).await;

    let d = delivery_in(&app, id, "succeeded").await;
    assert_eq!(d["attempts"][0]["status"], 200);
    let got = channel
        .basic_get(
            name.as_str().into(),
            lapin::options::BasicGetOptions { no_ack: true },
        )
        .await
        .unwrap()
        .expect("the message is in the queue");
    let properties = &got.delivery.properties;
    assert_eq!(*properties.delivery_mode(), Some(2));
    let headers = amqp_headers(properties);
    assert_eq!(
        properties.message_id().as_ref().map(|m| m.to_string()),
        header(&headers, "webhook-id").map(str::to_string)
    );
    check_message(&secret, &got.delivery.data, &headers);

    let d = delivery_in(&app, lost, "failed").await;
    let error = d["attempts"][0]["error"].as_str().unwrap();
    assert!(
        error.contains("unroutable") && error.contains("NO_ROUTE"),
        "{error}"
    );
    amqp_cleanup(&channel, &name).await;
}

fn rabbitmqctl(args: &[&str]) -> String {
    let out = Command::new("rabbitmqctl")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("rabbitmqctl {args:?}: {e}"));
    assert!(
        out.status.success(),
        "rabbitmqctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn rabbitmq_connections_closed_mid_burst_lose_nothing() {
    if require("rabbitmqctl", program("rabbitmqctl")).is_none() {
        return;
    }
    // A vhost of this test's own, so closing its connections touches no other test.
    let vhost = unique("herald-");
    if amqp_channel("/").await.is_none() {
        return;
    }
    rabbitmqctl(&["add_vhost", &vhost]);
    rabbitmqctl(&["set_permissions", "-p", &vhost, "guest", ".*", ".*", ".*"]);
    let (_connection, channel) = amqp_channel(&vhost).await.unwrap();
    amqp_topology(&channel, "events", "push").await;
    let schedule = ["0s"; 1]
        .into_iter()
        .chain(["300ms"; 60])
        .collect::<Vec<_>>()
        .join(",");
    let app = spawn_app_with(&["--retry-schedule", &schedule]).await;
    app.create_namespace("acme").await;
    let url = format!(
        "amqp://127.0.0.1:5672/{}?exchange=events&routing_key=push",
        urlencode(&vhost)
    );
    let (id, _) = hook(&app, "mq", &url).await;
    const N: usize = 30;
    for i in 0..N {
        app.post_envelope(push(&format!("burst-{i}"))).await;
        if i == N / 2 {
            // Herald's connections to this vhost, closed by the broker once open (a
            // connection still opening is listed without its vhost and name).
            eventually(
                Duration::from_secs(10),
                "Herald's connection was found and closed",
                || async {
                    let listed = rabbitmqctl(&[
                        "list_connections",
                        "-q",
                        "--no-table-headers",
                        "pid",
                        "vhost",
                        "client_properties",
                    ]);
                    let mut closed = 0;
                    for line in listed.lines() {
                        let mut cols = line.split('\t');
                        let (Some(pid), Some(v)) = (cols.next(), cols.next()) else {
                            continue;
                        };
                        // Herald names its connections "herald"; the test's own is unnamed.
                        let named = line.contains(r#"{"connection_name","herald"}"#)
                            || line.contains(r#"<<"connection_name">>,longstr,<<"herald">>"#);
                        if v == vhost && named {
                            rabbitmqctl(&["close_connection", pid, "test: closed mid-burst"]);
                            closed += 1;
                        }
                    }
                    if closed >= 1 {
                        Ok(())
                    } else {
                        Err(listed)
                    }
                },
            )
            .await;
        }
    }
    app.wait_deliveries("acme", id, |d| {
        d.as_array().unwrap().len() == N
            && d.as_array()
                .unwrap()
                .iter()
                .all(|x| x["state"] == "succeeded")
    })
    .await;
    let mut ids = std::collections::BTreeSet::new();
    while let Some(got) = channel
        .basic_get(
            "events".into(),
            lapin::options::BasicGetOptions { no_ack: true },
        )
        .await
        .unwrap()
    {
        ids.insert(
            got.delivery
                .properties
                .message_id()
                .clone()
                .unwrap()
                .to_string(),
        );
    }
    assert_eq!(ids.len(), N, "every delivery reached the queue");
    drop(channel);
    rabbitmqctl(&["delete_vhost", &vhost]);
}

// ---------------------------------------------------------------- Redis

async fn redis_connection() -> Option<redis::aio::MultiplexedConnection> {
    let found = async {
        redis::Client::open("redis://127.0.0.1:6379/")
            .map_err(|e| e.to_string())?
            .get_multiplexed_async_connection()
            .await
            .map_err(|e| format!("no Redis on 127.0.0.1:6379: {e}"))
    }
    .await;
    require("Redis", found)
}

#[tokio::test]
async fn redis_deliveries_are_stream_entries_and_killed_connections_lose_nothing() {
    let Some(mut redis) = redis_connection().await else {
        return;
    };
    // A user of this test's own: Herald authenticates as it, and only its connections
    // are killed mid-burst.
    let user = unique("herald-");
    let key = unique("herald:events:");
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg(&user)
        .arg("on")
        .arg(">user-pw-1")
        .arg("~*")
        .arg("+@all")
        .query_async(&mut redis)
        .await
        .unwrap();
    let schedule = ["0s"; 1]
        .into_iter()
        .chain(["300ms"; 60])
        .collect::<Vec<_>>()
        .join(",");
    let app = spawn_app_with(&["--retry-schedule", &schedule]).await;
    app.create_namespace("acme").await;
    let url = format!("redis://{user}:user-pw-1@127.0.0.1:6379/0?stream={key}&maxlen=1000");
    let (id, secret) = hook(&app, "stream", &url).await;
    const N: usize = 30;
    for i in 0..N {
        app.post_envelope(push(&format!("burst-{i}-{key}"))).await;
        if i == N / 2 {
            let _: Value = redis::cmd("CLIENT")
                .arg("KILL")
                .arg("USER")
                .arg(&user)
                .query_async::<i64>(&mut redis)
                .await
                .map(|n| json!(n))
                .unwrap();
        }
    }
    let d = app
        .wait_deliveries("acme", id, |d| {
            d.as_array().unwrap().len() == N
                && d.as_array()
                    .unwrap()
                    .iter()
                    .all(|x| x["state"] == "succeeded")
        })
        .await;
    let last = d[0]["id"].as_i64().unwrap();
    let detail = app
        .api(
            "GET",
            &format!("/namespaces/acme/webhooks/{id}/deliveries/{last}"),
            None,
        )
        .await
        .body;
    let answer: Value = serde_json::from_str(
        detail["attempts"].as_array().unwrap().last().unwrap()["response_body"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(answer["stream"], key.as_str());
    let entries: Vec<(String, Vec<Vec<u8>>)> = redis::cmd("XRANGE")
        .arg(&key)
        .arg("-")
        .arg("+")
        .query_async(&mut redis)
        .await
        .unwrap();
    let mut ids = std::collections::BTreeSet::new();
    for (_, fields) in &entries {
        let mut body = Vec::new();
        let mut headers = Vec::new();
        for pair in fields.chunks(2) {
            let name = String::from_utf8(pair[0].clone()).unwrap();
            if name == "body" {
                body = pair[1].clone();
            } else {
                headers.push((name, String::from_utf8(pair[1].clone()).unwrap()));
            }
        }
        check_message(&secret, &body, &headers);
        ids.insert(header(&headers, "webhook-id").unwrap().to_string());
    }
    assert_eq!(ids.len(), N, "every delivery is in the stream");
    let _: () = redis::cmd("DEL")
        .arg(&key)
        .query_async(&mut redis)
        .await
        .unwrap();
    let _: i64 = redis::cmd("ACL")
        .arg("DELUSER")
        .arg(&user)
        .query_async(&mut redis)
        .await
        .unwrap();
}

// ---------------------------------------------------------------- MQTT

#[tokio::test]
async fn mqtt_deliveries_are_qos1_publishes_with_user_properties() {
    use rumqttc::v5::mqttbytes::v5::Packet;
    use rumqttc::v5::mqttbytes::QoS;
    use rumqttc::v5::{AsyncClient, Event, MqttOptions};
    if require(
        "Mosquitto",
        std::net::TcpStream::connect("127.0.0.1:1883")
            .map_err(|e| format!("no MQTT broker on 127.0.0.1:1883: {e}")),
    )
    .is_none()
    {
        return;
    }
    let topic = format!("herald/{}", unique("t"));
    let (client, mut events) =
        AsyncClient::new(MqttOptions::new(unique("sub-"), "127.0.0.1", 1883), 16);
    client
        .subscribe(topic.clone(), QoS::AtLeastOnce)
        .await
        .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let subscribed = std::sync::Arc::new(tokio::sync::Notify::new());
    let ready = subscribed.clone();
    let poller = tokio::spawn(async move {
        while let Ok(event) = events.poll().await {
            match event {
                Event::Incoming(Packet::SubAck(_)) => ready.notify_one(),
                Event::Incoming(Packet::Publish(p)) => {
                    let _ = tx.send(p);
                }
                _ => {}
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(10), subscribed.notified())
        .await
        .expect("the subscription is acknowledged");
    let app = spawn_app().await;
    app.create_namespace("acme").await;
    let (id, secret) = hook(&app, "mqtt", &format!("mqtt://127.0.0.1:1883/{topic}")).await;
    app.post_envelope(push(&unique("ev"))).await;
    let d = delivery_in(&app, id, "succeeded").await;
    let answer = d["attempts"][0]["response_body"].as_str().unwrap();
    assert!(answer.contains("success"), "{answer}");
    let got = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("the subscriber gets the message")
        .unwrap();
    assert_eq!(got.qos, QoS::AtLeastOnce);
    let properties = got.properties.unwrap();
    let mut headers = properties.user_properties.clone();
    headers.retain(|(n, _)| n != "content-type");
    headers.push((
        "content-type".into(),
        properties.content_type.clone().unwrap(),
    ));
    check_message(&secret, &got.payload, &headers);
    poller.abort();
}

/// A private Mosquitto on `port`, anonymous, persisting its sessions and queued messages
/// in `store` so that a subscriber's persistent session survives a restart.
fn mosquitto(exe: &str, port: u16, store: &std::path::Path) -> Server {
    // Started as root, Mosquitto runs as its own user: it must be able to write there.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(store, std::fs::Permissions::from_mode(0o777)).unwrap();
    let config = store.join("mosquitto.conf");
    std::fs::write(
        &config,
        format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\n\
             persistence_location {}/\n",
            store.display()
        ),
    )
    .unwrap();
    Server(
        Command::new(exe)
            .arg("-c")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// A QoS 1 subscriber that reconnects by itself, with a persistent session (clean start
/// off, a session expiry) when asked; every message it reads goes to the channel.
async fn mqtt_subscriber(
    port: u16,
    topic: &str,
    persistent: bool,
) -> (
    tokio::task::JoinHandle<()>,
    tokio::sync::mpsc::UnboundedReceiver<rumqttc::v5::mqttbytes::v5::Publish>,
) {
    use rumqttc::v5::mqttbytes::v5::Packet;
    use rumqttc::v5::mqttbytes::QoS;
    use rumqttc::v5::{AsyncClient, Event, MqttOptions};
    let mut options = MqttOptions::new(unique("sub-"), "127.0.0.1", port);
    if persistent {
        options
            .set_clean_start(false)
            .set_session_expiry_interval(Some(600));
    }
    let (client, mut events) = AsyncClient::new(options, 64);
    client
        .subscribe(topic.to_string(), QoS::AtLeastOnce)
        .await
        .unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let subscribed = std::sync::Arc::new(tokio::sync::Notify::new());
    let ready = subscribed.clone();
    let poller = tokio::spawn(async move {
        let _client = client;
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::SubAck(_))) => ready.notify_one(),
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let _ = tx.send(p);
                }
                Ok(_) => {}
                // The broker is away: the next poll reconnects, with the same session.
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(10), subscribed.notified())
        .await
        .expect("the subscription is acknowledged");
    (poller, rx)
}

#[tokio::test]
async fn a_mosquitto_restarted_mid_burst_loses_nothing() {
    let Some(exe) = require("mosquitto", program("mosquitto")) else {
        return;
    };
    let port = free_port();
    let store = tempfile::tempdir().unwrap();
    let mut server = mosquitto(&exe, port, store.path());
    eventually(Duration::from_secs(10), "mosquitto listens", || {
        port_open(port)
    })
    .await;
    let topic = format!("herald/{}", unique("burst"));
    let (poller, mut rx) = mqtt_subscriber(port, &topic, true).await;
    let schedule = ["0s"; 1]
        .into_iter()
        .chain(["300ms"; 60])
        .collect::<Vec<_>>()
        .join(",");
    let app = spawn_app_with(&["--retry-schedule", &schedule, "--delivery-timeout", "2s"]).await;
    app.create_namespace("acme").await;
    let (id, secret) = hook(&app, "mqtt", &format!("mqtt://127.0.0.1:{port}/{topic}")).await;
    const N: usize = 30;
    let mut sent = std::collections::BTreeSet::new();
    for i in 0..N {
        let event = format!("burst-{i}-{topic}");
        app.post_envelope(push(&event)).await;
        sent.insert(event);
        if i == N / 2 {
            // A clean stop (SIGTERM), so that Mosquitto writes its sessions to disk.
            let stopped = Command::new("kill")
                .args(["-TERM", &server.0.id().to_string()])
                .status()
                .unwrap();
            assert!(stopped.success());
            server.0.wait().unwrap();
            server = mosquitto(&exe, port, store.path());
        }
    }
    app.wait_deliveries("acme", id, |d| {
        d.as_array().unwrap().len() == N
            && d.as_array()
                .unwrap()
                .iter()
                .all(|x| x["state"] == "succeeded")
    })
    .await;
    // Every event reaches the subscriber at least once, signed.
    let mut got = std::collections::BTreeSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while got.len() < N {
        let p = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("only {} of {N} arrived: {got:?}", got.len()))
            .unwrap();
        let properties = p.properties.clone().unwrap();
        let mut headers = properties.user_properties.clone();
        headers.push(("content-type".into(), properties.content_type.unwrap()));
        check_message(&secret, &p.payload, &headers);
        let body: Value = serde_json::from_slice(&p.payload).unwrap();
        got.insert(body["id"].as_str().unwrap().to_string());
    }
    assert_eq!(got, sent);
    poller.abort();
    drop(server);
}

/// How a stand-in for an MQTT 3.1.1-only broker refuses an MQTT 5 CONNECT.
#[derive(Clone, Copy, Debug)]
enum Refusal {
    /// A v5 CONNACK, reason 0x84 "unsupported protocol version", then close.
    V5Connack,
    /// A 3.1.1 CONNACK, return code 0x01 "unacceptable protocol version", then close: what
    /// a broker that knows nothing of v5 answers.
    V311Connack,
    /// Close the connection without a word.
    Close,
}

/// A loopback stand-in for a broker that speaks MQTT 3.1.1 only (Debian's Mosquitto 2.0.11
/// cannot be told to refuse v5: its listener `protocol` chooses mqtt or websockets, and
/// `accept_protocol_versions` came later). It reads each connection's CONNECT: a v5 one
/// is refused as `refusal` says, any other is piped to the real Mosquitto on 1883, which
/// then does the rest. Returns its port and how many v5 CONNECTs it refused.
async fn mqtt_311_only(
    refusal: Refusal,
) -> (u16, std::sync::Arc<AtomicU32>, tokio::task::JoinHandle<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let refused = std::sync::Arc::new(AtomicU32::new(0));
    let counted = refused.clone();
    let task = tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let counted = counted.clone();
            tokio::spawn(async move {
                // The fixed header, the remaining length (a varint), the rest.
                let mut head = vec![client.read_u8().await?];
                let (mut length, mut shift) = (0usize, 0);
                loop {
                    let byte = client.read_u8().await?;
                    head.push(byte);
                    length |= ((byte & 0x7f) as usize) << shift;
                    shift += 7;
                    if byte & 0x80 == 0 {
                        break;
                    }
                }
                let mut rest = vec![0; length];
                client.read_exact(&mut rest).await?;
                // Protocol name ("MQTT", length-prefixed), then the protocol level.
                let name = u16::from_be_bytes([rest[0], rest[1]]) as usize;
                if rest[2 + name] == 5 {
                    counted.fetch_add(1, Ordering::SeqCst);
                    match refusal {
                        Refusal::V5Connack => client.write_all(&[0x20, 3, 0, 0x84, 0]).await?,
                        Refusal::V311Connack => client.write_all(&[0x20, 2, 0, 0x01]).await?,
                        Refusal::Close => {}
                    }
                    return client.shutdown().await;
                }
                let mut broker = tokio::net::TcpStream::connect("127.0.0.1:1883").await?;
                broker.write_all(&head).await?;
                broker.write_all(&rest).await?;
                tokio::io::copy_bidirectional(&mut client, &mut broker)
                    .await
                    .map(|_| ())
            });
        }
    });
    (port, refused, task)
}

#[tokio::test]
async fn a_broker_that_refuses_mqtt_5_gets_3_1_1_without_headers() {
    if require(
        "Mosquitto",
        std::net::TcpStream::connect("127.0.0.1:1883")
            .map_err(|e| format!("no MQTT broker on 127.0.0.1:1883: {e}")),
    )
    .is_none()
    {
        return;
    }
    let topic = format!("herald/{}", unique("v311"));
    let (poller, mut rx) = mqtt_subscriber(1883, &format!("{topic}/#"), false).await;
    let app = spawn_app().await;
    app.create_namespace("acme").await;
    let mut hooks = Vec::new();
    for refusal in [Refusal::V5Connack, Refusal::V311Connack, Refusal::Close] {
        let (port, refused, stub) = mqtt_311_only(refusal).await;
        let url = format!("mqtt://127.0.0.1:{port}/{topic}/{refusal:?}");
        let (id, _) = hook(&app, &format!("{refusal:?}").to_lowercase(), &url).await;
        hooks.push((refusal, id, refused, stub));
    }
    let event = unique("ev");
    app.post_envelope(push(&event)).await;
    for (refusal, id, refused, _) in &hooks {
        let d = delivery_in(&app, *id, "succeeded").await;
        let answer: Value =
            serde_json::from_str(d["attempts"][0]["response_body"].as_str().unwrap()).unwrap();
        assert_eq!(answer["protocol"], "MQTT 3.1.1", "{refusal:?}: {answer}");
        assert_eq!(answer["puback"], "success", "{refusal:?}: {answer}");
        assert!(
            answer["headers"].as_str().unwrap().contains("not sent"),
            "{answer}"
        );
        assert_eq!(d["attempts"].as_array().unwrap().len(), 1, "{refusal:?}");
        assert!(refused.load(Ordering::SeqCst) >= 1, "{refusal:?}");
    }
    // Through the real broker: the body as ever, no properties (3.1.1 has none).
    let mut topics = std::collections::BTreeSet::new();
    while topics.len() < hooks.len() {
        let p = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("the subscriber gets every message")
            .unwrap();
        let got: Value = serde_json::from_slice(&p.payload).unwrap();
        assert_eq!(got["id"], event.as_str());
        assert!(
            p.properties
                .as_ref()
                .is_none_or(|p| p.user_properties.is_empty() && p.content_type.is_none()),
            "{:?}",
            p.properties
        );
        topics.insert(String::from_utf8(p.topic.to_vec()).unwrap());
    }
    assert_eq!(topics.len(), 3, "{topics:?}");
    poller.abort();
    for (_, _, _, stub) in hooks {
        stub.abort();
    }
}

// ---------------------------------------------------------------- the NATS source

/// A zot event in CloudEvents binary mode, as zot's NATS sink publishes it: its
/// attributes as `ce-*` headers, its data as the payload.
fn zot_message(id: &str) -> (async_nats::HeaderMap, Vec<u8>) {
    let ce: Value = serde_json::from_slice(&fixture("zot/image-updated.json")).unwrap();
    let mut headers = async_nats::HeaderMap::new();
    for attribute in ["specversion", "source", "type", "time"] {
        headers.insert(
            format!("ce-{attribute}").as_str(),
            ce[attribute].as_str().unwrap(),
        );
    }
    headers.insert("ce-id", id);
    headers.insert("content-type", "application/json");
    (headers, serde_json::to_vec(&ce["data"]).unwrap())
}

async fn consumer_counts(js: &async_nats::jetstream::Context, stream: &str) -> (usize, u64) {
    let info = js
        .get_stream(stream)
        .await
        .unwrap()
        .consumer_info("herald-zot1")
        .await
        .unwrap();
    (info.num_ack_pending, info.num_pending)
}

/// A JetStream stream of its own capturing `<subject>.>`, and a Herald with a webhook in
/// `acme` (`webhook`'s fields added to it) and a zot source `zot1` that does not read from
/// NATS yet.
struct ZotOverNats {
    js: async_nats::jetstream::Context,
    stream: String,
    subject: String,
    app: TestApp,
    rx: Receiver,
}

/// `None` only outside CI without a NATS server (`require`).
async fn zot_over_nats(prefix: &str, webhook: Value) -> Option<ZotOverNats> {
    let js = async_nats::jetstream::new(nats_client(4222).await?);
    let stream = unique(prefix);
    let subject = format!("zot.{stream}");
    js.create_stream(async_nats::jetstream::stream::Config {
        name: stream.clone(),
        subjects: vec![format!("{subject}.>")],
        ..Default::default()
    })
    .await
    .unwrap();
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    app.create_namespace("acme").await;
    let mut body = json!({"name": "hook", "url": rx.url("/"), "request_method": "POST"});
    for (field, value) in webhook.as_object().unwrap() {
        body[field] = value.clone();
    }
    app.enabled_webhook("acme", body).await;
    let r = app
        .api(
            "POST",
            "/sources",
            Some(json!({"name": "zot1", "kind": "zot", "token": "zot-token-0123456789abcdefghij"})),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    Some(ZotOverNats {
        js,
        stream,
        subject,
        app,
        rx,
    })
}

#[tokio::test]
async fn a_zot_source_reads_its_events_from_nats_and_acks_only_after_the_commit() {
    let Some(ZotOverNats {
        js,
        stream,
        subject,
        app,
        rx,
    }) = zot_over_nats("ZOT_", json!({"filters": {"actions": ["push"]}})).await
    else {
        return;
    };
    // Refused: a subject without a stream setting, and a Harbor source.
    let r = app
        .api(
            "PATCH",
            "/sources/zot1",
            Some(json!({"nats_url": "nats://127.0.0.1:4222", "nats_subject": "x"})),
        )
        .await;
    assert_eq!(r.status, 422, "{:?}", r.body);
    let r = app
        .api(
            "PATCH",
            "/sources/zot1",
            Some(json!({"nats_url": "nats://127.0.0.1:4222",
                        "nats_subject": format!("{subject}.>"), "nats_stream": stream})),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["nats_consumer"], "herald-zot1");

    let (headers, payload) = zot_message(&unique("zot-"));
    js.publish_with_headers(format!("{subject}.events"), headers, payload.into())
        .await
        .unwrap()
        .await
        .unwrap();
    let got = rx.next().await;
    assert_eq!(got.json()["data"]["name"], "acme/web", "{}", got.body);
    eventually(
        Duration::from_secs(10),
        "the message is acknowledged",
        || async { consumer_counts(&js, &stream).await == (0, 0) },
    )
    .await;

    // While events cannot be stored, the message stays unacknowledged and comes again.
    app.raw_sql(
        "CREATE TRIGGER disk_full BEFORE INSERT ON events BEGIN SELECT RAISE(FAIL, 'database or disk is full'); END",
        "CREATE FUNCTION disk_full() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'could not extend file: No space left on device'; END $$ LANGUAGE plpgsql; \
         CREATE TRIGGER disk_full BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION disk_full()",
    )
    .await;
    let (headers, payload) = zot_message(&unique("zot-"));
    js.publish_with_headers(format!("{subject}.events"), headers, payload.into())
        .await
        .unwrap()
        .await
        .unwrap();
    eventually(
        Duration::from_secs(10),
        "the message was tried and not acked",
        || async {
            let info = js
                .get_stream(&stream)
                .await
                .unwrap()
                .consumer_info("herald-zot1")
                .await
                .unwrap();
            info.num_pending == 0 && info.num_ack_pending == 1
        },
    )
    .await;
    rx.assert_quiet(Duration::from_millis(300)).await;
    app.raw_sql("DROP TRIGGER disk_full", "DROP TRIGGER disk_full ON events")
        .await;
    let got = tokio::time::timeout(Duration::from_secs(15), rx.next())
        .await
        .expect("the redelivered message is stored and delivered");
    assert_eq!(got.json()["data"]["name"], "acme/web");
    eventually(
        Duration::from_secs(10),
        "the message is acknowledged",
        || async { consumer_counts(&js, &stream).await == (0, 0) },
    )
    .await;

    // Not a payload of the source's kind: dropped (terminated), never redelivered.
    js.publish(format!("{subject}.events"), "not json".into())
        .await
        .unwrap()
        .await
        .unwrap();
    eventually(
        Duration::from_secs(10),
        "the bad message is settled",
        || async { consumer_counts(&js, &stream).await == (0, 0) },
    )
    .await;
    rx.assert_quiet(Duration::from_millis(300)).await;
    js.delete_stream(&stream).await.unwrap();
}

/// The same intake set up on the source's page, as an admin without the API would: refused
/// input is shown beside its field, the page says where events come from, and the events
/// published there are delivered; then the admin stops it.
#[tokio::test]
async fn an_admin_makes_a_zot_source_read_from_nats_on_its_page() {
    use crate::web::{flash_of, sign_in_as};
    let Some(ZotOverNats {
        js,
        stream,
        subject,
        app,
        rx,
    }) = zot_over_nats("ZOTUI_", json!({})).await
    else {
        return;
    };
    let admin = sign_in_as(&app, "admin", "admin-password").await;
    let csrf = admin.csrf(&app).await;
    let (status, page) = admin.get(&app, "/sources/zot1").await;
    assert_eq!(status, 200);
    assert!(page.contains("not used: events arrive over HTTP"), "{page}");

    let wanted = format!("{subject}.>");
    let form = |subject: &'static str| {
        let (csrf, wanted, stream) = (csrf.clone(), wanted.clone(), stream.clone());
        let admin = &admin;
        let app = &app;
        async move {
            let subject = if subject.is_empty() {
                wanted
            } else {
                subject.to_string()
            };
            admin
                .post(
                    app,
                    "/sources/zot1/nats",
                    &[
                        ("csrf", csrf.as_str()),
                        ("nats_url", "nats://127.0.0.1:4222"),
                        ("nats_subject", subject.as_str()),
                        ("nats_stream", stream.as_str()),
                        ("nats_consumer", ""),
                    ],
                )
                .await
        }
    };
    let res = form("zot events").await;
    assert_eq!(res.status(), 422);
    let refused = res.text().await.unwrap();
    assert!(
        refused.contains("nats_subject is tokens separated by"),
        "{refused}"
    );
    assert!(
        refused.contains("value=\"zot events\""),
        "what was typed is kept"
    );

    let res = form("").await;
    assert_eq!(res.status(), 303);
    assert!(flash_of(&res).contains("reads its events from NATS"));
    let (_, page) = admin.get(&app, "/sources/zot1").await;
    assert!(
        page.contains(&wanted.replace('>', "&gt;")) && page.contains("herald-zot1"),
        "{page}"
    );
    assert!(page.contains("Stop reading from NATS"));

    let (headers, payload) = zot_message(&unique("zot-"));
    js.publish_with_headers(format!("{subject}.events"), headers, payload.into())
        .await
        .unwrap()
        .await
        .unwrap();
    let got = rx.next().await;
    assert_eq!(got.json()["data"]["name"], "acme/web", "{}", got.body);

    let res = admin
        .post(
            &app,
            "/sources/zot1/nats",
            &[("csrf", csrf.as_str()), ("remove", "1")],
        )
        .await;
    assert_eq!(res.status(), 303);
    assert!(flash_of(&res).contains("no longer reads its events from NATS"));
    let r = app.api("GET", "/sources/zot1", None).await;
    assert!(r.body.get("nats_url").is_none(), "{:#}", r.body);
    js.delete_stream(&stream).await.unwrap();
}
