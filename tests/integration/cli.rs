use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use herald::config::Config;
use herald::Application;

pub(crate) fn herald(dir: &std::path::Path, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(args)
        .env("HERALD_DATA_DIR", dir)
        .env_remove("HERALD_REGISTRY_TOKEN")
        .env_remove("HERALD_DATABASE_URL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A command that refuses its arguments exits without reading its input: the pipe is
    // then closed, and its answer is in the output.
    let written = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    if let Err(e) = written {
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{e}");
    }
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn admin_and_token_from_the_cli_open_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let out = herald(dir.path(), &["migrate"], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = herald(
        dir.path(),
        &["user", "create", "alice", "--admin"],
        "a-long-password\n",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("created admin 'alice'"));

    let out = herald(
        dir.path(),
        &["token", "create", "alice", "--label", "ci"],
        "",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "the token is the only line on stdout: {stdout:?}"
    );
    let token = lines[0];
    assert!(token.starts_with("hrld_"));

    let config = Config::from_args([
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--template-sandbox-exe",
        env!("CARGO_BIN_EXE_herald"),
    ])
    .unwrap();
    let app = Application::build(config).await.unwrap();
    let addr = app.local_addr();
    tokio::spawn(app.run(std::future::pending()));
    let res = reqwest::Client::new()
        .get(format!("http://{addr}/api/v1/namespaces"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

#[test]
fn bad_cli_input_is_refused_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    assert!(herald(dir.path(), &["migrate"], "").status.success());
    let out = herald(dir.path(), &["user", "create", "bob"], "short\n");
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("at least 8 characters"),
        "{}",
        text(&out.stderr)
    );
    let out = herald(dir.path(), &["user", "create", "Bob"], "long-enough-pw\n");
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("not a valid username"));
    let out = herald(dir.path(), &["token", "create", "nobody"], "");
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("user 'nobody' not found"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        out.status.code(),
        Some(3),
        "not found has its own exit code"
    );
    assert!(out.stdout.is_empty());
    let out = herald(dir.path(), &["user", "create", "carol"], "long-enough-pw\n");
    assert!(out.status.success());
    let out = herald(dir.path(), &["user", "create", "carol"], "long-enough-pw\n");
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("already exists"));
    // A broker webhook with no publish allowed in flight could never deliver.
    let out = herald(
        dir.path(),
        &["--delivery-concurrency-per-broker", "0", "serve"],
        "",
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("invalid value '0' for '--delivery-concurrency-per-broker"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn registry_config_prints_the_real_token() {
    let dir = tempfile::tempdir().unwrap();
    // `migrate` creates the token as the first `serve` would; registry-config only reads it.
    assert!(herald(dir.path(), &["migrate"], "").status.success());
    let out = herald(
        dir.path(),
        &["--listen", "127.0.0.1:9191", "registry-config"],
        "",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let yaml = text(&out.stdout);
    let token = std::fs::read_to_string(dir.path().join("registry-token")).unwrap();
    assert!(
        yaml.contains(&format!("Authorization: [Bearer {}]", token.trim())),
        "{yaml}"
    );
    assert!(yaml.contains("url: http://127.0.0.1:9191/v2/webhooks/events"));
    // The same token on the next call: it is kept, not regenerated.
    let again = herald(dir.path(), &["registry-config"], "");
    assert!(text(&again.stdout).contains(token.trim()));
    let configured = herald(
        dir.path(),
        &[
            "--registry-token",
            "mine",
            "--public-url",
            "https://h.example.org",
            "registry-config",
        ],
        "",
    );
    let yaml = text(&configured.stdout);
    assert!(
        yaml.contains("Bearer mine")
            && yaml.contains("url: https://h.example.org/v2/webhooks/events"),
        "{yaml}"
    );
}

#[test]
fn version_and_help() {
    let dir = tempfile::tempdir().unwrap();
    let out = herald(dir.path(), &["--version"], "");
    let version = text(&out.stdout);
    assert!(
        version.starts_with(&format!("herald {}", env!("CARGO_PKG_VERSION"))),
        "{version}"
    );
    let out = herald(dir.path(), &["--help"], "");
    let help = text(&out.stdout);
    for word in [
        "serve",
        "migrate",
        "user",
        "token",
        "webhook",
        "deliveries",
        "registry-config",
        "serve --help",
    ] {
        assert!(help.contains(word), "--help lacks {word}");
    }
    let out = herald(dir.path(), &["serve", "--help"], "");
    let help = text(&out.stdout);
    for word in [
        "--listen",
        "--data-dir",
        "--database",
        "--registry-token",
        "--delivery-concurrency",
        "HERALD_DELIVERY_ALLOW_NETWORKS",
    ] {
        assert!(help.contains(word), "serve --help lacks {word}");
    }
    let out = herald(dir.path(), &["migrate"], "");
    assert!(out.status.success());
    assert!(dir.path().join("herald.db").exists());
}

#[test]
fn commands_refuse_to_create_a_herald_where_there_is_none() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("herald-data");
    let data_str = data.to_str().unwrap();
    for args in [
        vec!["token", "create", "alice"],
        vec!["user", "list"],
        vec!["webhook", "list", "acme"],
        vec!["deliveries", "list", "acme", "1"],
    ] {
        let out = herald(&data, &args, "a-long-password\n");
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = text(&out.stderr);
        assert!(
            err.contains("no Herald database in") && err.contains(data_str),
            "{args:?}: {err}"
        );
        assert!(err.contains("--data-dir or HERALD_DATA_DIR"), "{err}");
    }
    // user create asks for no password before it knows there is a database.
    let out = herald(&data, &["user", "create", "alice"], "a-long-password\n");
    assert!(text(&out.stderr).contains("no Herald database in"));
    let out = herald(&data, &["registry-config"], "");
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("no registry token in"),
        "{}",
        text(&out.stderr)
    );
    assert!(out.stdout.is_empty());
    assert!(!data.exists(), "nothing was created");

    // A relative data directory is named as given and absolute.
    let out = Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["user", "list"])
        .current_dir(dir.path())
        .env_remove("HERALD_DATA_DIR")
        .env_remove("HERALD_DATABASE_URL")
        .env_remove("HERALD_CONFIG")
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!("no Herald database in ./herald-data ({data_str})")),
        "{err}"
    );
}

