#!/usr/bin/env bash
# Checks every way Herald is shipped and documented, end to end, on loopback only:
#   1. a statically linked herald (cargo rustc: the debug build's dependencies, linked static)
#   2. the OCI image (packaging/image/build.sh, buildah from scratch), pushed with skopeo to
#      Debian's docker-registry, pulled back and run with podman until /healthz answers
#   3. the Debian package (packaging/deb/build.py), installed with dpkg -i, its unit verified
#      with systemd-analyze and its service command run as the herald user
#   4. examples/: compose.yaml through docker-compose's parser, the Kubernetes manifests
#      against the Kubernetes schemas
#   5. the book: the receivers against real signed deliveries, the README's quick start as
#      written, and every link
#
# Runs as root (dpkg -i, buildah mount, podman). Every missing tool is an error: nothing is
# skipped. .ci/run installs the tools; to run it by hand:
#   apt-get install buildah podman runc skopeo docker-registry docker-compose golang-go systemd
#   pip install kubernetes-validate standardwebhooks cryptography; npm ci --prefix docs/src/receivers
#   scripts/check-packaging.sh
# Leaves target/debug/herald statically linked; cargo keeps both links, so the next cargo
# build puts the ordinary one back without compiling anything.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
    echo "check-packaging: run me as root (dpkg -i, buildah mount, podman)" >&2
    exit 1
fi
for tool in cargo strip file buildah podman runc skopeo docker-registry dpkg-deb systemd-analyze \
    docker-compose kubernetes-validate python3 node go curl jq openssl; do
    command -v "$tool" >/dev/null || {
        echo "check-packaging: $tool is missing (see the header of $0 for what to install)" >&2
        exit 1
    }
done

