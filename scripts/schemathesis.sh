#!/usr/bin/env bash
# Runs schemathesis (PyPI) against a real Herald built from this tree, generating requests
# from /api/v1/openapi.json; it fails on any server error (5xx). Usage: scripts/schemathesis.sh
set -euo pipefail
cd "$(dirname "$0")/.."

command -v schemathesis >/dev/null || pip install --quiet schemathesis
cargo build --quiet --bin herald
herald=target/debug/herald
data=$(mktemp -d)
trap 'kill "${pid:-0}" 2>/dev/null || true; rm -rf "$data"' EXIT
export HERALD_DATA_DIR=$data RUST_LOG=herald=warn
$herald migrate >/dev/null
echo 'schemathesis-password' | $herald user create admin --admin
token=$($herald token create admin --label schemathesis)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
$herald --listen "127.0.0.1:$port" --registry-token schemathesis-registry serve &
pid=$!
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
base="http://127.0.0.1:$port"
# Something to find: a namespace with a webhook and one delivery.
curl -fs -H "Authorization: Bearer $token" -H 'Content-Type: application/json' -d '{"name":"acme"}' "$base/api/v1/namespaces" >/dev/null
curl -fs -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
     -d '{"name":"hook","url":"http://127.0.0.1:9/"}' "$base/api/v1/namespaces/acme/webhooks" >/dev/null

schemathesis run "$base/api/v1/openapi.json" \
    --checks not_a_server_error \
    --header "Authorization: Bearer $token" \
    --max-examples "${SCHEMATHESIS_EXAMPLES:-30}" \
    --phases examples,coverage,fuzzing
