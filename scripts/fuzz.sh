#!/usr/bin/env bash
# Fuzzing for a bounded time, as CI runs it (scripts/test.sh calls this): builds the
# cargo-fuzz targets in fuzz/ that need no broker (FUZZ_TARGETS: segment recovery, a Produce's
# records appended, batch validation) and runs each for FUZZ_SECONDS (default 30). Fails on a crash,
# leaving the input that caused it in fuzz/artifacts/<target>/ (replay it with
# `cargo +nightly fuzz run <target> <file>`, then make it a regression test).
set -euo pipefail
cd "$(dirname "$0")/.."

FUZZ_SECONDS="${FUZZ_SECONDS:-30}"
step() { printf '\n==> %s\n' "$*"; }
fail() { printf '\nFAILED: %s\n' "$*" >&2; exit 1; }

command -v rustup >/dev/null || fail "rustup is required for the nightly toolchain cargo-fuzz needs"
rustup toolchain list | grep -q '^nightly' || fail "the nightly toolchain is required: rustup toolchain install nightly"
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  step "installing cargo-fuzz"
  cargo install --locked cargo-fuzz || fail "could not install cargo-fuzz"
fi

cd fuzz
targets="${FUZZ_TARGETS:-segment_recovery produce_records batch_validate}"
step "building fuzz targets: $targets"
start=$(date +%s)
for t in $targets; do
  cargo +nightly fuzz build -O "$t" || fail "fuzz target $t does not build"
done
step "built in $(( $(date +%s) - start ))s"

for t in $targets; do
  step "fuzzing $t for ${FUZZ_SECONDS}s"
  # -rss_limit_mb bounds memory; a crash, a leak or a timeout exits non-zero.
  cargo +nightly fuzz run -O "$t" -- -max_total_time="$FUZZ_SECONDS" -rss_limit_mb=2048 -timeout=20 \
    || fail "fuzz target $t crashed (input saved in fuzz/artifacts/$t/)"
done
step "fuzzing passed"
