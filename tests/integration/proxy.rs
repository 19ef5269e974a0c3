//! Deliveries through an egress proxy (`--delivery-proxy`): an HTTP proxy (CONNECT and
//! absolute-form) and a SOCKS5 one, written here, that record what they were asked to carry.
//! The SSRF guard must judge the receiver, never the proxy. Everything stays on loopback.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use base64::Engine;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::helpers::*;

const PUSH: &str = "distribution-2.8.2/push-manifest-tagged.json";

/// One request a test proxy was asked to carry.
#[derive(Debug, Clone, PartialEq)]
struct Asked {
    /// `CONNECT`, `GET`, `POST` ...; `SOCKS5` for a SOCKS connect.
    method: String,
    /// `host:port` for CONNECT and SOCKS5, the absolute URL otherwise.
    target: String,
    /// The `Proxy-Authorization` header, or SOCKS5's `user:password`.
    credentials: Option<String>,
}

type Log = Arc<Mutex<Vec<Asked>>>;

struct TestProxy {
    addr: SocketAddr,
    asked: Log,
}

impl TestProxy {
    /// An HTTP proxy on `bind`; with `credentials` it answers 407 to requests without them.
    async fn http(bind: &str, credentials: Option<(&str, &str)>) -> Self {
        let expected = credentials.map(|(user, password)| basic(user, password));
        Self::start(bind, move |conn, asked| {
            serve_http(conn, expected.clone(), asked)
        })
        .await
    }

    /// A SOCKS5 proxy on `bind`; with `credentials` it insists on username/password.
    async fn socks5(bind: &str, credentials: Option<(&str, &str)>) -> Self {
        let expected = credentials.map(|(user, password)| format!("{user}:{password}"));
        Self::start(bind, move |conn, asked| {
            serve_socks5(conn, expected.clone(), asked)
        })
        .await
    }

    async fn start<F, Fut>(bind: &str, handle: F) -> Self
    where
        F: Fn(TcpStream, Log) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind(bind)
            .await
            .expect("Linux routes all of 127.0.0.0/8 to loopback");
        let addr = listener.local_addr().unwrap();
        let asked: Log = Arc::default();
        let log = asked.clone();
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(handle(conn, log.clone()));
            }
        });
        Self { addr, asked }
    }

    fn asked(&self) -> Vec<Asked> {
        self.asked.lock().unwrap().clone()
    }
}

