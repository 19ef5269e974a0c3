//! Herald reads the registry: the real CNCF registry (Debian's docker-registry) with
//! htpasswd Basic auth, images pushed with skopeo and referrers put through the registry's
//! own API. What a push was (an index and its platforms, a referrer and its subject's tags,
//! a cosign signature), and the pushes and deletes the registry never sent, made up by a
//! reconcile.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::*;
use crate::registry_e2e::{run, sha256, tools, Registry};

const USER: &str = "reader";
const PASSWORD: &str = "reader-secret";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A registry's files: its storage, its htpasswd and its configuration, kept across
/// restarts.
struct RegistryHome {
    dir: tempfile::TempDir,
    port: u16,
    bin: String,
    skopeo: String,
}

impl RegistryHome {
    /// `notify`: the URL and token of the Herald it notifies, if any.
    fn new(bin: String, skopeo: String, notify: Option<(String, String)>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let htpasswd =
            Command::new(crate::require::program("htpasswd").expect("htpasswd (apache2-utils)"))
                .args(["-Bbn", USER, PASSWORD])
                .output()
                .unwrap();
        assert!(htpasswd.status.success());
        std::fs::write(dir.path().join("htpasswd"), &htpasswd.stdout).unwrap();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {root}\n  delete:\n    enabled: true\n\
             http:\n  addr: 127.0.0.1:{port}\nauth:\n  htpasswd:\n    realm: test\n    path: {htpasswd}\n",
            root = dir.path().join("storage").display(),
            htpasswd = dir.path().join("htpasswd").display(),
        );
        if let Some((url, token)) = notify {
            config.push_str(&format!(
                "notifications:\n  endpoints:\n    - name: herald\n      url: {url}\n\
                 \x20     headers:\n        Authorization: [Bearer {token}]\n      timeout: 2s\n      threshold: 5\n      backoff: 1s\n"
            ));
        }
        std::fs::write(dir.path().join("config.yml"), config).unwrap();
        Self {
            dir,
            port,
            bin,
            skopeo,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts the registry and waits until it answers; killed when dropped.
    async fn start(&self) -> Registry {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("registry.log"))
            .unwrap();
        let child = Command::new(&self.bin)
            .arg("serve")
            .arg(self.dir.path().join("config.yml"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let base = self.url();
        eventually(Duration::from_secs(15), "the registry started", || async {
            // 401: it is up, and asks for the credentials.
            reqwest::get(format!("{base}/v2/"))
                .await
                .is_ok_and(|r| r.status() == 401)
        })
        .await;
        Registry(child)
    }

    /// `skopeo copy` of an OCI layout's image (all of an index's images with `all`).
    fn push(&self, layout: &Path, reference: &str, all: bool) {
        let mut cmd = Command::new(&self.skopeo);
        cmd.args(["--insecure-policy", "copy", "--dest-tls-verify=false"])
            .arg(format!("--dest-creds={USER}:{PASSWORD}"));
        if all {
            cmd.arg("--all");
        }
        run(cmd
            .arg(format!("oci:{}:latest", layout.display()))
            .arg(format!("docker://127.0.0.1:{}/{reference}", self.port)));
    }

    fn delete(&self, reference: &str) {
        run(Command::new(&self.skopeo)
            .args(["--insecure-policy", "delete", "--tls-verify=false"])
            .arg(format!("--creds={USER}:{PASSWORD}"))
            .arg(format!("docker://127.0.0.1:{}/{reference}", self.port)));
    }

    /// The digest the registry gives `repository:tag` (skopeo may rewrite a layout's
    /// manifest on the way, so the layout's own digest is not it).
    async fn digest(&self, repository: &str, tag: &str) -> String {
        let r = reqwest::Client::new()
            .head(format!("{}/v2/{repository}/manifests/{tag}", self.url()))
            .basic_auth(USER, Some(PASSWORD))
            .header(
                "accept",
                "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, \
                 application/vnd.docker.distribution.manifest.v2+json",
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.headers()["docker-content-digest"]
            .to_str()
            .unwrap()
            .to_string()
    }

    /// Puts a blob and a manifest through the registry's API, as an ORAS-style client does
    /// for a referrer; returns the manifest's digest.
    async fn put_manifest(&self, repository: &str, blobs: &[Vec<u8>], manifest: &Value) -> String {
        let client = reqwest::Client::new();
        for blob in blobs {
            let start = client
                .post(format!("{}/v2/{repository}/blobs/uploads/", self.url()))
                .basic_auth(USER, Some(PASSWORD))
                .send()
                .await
                .unwrap();
            assert_eq!(start.status(), 202, "{:?}", start.text().await);
            let location = start.headers()["location"].to_str().unwrap().to_string();
            let location = if location.starts_with("http") {
                location
            } else {
                format!("{}{location}", self.url())
            };
            let sep = if location.contains('?') { '&' } else { '?' };
            let put = client
                .put(format!("{location}{sep}digest=sha256:{}", sha256(blob)))
                .basic_auth(USER, Some(PASSWORD))
                .header("content-type", "application/octet-stream")
                .body(blob.clone())
                .send()
                .await
                .unwrap();
            assert_eq!(put.status(), 201, "{:?}", put.text().await);
        }
        let bytes = serde_json::to_vec(manifest).unwrap();
        let digest = format!("sha256:{}", sha256(&bytes));
        let put = client
            .put(format!("{}/v2/{repository}/manifests/{digest}", self.url()))
            .basic_auth(USER, Some(PASSWORD))
            .header("content-type", "application/vnd.oci.image.manifest.v1+json")
            .body(bytes)
            .send()
            .await
            .unwrap();
        assert_eq!(put.status(), 201, "{:?}", put.text().await);
        digest
    }
}

/// An OCI layout of one image (tagged `latest` in the layout), its config made distinct by
/// `variant`.
fn image_layout(dir: &Path, variant: &str) {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| {
        let digest = sha256(bytes);
        std::fs::write(blobs.join(&digest), bytes).unwrap();
        (format!("sha256:{digest}"), bytes.len())
    };
    let (manifest_digest, manifest_size) = image_blobs(&put, "amd64", variant);
    write_index(
        dir,
        &json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest, "size": manifest_size,
            "annotations": {"org.opencontainers.image.ref.name": "latest"}
        }),
    );
}

/// An OCI layout whose `latest` is an index of a linux/amd64 and a linux/arm64 image.
fn index_layout(dir: &Path) {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| {
        let digest = sha256(bytes);
        std::fs::write(blobs.join(&digest), bytes).unwrap();
        (format!("sha256:{digest}"), bytes.len())
    };
    let mut manifests = Vec::new();
    for arch in ["amd64", "arm64"] {
        let (digest, size) = image_blobs(&put, arch, "multi");
        manifests.push(json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest, "size": size,
            "platform": {"os": "linux", "architecture": arch}
        }));
    }
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": manifests,
        "annotations": {"org.opencontainers.image.version": "1.0"}
    }))
    .unwrap();
    let (digest, size) = put(&index);
    write_index(
        dir,
        &json!({
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": digest, "size": size,
            "annotations": {"org.opencontainers.image.ref.name": "latest"}
        }),
    );
}

