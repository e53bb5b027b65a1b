#!/usr/bin/env bash
# The full check: formatting, lints (full and relay-only builds), the relay crate
# building without GStreamer, every fuzz target run for a bounded time, and every test.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { echo; echo "==> $*"; }

step "cargo fmt --check"
cargo fmt --all --check

step "clippy (full build)"
cargo clippy --workspace --all-targets -- -D warnings

step "clippy (relay-only build: --no-default-features)"
cargo clippy --all-targets --no-default-features -- -D warnings

step "the relay crate and the relay-only binary do not depend on GStreamer"
if cargo tree -p treecast-relay -e normal | grep -q gstreamer; then
    echo "error: treecast-relay depends on GStreamer" >&2
    exit 1
fi
if cargo tree -p treecast --no-default-features -e normal | grep -q gstreamer; then
    echo "error: the relay-only build depends on GStreamer" >&2
    exit 1
fi

step "fuzz targets: build instrumented, run each for a bounded time"
./deploy/fuzz.sh "${TREECAST_FUZZ_SECONDS:-15}"

step "tests"
# Under a virtual display when available, so the windowed player is tested too.
if command -v xvfb-run >/dev/null 2>&1 && [ -z "${DISPLAY:-}" ]; then
    xvfb-run -a cargo test --workspace
else
    cargo test --workspace
fi
