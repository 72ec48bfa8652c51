#!/usr/bin/env bash
# Sluice beside another Kafka-compatible broker (the Tansu peer by default), interleaved, with
# the same librdkafka load generator (bench/loadgen.py) and the same read-back
# (`sluice bench consume`).
# Each broker starts fresh for each workload: Sluice on a new data dir, Tansu with its
# in-memory storage (so nothing accumulates in its memory between runs).
#
#   cargo build --release -p sluice-cli
#   cargo install tansu --version 0.6.0 --features dynostore --root /opt/tansu
#   TANSU=/opt/tansu/bin/tansu bench/side_by_side.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SLUICE=${SLUICE:-${CARGO_TARGET_DIR:-target}/release/sluice}
TANSU=${TANSU:-tansu}
PY=${PYTHON:-.venv/bin/python}
RUN=${RUN_SECONDS:-30}
DATA=${DATA:-/tmp/sluice-side-by-side}
PORT=9392

start() {
  case $1 in
    sluice)
      rm -rf "$DATA" && mkdir -p "$DATA"
      "$SLUICE" broker --listeners "PLAINTEXT://127.0.0.1:$PORT" --log-dirs "$DATA" \
        --override sluice.metrics.listener= >"$DATA.log" 2>&1 &
      ;;
    tansu)
      "$TANSU" broker --listener-url "tcp://127.0.0.1:$PORT" \
        --advertised-listener-url "tcp://127.0.0.1:$PORT" --storage-engine memory://tansu/ \
        >/tmp/tansu-side-by-side.log 2>&1 &
      ;;
  esac
  PID=$!
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "$1 did not start" >&2
  exit 1
}

stop() {
  kill "$PID" 2>/dev/null || true
  wait "$PID" 2>/dev/null || true
}
trap stop EXIT

for w in ${WORKLOADS:-W1 W2 W3 W4}; do
  for broker in sluice tansu; do
    start $broker
    printf '%-6s ' "$broker"
    "$PY" bench/loadgen.py --bootstrap "127.0.0.1:$PORT" --broker-pid "$PID" --seconds "$RUN" "$w"
    stop
  done
done

# Read back one partition of 500,000 x 1 KiB records (512 MB) from the beginning, with the
# Sluice consumer (kcat 1.7 cannot read Tansu's metadata).
for broker in sluice tansu; do
  start $broker
  "$SLUICE" bench produce -b "127.0.0.1:$PORT" --topic readback --num-records 500000 --acks 1 \
    --batch-size 131072 >/dev/null 2>&1
  printf '%-6s read-back\n' "$broker"
  "$SLUICE" bench consume -b "127.0.0.1:$PORT" --topic readback 2>/dev/null
  stop
done
