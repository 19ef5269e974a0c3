#!/usr/bin/env python3
"""The examples' registry wiring and the book's receivers, end to end, on loopback.

    scripts/check-deliveries.py HERALD_BINARY

1. Reads examples/compose/compose.yaml through docker-compose's parser and starts Debian's
   docker-registry with the example's registry.yml and the notification endpoint the
   compose file gives it (Herald's address moved to loopback; the token as configured).
2. Starts Herald with that registry token, and one webhook per receiver of the book and
   signature scheme (v1, v1a), each pointing at that receiver, run as the book says.
3. Pushes an image to the registry with skopeo: every webhook must succeed, which means
   the registry's notification reached Herald and every receiver accepted its signature.
4. Sends each stored request again with one byte of the body changed: every receiver must
   answer 401; unchanged, 204 (so the 401 is the tampering's).
"""

import gzip
import hashlib
import io
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
RECEIVERS = ROOT / "docs" / "src" / "receivers"
COMPOSE = ROOT / "examples" / "compose"
# How the book starts each receiver (docs/src/receivers.md).
COMMANDS = {
    "python": ["python3", str(RECEIVERS / "receiver.py")],
    "node": ["node", str(RECEIVERS / "receiver.mjs")],
    "go": ["go", "run", str(RECEIVERS / "receiver.go")],
}
processes = []


def fail(message):
    sys.exit(f"check-deliveries: FAILED: {message}")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def eventually(what, check, seconds=60):
    deadline = time.monotonic() + seconds
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            fail(f"{what} did not happen within {seconds} s")
        time.sleep(0.2)


def listening(port):
    def check():
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    return check


def start(args, log, **kwargs):
    p = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, **kwargs)
    processes.append(p)
    return p


def request(method, url, body=None, headers=None):
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def oci_layout(path):
    """A one-layer image in an OCI layout directory, for skopeo to push."""
    blobs = path / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def put(data):
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        return {"digest": f"sha256:{digest}", "size": len(data)}

    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w") as t:
        info = tarfile.TarInfo("hello.txt")
        content = b"pushed by check-deliveries\n"
        info.size = len(content)
        t.addfile(info, io.BytesIO(content))
    layer_tar = tar.getvalue()
    layer = put(gzip.compress(layer_tar, mtime=0))
    config = put(json.dumps({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{hashlib.sha256(layer_tar).hexdigest()}"]},
    }).encode())
    manifest = put(json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **layer}],
    }).encode())
    (path / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (path / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", **manifest,
        "annotations": {"org.opencontainers.image.ref.name": "1.0"}}]}))


def main():
    herald = Path(sys.argv[1]).resolve()
    work = Path(tempfile.mkdtemp(prefix="herald-deliveries."))
    log = open(work / "processes.log", "w")
    try:
        run(herald, work, log)
    except SystemExit:
        log.flush()
        print((work / "processes.log").read_text()[-6000:], file=sys.stderr)
        raise
    finally:
        for p in processes:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for p in processes:
            p.wait()
        shutil.rmtree(work, ignore_errors=True)