#[test]
fn serve_on_a_busy_port_leaves_nothing_behind() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = herald(&data, &["--listen", &addr, "serve"], "");
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains(&format!("cannot listen on {addr}")), "{err}");
    assert!(!data.exists(), "no key, token or database was created");
}

#[test]
fn commands_without_server_settings_have_short_help() {
    let dir = tempfile::tempdir().unwrap();
    let out = herald(dir.path(), &["completions", "--help"], "");
    let help = text(&out.stdout);
    assert!(!help.contains("--delivery-concurrency"), "{help}");
    assert!(help.lines().count() < 20, "{help}");
    let out = herald(dir.path(), &["user", "list", "--help"], "");
    let help = text(&out.stdout);
    assert!(
        help.contains("--data-dir") && help.contains("--json"),
        "{help}"
    );
    assert!(!help.contains("--listen"), "{help}");
    let out = herald(dir.path(), &["registry-config", "--help"], "");
    let help = text(&out.stdout);
    for flag in ["--listen", "--public-url", "--data-dir", "--registry-token"] {
        assert!(help.contains(flag), "{help}");
    }
    assert!(!help.contains("--delivery-timeout"), "{help}");
    let out = herald(dir.path(), &["serve", "--help"], "");
    assert!(text(&out.stdout).contains("--delivery-concurrency"));
    // Every argument of every command says what it is.
    let out = herald(dir.path(), &["deliveries", "retrigger", "--help"], "");
    let help = text(&out.stdout);
    assert!(help.contains("<NAMESPACE>  The namespace"), "{help}");
    assert!(
        help.contains("<WEBHOOK>    The webhook's name, or its id"),
        "{help}"
    );
}

#[test]
fn a_closed_stdout_ends_a_command_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["completions", "bash"])
        .env("HERALD_DATA_DIR", dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The reader goes away before herald writes.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = text(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.is_empty(), "{err}");
    assert_ne!(out.status.code(), Some(101), "no panic exit");
}

fn sandbox_free_cli(app: &crate::helpers::TestApp, args: &[&str], stdin: &str) -> Output {
    let mut all: Vec<&str> = Vec::new();
    let url;
    if let Some(db) = &app.db {
        url = db.url.clone();
        all.extend(["--database", url.as_str()]);
    }
    all.extend(args);
    herald(app.dir.path(), &all, stdin)
}

