//! The real thing: the CNCF registry (Debian's `docker-registry`) notifies Herald while
//! `skopeo` pushes a small OCI image and deletes its tag.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::helpers::*;

/// Kills the registry when the test ends, however it ends.
pub(crate) struct Registry(pub(crate) Child);

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The registry and skopeo, from Debian's packages (apt-get install docker-registry skopeo).
pub(crate) fn tools() -> Option<(String, String)> {
    use crate::require::{program, require};
    let found = program("docker-registry").and_then(|r| Ok((r, program("skopeo")?)));
    require("the registry (docker-registry) and skopeo", found)
}

pub(crate) fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Writes an OCI image layout with one config and one (empty tar) layer, tagged 1.0.
fn write_image_layout(dir: &Path) {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| {
        let digest = sha256(bytes);
        std::fs::write(blobs.join(&digest), bytes).unwrap();
        (format!("sha256:{digest}"), bytes.len())
    };
    let layer = vec![0u8; 1024]; // an empty tar archive
    let (layer_digest, layer_size) = put(&layer);
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]}
    }))
    .unwrap();
    let (config_digest, config_size) = put(&config);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer_size}]
    }))
    .unwrap();
    let (manifest_digest, manifest_size) = put(&manifest);
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest, "size": manifest_size,
            "annotations": {"org.opencontainers.image.ref.name": "1.0"}
        }]
    });
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
}

pub(crate) fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A registry notifying `app`, on a free port, with its own storage; killed on drop.
async fn start_registry(app: &TestApp, registry_bin: &str) -> (tempfile::TempDir, u16, Registry) {
    let work = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = format!(
        "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {root}\n  delete:\n    enabled: true\n\
         http:\n  addr: 127.0.0.1:{port}\nnotifications:\n  endpoints:\n    - name: herald\n      url: {url}\n\
         \x20     headers:\n        Authorization: [Bearer {token}]\n      timeout: 2s\n      threshold: 5\n      backoff: 1s\n",
        root = work.path().join("storage").display(),
        url = app.url("/v2/webhooks/events"),
        token = app.registry_token,
    );
    let config_path = work.path().join("config.yml");
    std::fs::write(&config_path, config).unwrap();
    let log = std::fs::File::create(work.path().join("registry.log")).unwrap();
    let registry = Registry(
        Command::new(registry_bin)
            .arg("serve")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let base = format!("http://127.0.0.1:{port}");
    eventually(Duration::from_secs(15), "the registry started", || async {
        reqwest::get(format!("{base}/v2/"))
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;

    (work, port, registry)
}

#[tokio::test]
async fn a_tag_filtered_webhook_fires_for_v1_0_and_not_for_latest() {
    let Some((registry_bin, skopeo)) = tools() else {
        return;
    };
    let app = spawn_app().await;
    let releases = Receiver::start().await;
    app.create_namespace("acme").await;
    app.enabled_webhook(
        "acme",
        json!({"name": "releases", "url": releases.url("/"), "filters": {"tags": ["v*"]}}),
    )
    .await;
    let (work, port, _registry) = start_registry(&app, &registry_bin).await;
    let layout = work.path().join("image");
    write_image_layout(&layout);
    for tag in ["latest", "v1.0"] {
        run(Command::new(&skopeo)
            .args(["--insecure-policy", "copy", "--dest-tls-verify=false"])
            .arg(format!("oci:{}:1.0", layout.display()))
            .arg(format!("docker://127.0.0.1:{port}/acme/web:{tag}")));
    }
    let got = releases
        .next_within(Duration::from_secs(20))
        .await
        .expect("the v1.0 push arrived");
    let event = got.json();
    assert_eq!(event["action"], "push");
    assert_eq!(event["target"]["tag"], "v1.0");
    releases.assert_quiet(Duration::from_millis(1500)).await;
    // Herald saw the latest push and recorded why nothing was sent.
    let events = app.api("GET", "/events?limit=500", None).await.body;
    let latest = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["tag"] == "latest" && e["action"] == "push")
        .expect("the latest push is stored");
    assert_eq!(latest["reason"], "no enabled webhook's filters match");
}

#[tokio::test]
async fn push_and_delete_through_the_real_registry() {
    let Some((registry_bin, skopeo)) = tools() else {
        return;
    };
    let app = spawn_app().await;
    let acme = Receiver::start().await;
    let other = Receiver::start().await;
    app.create_namespace("acme").await;
    app.create_namespace("other").await;
    app.enabled_webhook(
        "acme",
        json!({"name": "deploy", "url": acme.url("/hook"), "request_method": "POST"}),
    )
    .await;
    app.enabled_webhook("other", json!({"name": "other", "url": other.url("/")}))
        .await;

    let (work, port, _registry) = start_registry(&app, &registry_bin).await;

    let layout = work.path().join("image");
    write_image_layout(&layout);
    let target = format!("docker://127.0.0.1:{port}/acme/web:1.0");
    run(Command::new(&skopeo)
        .args(["--insecure-policy", "copy", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:1.0", layout.display()))
        .arg(&target));

    let push = acme
        .next_within(Duration::from_secs(20))
        .await
        .expect("the push reached the receiver");
    let event: Value = push.json();
    assert_eq!(push.header("x-herald-event"), Some("push"));
    assert_eq!(event["action"], "push");
    assert_eq!(event["target"]["repository"], "acme/web");
    assert_eq!(event["target"]["tag"], "1.0");
    assert_eq!(
        event["target"]["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert!(
        event.get("events").is_none(),
        "the body is the event, not the envelope"
    );
    assert!(event["request"]["useragent"]
        .as_str()
        .unwrap()
        .contains("skopeo"));
    let manifest_digest = event["target"]["digest"].as_str().unwrap().to_string();
    // Blob pushes and the HEAD checks reported as pulls must not follow.
    acme.assert_quiet(Duration::from_millis(1500)).await;

    run(Command::new(&skopeo)
        .args(["--insecure-policy", "delete", "--tls-verify=false"])
        .arg(&target));
    let mut deletes = vec![acme
        .next_within(Duration::from_secs(20))
        .await
        .expect("a delete arrived")];
    if let Some(second) = acme.next_within(Duration::from_secs(3)).await {
        deletes.push(second);
    }
    let bodies: Vec<Value> = deletes.iter().map(|c| c.json()).collect();
    assert!(bodies
        .iter()
        .all(|b| b["action"] == "delete" && b["target"]["repository"] == "acme/web"));
    assert!(
        bodies
            .iter()
            .any(|b| b["target"]["digest"] == manifest_digest.as_str()),
        "the manifest delete by digest: {bodies:?}"
    );
    // distribution 2.8 also reports each tag that pointed at the manifest.
    assert!(
        bodies.iter().any(|b| b["target"]["tag"] == "1.0"),
        "{bodies:?}"
    );
    acme.assert_quiet(Duration::from_millis(500)).await;
    other.assert_quiet(Duration::from_millis(10)).await;

    // Herald kept every event the registry sent, the blob pushes and pulls as skipped.
    let events = app.api("GET", "/events?limit=500", None).await.body;
    let items = events["items"].as_array().unwrap();
    assert!(items.iter().any(|e| e["reason"] == "blob push"));
    assert_eq!(
        items.iter().filter(|e| e["status"] == "accepted").count(),
        1 + deletes.len()
    );
}
