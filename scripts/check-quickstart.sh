#!/usr/bin/env bash
# Runs the README's quick start as written (the block after the `<!-- quickstart` marker),
# in a scratch directory with the repository's docs/ and tests/ beside it, and checks that
# the receiver verified the delivery. Only the ports change (8080 and 9000 may be taken on
# this machine), through HERALD_LISTEN, LISTEN and the URLs.
#   scripts/check-quickstart.sh HERALD_BINARY
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
herald=$(realpath "${1:?usage: scripts/check-quickstart.sh HERALD_BINARY}")
work=$(mktemp -d /tmp/herald-quickstart.XXXXXX)
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
port=$(free_port)
receiver_port=$(free_port)

awk '/<!-- quickstart/ {on = 1; next} on && /^```sh$/ {inside = 1; next} inside && /^```$/ {exit} inside' \
    "$root/README.md" | sed "s/127\.0\.0\.1:8080/127.0.0.1:$port/g; s/127\.0\.0\.1:9000/127.0.0.1:$receiver_port/g" \
    >"$work/quickstart.sh"
grep -q 'herald serve' "$work/quickstart.sh" || { echo "check-quickstart: no quick start found in README.md" >&2; exit 1; }
mkdir "$work/bin"
ln -s "$herald" "$work/bin/herald"
ln -s "$root/docs" "$work/docs"
ln -s "$root/tests" "$work/tests"

cd "$work"
# In a session of its own (setsid execs: the script's background jobs lead no group), so
# that everything the quick start leaves running can be stopped with one signal.
PATH="$work/bin:$PATH" HERALD_LISTEN="127.0.0.1:$port" LISTEN="127.0.0.1:$receiver_port" \
    setsid bash -c 'bash -euo pipefail quickstart.sh; echo $? >status' >out.log 2>&1 &
session=$!
finish() {
    kill -- -"$session" 2>/dev/null || true
    cd / && rm -rf "$work"
}
trap finish EXIT
# The receiver prints before answering Herald, so once the list shows the delivery
# succeeded its line is there; the block's own list may come before the delivery.
deadline=$((SECONDS + 60))
until grep -q '=> valid v1 signature' out.log && [ "$(cat status 2>/dev/null)" = 0 ] &&
    "$herald" deliveries list acme demo 2>/dev/null | grep -q succeeded; do
    if ((SECONDS > deadline)) || { [ -s status ] && [ "$(cat status)" != 0 ]; }; then
        echo "check-quickstart: FAILED (the block's exit status: $(cat status 2>/dev/null || echo 'still running')); its output:" >&2
        cat out.log >&2
        exit 1
    fi
    sleep 0.2
done
echo "check-quickstart: the README's quick start delivered a verified push"
