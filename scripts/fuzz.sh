#!/usr/bin/env bash
# Runs Herald's fuzz targets, each for a bounded time (default 60 s):
#
#   scripts/fuzz.sh                      # both targets, 60 s each
#   FUZZ_SECONDS=600 scripts/fuzz.sh envelope
#
# Needs a nightly toolchain (rustup toolchain install nightly) and cargo-fuzz
# (cargo install cargo-fuzz). Crashes are written to fuzz/artifacts/<target>/ and the
# command exits non-zero; reproduce one with `cargo +nightly fuzz run <target> <file>`.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${FUZZ_SECONDS:-60}"
if (($# == 0)); then
    set -- envelope webhook_validation
fi

# The registry fixtures are real envelopes: a much better start than random bytes.
mkdir -p fuzz/corpus/envelope
cp tests/fixtures/*/*.json fuzz/corpus/envelope/

for target in "$@"; do
    echo "== fuzzing $target for ${seconds}s"
    mkdir -p "fuzz/corpus/$target"
    cargo +nightly fuzz run "$target" "fuzz/corpus/$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048
done