// Multi-threaded: the receiver must answer while the test waits for a CLI process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_commands_manage_users_tokens_webhooks_and_deliveries() {
    use crate::helpers::*;
    let app = spawn_app().await;
    let cli = |args: &[&str], stdin: &str| {
        let out = sandbox_free_cli(&app, args, stdin);
        assert!(
            out.status.success(),
            "herald {args:?}: {}",
            text(&out.stderr)
        );
        text(&out.stdout)
    };

    // Users.
    cli(&["user", "create", "bob"], "first-password\n");
    let list = cli(&["user", "list"], "");
    let header = list.lines().next().unwrap();
    assert!(header.starts_with("USERNAME  ADMIN  DISABLED"), "{list}");
    assert!(list.lines().any(|l| l.starts_with("bob ")), "{list}");
    let users: serde_json::Value =
        serde_json::from_str(&cli(&["user", "list", "--json"], "")).unwrap();
    assert!(users
        .as_array()
        .unwrap()
        .iter()
        .any(|u| u["username"] == "bob" && u["admin"] == false));
    cli(&["user", "passwd", "bob"], "second-password\n");
    let sign_in = |password: &str| {
        app.client
            .post(app.url("/api/v1/tokens"))
            .basic_auth("bob", Some(password))
            .header("content-type", "application/json")
            .body(r#"{"label": "t"}"#)
            .send()
    };
    assert_eq!(sign_in("first-password").await.unwrap().status(), 401);
    assert_eq!(sign_in("second-password").await.unwrap().status(), 201);
    let out = sandbox_free_cli(&app, &["user", "passwd", "bob"], "short\n");
    assert!(text(&out.stderr).contains("at least 8 characters"));
    cli(&["user", "disable", "bob"], "");
    assert_eq!(sign_in("second-password").await.unwrap().status(), 401);
    assert!(cli(&["user", "list"], "")
        .lines()
        .any(|l| l.starts_with("bob ") && l.contains("  no     yes")));
    cli(&["user", "enable", "bob"], "");
    assert_eq!(sign_in("second-password").await.unwrap().status(), 201);

    // Tokens.
    let token = cli(&["token", "create", "bob", "--label", "laptop"], "");
    let token = token.trim();
    let tokens: serde_json::Value =
        serde_json::from_str(&cli(&["token", "list", "bob", "--json"], "")).unwrap();
    let id = tokens
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["label"] == "laptop")
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    assert!(cli(&["token", "list", "bob"], "").contains("laptop"));
    let me = app
        .call("GET", "/api/v1/namespaces", None, Some(token))
        .await;
    assert_eq!(me.status, 200);
    cli(&["token", "revoke", &id.to_string()], "");
    let me = app
        .call("GET", "/api/v1/namespaces", None, Some(token))
        .await;
    assert_eq!(me.status, 401);
    let out = sandbox_free_cli(&app, &["token", "revoke", &id.to_string()], "");
    assert!(!out.status.success());

    // Webhooks.
    let rx = Receiver::start().await;
    app.create_namespace("acme").await;
    let hook = app
        .enabled_webhook(
            "acme",
            serde_json::json!({"name": "deploy", "url": rx.url("/in")}),
        )
        .await;
    let list = cli(&["webhook", "list", "acme"], "");
    assert!(
        list.lines().any(|l| l.starts_with(&format!("{hook} "))
            && l.contains("deploy")
            && l.contains(" yes ")),
        "{list}"
    );
    cli(&["webhook", "disable", "acme", &hook.to_string()], "");
    let shown = app
        .api("GET", &format!("/namespaces/acme/webhooks/{hook}"), None)
        .await;
    assert_eq!(shown.body["enabled"], false);
    cli(&["webhook", "enable", "acme", &hook.to_string()], "");
    let hooks: serde_json::Value =
        serde_json::from_str(&cli(&["webhook", "list", "acme", "--json"], "")).unwrap();
    assert_eq!(hooks["items"][0]["enabled"], true);
    assert!(hooks["items"][0].get("password").is_none());
    // The API's shape, every field of it (the signature scheme and client key included).
    let api = app
        .api("GET", &format!("/namespaces/acme/webhooks/{hook}"), None)
        .await;
    let keys = |v: &serde_json::Value| -> Vec<String> {
        let mut keys: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        keys
    };
    assert_eq!(keys(&hooks["items"][0]), keys(&api.body));
    for field in [
        "signature",
        "signature_public_key",
        "has_client_key",
        "circuit",
        "url",
    ] {
        assert_eq!(hooks["items"][0][field], api.body[field], "{field}");
    }

    // Deliveries.
    app.post_envelope(fixture("distribution-2.8.2/push-manifest-tagged.json"))
        .await;
    rx.next().await;
    let items = app
        .wait_deliveries("acme", hook, |d| d[0]["state"] == "succeeded")
        .await;
    let delivery = items[0]["id"].as_i64().unwrap().to_string();
    let hook_id = hook.to_string();
    let list = cli(&["deliveries", "list", "acme", &hook_id], "");
    assert!(
        list.lines()
            .nth(1)
            .unwrap()
            .starts_with(&format!("{delivery} "))
            && list.contains("succeeded")
            && list.contains("push acme/web:1.0"),
        "{list}"
    );
    let shown = cli(&["deliveries", "show", "acme", &hook_id, &delivery], "");
    assert!(shown.contains("state:        succeeded"), "{shown}");
    assert!(shown.contains("request: GET http://127.0.0.1"), "{shown}");
    let json: serde_json::Value = serde_json::from_str(&cli(
        &["deliveries", "show", "acme", &hook_id, &delivery, "--json"],
        "",
    ))
    .unwrap();
    assert_eq!(json["attempts"].as_array().unwrap().len(), 1);
    // Retrigger is queued for the running server, which sends it with its own settings
    // (no delivery flags here: the command sends nothing itself), and its result printed.
    let again = cli(
        &[
            "deliveries",
            "retrigger",
            "acme",
            "deploy",
            &delivery,
            "--json",
        ],
        "",
    );
    let again: serde_json::Value = serde_json::from_str(&again).unwrap();
    assert_eq!(again["attempts"].as_array().unwrap().len(), 2, "{again:#}");
    assert_eq!(again["attempts"][1]["manual"], true);
    assert_eq!(again["attempts"][1]["status"], 200, "{again:#}");
    assert_eq!(again["state"], "succeeded", "{again:#}");
    rx.next().await;
    // Attempts are numbered within the delivery.
    let shown = cli(&["deliveries", "show", "acme", "deploy", &delivery], "");
    assert!(
        shown.contains("\nattempt 1 at ") && shown.contains("\nattempt 2 at "),
        "{shown}"
    );

    // The activity log says the CLI did it.
    let log = app.api("GET", "/activities?namespace=acme", None).await;
    let actions: Vec<(String, String)> = log.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["action"].as_str().unwrap().to_string(),
                a["actor"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for action in [
        "webhook.disabled",
        "webhook.enabled",
        "webhook.delivery.retrigger",
    ] {
        assert!(
            actions
                .iter()
                .any(|(a, actor)| a == action && actor.starts_with("cli")),
            "{action} by cli in {actions:?}"
        );
    }
    let out = sandbox_free_cli(&app, &["deliveries", "list", "acme", "999"], "");
    assert!(!out.status.success());
}