def run(herald, work, log):
    # 1. What the compose example tells the registry.
    token = secrets.token_hex(32)
    env = dict(os.environ, HERALD_SECRET_KEY="unused-here", HERALD_REGISTRY_TOKEN=token)
    resolved = yaml.safe_load(subprocess.run(
        ["docker-compose", "-f", str(COMPOSE / "compose.yaml"), "config"],
        env=env, check=True, capture_output=True, text=True).stdout)
    endpoints = resolved["services"]["registry"]["environment"]["REGISTRY_NOTIFICATIONS_ENDPOINTS"]
    url = "http://herald:8080/v2/webhooks/events"
    if url not in endpoints or f"Bearer {token}" not in endpoints:
        fail(f"compose.yaml's registry is not sent to {url} with the token: {endpoints}")

    herald_port, registry_port = free_port(), free_port()
    data = work / "herald-data"
    start([str(herald), "serve", "--data-dir", str(data), "--listen", f"127.0.0.1:{herald_port}",
           "--delivery-allow-networks", "127.0.0.1/32", "--registry-token", token], log)
    eventually("Herald answering", listening(herald_port))
    start(["docker-registry", "serve", str(COMPOSE / "registry.yml")], log, env=dict(
        os.environ,
        REGISTRY_NOTIFICATIONS_ENDPOINTS=endpoints.replace("http://herald:8080", f"http://127.0.0.1:{herald_port}"),
        REGISTRY_HTTP_ADDR=f"127.0.0.1:{registry_port}",
        REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY=str(work / "registry")))
    eventually("the registry answering", listening(registry_port))

    # 2. An admin, and two webhooks (v1, v1a) per receiver.
    subprocess.run([str(herald), "user", "create", "admin", "--admin", "--data-dir", str(data)],
                   input=b"a-long-password\n", check=True, capture_output=True)
    api_token = subprocess.run([str(herald), "token", "create", "admin", "--data-dir", str(data)],
                               check=True, capture_output=True, text=True).stdout.strip()
    api = f"http://127.0.0.1:{herald_port}/api/v1"
    auth = {"Authorization": f"Bearer {api_token}", "Content-Type": "application/json"}
    status, body = request("POST", f"{api}/namespaces", {"name": "acme"}, auth)
    assert status == 201, body
    hooks = {}
    for name in COMMANDS:
        port = free_port()
        keys = {}
        for scheme in ("v1", "v1a"):
            status, body = request("POST", f"{api}/namespaces/acme/webhooks", {
                "name": f"{name}-{scheme}", "url": f"http://127.0.0.1:{port}/{scheme}",
                "request_method": "POST", "signature": scheme}, auth)
            if status != 201:
                fail(f"creating webhook {name}-{scheme}: {status} {body}")
            hook = json.loads(body)
            keys[scheme] = hook.get("signing_secret") or hook["signature_public_key"]
            status, body = request("PATCH", f"{api}/namespaces/acme/webhooks/{hook['id']}", {"enabled": True}, auth)
            assert status == 200, body
            hooks[(name, scheme)] = hook["id"]
        start(COMMANDS[name], log, cwd=RECEIVERS, env=dict(
            os.environ, LISTEN=f"127.0.0.1:{port}", WEBHOOK_SECRET=keys["v1"], WEBHOOK_PUBLIC_KEY=keys["v1a"]))
        eventually(f"the {name} receiver listening", listening(port), seconds=120)  # go run compiles first

    # 3. A push: the registry notifies Herald, Herald delivers to every webhook.
    layout = work / "image"
    oci_layout(layout)
    subprocess.run(["skopeo", "copy", "--quiet", "--dest-tls-verify=false", f"oci:{layout}:1.0",
                    f"docker://127.0.0.1:{registry_port}/acme/demo:1.0"], check=True)

    def delivered(hook_id):
        def check():
            status, body = request("GET", f"{api}/namespaces/acme/webhooks/{hook_id}/deliveries", headers=auth)
            items = json.loads(body)["items"] if status == 200 else []
            done = [d for d in items if d["state"] == "succeeded"]
            if any(d["state"] in ("retrying", "failed") for d in items):
                fail(f"webhook {hook_id}: a delivery failed: {items}")
            return done[0] if done else None
        return check

    for (name, scheme), hook_id in hooks.items():
        delivery = eventually(f"the push delivered to the {name} receiver ({scheme})", delivered(hook_id))
        status, body = request("GET", f"{api}/namespaces/acme/webhooks/{hook_id}/deliveries/{delivery['id']}",
                               headers=auth)
        sent = json.loads(body)["request"]
        # 4. The same request again, as sent and with its body changed.
        headers = {k: v for k, v in sent["headers"] if k.lower().startswith("webhook-") or k.lower() == "content-type"}
        original = sent["body"].encode()
        tampered = original.replace(b"acme/demo", b"acme/dem0", 1)
        assert tampered != original
        for body, expected in ((original, 204), (tampered, 401)):
            status, _ = request("POST", sent["url"], body, headers)
            if status != expected:
                fail(f"the {name} receiver ({scheme}) answered {status} to a {'tampered' if expected == 401 else 'replayed'} request, not {expected}")
        print(f"check-deliveries: {name} receiver: {scheme} verified, tampered body refused")


if __name__ == "__main__":
    main()
