#!/usr/bin/env bash
# Builds Herald's OCI image from scratch with buildah: the static binary, CA certificates,
# a non-root user (65532) and /data as the volume; `herald serve --listen 0.0.0.0:8080` by
# default. No Dockerfile and no base image: nothing is pulled.
#
#   packaging/image/build.sh BINARY [IMAGE]        (IMAGE defaults to localhost/herald:VERSION)
#
# BINARY must be statically linked:
#   RUSTFLAGS='-C target-feature=+crt-static' cargo build --release --target x86_64-unknown-linux-gnu
#   packaging/image/build.sh target/x86_64-unknown-linux-gnu/release/herald
# Run it as root, or as a user under `buildah unshare` (it mounts the image's filesystem).
# BUILDAH_OPTS passes global options to buildah, e.g. a private store for CI:
#   BUILDAH_OPTS='--root /tmp/s --runroot /tmp/r --storage-driver vfs'
# Prints the image's name. Needs: buildah, file, and Debian's ca-certificates.
set -euo pipefail
cd "$(dirname "$0")/../.."

binary=${1:?usage: packaging/image/build.sh BINARY [IMAGE]}
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
image=${2:-localhost/herald:$version}
certs=/etc/ssl/certs/ca-certificates.crt
uid=65532 # the "nonroot" user of distroless images; not a user of the host
read -ra opts <<<"${BUILDAH_OPTS:-}"
bah() { buildah "${opts[@]}" "$@"; }

# A dynamic binary would start nowhere: the image has no loader and no libc.
if ! file -L "$binary" | grep -q 'static'; then
    echo "build.sh: $binary is not statically linked (file says: $(file -L "$binary"))" >&2
    exit 1
fi
[ -r "$certs" ] || { echo "build.sh: $certs is missing (apt-get install ca-certificates)" >&2; exit 1; }

container=$(bah from scratch)
trap 'bah rm "$container" >/dev/null 2>&1 || true' EXIT
root=$(bah mount "$container")

install -d -m 0755 "$root/usr/bin" "$root/etc/ssl/certs"
install -m 0755 "$binary" "$root/usr/bin/herald"
install -m 0644 "$certs" "$root/etc/ssl/certs/ca-certificates.crt"
printf 'root:x:0:0:root:/root:/sbin/nologin\nherald:x:%s:%s:Herald:/data:/sbin/nologin\n' "$uid" "$uid" >"$root/etc/passwd"
printf 'root:x:0:\nherald:x:%s:\n' "$uid" >"$root/etc/group"
# glibc's static "files" and "dns" lookups are built in; this says to use them in that order
# (without the file glibc would ask DNS first, even for localhost).
printf 'passwd: files\ngroup: files\nhosts: files dns\n' >"$root/etc/nsswitch.conf"
chmod 0644 "$root/etc/passwd" "$root/etc/group" "$root/etc/nsswitch.conf"
# SQLite's temporary files go to /tmp; the data directory belongs to Herald's user alone.
install -d -m 1777 "$root/tmp"
install -d -m 0700 -o "$uid" -g "$uid" "$root/data"
bah umount "$container" >/dev/null

revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
bah config \
    --user "$uid:$uid" \
    --workingdir /data \
    --env HERALD_DATA_DIR=/data \
    --port 8080/tcp \
    --volume /data \
    --entrypoint '["/usr/bin/herald"]' \
    --cmd '["serve", "--listen", "0.0.0.0:8080"]' \
    --stop-signal SIGTERM \
    --label org.opencontainers.image.title=herald \
    --label "org.opencontainers.image.description=Webhooks for Docker/OCI registries" \
    --label org.opencontainers.image.licenses=Apache-2.0 \
    --label "org.opencontainers.image.version=$version" \
    --label "org.opencontainers.image.revision=$revision" \
    "$container"
# The creation time is the commit's, so the same commit gives the same image config.
created=$(git log -1 --format=%ct 2>/dev/null || date +%s)
bah commit --quiet --format oci --timestamp "$created" --identity-label=false "$container" "$image" >/dev/null
echo "$image"