#[test]
fn config_shows_every_setting_and_its_source() {
    let dir = tempfile::tempdir().unwrap();
    assert!(herald(dir.path(), &["migrate"], "").status.success());
    let file = dir.path().join("herald.toml");
    std::fs::write(&file, "[delivery]\ntimeout = \"7s\"\n").unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_herald"));
    let out = cmd
        .env("HERALD_DATA_DIR", dir.path())
        .env("HERALD_RETENTION_DAYS", "9")
        .env_remove("HERALD_REGISTRY_TOKEN")
        .env_remove("HERALD_SECRET_KEY")
        .env_remove("HERALD_DATABASE_URL")
        .args([
            "--config",
            file.to_str().unwrap(),
            "--delivery-allow-networks",
            "127.0.0.1/32",
            "config",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    let line = |key: &str| {
        shown
            .lines()
            .find(|l| l.starts_with(&format!("{key} = ")))
            .unwrap_or_else(|| panic!("no {key} in\n{shown}"))
            .to_string()
    };
    assert!(
        line("delivery_timeout").contains("= 7s")
            && line("delivery_timeout").ends_with("# file, key delivery.timeout")
    );
    assert!(line("retention_days").ends_with("# env HERALD_RETENTION_DAYS"));
    assert!(
        line("delivery_allow_networks").contains("127.0.0.1/32")
            && line("delivery_allow_networks").ends_with("# flag --delivery-allow-networks")
    );
    assert!(line("listen").ends_with("# default"));
    assert!(line("data_dir").ends_with("# env HERALD_DATA_DIR"));
    for key in ["registry_token", "secret_key"] {
        let l = line(key);
        assert!(l.contains("********") && l.contains("# generated"), "{l}");
    }
    let token = std::fs::read_to_string(dir.path().join("registry-token")).unwrap();
    assert!(!shown.contains(token.trim()), "secrets are masked");
    for key in [
        "delivery_lease",
        "delivery_ca_bundle",
        "api",
        "worker",
        "database_max_connections",
        "database_statement_timeout",
        "auto_disable_after",
    ] {
        line(key);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_delivery_is_logged_as_a_warning_with_its_reason_and_next_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let token = crate::helpers::cli_admin_token(dir.path());
    let mut cmd = crate::helpers::herald_cmd(dir.path());
    cmd.env("RUST_LOG", "herald=info")
        .args(["--listen", "127.0.0.1:0", "--registry-token", "tok"])
        .args(["--delivery-allow-networks", "127.0.0.1/32"])
        .args(["--retry-schedule", "0s,1h", "serve"]);
    let mut serve = crate::helpers::LoggedServe::spawn(cmd);
    let data_dir = dir.path().to_str().unwrap().to_string();
    serve.wait_for(|l| l.contains("using this data directory") && l.contains(&data_dir));
    let base = serve.base_url();
    // A port nobody listens on: the attempt fails with "connection refused".
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let http = reqwest::Client::new();
    let post = |path: &str, body: serde_json::Value| {
        http.post(format!("{base}/api/v1{path}"))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
    };
    let r = post("/namespaces", serde_json::json!({"name": "acme"}))
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let hook = post(
        "/namespaces/acme/webhooks",
        serde_json::json!({"name": "deploy", "url": format!("http://{closed}/")}),
    )
    .await
    .unwrap()
    .bytes()
    .await
    .unwrap();
    let hook: serde_json::Value = serde_json::from_slice(&hook).unwrap();
    let id = hook["id"].as_i64().unwrap();
    let r = http
        .patch(format!("{base}/api/v1/namespaces/acme/webhooks/{id}"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(r#"{"enabled": true}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = http
        .post(format!("{base}/v2/webhooks/events"))
        .bearer_auth("tok")
        .header(
            "content-type",
            "application/vnd.docker.distribution.events.v1+json",
        )
        .body(crate::helpers::fixture(
            "distribution-2.8.2/push-manifest-tagged.json",
        ))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());

    let line = serve.wait_for(|l| l.contains("delivery attempt failed"));
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains("error="), "{line}");
    assert!(
        line.to_lowercase().contains("connect"),
        "the reason: {line}"
    );
    assert!(
        line.contains("namespace=acme") && line.contains("webhook=deploy"),
        "{line}"
    );
    assert!(
        line.contains("receiver=127.0.0.1"),
        "the receiver's host: {line}"
    );
    assert!(!line.contains("status="), "no placeholder status: {line}");
    assert!(!line.contains("RetryAt"), "no debug formatting: {line}");
    let next = line
        .split("next_attempt=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no next attempt: {line}"))
        .trim_matches('"');
    assert!(
        chrono::DateTime::parse_from_rfc3339(next).is_ok(),
        "RFC 3339: {next} in {line}"
    );

    // A UI action is logged like an API one: who, what, and how it ended.
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let cookie_of = |res: &reqwest::Response, name: &str| {
        res.headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|c| c.starts_with(&format!("{name}=")))
            .and_then(|c| c.split(';').next())
            .map(str::to_string)
            .unwrap()
    };
    let csrf_in = |html: &str| {
        let start = html.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
        html[start..].split('"').next().unwrap().to_string()
    };
    let page = browser.get(format!("{base}/login")).send().await.unwrap();
    let login_cookie = cookie_of(&page, "herald_login_csrf");
    let csrf = csrf_in(&page.text().await.unwrap());
    let signed_in = browser
        .post(format!("{base}/login"))
        .header("cookie", login_cookie)
        .form(&[
            ("username", "admin"),
            ("password", "admin-password"),
            ("csrf", csrf.as_str()),
            ("next", "/"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), 303);
    let session = cookie_of(&signed_in, "herald_session");
    let page = browser
        .get(format!("{base}/namespaces/acme/webhooks/{id}"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let toggled = browser
        .post(format!("{base}/namespaces/acme/webhooks/{id}/toggle"))
        .header("cookie", &session)
        .form(&[("csrf", csrf_in(&page).as_str()), ("enabled", "false")])
        .send()
        .await
        .unwrap();
    assert!(toggled.status().is_redirection(), "{}", toggled.status());
    let line = serve.wait_for(|l| l.contains("web action") && l.contains("/toggle"));
    assert!(line.contains("INFO") && line.contains("by=admin"), "{line}");
    assert!(
        line.contains(&format!("path=/namespaces/acme/webhooks/{id}/toggle")),
        "{line}"
    );
    assert!(line.contains("status=303"), "{line}");
    for l in &serve.seen {
        assert!(!l.contains("\u{1b}["), "a colour code in {l:?}");
    }
}

#[tokio::test]
async fn on_postgres_the_commands_need_the_schema_first() {
    let Some(db) = crate::pg::PgTestDb::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = herald(&data, &["--database", &db.url, "user", "list"], "");
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains(
            "the database has no Herald schema; run `herald migrate` or `herald serve` first"
        ),
        "{}",
        text(&out.stderr)
    );
    let out = herald(&data, &["--database", &db.url, "migrate"], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = herald(&data, &["--database", &db.url, "user", "list"], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with("USERNAME"));
}

#[tokio::test]
async fn sources_from_the_cli_take_their_registrys_events() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str], stdin: &str| {
        let out = herald(dir.path(), args, stdin);
        assert!(
            out.status.success(),
            "herald {args:?}: {}",
            text(&out.stderr)
        );
        out
    };
    run(&["migrate"], "");
    let token = "zot-token-0123456789abcdefghij";
    let out = run(
        &["source", "create", "zot1", "--kind", "zot"],
        &format!("{token}\n"),
    );
    assert!(text(&out.stderr).contains("created source 'zot1' (zot)"));
    run(
        &[
            "source",
            "create",
            "harbor1",
            "--kind",
            "harbor",
            "--username",
            "harbor",
        ],
        "harbor-password-1\n",
    );
    // The API's checks: a bad name, kind or a short token is refused, with the reason.
    for (args, stdin, reason) in [
        (
            &["source", "create", "Bad", "--kind", "zot"][..],
            "",
            "is not one",
        ),
        (
            &["source", "create", "q1", "--kind", "quay"][..],
            "",
            "kind must be",
        ),
        (
            &["source", "create", "z2", "--kind", "zot"][..],
            "short\n",
            "a token has 24",
        ),
        (
            &["source", "create", "zot1", "--kind", "zot"][..],
            "zot-token-0123456789abcdefghij\n",
            "already exists",
        ),
    ] {
        let out = herald(dir.path(), args, stdin);
        assert!(!out.status.success(), "{args:?}");
        assert!(
            text(&out.stderr).contains(reason),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    let list = text(&run(&["source", "list"], "").stdout);
    assert!(list.starts_with("NAME "), "{list}");
    assert!(
        list.lines()
            .nth(1)
            .is_some_and(|l| l.starts_with("default ") && l.contains("(built in)")),
        "the built-in source is listed first: {list}"
    );
    assert!(
        list.lines()
            .any(|l| l.starts_with("zot1 ") && l.contains("bearer")),
        "{list}"
    );
    assert!(
        list.lines()
            .any(|l| l.starts_with("harbor1 ") && l.contains("basic") && l.ends_with("harbor")),
        "{list}"
    );
    let json: serde_json::Value =
        serde_json::from_slice(&run(&["source", "list", "--json"], "").stdout).unwrap();
    assert_eq!(
        json.as_array().unwrap().len(),
        3,
        "default and the two: {json}"
    );
    run(&["source", "delete", "harbor1"], "");
    let out = herald(dir.path(), &["source", "delete", "harbor1"], "");
    assert!(!out.status.success() && text(&out.stderr).contains("not found"));

    // A server on that data directory takes zot1's events with the token given on stdin.
    let config = Config::from_args([
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--template-sandbox-exe",
        env!("CARGO_BIN_EXE_herald"),
    ])
    .unwrap();
    let app = Application::build(config).await.unwrap();
    let addr = app.local_addr();
    tokio::spawn(app.run(std::future::pending()));
    let send = |name: &'static str, token: &'static str| {
        reqwest::Client::new()
            .post(format!("http://{addr}/v2/sources/{name}/events"))
            .header("content-type", "application/cloudevents+json")
            .bearer_auth(token)
            .body(crate::helpers::fixture("zot/image-updated.json"))
            .send()
    };
    let res = send("zot1", token).await.unwrap();
    let status = res.status();
    assert_eq!(status, 200, "{}", res.text().await.unwrap());
    let res = send("harbor1", token).await.unwrap();
    assert_eq!(res.status(), 401, "a deleted source takes nothing");
}

/// Everything the API does for namespaces, webhooks (every field), headers, keys, pings,
/// deliveries, teams, sources, events and the activity log, the CLI does too, through the
/// same use cases, naming webhooks by name; its sends go out from the running server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_does_what_the_api_does() {
    use crate::helpers::*;
    use serde_json::Value;
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    let cli = |args: &[&str], stdin: &str| {
        let out = sandbox_free_cli(&app, args, stdin);
        assert!(
            out.status.success(),
            "herald {args:?}: {}",
            text(&out.stderr)
        );
        text(&out.stdout)
    };
    let json = |args: &[&str], stdin: &str| -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        serde_json::from_str(&cli(&all, stdin)).unwrap()
    };

    // Namespaces and teams.
    cli(
        &[
            "namespace",
            "create",
            "acme",
            "--description",
            "the acme apps",
        ],
        "",
    );
    let ns = app.api("GET", "/namespaces/acme", None).await;
    assert_eq!(ns.body["description"], "the acme apps");
    cli(&["user", "create", "carol"], "carols-password\n");
    cli(&["user", "create", "dan"], "dans-password-1\n");
    let team = json(&["team", "create", "web", "--owner", "carol"], "");
    assert_eq!(team["name"], "web");
    cli(&["team", "member", "set", "web", "dan", "viewer"], "");
    let shown = json(&["team", "show", "web"], "");
    let members: Vec<(String, String)> = shown["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["username"].as_str().unwrap().into(),
                m["role"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert!(
        members.contains(&("carol".into(), "owner".into())),
        "{members:?}"
    );
    assert!(
        members.contains(&("dan".into(), "viewer".into())),
        "{members:?}"
    );
    json(&["namespace", "create", "webapps", "--team", "web"], "");
    assert_eq!(
        app.api("GET", "/namespaces/webapps", None).await.body["team"],
        "web"
    );

    // A webhook with every field, by flags.
    let filters = r#"{"actions":["push","delete"],"tags":["v*"]}"#;
    let created = json(
        &[
            "webhook",
            "create",
            "acme",
            "deploy",
            "--url",
            &rx.url("/hook"),
            "--method",
            "POST",
            "--header",
            "X-Env: prod",
            "--format",
            "cloudevents",
            "--filters",
            filters,
            "--rate-limit",
            "5",
            "--ordering",
            "fifo",
            "--signature",
            "v1a",
        ],
        "",
    );
    let id = created["id"].as_i64().unwrap();
    let api = app
        .api("GET", &format!("/namespaces/acme/webhooks/{id}"), None)
        .await
        .body;
    assert_eq!(api["name"], "deploy");
    assert_eq!(api["enabled"], false, "new webhooks start disabled");
    assert_eq!(api["request_method"], "POST");
    assert_eq!(api["format"], "cloudevents");
    assert_eq!(api["filters"]["tags"], serde_json::json!(["v*"]));
    assert_eq!(api["rate_limit"], 5.0);
    assert_eq!(api["ordering"], "fifo");
    assert_eq!(api["signature"], "v1a");
    assert_eq!(api["headers"]["X-Env"], "prod");
    assert_eq!(created["signature_public_key"], api["signature_public_key"]);
    cli(&["webhook", "enable", "acme", "deploy"], "");
    cli(
        &["webhook", "header", "set", "acme", "deploy", "X-Token"],
        "a-secret-value\n",
    );
    cli(
        &[
            "webhook",
            "update",
            "acme",
            "deploy",
            "--filters",
            r#"{"actions":["push"]}"#,
        ],
        "",
    );
    let api = app
        .api("GET", &format!("/namespaces/acme/webhooks/{id}"), None)
        .await
        .body;
    assert_eq!(api["enabled"], true);
    assert_eq!(api["headers"]["X-Token"], "a-secret-value");
    assert_eq!(api["filters"]["actions"], serde_json::json!(["push"]));
    let shown = cli(&["webhook", "show", "acme", &id.to_string()], "");
    assert!(
        shown.contains("deploy") && shown.contains("[enabled]"),
        "{shown}"
    );
    assert!(
        !shown.contains("a-secret-value"),
        "header values are not shown: {shown}"
    );

    // A ping goes out from the running server; the command prints its result.
    let pinged = json(&["webhook", "ping", "acme", "deploy"], "");
    assert_eq!(pinged["attempts"][0]["status"], 200, "{pinged:#}");
    let got = rx.next().await;
    assert_eq!(got.method, "POST");
    assert_eq!(got.json()["type"], "io.herald.registry.ping");
    let list = cli(&["deliveries", "list", "acme", "deploy"], "");
    assert!(list.contains("ping acme/herald-ping"), "{list}");

    // Keys, headers, removal.
    let before = api["signature_public_key"].clone();
    let rotated = json(&["webhook", "rotate-secret", "acme", "deploy"], "");
    assert_ne!(rotated["signature_public_key"], before);
    cli(
        &["webhook", "header", "delete", "acme", "deploy", "X-Token"],
        "",
    );
    let api = app
        .api("GET", &format!("/namespaces/acme/webhooks/{id}"), None)
        .await
        .body;
    assert!(api["headers"].get("X-Token").is_none());

    // What happened, as the API tells it.
    app.post_envelope(fixture("distribution-2.8.2/push-manifest-tagged.json"))
        .await;
    let events = json(&["events"], "");
    assert_eq!(events["items"][0]["action"], "push");
    let activity = json(&["activity", "--namespace", "acme"], "");
    let actions: Vec<&str> = activity["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["actor"].as_str().unwrap().starts_with("cli:"))
        .map(|a| a["action"].as_str().unwrap())
        .collect();
    for a in [
        "webhook.create",
        "webhook.enabled",
        "webhook.header.set",
        "webhook.ping",
    ] {
        assert!(actions.contains(&a), "{a} by cli: in {actions:?}");
    }

    cli(&["webhook", "delete", "acme", "deploy"], "");
    assert_eq!(
        app.api("GET", &format!("/namespaces/acme/webhooks/{id}"), None)
            .await
            .status,
        404
    );
    cli(&["team", "member", "remove", "web", "dan"], "");
    cli(&["namespace", "delete", "webapps"], "");
    assert_eq!(
        app.api("GET", "/namespaces/webapps", None).await.status,
        404
    );
    let out = sandbox_free_cli(&app, &["webhook", "enable", "acme", "nosuch"], "");
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("webhook 'nosuch' not found"));
}

/// A retrigger from the command line never sends anything itself: with no server running
/// it stays queued (exit code 7, saying so) and goes out, with the server's settings, once
/// `herald serve` runs. Before, the CLI sent it with its own settings, and a delivery that
/// had succeeded turned `failed` ("blocked by the SSRF guard") with exit code 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cli_retrigger_waits_for_the_server_and_is_sent_by_it() {
    use crate::helpers::*;
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    let token = cli_admin_token(dir.path());
    let serve = || {
        let mut cmd = herald_cmd(dir.path());
        cmd.args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--delivery-allow-networks",
            "127.0.0.1/32",
        ])
        .env("NO_COLOR", "1");
        LoggedServe::spawn(cmd)
    };
    let mut server = serve();
    let base = server.base_url();
    wait_ready(&base).await;
    let client = reqwest::Client::new();
    let api = |method: reqwest::Method, path: &str, body: serde_json::Value| {
        client
            .request(method, format!("{base}/api/v1{path}"))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(serde_json::to_vec(&body).unwrap())
            .send()
    };
    async fn json_of(r: reqwest::Response) -> Option<serde_json::Value> {
        serde_json::from_slice(&r.bytes().await.ok()?).ok()
    }
    api(
        reqwest::Method::POST,
        "/namespaces",
        serde_json::json!({"name": "acme"}),
    )
    .await
    .unwrap();
    let hook = json_of(
        api(
            reqwest::Method::POST,
            "/namespaces/acme/webhooks",
            serde_json::json!({"name": "deploy", "url": rx.url("/")}),
        )
        .await
        .unwrap(),
    )
    .await
    .unwrap();
    let hook_id = hook["id"].as_i64().unwrap();
    api(
        reqwest::Method::PATCH,
        &format!("/namespaces/acme/webhooks/{hook_id}"),
        serde_json::json!({"enabled": true}),
    )
    .await
    .unwrap();
    let registry_token = std::fs::read_to_string(dir.path().join("registry-token")).unwrap();
    client
        .post(format!("{base}/v2/webhooks/events"))
        .bearer_auth(registry_token.trim())
        .header("content-type", "application/json")
        .body(fixture("distribution-2.8.2/push-manifest-tagged.json"))
        .send()
        .await
        .unwrap();
    rx.next().await;
    let delivery = eventually(
        Duration::from_secs(10),
        "the delivery succeeded",
        || async {
            let list = json_of(
                api(
                    reqwest::Method::GET,
                    &format!("/namespaces/acme/webhooks/{hook_id}/deliveries"),
                    serde_json::Value::Null,
                )
                .await
                .ok()?,
            )
            .await?;
            (list["items"][0]["state"] == "succeeded")
                .then(|| list["items"][0]["id"].as_i64().unwrap())
        },
    )
    .await;
    server.stop();

    // No server: queued, said so, and nothing sent.
    let out = herald(
        dir.path(),
        &[
            "deliveries",
            "retrigger",
            "acme",
            "deploy",
            &delivery.to_string(),
            "--wait",
            "1s",
        ],
        "",
    );
    assert_eq!(out.status.code(), Some(7), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("is queued"),
        "{}",
        text(&out.stderr)
    );
    rx.assert_quiet(Duration::from_millis(300)).await;

    // The server, once it runs, sends it with its own settings, as a manual attempt.
    let mut server = serve();
    let base = server.base_url();
    let got = rx.next().await;
    assert_eq!(got.method, "GET");
    let detail: serde_json::Value = eventually(Duration::from_secs(10), "the attempt", || async {
        let d = json_of(
            client
                .get(format!(
                    "{base}/api/v1/namespaces/acme/webhooks/{hook_id}/deliveries/{delivery}"
                ))
                .bearer_auth(&token)
                .send()
                .await
                .ok()?,
        )
        .await?;
        (d["attempts"].as_array()?.len() == 2).then_some(d)
    })
    .await;
    assert_eq!(detail["state"], "succeeded", "{detail:#}");
    assert_eq!(detail["attempts"][1]["manual"], true);
    server.stop();
}

/// One rule, one place: a token label over 200 characters was refused by the API, cut
/// silently by the UI and taken whole by the CLI. All three now ask the same use case.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_the_ui_and_the_cli_refuse_the_same_token_label() {
    use crate::helpers::*;
    let app = spawn_app().await;
    let long = "l".repeat(201);
    let api = app
        .api(
            "POST",
            "/tokens",
            Some(serde_json::json!({ "label": long })),
        )
        .await;
    assert_eq!(api.status, 422, "{:?}", api.body);
    assert_eq!(api.body["error"]["field"], "label");
    let web = crate::web::sign_in_as(&app, "admin", "admin-password").await;
    let csrf = web.csrf(&app).await;
    let page = web
        .post(
            &app,
            "/tokens",
            &[("csrf", csrf.as_str()), ("label", long.as_str())],
        )
        .await;
    assert_eq!(page.status(), 422);
    let html = page.text().await.unwrap();
    assert!(html.contains("at most 200 characters"), "{html}");
    let out = sandbox_free_cli(&app, &["token", "create", "admin", "--label", &long], "");
    assert_eq!(out.status.code(), Some(6), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("at most 200 characters"));
    let tokens = app.api("GET", "/tokens", None).await;
    assert_eq!(
        tokens.body["items"].as_array().unwrap().len(),
        1,
        "only the test's own token: none was made"
    );
}

/// A key that is not one is refused before anything is written, saying what a key is and
/// how to make one; `herald key generate` makes one that Herald takes.
#[tokio::test]
async fn a_bad_secret_key_is_refused_before_anything_is_written() {
    use crate::helpers::*;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    for args in [vec!["config"], vec!["serve", "--listen", "127.0.0.1:0"]] {
        let out = herald_cmd(&data)
            .args(&args)
            .env("HERALD_SECRET_KEY", "notbase64")
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?}");
        let err = text(&out.stderr);
        assert!(
            err.contains("HERALD_SECRET_KEY is invalid"),
            "{args:?}: {err}"
        );
        assert!(err.contains("32 random bytes in base64"), "{err}");
        assert!(err.contains("herald key generate"), "{err}");
    }
    assert!(!data.exists(), "nothing was written");
    let out = herald_cmd(&data)
        .args(["key", "generate"])
        .output()
        .unwrap();
    let key = text(&out.stdout).trim().to_string();
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(&key)
        .unwrap();
    assert_eq!(bytes.len(), 32);
    assert!(!data.exists(), "generating writes nothing");
    let mut cmd = herald_cmd(&data);
    cmd.args(["serve", "--listen", "127.0.0.1:0"])
        .env("HERALD_SECRET_KEY", &key)
        .env("NO_COLOR", "1");
    let mut serve = LoggedServe::spawn(cmd);
    let base = serve.base_url();
    wait_ready(&base).await;
    serve.stop();
    assert!(
        !data.join("secret.key").exists(),
        "the configured key is used, not a file"
    );
}

