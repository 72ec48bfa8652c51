#!/usr/bin/env bash
# The whole test suite, as CI runs it (`.ci/run` calls this). Installs what the tests need
# when it is missing (Debian packages, a Python venv with Kafka client libraries), then runs
# formatting, lint, the dependency rule, the Rust tests, a bounded fuzzing run and the
# third-party-client tests.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }
fail() { printf '\nFAILED: %s\n' "$*" >&2; exit 1; }

step "checking tools"
command -v cargo >/dev/null || fail "cargo is required (install Rust with rustup)"
# The rdkafka interoperability tests build librdkafka from source (configure + make + cc).
if ! command -v make >/dev/null || ! command -v cc >/dev/null; then
  step "installing a C toolchain (Debian build-essential) for librdkafka"
  apt-get update -qq && apt-get install -y -qq build-essential >/dev/null || fail "could not install build-essential"
fi
if ! cargo nextest --version >/dev/null 2>&1; then
  step "installing cargo-nextest"
  cargo install --locked cargo-nextest || fail "could not install cargo-nextest"
fi

step "formatting (cargo fmt --check)"
cargo fmt --all -- --check || fail "code is not formatted: run cargo fmt --all"

step "lint (cargo clippy)"
cargo clippy --workspace --all-targets -- -D warnings || fail "clippy found problems"
cargo clippy -p sluice-storage --all-targets --features failpoints -- -D warnings || fail "clippy (failpoints) found problems"

step "dependency rule: sluice-storage depends on no runtime, protocol or sibling crate"
if cargo tree -p sluice-storage -e normal --prefix none | grep -E '^(tokio|kafka-protocol|openraft|sluice-(broker|replication|client)) '; then
  fail "sluice-storage must not depend on the crates listed above"
fi

step "dependency rule: the broker library leaves the tools' crates to sluice-cli"
if cargo tree -p sluice-broker -e normal --prefix none | grep -E '^(indicatif|hdrhistogram|clap_complete|sluice-client) '; then
  fail "sluice-broker must not depend on the crates listed above"
fi

step "Rust tests (cargo nextest)"
cargo nextest run --workspace --no-fail-fast || fail "Rust tests"
cargo nextest run -p sluice-storage --features failpoints --test failpoints || fail "fail-point tests"
cargo test --workspace --doc || fail "doc tests"

step "fuzzing (scripts/fuzz.sh, FUZZ_SECONDS=${FUZZ_SECONDS:-30} per target)"
scripts/fuzz.sh || fail "fuzzing"

if [ -x integration-tests/run.sh ]; then
  step "third-party client tests"
  integration-tests/run.sh || fail "integration tests"
fi

step "all tests passed"
