use std::io::Write;
use std::process::{Command, Output, Stdio};

use herald::config::Config;
use herald::Application;

fn herald(dir: &std::path::Path, args: &[&str], stdin: &str) -> Output {
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
    assert!(text(&out.stderr).contains("there is no user 'nobody'"));
    assert!(out.stdout.is_empty());
    let out = herald(dir.path(), &["user", "create", "carol"], "long-enough-pw\n");
    assert!(out.status.success());
    let out = herald(dir.path(), &["user", "create", "carol"], "long-enough-pw\n");
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("already exists"));
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
    assert_eq!(
        text(&out.stdout).trim(),
        format!("herald {}", env!("CARGO_PKG_VERSION"))
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
    assert!(
        help.contains("<NAMESPACE>\n          The namespace"),
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
    // Retrigger sends from the CLI's own process, with the server's delivery settings.
    let again = cli(
        &[
            "deliveries",
            "retrigger",
            "acme",
            &hook_id,
            &delivery,
            "--delivery-allow-networks",
            "127.0.0.1/32",
            "--json",
        ],
        "",
    );
    let again: serde_json::Value = serde_json::from_str(&again).unwrap();
    assert_eq!(again["attempts"].as_array().unwrap().len(), 2, "{again:#}");
    assert_eq!(again["attempts"][1]["manual"], true);
    assert_eq!(again["attempts"][1]["status"], 200, "{again:#}");
    rx.next().await;

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
    assert!(list.starts_with("NAME     KIND    AUTH"), "{list}");
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
    assert_eq!(json.as_array().unwrap().len(), 2, "{json}");
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
