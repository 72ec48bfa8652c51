#!/usr/bin/env bash
# What a restart reads (cold caches) and what compaction of a large partition costs in memory
# and produce latency: storage/examples/restart_and_compaction.rs. Needs root to drop the
# page cache (otherwise the restart figures are warm and say so).
# Usage: bench/storage_restart_compaction.sh [restart GiB, default 4] [compaction GiB, default 10]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p sluice-storage --example restart_and_compaction
bin=target/release/examples/restart_and_compaction
dir=${BENCH_DIR:-$PWD/target/bench-storage}
"$bin" restart --gib "${1:-4}" --dir "$dir"
"$bin" compaction --gib "${2:-10}" --keys 1000000 --dir "$dir"