fn basic(user: &str, password: &str) -> String {
    let pair = format!("{user}:{password}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

/// The request head (up to the blank line) and whatever arrived after it.
async fn read_head(conn: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            return Some((head, buf[end + 4..].to_vec()));
        }
        let n = conn.read(&mut chunk).await.ok()?;
        if n == 0 || buf.len() > 64 * 1024 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn answer(conn: &mut TcpStream, status: &str) {
    let _ = conn
        .write_all(
            format!(
                "HTTP/1.1 {status}\r\nproxy-authenticate: Basic realm=\"test\"\r\n\
                 content-length: 0\r\nconnection: close\r\n\r\n"
            )
            .as_bytes(),
        )
        .await;
}

/// CONNECT: a tunnel to `host:port`. Absolute-form: the request forwarded in origin form,
/// and the answer passed back with `connection: close`, so no connection is reused behind
/// the proxy's back.
async fn serve_http(mut client: TcpStream, expected: Option<String>, asked: Log) {
    let Some((head, mut body)) = read_head(&mut client).await else {
        return;
    };
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next().unwrap_or_default().split_whitespace();
    let method = request_line.next().unwrap_or_default().to_string();
    let target = request_line.next().unwrap_or_default().to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let credentials = header("proxy-authorization");
    asked.lock().unwrap().push(Asked {
        method: method.clone(),
        target: target.clone(),
        credentials: credentials.clone(),
    });
    if expected.is_some() && credentials != expected {
        return answer(&mut client, "407 Proxy Authentication Required").await;
    }
    if method == "CONNECT" {
        let Ok(mut upstream) = TcpStream::connect(&target).await else {
            return answer(&mut client, "502 Bad Gateway").await;
        };
        if client
            .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
            .await
            .is_err()
            || upstream.write_all(&body).await.is_err()
        {
            return;
        }
        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
        return;
    }
    let Ok(url) = url::Url::parse(&target) else {
        return answer(&mut client, "400 Bad Request").await;
    };
    let authority = format!(
        "{}:{}",
        url.host_str().unwrap_or_default(),
        url.port_or_known_default().unwrap_or(80)
    );
    let Ok(mut upstream) = TcpStream::connect(&authority).await else {
        return answer(&mut client, "502 Bad Gateway").await;
    };
    let mut forwarded = format!(
        "{method} {} HTTP/1.1\r\n",
        &url[url::Position::BeforePath..]
    );
    for (name, value) in &headers {
        if !matches!(
            name.as_str(),
            "proxy-authorization" | "proxy-connection" | "connection"
        ) {
            forwarded.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    forwarded.push_str("connection: close\r\n\r\n");
    let length: usize = header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut chunk = [0u8; 4096];
    while body.len() < length {
        match client.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    if upstream.write_all(forwarded.as_bytes()).await.is_err()
        || upstream.write_all(&body).await.is_err()
    {
        return;
    }
    let mut response = Vec::new();
    let _ = upstream.read_to_end(&mut response).await;
    let Some(end) = response.windows(4).position(|w| w == b"\r\n\r\n") else {
        return answer(&mut client, "502 Bad Gateway").await;
    };
    let head = String::from_utf8_lossy(&response[..end]);
    let mut out = String::new();
    for line in head
        .split("\r\n")
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
    {
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str("connection: close\r\n\r\n");
    let _ = client.write_all(out.as_bytes()).await;
    let _ = client.write_all(&response[end + 4..]).await;
    let _ = client.shutdown().await;
}

/// A SOCKS field: one length byte, then that many bytes.
async fn read_field(conn: &mut TcpStream) -> Option<String> {
    let mut len = [0u8; 1];
    conn.read_exact(&mut len).await.ok()?;
    let mut field = vec![0u8; len[0] as usize];
    conn.read_exact(&mut field).await.ok()?;
    Some(String::from_utf8_lossy(&field).into_owned())
}

/// RFC 1928 CONNECT, with RFC 1929 username/password when `expected` is set.
async fn serve_socks5(mut client: TcpStream, expected: Option<String>, asked: Log) {
    let mut greeting = [0u8; 2];
    if client.read_exact(&mut greeting).await.is_err() || greeting[0] != 5 {
        return;
    }
    let mut methods = vec![0u8; greeting[1] as usize];
    if client.read_exact(&mut methods).await.is_err() {
        return;
    }
    let wanted = if expected.is_some() { 2 } else { 0 };
    if !methods.contains(&wanted) {
        let _ = client.write_all(&[5, 0xff]).await;
        return;
    }
    if client.write_all(&[5, wanted]).await.is_err() {
        return;
    }
    let mut credentials = None;
    if let Some(expected) = &expected {
        let mut version = [0u8; 1];
        if client.read_exact(&mut version).await.is_err() {
            return;
        }
        let (Some(user), Some(password)) =
            (read_field(&mut client).await, read_field(&mut client).await)
        else {
            return;
        };
        let given = format!("{user}:{password}");
        let ok = &given == expected;
        credentials = Some(given);
        if client.write_all(&[1, u8::from(!ok)]).await.is_err() || !ok {
            return;
        }
    }
    let mut request = [0u8; 4];
    if client.read_exact(&mut request).await.is_err() {
        return;
    }
    let host = match request[3] {
        1 => {
            let mut ip = [0u8; 4];
            if client.read_exact(&mut ip).await.is_err() {
                return;
            }
            Ipv4Addr::from(ip).to_string()
        }
        3 => {
            let mut len = [0u8; 1];
            if client.read_exact(&mut len).await.is_err() {
                return;
            }
            let mut name = vec![0u8; len[0] as usize];
            if client.read_exact(&mut name).await.is_err() {
                return;
            }
            String::from_utf8_lossy(&name).into_owned()
        }
        4 => {
            let mut ip = [0u8; 16];
            if client.read_exact(&mut ip).await.is_err() {
                return;
            }
            format!("[{}]", Ipv6Addr::from(ip))
        }
        _ => return,
    };
    let mut port = [0u8; 2];
    if client.read_exact(&mut port).await.is_err() {
        return;
    }
    let target = format!("{host}:{}", u16::from_be_bytes(port));
    asked.lock().unwrap().push(Asked {
        method: "SOCKS5".into(),
        target: target.clone(),
        credentials,
    });
    let Ok(mut upstream) = TcpStream::connect(&target).await else {
        let _ = client.write_all(&[5, 5, 0, 1, 0, 0, 0, 0, 0, 0]).await;
        return;
    };
    if client
        .write_all(&[5, 0, 0, 1, 0, 0, 0, 0, 0, 0])
        .await
        .is_ok()
    {
        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
    }
}

/// Waits until every listed webhook's first delivery has finished, and returns them.
async fn finished(app: &TestApp, hooks: &[i64]) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for &hook in hooks {
        let items = app
            .wait_deliveries("acme", hook, |d| {
                matches!(d[0]["state"].as_str(), Some("succeeded" | "failed"))
            })
            .await;
        out.push(items[0].clone());
    }
    out
}

#[tokio::test]
async fn deliveries_to_an_http_receiver_go_through_the_proxy_with_its_credentials() {
    // The proxy listens on 127.0.0.3, outside the allow-list (127.0.0.1/32): the guard
    // judges receivers, and the proxy is the operator's choice.
    let proxy = TestProxy::http("127.0.0.3:0", Some(("herald", "pa:ss@word"))).await;
    let url = format!("http://herald:pa%3Ass%40word@{}", proxy.addr);
    let app = spawn_app_with(&["--delivery-proxy", &url]).await;
    let rx = Receiver::start().await;
    app.create_namespace("acme").await;
    let hook = app
        .enabled_webhook(
            "acme",
            json!({"name": "deploy", "url": rx.url("/in"), "request_method": "POST"}),
        )
        .await;
    app.post_envelope(fixture(PUSH)).await;

    let got = rx.next().await;
    assert_eq!((got.method.as_str(), got.path.as_str()), ("POST", "/in"));
    assert_eq!(got.json()["action"], "push");
    app.wait_deliveries("acme", hook, |d| d[0]["state"] == "succeeded")
        .await;
    assert_eq!(
        proxy.asked(),
        vec![Asked {
            method: "POST".into(),
            target: rx.url("/in"),
            credentials: Some(basic("herald", "pa:ss@word")),
        }],
        "an absolute-form request with Proxy-Authorization"
    );
}

#[tokio::test]
async fn an_https_receiver_is_reached_through_a_connect_tunnel() {
    let proxy = TestProxy::http("127.0.0.3:0", Some(("herald", "s3cret"))).await;
    let rx = tls_receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("ca.pem");
    std::fs::write(&bundle, &rx.cert_pem).unwrap();
    let app = spawn_app_with(&[
        "--delivery-proxy",
        &format!("http://herald:s3cret@{}", proxy.addr),
        "--delivery-ca-bundle",
        bundle.to_str().unwrap(),
    ])
    .await;
    app.create_namespace("acme").await;
    let hook = app
        .enabled_webhook("acme", json!({"name": "tls", "url": rx.url}))
        .await;
    app.post_envelope(fixture(PUSH)).await;
    app.wait_deliveries("acme", hook, |d| d[0]["state"] == "succeeded")
        .await;
    assert_eq!(
        rx.requests.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "the request went through the tunnel, certificate verified"
    );
    assert_eq!(
        proxy.asked(),
        vec![Asked {
            method: "CONNECT".into(),
            target: rx.addr.to_string(),
            credentials: Some(basic("herald", "s3cret")),
        }]
    );
}

#[tokio::test]
async fn receivers_on_the_no_proxy_list_bypass_the_proxy() {
    let proxy = TestProxy::http("127.0.0.3:0", None).await;
    let app = spawn_app_with(&[
        "--delivery-proxy",
        &format!("http://{}", proxy.addr),
        "--delivery-no-proxy",
        "hooks.internal,localhost",
    ])
    .await;
    let rx = Receiver::start().await;
    app.create_namespace("acme").await;
    // localhost is listed: it goes out directly (to 127.0.0.1, which the guard allows).
    let direct = app
        .enabled_webhook(
            "acme",
            json!({"name": "direct", "url": format!("http://localhost:{}/direct", rx.addr.port())}),
        )
        .await;
    let proxied = app
        .enabled_webhook(
            "acme",
            json!({"name": "proxied", "url": rx.url("/proxied")}),
        )
        .await;
    app.post_envelope(fixture(PUSH)).await;

    let mut paths = vec![rx.next().await.path, rx.next().await.path];
    paths.sort();
    assert_eq!(paths, ["/direct", "/proxied"]);
    for d in finished(&app, &[direct, proxied]).await {
        assert_eq!(d["state"], "succeeded", "{d}");
    }
    let targets: Vec<String> = proxy.asked().into_iter().map(|a| a.target).collect();
    assert_eq!(
        targets,
        [rx.url("/proxied")],
        "only the unlisted receiver used the proxy"
    );
}

#[tokio::test]
async fn the_guard_vets_the_receiver_not_the_proxy() {
    // Only the receiver's exact address is allowed. The proxy is named `localhost`, whose
    // addresses the guard refuses: it must still be used, as the operator chose it.
    let rx = Receiver::start_on("127.0.0.2:0").await;
    let proxy = TestProxy::http("127.0.0.1:0", None).await;
    let trap = Trap::bind("127.0.0.3:0")
        .await
        .expect("Linux routes all of 127.0.0.0/8 to loopback");
    let app = spawn_app_with(&[
        "--retry-schedule",
        "0s",
        "--delivery-allow-networks",
        &format!("{}/32", rx.addr.ip()),
        "--delivery-proxy",
        &format!("http://localhost:{}", proxy.addr.port()),
    ])
    .await;
    app.create_namespace("acme").await;
    let allowed = app
        .enabled_webhook("acme", json!({"name": "allowed", "url": rx.url("/ok")}))
        .await;
    let literal = app
        .enabled_webhook("acme", json!({"name": "literal", "url": trap.url()}))
        .await;
    // A name is resolved and vetted by Herald before the proxy would resolve it again.
    let named = app
        .enabled_webhook(
            "acme",
            json!({"name": "named", "url": format!("http://localhost:{}/", trap.addr.port())}),
        )
        .await;
    app.post_envelope(fixture(PUSH)).await;

    assert_eq!(rx.next().await.path, "/ok");
    let done = finished(&app, &[allowed, literal, named]).await;
    assert_eq!(done[0]["state"], "succeeded", "{}", done[0]);
    assert_eq!(
        done[1]["last_error"],
        "blocked by the SSRF guard: 127.0.0.3 is a loopback address \
         (allow it with HERALD_DELIVERY_ALLOW_NETWORKS)",
        "the same refusal as without a proxy"
    );
    let error = done[2]["last_error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with("blocked by the SSRF guard: localhost resolves")
            && error.contains("a loopback address")
            && error.ends_with("HERALD_DELIVERY_ALLOW_NETWORKS)"),
        "{error}"
    );
    assert_eq!(done[1]["last_status"], json!(null));
    let targets: Vec<String> = proxy.asked().into_iter().map(|a| a.target).collect();
    assert_eq!(
        targets,
        [rx.url("/ok")],
        "refused deliveries never reach the proxy"
    );
    assert!(!trap.was_reached());
}

#[tokio::test]
async fn socks5h_proxies_carry_deliveries_with_username_and_password() {
    let proxy = TestProxy::socks5("127.0.0.3:0", Some(("herald", "s3cret"))).await;
    let app = spawn_app_with(&[
        "--delivery-proxy",
        &format!("socks5h://herald:s3cret@{}", proxy.addr),
    ])
    .await;
    let rx = Receiver::start().await;
    app.create_namespace("acme").await;
    let hook = app
        .enabled_webhook("acme", json!({"name": "socks", "url": rx.url("/socks")}))
        .await;
    app.post_envelope(fixture(PUSH)).await;
    assert_eq!(rx.next().await.path, "/socks");
    app.wait_deliveries("acme", hook, |d| d[0]["state"] == "succeeded")
        .await;
    assert_eq!(
        proxy.asked(),
        vec![Asked {
            method: "SOCKS5".into(),
            target: rx.addr.to_string(),
            credentials: Some("herald:s3cret".into()),
        }]
    );
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn a_bad_proxy_setting_stops_serve_with_a_message_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let serve = |args: &[&str], env: &[(&str, &str)]| {
        let mut cmd = herald_cmd(&data);
        cmd.args(["--listen", "127.0.0.1:0"])
            .args(args)
            .arg("serve");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    };
    for (args, env, says) in [
        (
            vec!["--delivery-proxy", "ftp://herald:s3cret@127.0.0.1:21"],
            vec![],
            "the scheme 'ftp' is not supported",
        ),
        (
            vec!["--delivery-proxy", "herald:s3cret@127.0.0.1:3128"],
            vec![],
            "not a URL",
        ),
        (
            vec![],
            vec![(
                "HERALD_DELIVERY_PROXY",
                "http://herald:s3cret@127.0.0.1:3128/x",
            )],
            "has a path",
        ),
    ] {
        let out = serve(&args, &env);
        let err = text(&out.stderr);
        assert!(!out.status.success(), "{args:?} {env:?}");
        assert!(
            err.contains("'--delivery-proxy <URL>'") && err.contains(says),
            "{err}"
        );
        assert!(
            !err.contains("s3cret"),
            "the password is not repeated: {err}"
        );
    }
    let out = serve(&["--delivery-no-proxy", ".internal,10.0.0.0/33"], &[]);
    let err = text(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("--delivery-no-proxy") && err.contains("'10.0.0.0/33'"),
        "{err}"
    );
    // From the configuration file, the message names the file's key.
    let file = dir.path().join("herald.toml");
    std::fs::write(
        &file,
        "[delivery]\nproxy = \"gopher://herald:s3cret@proxy\"\n",
    )
    .unwrap();
    let out = serve(&["--config", file.to_str().unwrap()], &[]);
    let err = text(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("key 'delivery.proxy'") && err.contains("--delivery-proxy"),
        "{err}"
    );
    assert!(!err.contains("s3cret"), "{err}");
    assert!(!data.exists(), "nothing was created");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_credentials_stay_out_of_config_output_the_log_and_readyz() {
    const USER: &str = "proxyuser";
    const PASSWORD: &str = "pr0xy-s3cret";
    let proxy = TestProxy::http("127.0.0.3:0", Some((USER, PASSWORD))).await;
    let proxy_url = format!("http://{USER}:{PASSWORD}@{}", proxy.addr);
    let leaks = |text: &str| text.contains(USER) || text.contains(PASSWORD);
    let dir = tempfile::tempdir().unwrap();
    let token = cli_admin_token(dir.path());

    let out = herald_cmd(dir.path())
        .env("HERALD_DELIVERY_PROXY", &proxy_url)
        .arg("config")
        .output()
        .unwrap();
    let shown = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let line = shown
        .lines()
        .find(|l| l.starts_with("delivery_proxy = "))
        .unwrap_or_else(|| panic!("no delivery_proxy in\n{shown}"));
    assert!(
        line.contains(&format!("http://***:***@{}", proxy.addr))
            && line.ends_with("# env HERALD_DELIVERY_PROXY"),
        "{line}"
    );
    assert!(!leaks(&shown) && !leaks(&text(&out.stderr)), "{shown}");

    let rx = Receiver::start().await;
    let mut cmd = herald_cmd(dir.path());
    cmd.env("RUST_LOG", "herald=debug")
        .args(["--listen", "127.0.0.1:0", "--registry-token", "tok"])
        .args(["--delivery-allow-networks", "127.0.0.1/32"])
        .args(["--delivery-proxy", &proxy_url])
        .args(["--retry-schedule", "0s", "serve"]);
    let mut serve = LoggedServe::spawn(cmd);
    let started = serve.wait_for(|l| l.contains("deliveries go through this proxy"));
    assert!(
        started.contains(&format!("http://***:***@{}", proxy.addr)),
        "{started}"
    );
    let base = serve.base_url();
    let http = reqwest::Client::new();
    let api = |method: reqwest::Method, path: &str, body: serde_json::Value| {
        http.request(method, format!("{base}/api/v1{path}"))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
    };
    let r = api(
        reqwest::Method::POST,
        "/namespaces",
        json!({"name": "acme"}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 201);
    // One receiver that answers, and one the proxy cannot reach (a closed port), whose
    // failure is logged.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    for (name, url) in [
        ("ok", rx.url("/ok")),
        ("closed", format!("http://{closed}/")),
    ] {
        let created = api(
            reqwest::Method::POST,
            "/namespaces/acme/webhooks",
            json!({"name": name, "url": url}),
        )
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
        let created: serde_json::Value = serde_json::from_slice(&created).unwrap();
        let id = created["id"].as_i64().unwrap();
        let r = api(
            reqwest::Method::PATCH,
            &format!("/namespaces/acme/webhooks/{id}"),
            json!({"enabled": true}),
        )
        .await
        .unwrap();
        assert_eq!(r.status(), 200);
    }
    let r = http
        .post(format!("{base}/v2/webhooks/events"))
        .bearer_auth("tok")
        .header(
            "content-type",
            "application/vnd.docker.distribution.events.v1+json",
        )
        .body(fixture(PUSH))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    assert_eq!(rx.next().await.path, "/ok");
    serve.wait_for(|l| l.contains("delivery attempt failed") && l.contains("webhook=closed"));
    let readyz = http
        .get(format!("{base}/readyz"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!leaks(&readyz), "{readyz}");
    let log = serve.stop();
    for line in &log {
        assert!(!leaks(line), "the proxy's credentials in the log: {line}");
    }
    assert_eq!(proxy.asked().len(), 2, "both deliveries went to the proxy");
}
