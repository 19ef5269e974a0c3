#!/usr/bin/env bash
# Boots systemd in a container with the Debian package installed, and checks that the
# hardened unit really runs Herald: /healthz answers through a published loopback port, a
# template webhook can be saved (its sandbox processes run under the unit's system-call
# filter and memory protections), `systemd-analyze security` rates it, and a stop ends
# with status 0. Not part of CI: debootstrap downloads and unpacks a Debian system
# (about 2.5 minutes); check-packaging.sh covers the rest. Run it after changing the unit:
#   apt-get install debootstrap podman runc
#   scripts/check-systemd-boot.sh target/debug/herald     (a static build; see check-packaging.sh)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
binary=$(realpath "${1:?usage: scripts/check-systemd-boot.sh STATIC_HERALD_BINARY}")
work=$(mktemp -d /tmp/herald-systemd.XXXXXX)
podman_() {
    podman --root "$work/storage" --runroot "$work/run" --storage-driver vfs \
        --cgroup-manager cgroupfs --runtime runc --events-backend none "$@"
}
cleanup() {
    podman_ rm --force --time 5 herald-systemd >/dev/null 2>&1 || true
    grep -o "$work/[^ ]*" /proc/mounts | sort -r | xargs -r umount 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "check-systemd-boot: FAILED: $*" >&2; exit 1; }

debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus bookworm "$work/sysroot" \
    http://deb.debian.org/debian >"$work/debootstrap.log" 2>&1 || fail "debootstrap: $(tail -3 "$work/debootstrap.log")"
deb=$("$root/packaging/deb/build.py" --binary "$binary" --out "$work/sysroot/root")
chroot "$work/sysroot" dpkg -i "/root/$(basename "$deb")" >/dev/null
echo 'HERALD_LISTEN=0.0.0.0:8080' >>"$work/sysroot/etc/default/herald"

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
podman_ run -d --name herald-systemd --systemd=always --ulimit nofile=20000:20000 --ulimit nproc=4096:4096 \
    -p "127.0.0.1:$port:8080" --rootfs "$work/sysroot" /lib/systemd/systemd >/dev/null
deadline=$((SECONDS + 60))
until curl -sf "http://127.0.0.1:$port/healthz" >/dev/null; do
    ((SECONDS < deadline)) || fail "herald.service did not answer: $(podman_ exec herald-systemd journalctl -u herald --no-pager | tail -5)"
    sleep 0.5
done
as_herald() { podman_ exec -i herald-systemd runuser -u herald -- "$@"; }
echo 'a-long-password' | as_herald herald user create alice --admin --data-dir /var/lib/herald >/dev/null 2>&1
token=$(as_herald herald token create alice --data-dir /var/lib/herald 2>/dev/null)
api=http://127.0.0.1:$port/api/v1
curl -sf -H "Authorization: Bearer $token" -H 'Content-Type: application/json' -d '{"name":"acme"}' "$api/namespaces" >/dev/null
curl -sf -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
    -d '{"name":"t","url":"http://example.org/","request_method":"POST","format":"template","template":"{{ repository }}"}' \
    "$api/namespaces/acme/webhooks" >/dev/null || fail "a template webhook could not be saved (its sandbox failed?)"
podman_ exec herald-systemd systemd-analyze security herald --no-pager | tail -1
podman_ exec herald-systemd systemctl stop herald
[ "$(podman_ exec herald-systemd systemctl show herald -p ExecMainStatus --value)" = 0 ] ||
    fail "herald.service did not stop with status 0"
echo "check-systemd-boot: herald.service ran under systemd and stopped cleanly"
