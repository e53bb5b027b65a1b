#!/usr/bin/env bash
# Builds every fuzz target with coverage instrumentation (stable Rust: sanitizer-coverage
# via -C passes / -C llvm-args, no nightly needed) and runs each for a bounded time.
#
#   deploy/fuzz.sh [SECONDS_PER_TARGET]      (default 20; 0 = build only)
#
# Corpora persist in relay/fuzz/corpus/TARGET between runs; crashes land in
# relay/fuzz/artifacts/TARGET and fail the run.
set -euo pipefail
cd "$(dirname "$0")/../relay/fuzz"

secs="${1:-20}"
target="$(rustc -vV | sed -n 's/^host: //p')"
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions"
# An explicit --target keeps RUSTFLAGS away from build scripts and proc macros.
cargo build --release --target "$target" --target-dir target/instrumented

[ "$secs" = 0 ] && exit 0
bins=$(sed -n 's/^name = "\(.*\)"$/\1/p' Cargo.toml | grep -v '^treecast-relay-fuzz$')
for t in $bins; do
    mkdir -p "corpus/$t" "artifacts/$t"
    echo "==> fuzzing $t for ${secs}s"
    "target/instrumented/$target/release/$t" -max_total_time="$secs" -print_final_stats=1 \
        -artifact_prefix="artifacts/$t/" -max_len=4096 "corpus/$t" 2>&1 \
        | grep -E '^(stat::number_of_executed_runs|stat::new_units_added|==|INFO: Seed|SUMMARY|Done)' || true
    if [ -n "$(ls -A "artifacts/$t")" ]; then
        echo "error: $t found a crash: $(ls "artifacts/$t")" >&2
        exit 1
    fi
done
