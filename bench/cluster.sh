#!/usr/bin/env bash
# The three-node benchmark: three `sluice` processes on this machine (one disk), a topic of
# 16 partitions with replication factor 3 and min.insync.replicas=2, 1 KiB records, acks=all.
# Two runs of `sluice bench produce`: at 10,000 records/s (latency percentiles), then as fast
# as it goes (throughput). Latency first: the throughput run leaves gigabytes of dirty pages
# whose writeback would otherwise be measured too.
#
#   cargo build --release -p sluice-cli
#   bench/cluster.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SLUICE=${SLUICE:-${CARGO_TARGET_DIR:-target}/release/sluice}
DATA=${DATA:-/tmp/sluice-cluster-bench}
RECORDS=${RECORDS:-2000000}
VOTERS="1@127.0.0.1:21093,2@127.0.0.1:22093,3@127.0.0.1:23093"
BOOT=127.0.0.1:21092,127.0.0.1:22092,127.0.0.1:23092
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null' EXIT

rm -rf "$DATA" && mkdir -p "$DATA"
for i in 1 2 3; do
  "$SLUICE" broker --node-id $i --log-dirs "$DATA/node$i" \
    --listeners "PLAINTEXT://127.0.0.1:2${i}092,CONTROLLER://127.0.0.1:2${i}093" \
    --override "controller.quorum.voters=$VOTERS" --override sluice.metrics.listener= \
    >"$DATA/node$i.log" 2>&1 &
  pids+=($!)
done
for i in 1 2 3; do
  for _ in $(seq 300); do
    grep -q "listening on" "$DATA/node$i.log" && break
    sleep 0.1
  done
done
"$SLUICE" topic create -b "$BOOT" bench --partitions 16 --replication-factor 3 \
  --config min.insync.replicas=2
echo "== latency: 100,000 records of 1 KiB at 10,000 records/s, acks=all, linger.ms=1"
"$SLUICE" bench produce -b "$BOOT" --topic bench --num-records 100000 --record-size 1024 \
  --acks all --throughput 10000 --linger-ms 1
echo "== throughput: $RECORDS records of 1 KiB, acks=all, as fast as possible"
"$SLUICE" bench produce -b "$BOOT" --topic bench --num-records "$RECORDS" --record-size 1024 \
  --acks all --throughput -1