/// `--version`, `/healthz` and the build-info metric name the commit built from.
#[tokio::test]
async fn the_version_names_the_commit() {
    use crate::helpers::*;
    let dir = tempfile::tempdir().unwrap();
    let out = herald_cmd(dir.path()).arg("--version").output().unwrap();
    let version = text(&out.stdout);
    assert!(
        version.starts_with(&format!("herald {} (", env!("CARGO_PKG_VERSION"))),
        "{version}"
    );
    let commit = version
        .trim()
        .trim_end_matches(')')
        .rsplit('(')
        .next()
        .unwrap()
        .to_string();
    assert!(!commit.is_empty());
    let app = spawn_app().await;
    let health = app.call("GET", "/healthz", None, None).await;
    assert_eq!(health.body["commit"], commit.as_str());
    let metrics = app.call("GET", "/metrics", None, None).await;
    let text = metrics.body.as_str().unwrap();
    assert!(
        text.contains(&format!(
            "herald_build_info{{version=\"{}\",commit=\"{commit}\"}} 1",
            env!("CARGO_PKG_VERSION")
        )),
        "{text}"
    );
}

/// `herald listen`: the receiver a first webhook can be tried with. It prints what it gets
/// and checks signatures, `v1` with the secret and `v1a` with the public key, answering 401
/// when they do not hold (so the delivery log shows it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn herald_listen_prints_deliveries_and_checks_their_signatures() {
    use crate::helpers::*;
    use std::io::BufRead;
    let app = spawn_app().await;
    app.create_namespace("acme").await;
    let r = app
        .api(
            "POST",
            "/namespaces/acme/webhooks",
            Some(serde_json::json!({"name": "v1", "url": "http://127.0.0.1:9/", "request_method": "POST"})),
        )
        .await;
    let v1 = r.body["id"].as_i64().unwrap();
    let secret = r.body["signing_secret"].as_str().unwrap().to_string();
    // A listener, its address from its first line, its output read line by line.
    let listen = |args: &[&str]| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_herald"))
            .arg("listen")
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = String::new();
        std::io::BufReader::new(child.stderr.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        let url = first
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap()
            .to_string();
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        (child, url, rx)
    };
    // What the listener printed, up to the line `what` names (or 10 s).
    let printed_until = |out: &std::sync::mpsc::Receiver<String>, what: &str| {
        let mut lines = Vec::new();
        while let Ok(line) = out.recv_timeout(Duration::from_secs(10)) {
            let found = line.contains(what);
            lines.push(line);
            if found {
                break;
            }
        }
        lines.join("\n")
    };
    let (mut good, url, out) = listen(&["--secret", &secret]);
    app.api(
        "PATCH",
        &format!("/namespaces/acme/webhooks/{v1}"),
        Some(serde_json::json!({"url": url, "enabled": true})),
    )
    .await;
    app.post_envelope(fixture("distribution-2.8.2/push-manifest-tagged.json"))
        .await;
    app.wait_deliveries("acme", v1, |d| d[0]["state"] == "succeeded")
        .await;
    let printed = printed_until(&out, "\"repository\"");
    assert!(printed.contains("=> valid v1 signature"), "{printed}");
    assert!(
        printed.contains("\"repository\": \"acme/web\""),
        "the body: {printed}"
    );
    let _ = good.kill();

    // The wrong key: refused with 401, which the delivery log shows.
    let (mut wrong, url, out) = listen(&["--secret", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]);
    app.api(
        "PATCH",
        &format!("/namespaces/acme/webhooks/{v1}"),
        Some(serde_json::json!({"url": url})),
    )
    .await;
    app.post_envelope(
        String::from_utf8(fixture("distribution-2.8.2/push-manifest-tagged.json"))
            .unwrap()
            .replace("2045f19c", "2045f19d")
            .into_bytes(),
    )
    .await;
    let items = app
        .wait_deliveries("acme", v1, |d| d[0]["last_status"] == 401)
        .await;
    assert_ne!(items[0]["state"], "succeeded");
    let printed = printed_until(&out, "INVALID");
    assert!(printed.contains("INVALID signature"), "{printed}");
    let _ = wrong.kill();

    // v1a: checked with the public key.
    let r = app
        .api(
            "POST",
            "/namespaces/acme/webhooks",
            Some(serde_json::json!({"name": "v1a", "url": "http://127.0.0.1:9/", "request_method": "POST", "signature": "v1a"})),
        )
        .await;
    let v1a = r.body["id"].as_i64().unwrap();
    let key = r.body["signature_public_key"].as_str().unwrap().to_string();
    let (mut asym, url, out) = listen(&["--public-key", &key]);
    app.api(
        "PATCH",
        &format!("/namespaces/acme/webhooks/{v1a}"),
        Some(serde_json::json!({"url": url, "enabled": true})),
    )
    .await;
    let r = app
        .api(
            "POST",
            &format!("/namespaces/acme/webhooks/{v1a}/ping"),
            None,
        )
        .await;
    assert_eq!(r.body["attempts"][0]["status"], 200, "{:?}", r.body);
    let printed = printed_until(&out, "=> ");
    assert!(printed.contains("=> valid v1a signature"), "{printed}");
    let _ = asym.kill();
}