fn image_blobs(
    put: &impl Fn(&[u8]) -> (String, usize),
    arch: &str,
    variant: &str,
) -> (String, usize) {
    let layer = vec![0u8; 1024]; // an empty tar archive
    let (layer_digest, layer_size) = put(&layer);
    let config = serde_json::to_vec(&json!({
        "architecture": arch, "os": "linux", "author": variant,
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
    put(&manifest)
}

fn write_index(dir: &Path, entry: &Value) {
    let index = json!({"schemaVersion": 2, "manifests": [entry]});
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
}

/// The registry flags of a Herald that reads `registry`.
fn reads(registry: &RegistryHome, password: &str) -> Vec<String> {
    vec![
        "--registry-url".into(),
        registry.url(),
        "--registry-username".into(),
        USER.into(),
        "--registry-password".into(),
        password.into(),
        "--reconcile-interval".into(),
        "0s".into(),
        "--facts-wait".into(),
        "4s".into(),
    ]
}

async fn app_reading(registry: &RegistryHome, password: &str, listen: u16) -> TestApp {
    let mut args = reads(registry, password);
    args.extend(["--listen".into(), format!("127.0.0.1:{listen}")]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    spawn_app_with(&args).await
}

/// Registry tools, or `None` outside CI without them.
fn kit() -> Option<(String, String)> {
    let found = tools()?;
    crate::require::require(
        "htpasswd (apache2-utils)",
        crate::require::program("htpasswd"),
    )?;
    Some(found)
}

/// A registry notifying a Herald that reads it, both started.
async fn registry_and_herald() -> Option<(RegistryHome, Registry, TestApp)> {
    let (bin, skopeo) = kit()?;
    let listen = free_port();
    let notify = (
        format!("http://127.0.0.1:{listen}/v2/webhooks/events"),
        "test-registry-token".to_string(),
    );
    let home = RegistryHome::new(bin, skopeo, Some(notify));
    let registry = home.start().await;
    let app = app_reading(&home, PASSWORD, listen).await;
    Some((home, registry, app))
}

/// The default source's reconcile once it has finished a run after `runs_before`.
pub(crate) async fn reconciled(app: &TestApp, runs_before: Option<&str>) -> Value {
    eventually(
        Duration::from_secs(30),
        "the reconcile finished",
        || async {
            let r = app.api("GET", "/sources/default/reconcile", None).await;
            let done = r.body["state"] == "idle"
                && r.body["learned"] == true
                && r.body["finished_at"].as_str() != runs_before;
            if done {
                Ok(r.body)
            } else {
                Err(format!("{:#}", r.body))
            }
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multi_arch_index_is_delivered_with_its_platforms() {
    let Some((home, _registry, app)) = registry_and_herald().await else {
        return;
    };
    app.create_namespace("acme").await;
    let indexes = Receiver::start().await;
    let chat = Receiver::start().await;
    app.enabled_webhook(
        "acme",
        json!({"name": "indexes", "url": indexes.url("/"), "filters": {"kinds": ["index"]}}),
    )
    .await;
    app.enabled_webhook(
        "acme",
        json!({"name": "chat", "url": chat.url("/"), "format": "slack", "filters": {"kinds": ["index"]}}),
    )
    .await;
    let layout = home.dir.path().join("multi");
    index_layout(&layout);
    home.push(&layout, "acme/web:1.0", true);
    // Only the tagged index: its two images were pushed by digest, and are images.
    let got = indexes
        .next_within(Duration::from_secs(20))
        .await
        .expect("the index push");
    let event = got.json();
    assert_eq!(event["target"]["tag"], "1.0");
    assert_eq!(
        event["target"]["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let message = chat
        .next_within(Duration::from_secs(5))
        .await
        .expect("the chat message")
        .json();
    assert!(
        message["text"]
            .as_str()
            .unwrap()
            .contains("pushed acme/web:1.0 for linux/amd64, linux/arm64"),
        "{message:#}"
    );
    indexes.assert_quiet(Duration::from_millis(1500)).await;
    // The API tells the index from its images, with its platforms and annotations.
    let events = app.api("GET", "/events?limit=100", None).await.body;
    let items = events["items"].as_array().unwrap();
    let index = items
        .iter()
        .find(|e| e["tag"] == "1.0" && e["action"] == "push")
        .expect("the index's event");
    assert_eq!(index["facts_state"], "read", "{index:#}");
    assert_eq!(index["facts"]["kind"], "index");
    assert_eq!(
        index["facts"]["platforms"],
        json!(["linux/amd64", "linux/arm64"])
    );
    assert_eq!(
        index["facts"]["annotations"]["org.opencontainers.image.version"],
        "1.0"
    );
    assert_eq!(index["facts"]["origin"], "registry");
    let images = items
        .iter()
        .filter(|e| e["action"] == "push" && e["tag"].is_null() && e["facts"]["kind"] == "image")
        .count();
    assert_eq!(images, 2, "{events:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_referrer_is_chosen_by_kind_artifact_type_and_subject_tag() {
    let Some((home, _registry, app)) = registry_and_herald().await else {
        return;
    };
    app.create_namespace("acme").await;
    let sboms = Receiver::start().await;
    let releases = Receiver::start().await;
    app.enabled_webhook(
        "acme",
        json!({"name": "sboms", "url": sboms.url("/"), "format": "cloudevents",
               "filters": {"kinds": ["referrer"], "artifact_types": ["application/spdx+json"], "subject_tags": ["1.*"]}}),
    )
    .await;
    app.enabled_webhook(
        "acme",
        json!({"name": "releases", "url": releases.url("/"), "filters": {"tags": ["1.*"]}}),
    )
    .await;
    let layout = home.dir.path().join("image");
    image_layout(&layout, "one");
    home.push(&layout, "acme/web:1.0", false);
    let image = home.digest("acme/web", "1.0").await;
    let release = releases
        .next_within(Duration::from_secs(20))
        .await
        .expect("the image push");
    assert_eq!(release.json()["target"]["tag"], "1.0");
    // An SPDX SBOM about the image, pushed by digest with subject and artifactType (OCI 1.1).
    let empty = b"{}".to_vec();
    let sbom = br#"{"spdxVersion":"SPDX-2.3","name":"web"}"#.to_vec();
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/spdx+json",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": format!("sha256:{}", sha256(&empty)), "size": 2},
        "layers": [{"mediaType": "application/spdx+json", "digest": format!("sha256:{}", sha256(&sbom)), "size": sbom.len()}],
        "subject": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": image, "size": 1}
    });
    let referrer = home
        .put_manifest("acme/web", &[empty, sbom], &manifest)
        .await;
    let got = sboms
        .next_within(Duration::from_secs(20))
        .await
        .expect("the SBOM's delivery");
    // The CloudEvents SDK reads Herald's extension attributes.
    let ce: cloudevents::Event = serde_json::from_str(&got.body).unwrap();
    use cloudevents::AttributesReader;
    assert_eq!(ce.ty(), "io.herald.registry.push");
    let ext = |name: &str| ce.extension(name).map(ToString::to_string);
    assert_eq!(ext("heraldkind").as_deref(), Some("referrer"));
    assert_eq!(
        ext("heraldartifacttype").as_deref(),
        Some("application/spdx+json")
    );
    assert_eq!(ext("heraldsubject").as_deref(), Some(image.as_str()));
    assert_eq!(ext("heraldsubjecttags").as_deref(), Some("1.0"));
    let data: Value = match ce.data() {
        Some(cloudevents::Data::Json(v)) => v.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        data["target"]["digest"],
        referrer.as_str(),
        "the body is the registry's event"
    );
    // Nothing for the tag filter: the referrer has no tag; nothing more for the SBOMs.
    releases.assert_quiet(Duration::from_millis(1500)).await;
    sboms.assert_quiet(Duration::from_millis(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cosign_signature_tag_is_a_referrer_of_its_image() {
    let Some((home, _registry, app)) = registry_and_herald().await else {
        return;
    };
    app.create_namespace("acme").await;
    let signed = Receiver::start().await;
    app.enabled_webhook(
        "acme",
        json!({"name": "signed", "url": signed.url("/"), "format": "slack",
               "filters": {"kinds": ["referrer"], "subject_tags": ["1.*"]}}),
    )
    .await;
    let layout = home.dir.path().join("image");
    image_layout(&layout, "one");
    home.push(&layout, "acme/web:1.0", false);
    let image = home.digest("acme/web", "1.0").await;
    let sig = home.dir.path().join("sig");
    image_layout(&sig, "signature");
    let tag = format!("sha256-{}.sig", image.trim_start_matches("sha256:"));
    home.push(&sig, &format!("acme/web:{tag}"), false);
    let got = signed
        .next_within(Duration::from_secs(20))
        .await
        .expect("the signature's delivery");
    let text = got.json()["text"].as_str().unwrap().to_string();
    assert!(
        text.contains("attached an artifact to acme/web:1.0"),
        "{text}"
    );
    signed.assert_quiet(Duration::from_millis(1500)).await;
    let events = app.api("GET", "/events?limit=100", None).await.body;
    let e = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["tag"] == tag.as_str())
        .unwrap();
    assert_eq!(e["facts"]["kind"], "referrer");
    assert_eq!(e["facts"]["subject"], image.as_str());
    assert_eq!(e["facts"]["subject_tags"], json!(["1.0"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_deleted_while_notifications_were_off_is_made_up_by_a_reconcile() {
    let Some((bin, skopeo)) = kit() else {
        return;
    };
    // This registry notifies no one.
    let home = RegistryHome::new(bin, skopeo, None);
    let _registry = home.start().await;
    let one = home.dir.path().join("one");
    let two = home.dir.path().join("two");
    image_layout(&one, "one");
    image_layout(&two, "two");
    home.push(&one, "acme/web:1.0", false);
    home.push(&two, "acme/web:2.0", false);
    let second = home.digest("acme/web", "2.0").await;
    let app = app_reading(&home, PASSWORD, free_port()).await;
    app.create_namespace("acme").await;
    let hook = Receiver::start().await;
    app.enabled_webhook("acme", json!({"name": "all", "url": hook.url("/")}))
        .await;
    // The first run learns the registry: it cannot know what happened before.
    let first = reconciled(&app, None).await;
    assert_eq!(
        (first["pushes"].as_i64(), first["deletes"].as_i64()),
        (Some(0), Some(0))
    );
    assert!(first["tags"].as_i64().unwrap() >= 2, "{first:#}");
    hook.assert_quiet(Duration::from_millis(500)).await;
    home.delete("acme/web:2.0");
    let asked = app.api("POST", "/sources/default/reconcile", None).await;
    assert_eq!(asked.status, 202, "{:#}", asked.body);
    let done = reconciled(&app, first["finished_at"].as_str()).await;
    assert_eq!(done["deletes"], 1, "{done:#}");
    let got = hook
        .next_within(Duration::from_secs(10))
        .await
        .expect("the made-up delete");
    let event = got.json();
    assert_eq!(event["action"], "delete");
    assert_eq!(event["target"]["tag"], "2.0");
    assert_eq!(event["target"]["digest"], second.as_str());
    let why = got
        .header("x-herald-synthesized")
        .expect("marked as made up");
    assert!(why.contains("no longer has this tag"), "{why}");
    let events = app.api("GET", "/events?limit=10", None).await.body;
    assert!(events["items"][0]["synthesized"]
        .as_str()
        .unwrap()
        .contains("reconcile"));
    hook.assert_quiet(Duration::from_millis(500)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_registry_credentials_are_reported_and_waiting_deliveries_say_why() {
    let Some((bin, skopeo)) = kit() else {
        return;
    };
    let listen = free_port();
    let notify = (
        format!("http://127.0.0.1:{listen}/v2/webhooks/events"),
        "test-registry-token".to_string(),
    );
    let home = RegistryHome::new(bin, skopeo, Some(notify));
    let _registry = home.start().await;
    let app = app_reading(&home, "not-the-password", listen).await;
    app.create_namespace("acme").await;
    let plain = Receiver::start().await;
    let images = Receiver::start().await;
    app.enabled_webhook("acme", json!({"name": "plain", "url": plain.url("/")}))
        .await;
    let waiting = app
        .enabled_webhook(
            "acme",
            json!({"name": "images", "url": images.url("/"), "filters": {"kinds": ["image"]}}),
        )
        .await;
    let layout = home.dir.path().join("image");
    image_layout(&layout, "one");
    home.push(&layout, "acme/web:1.0", false);
    // A webhook that does not need the facts is not held back by them.
    plain
        .next_within(Duration::from_secs(20))
        .await
        .expect("the plain delivery");
    let source = eventually(
        Duration::from_secs(20),
        "the refusal is reported",
        || async {
            let s = app.api("GET", "/sources/default", None).await.body;
            if s["registry_status"]["ok"] == false {
                Ok(s)
            } else {
                Err(format!("{s:#}"))
            }
        },
    )
    .await;
    assert_eq!(
        source["registry_status"]["problem"], "unauthorized",
        "{source:#}"
    );
    assert_eq!(source["has_registry_password"], true);
    assert!(source.get("registry_password").is_none());
    let ready = app.call("GET", "/readyz", None, None).await;
    assert_eq!(
        ready.status, 200,
        "a registry Herald cannot read does not stop delivery"
    );
    assert!(ready.body["detail"]["registries"]["default"]
        .as_str()
        .unwrap()
        .contains("refused Herald's credentials"));
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("herald_registry_up{source=\"default\"} 0"),
        "{metrics}"
    );
    // After --facts-wait the waiting webhook's delivery is recorded, unsent, with why.
    let items = app
        .wait_deliveries("acme", waiting, |items| {
            items
                .as_array()
                .is_some_and(|a| a.len() == 1 && a[0]["state"] == "failed")
        })
        .await;
    assert!(
        items[0]["last_error"]
            .as_str()
            .unwrap()
            .contains("refused Herald's credentials"),
        "{items:#}"
    );
    images.assert_quiet(Duration::from_millis(10)).await;
}

/// The `herald serve` of these tests: its own data directory (and database on the
/// PostgreSQL pass), reading `registry`, listening on `port`.
fn serve(dir: &Path, db: Option<&str>, registry: &RegistryHome, port: u16) -> LoggedServe {
    let mut cmd = herald_cmd(dir);
    cmd.args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--registry-token", "test-registry-token"])
        .args([
            "--delivery-allow-networks",
            "127.0.0.1/32",
            "--retry-schedule",
            "0s,200ms",
        ])
        .args(reads(registry, PASSWORD));
    if let Some(url) = db {
        cmd.args(["--database", url]);
    }
    LoggedServe::spawn(cmd)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_lost_while_herald_was_down_is_delivered_once_herald_starts() {
    let Some((bin, skopeo)) = kit() else {
        return;
    };
    let db = if std::env::var("HERALD_TEST_DATABASE").as_deref() == Ok("postgres") {
        Some(crate::pg::PgTestDb::create().await.expect("PostgreSQL"))
    } else {
        None
    };
    let db_url = db.as_ref().map(|d| d.url.clone());
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let home = RegistryHome::new(
        bin,
        skopeo,
        Some((
            format!("http://127.0.0.1:{port}/v2/webhooks/events"),
            "test-registry-token".into(),
        )),
    );
    let registry = home.start().await;
    let mut herald = serve(data.path(), db_url.as_deref(), &home, port);
    let base = herald.base_url();
    wait_ready(&base).await;
    let token = cli_admin_token_in(data.path(), db_url.as_deref());
    let hook = Receiver::start().await;
    let client = reqwest::Client::new();
    let api = |method: reqwest::Method, path: &str, body: Option<Value>| {
        let mut r = client
            .request(method, format!("{base}/api/v1{path}"))
            .bearer_auth(&token);
        if let Some(b) = body {
            r = r
                .header("content-type", "application/json")
                .body(serde_json::to_vec(&b).unwrap());
        }
        async move {
            let bytes = r.send().await.unwrap().bytes().await.unwrap();
            serde_json::from_slice::<Value>(&bytes).unwrap_or(Value::Null)
        }
    };
    api(
        reqwest::Method::POST,
        "/namespaces",
        Some(json!({"name": "acme"})),
    )
    .await;
    let created = api(
        reqwest::Method::POST,
        "/namespaces/acme/webhooks",
        Some(json!({"name": "deploy", "url": hook.url("/")})),
    )
    .await;
    let id = created["id"].as_i64().expect("a webhook id");
    api(
        reqwest::Method::PATCH,
        &format!("/namespaces/acme/webhooks/{id}"),
        Some(json!({"enabled": true})),
    )
    .await;
    let one = home.dir.path().join("one");
    image_layout(&one, "one");
    home.push(&one, "acme/web:1.0", false);
    let pushed = hook
        .next_within(Duration::from_secs(20))
        .await
        .expect("the 1.0 push");
    assert_eq!(pushed.json()["target"]["tag"], "1.0");
    assert!(pushed.header("x-herald-synthesized").is_none());
    // Recorded as sent, so the stop below cannot leave it to be sent again.
    eventually(
        Duration::from_secs(10),
        "the 1.0 delivery is recorded",
        || async {
            let d = api(
                reqwest::Method::GET,
                &format!("/namespaces/acme/webhooks/{id}/deliveries"),
                None,
            )
            .await;
            d["items"]
                .as_array()
                .is_some_and(|a| !a.is_empty() && a.iter().all(|d| d["state"] == "succeeded"))
        },
    )
    .await;
    eventually(
        Duration::from_secs(30),
        "the first reconcile learned the registry",
        || async {
            let r = api(reqwest::Method::GET, "/sources/default/reconcile", None).await;
            r["learned"] == true && r["state"] == "idle"
        },
    )
    .await;
    // Herald goes down; a push is made; the registry, which had it queued in memory, is
    // killed and started again: the event is gone.
    herald.stop();
    let two = home.dir.path().join("two");
    image_layout(&two, "two");
    home.push(&two, "acme/web:2.0", false);
    drop(registry);
    let _registry = home.start().await;
    let mut herald = serve(data.path(), db_url.as_deref(), &home, port);
    herald.base_url();
    let got = hook
        .next_within(Duration::from_secs(30))
        .await
        .expect("the lost push, made up");
    let event = got.json();
    assert_eq!(event["action"], "push");
    assert_eq!(event["target"]["tag"], "2.0");
    assert!(got
        .header("x-herald-synthesized")
        .unwrap()
        .contains("sent no push event"));
    hook.assert_quiet(Duration::from_millis(1500)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_gives_a_source_read_access_and_reconciles_it() {
    use crate::cli::herald;
    let Some((bin, skopeo)) = kit() else {
        return;
    };
    let home = RegistryHome::new(bin, skopeo, None);
    let _registry = home.start().await;
    for (tag, variant) in [("1.0", "one"), ("2.0", "two")] {
        let layout = home.dir.path().join(variant);
        image_layout(&layout, variant);
        home.push(&layout, &format!("acme/web:{tag}"), false);
    }
    let dir = tempfile::tempdir().unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let cli = |args: Vec<String>, stdin: &'static str| {
        let dir = dir.path().to_path_buf();
        async move {
            tokio::task::spawn_blocking(move || {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                herald(&dir, &args, stdin)
            })
            .await
            .unwrap()
        }
    };
    let args = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert!(cli(args(&["migrate"]), "").await.status.success());
    let made = cli(
        args(&["source", "create", "reg1", "--kind", "distribution"]),
        "reg1-token-0123456789abcdefghij\n",
    )
    .await;
    assert!(made.status.success(), "{}", text(&made.stderr));
    let url = home.url();
    let given = cli(
        args(&[
            "source",
            "update",
            "reg1",
            "--registry-url",
            &url,
            "--registry-username",
            USER,
        ]),
        "reader-secret\n",
    )
    .await;
    assert!(given.status.success(), "{}", text(&given.stderr));
    assert!(text(&given.stderr).contains(&format!("reads its registry at {url} as 'reader'")));
    // The server on that data directory runs what the command line asks for.
    let config = herald::config::Config::from_args([
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--template-sandbox-exe",
        env!("CARGO_BIN_EXE_herald"),
        "--reconcile-interval",
        "0s",
    ])
    .unwrap();
    let app = herald::Application::build(config).await.unwrap();
    tokio::spawn(app.run(std::future::pending()));
    let first = cli(args(&["source", "reconcile", "reg1", "--wait", "30s"]), "").await;
    assert!(first.status.success(), "{}", text(&first.stderr));
    let report = text(&first.stdout);
    // The run at the server's start learned the registry; this one finds nothing new.
    assert!(
        report.contains("repositories 1, tags 2, made-up pushes 0, made-up deletes 0"),
        "{report}"
    );
    home.delete("acme/web:2.0");
    let second = cli(args(&["source", "reconcile", "reg1", "--wait", "30s"]), "").await;
    let report = text(&second.stdout);
    assert!(
        report.contains("made-up pushes 0, made-up deletes 1"),
        "{report}"
    );
    let shown = text(&cli(args(&["source", "show", "reg1"]), "").await.stdout);
    assert!(
        shown.contains(&format!("reads its registry at {url} as 'reader'")),
        "{shown}"
    );
    let listed = text(&cli(args(&["source", "list", "--json"]), "").await.stdout);
    let sources: Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(sources[1]["has_registry_password"], true, "{listed}");
    assert!(
        !listed.contains("reader-secret"),
        "the password is never shown"
    );
    let removed = cli(args(&["source", "update", "reg1", "--no-registry"]), "").await;
    assert!(text(&removed.stderr).contains("no longer reads its registry"));
    let refused = cli(args(&["source", "reconcile", "reg1", "--wait", "0s"]), "").await;
    assert_eq!(refused.status.code(), Some(5), "{}", text(&refused.stderr));
    assert!(text(&refused.stderr).contains("give it registry_url first"));
}

/// The source's page, as an admin uses it: give a source read access (refused input next
/// to its field, wrong credentials reported), see the first reconcile learn the registry,
/// ask for another that makes up a push the registry never sent, see it on the events page,
/// and take the access away. The built-in source is listed once, first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_gives_a_source_read_access_and_reconciles_it_on_its_page() {
    use crate::web::{flash_of, sign_in_as};
    let Some((bin, skopeo)) = kit() else {
        return;
    };
    // This registry notifies no one: everything Herald learns, it reads.
    let home = RegistryHome::new(bin, skopeo, None);
    let _registry = home.start().await;
    let one = home.dir.path().join("one");
    image_layout(&one, "one");
    home.push(&one, "acme/web:1.0", false);
    let app = spawn_app().await;
    app.create_namespace("acme").await;
    let made = app
        .api(
            "POST",
            "/sources",
            Some(json!({"name": "dist1", "kind": "distribution", "token": "dist1-token-0123456789abcdef"})),
        )
        .await;
    assert_eq!(made.status, 201, "{:#}", made.body);
    let admin = sign_in_as(&app, "admin", "admin-password").await;
    let csrf = admin.csrf(&app).await;

    let (status, list) = admin.get(&app, "/sources").await;
    assert_eq!(status, 200);
    assert_eq!(list.matches("data-source=\"default\"").count(), 1, "{list}");
    assert!(list.find("data-source=\"default\"") < list.find("data-source=\"dist1\""));
    let page = |path: &'static str| {
        let admin = &admin;
        let app = &app;
        async move { admin.get(app, path).await.1 }
    };
    // Waits until the page at `path` shows every one of `needles`.
    let shows = async |within: u64, what: &str, path: &'static str, needles: &[&str]| {
        eventually(Duration::from_secs(within), what, || async {
            let html = page(path).await;
            if needles.iter().all(|n| html.contains(n)) {
                Ok(())
            } else {
                Err(html)
            }
        })
        .await
    };
    assert!(page("/sources/dist1")
        .await
        .contains("not read: Herald knows only"));

    // Refused: the page comes back with the message next to the field, nothing saved.
    let res = admin
        .post(
            &app,
            "/sources/dist1/registry",
            &[
                ("csrf", csrf.as_str()),
                ("registry_url", "ftp://127.0.0.1/"),
                ("registry_username", USER),
                ("registry_password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(res.status(), 422);
    let refused = res.text().await.unwrap();
    assert!(
        refused.contains("id=\"registry-registry_url-error\"")
            && refused.contains("aria-invalid=\"true\""),
        "{refused}"
    );
    let source = app.api("GET", "/sources/dist1", None).await.body;
    assert!(source["registry_url"].is_null(), "{source:#}");

    // Wrong password: saved, and the page says the registry refused it.
    let url = home.url();
    let give = |password: &'static str| {
        let url = url.clone();
        let csrf = csrf.clone();
        let admin = &admin;
        let app = &app;
        async move {
            admin
                .post(
                    app,
                    "/sources/dist1/registry",
                    &[
                        ("csrf", csrf.as_str()),
                        ("registry_url", url.as_str()),
                        ("registry_username", USER),
                        ("registry_password", password),
                    ],
                )
                .await
        }
    };
    let res = give("not-the-password").await;
    assert_eq!(res.status(), 303);
    assert!(flash_of(&res).contains("Herald reads the registry of 'dist1'"));
    shows(
        20,
        "the page says the credentials were refused",
        "/sources/dist1",
        &["badge problem\">unauthorized"],
    )
    .await;
    let stored = app
        .api("GET", "/sources/dist1", None)
        .await
        .body
        .to_string();
    assert!(
        !stored.contains("not-the-password"),
        "never shown: {stored}"
    );

    // The right password: the first reconcile learns the registry's one tag.
    assert_eq!(give(PASSWORD).await.status(), 303);
    shows(
        30,
        "the first reconcile learned the registry",
        "/sources/dist1",
        &[
            "badge on\">readable",
            "1 repositories, 1 tags",
            "0 pushes, 0 deletes",
        ],
    )
    .await;

    // A push the registry never sent, made up by the reconcile the page asks for.
    let two = home.dir.path().join("two");
    image_layout(&two, "two");
    home.push(&two, "acme/web:2.0", false);
    let res = admin
        .post(&app, "/sources/dist1/reconcile", &[("csrf", csrf.as_str())])
        .await;
    assert_eq!(res.status(), 303);
    assert!(flash_of(&res).contains("Reconcile of 'dist1' asked for"));
    shows(
        30,
        "the reconcile made up the push",
        "/sources/dist1",
        &["1 pushes, 0 deletes"],
    )
    .await;
    eventually(
        Duration::from_secs(20),
        "the events page shows what the push was and that a reconcile made it",
        || async {
            let html = page("/events").await;
            let row = html
                .split("<tr data-event=")
                .find(|r| r.contains("web:2.0"))
                .unwrap_or_default()
                .to_string();
            if row.contains("made by a reconcile") && row.contains("class=\"facts\">image") {
                Ok(())
            } else {
                Err(html)
            }
        },
    )
    .await;

    // Taken away: no reads, no reconciles.
    let res = admin
        .post(
            &app,
            "/sources/dist1/registry",
            &[("csrf", csrf.as_str()), ("remove", "1")],
        )
        .await;
    assert_eq!(res.status(), 303);
    assert!(flash_of(&res).contains("no longer reads"));
    let html = page("/sources/dist1").await;
    assert!(html.contains("not read: Herald knows only") && !html.contains("Reconcile now"));
    let asked = app.api("POST", "/sources/dist1/reconcile", None).await;
    assert_eq!(asked.status, 409, "{:#}", asked.body);
}
