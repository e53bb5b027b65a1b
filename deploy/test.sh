#!/usr/bin/env bash
# The full check: formatting, lints (full and relay-only builds), the relay crate
# building without GStreamer, every fuzz target run for a bounded time, the deployment
# files, the multi-host lab (as root), and every test.
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

step "deployment files (deploy/validate.sh)"
cargo build --bin treecast
deploy/validate.sh target/debug/treecast

step "multi-host lab (deploy/lab: network namespaces, a relay killed and one drained)"
if [ "$(id -u)" -eq 0 ] && ip netns add "treecast-probe-$$" 2>/dev/null; then
    ip netns del "treecast-probe-$$"
    # Players count render gaps over 100 ms as stalls, and on a CPU shared with other
    # work they can starve: one more run before failing (both runs are printed).
    LAB_BIN=target/debug/treecast deploy/lab/lab.sh || {
        echo "the lab failed once (see the report above); running it again"
        LAB_BIN=target/debug/treecast deploy/lab/lab.sh
    }
else
    echo "skipped: the lab needs root and ip netns"
fi

step "tests"
# Under a virtual display when available, so the windowed player is tested too.
if command -v xvfb-run >/dev/null 2>&1 && [ -z "${DISPLAY:-}" ]; then
    xvfb-run -a cargo test --workspace
else
    cargo test --workspace
fi
