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
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn admin_and_token_from_the_cli_open_the_api() {
    let dir = tempfile::tempdir().unwrap();
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
        "registry-config",
        "--listen",
        "--data-dir",
        "--database",
        "--registry-token",
    ] {
        assert!(help.contains(word), "--help lacks {word}");
    }
    let out = herald(dir.path(), &["migrate"], "");
    assert!(out.status.success());
    assert!(dir.path().join("herald.db").exists());
}