work=$(mktemp -d /tmp/herald-packaging.XXXXXX)
pids=()
cleanup() {
    set +e
    podman_ rm --all --force --time 0 >/dev/null 2>&1
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done
    if [ -n "${installed_deb:-}" ]; then
        dpkg --purge herald >/dev/null
        [ -n "${created_user:-}" ] && userdel herald 2>/dev/null
        [ -n "${created_dir:-}" ] && rm -rf /var/lib/herald
    fi
    # vfs stores hold read-only copies; podman's shm mounts must go before the files.
    grep -o "$work/[^ ]*" /proc/mounts | sort -r | xargs -r umount 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

t0=$SECONDS
step_start=$SECONDS
step() {
    if [ -n "${step_name:-}" ]; then echo "   ($step_name: $((SECONDS - step_start)) s)"; fi
    step_name=$1
    step_start=$SECONDS
    echo "== $1"
}
fail() {
    echo "check-packaging: FAILED: $*" >&2
    exit 1
}
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# wait_for SECONDS DESCRIPTION COMMAND...: polls COMMAND until it succeeds or time runs out.
wait_for() {
    local deadline=$((SECONDS + $1)) what=$2
    shift 2
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || fail "$what did not happen within the deadline"
        sleep 0.2
    done
}

# Private stores, so the check neither reads nor leaves anything in /var/lib/containers.
# vfs: no overlay mounts needed. cgroupfs and runc: this machine kind runs no systemd and
# mounts cgroups in hybrid mode, which crun refuses. The explicit ulimits: podman's
# default (1048576 open files) is above the hard limit here, and raising it is refused.
store=(--root "$work/storage" --runroot "$work/run" --storage-driver vfs)
podman_() {
    podman "${store[@]}" --cgroup-manager cgroupfs --runtime runc --events-backend none "$@"
}
ulimits=(--ulimit "nofile=$(ulimit -Hn):$(ulimit -Hn)" --ulimit nproc=4096:4096)

step "static binary"
if [ -n "${HERALD_STATIC_BINARY:-}" ]; then
    cp "$HERALD_STATIC_BINARY" "$work/herald"
else
    # The same dependencies as the ordinary debug build (already built), linked statically:
    # only the herald binary is compiled again. A cold --target build would rebuild all.
    cargo rustc --locked --quiet -p herald --bin herald -- -C target-feature=+crt-static
    strip -o "$work/herald" target/debug/herald
fi
file "$work/herald" | grep -Eq 'static(-pie)? linked' || fail "not static: $(file "$work/herald")"
"$work/herald" --version

step "image: build"
image=localhost/herald:ci
BUILDAH_OPTS="${store[*]}" packaging/image/build.sh "$work/herald" "$image"

step "image: push to a registry"
reg_port=$(free_port)
cat >"$work/registry.yml" <<EOF
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $work/registry
http:
  addr: 127.0.0.1:$reg_port
EOF
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
pids+=($!)
wait_for 20 "the registry answering on 127.0.0.1:$reg_port" curl -sf "http://127.0.0.1:$reg_port/v2/"
ref=127.0.0.1:$reg_port/herald:ci
skopeo copy --quiet --dest-tls-verify=false "containers-storage:[vfs@$work/storage+$work/run]$image" "docker://$ref"
skopeo inspect --tls-verify=false --config "docker://$ref" >"$work/config.json"
jq -e '.config.User == "65532:65532" and .config.Cmd == ["serve", "--listen", "0.0.0.0:8080"]
       and (.config.Volumes | has("/data")) and (.config.Env | index("HERALD_DATA_DIR=/data"))' \
    "$work/config.json" >/dev/null || fail "the pushed image's config is not as built: $(cat "$work/config.json")"

step "image: pull and run with podman"
# A store of its own, so the run uses what the registry serves, not the build's copy.
store=(--root "$work/run-storage" --runroot "$work/run-run" --storage-driver vfs)
podman_ pull --quiet --tls-verify=false "$ref" >/dev/null
port=$(free_port)
podman_ run --detach --name herald-ci "${ulimits[@]}" -p "127.0.0.1:$port:8080" "$ref" >/dev/null
wait_for 30 "the container's /healthz answering" curl -sf "http://127.0.0.1:$port/healthz"
wait_for 30 "the container's /readyz answering 200" curl -sf "http://127.0.0.1:$port/readyz"
pid=$(podman_ inspect --format '{{.State.Pid}}' herald-ci)
uid=$(awk '/^Uid:/ {print $2}' "/proc/$pid/status")
[ "$uid" = 65532 ] || fail "the container runs as uid $uid, not 65532"
# The CLI in the container, on the volume serve uses; then an API call whose answer shows
# that the static binary resolves names (glibc's built-in "files" lookup: /etc/hosts).
echo 'a-long-password' | podman_ exec -i herald-ci herald user create admin --admin >/dev/null 2>&1
token=$(podman_ exec herald-ci herald token create admin 2>/dev/null)
api=http://127.0.0.1:$port/api/v1
curl -sf -H "Authorization: Bearer $token" -H 'Content-Type: application/json' -d '{"name":"acme"}' "$api/namespaces" >/dev/null
curl -sf -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
    -d '{"name":"dns","url":"http://localhost:9/"}' "$api/namespaces/acme/webhooks" >"$work/hook.json"
jq -e '.warnings | any(test("resolves to (127\\.0\\.0\\.1|::1)"))' "$work/hook.json" >/dev/null ||
    fail "the container did not resolve localhost: $(cat "$work/hook.json")"
podman_ stop --time 30 herald-ci >/dev/null
[ "$(podman_ inspect --format '{{.State.ExitCode}}' herald-ci)" = 0 ] ||
    fail "herald in the container did not exit 0 on SIGTERM: $(podman_ logs herald-ci 2>&1 | tail -5)"

step "Debian package"
dpkg -s herald >/dev/null 2>&1 && fail "a herald package is installed already; this check installs and purges its own"
getent passwd herald >/dev/null || created_user=1
[ -e /var/lib/herald ] || created_dir=1
deb=$(packaging/deb/build.py --binary "$work/herald" --out "$work/deb")
dpkg-deb --field "$deb" Depends | grep -q . && fail "the package depends on something: $(dpkg-deb --field "$deb" Depends)"
installed_deb=1
dpkg -i "$deb" >/dev/null
herald --version
systemd-analyze verify /lib/systemd/system/herald.service
[ "$(stat -c %U:%a /var/lib/herald)" = herald:700 ] || fail "/var/lib/herald is $(stat -c %U:%a /var/lib/herald)"
# What the unit starts, as the unit's user (no systemd runs here to start it itself);
# setpriv execs, so the signal below reaches herald itself.
port=$(free_port)
setpriv --reuid herald --regid herald --init-groups env HERALD_DATA_DIR=/var/lib/herald HERALD_LISTEN="127.0.0.1:$port" \
    /usr/bin/herald serve >"$work/service.log" 2>&1 &
pids+=($!)
wait_for 30 "the packaged service's /healthz answering" curl -sf "http://127.0.0.1:$port/healthz"
kill "${pids[-1]}" && wait "${pids[-1]}" || fail "the packaged service did not exit 0 on SIGTERM"
[ -s /var/lib/herald/secret.key ] || fail "the service kept nothing in /var/lib/herald"
# The book's first commands after installing: an admin, and the registry's snippet.
as_herald() { setpriv --reuid herald --regid herald --init-groups "$@"; }
echo 'a-long-password' | as_herald herald user create alice --admin --data-dir /var/lib/herald >/dev/null 2>&1 ||
    fail "herald user create as the herald user on /var/lib/herald failed"
as_herald herald registry-config --data-dir /var/lib/herald | grep -q 'Authorization: \[Bearer ' ||
    fail "herald registry-config as the herald user printed no token"

step "examples: compose file and Kubernetes manifests"
# docker-compose 1.29 (Debian's) checks the file against the Compose schema; the secrets
# it requires come from the environment here, as from .env in use.
HERALD_SECRET_KEY=$(openssl rand -base64 32) HERALD_REGISTRY_TOKEN=$(openssl rand -hex 32) \
    docker-compose -f examples/compose/compose.yaml config --quiet
# The schemas of Kubernetes 1.30 (bundled with kubernetes-validate: nothing is fetched);
# --strict refuses fields the schema does not know.
kubernetes-validate --quiet --strict --kubernetes-version 1.30.0 examples/kubernetes/*/*.yaml

step "examples and book: a registry push through Herald to every receiver of the book"
[ -d docs/src/receivers/node_modules/standardwebhooks ] ||
    fail "docs/src/receivers/node_modules is missing: npm ci --prefix docs/src/receivers"
scripts/check-deliveries.py "$work/herald"

step "book: the README's quick start, and every link"
scripts/check-quickstart.sh "$work/herald"
scripts/check-docs.py

step done
echo "check-packaging: all passed in $((SECONDS - t0)) s"
