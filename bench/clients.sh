#!/usr/bin/env bash
# Side by side: sluice-client (through the `sluice` tools) and librdkafka (kcat, and
# confluent-kafka through bench/librdkafka_produce.py) on the same workloads, against the
# broker at $BOOTSTRAP (default 127.0.0.1:9092). Needs a release `sluice`, kcat and the .venv
# that integration-tests/run.sh makes. Each run writes to fresh topics (about 4 GB in all).
set -euo pipefail
cd "$(dirname "$0")/.."
B=${BOOTSTRAP:-127.0.0.1:9092}
S=${SLUICE:-${CARGO_TARGET_DIR:-target}/release/sluice}
PY=${PYTHON:-.venv/bin/python}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
run=$RANDOM
python3 - "$tmp" <<'PY'
import sys
d = sys.argv[1]
open(f"{d}/1k", "wb").write((b"x" * 1023 + b"\n") * 1_000_000)
open(f"{d}/100", "wb").write((b"y" * 99 + b"\n") * 5_000_000)
PY
secs() { /usr/bin/time -f %e "$@" 2>&1 >/dev/null | tail -1; }

echo "== stdin lines to one partition, acks=all, idempotent, linger.ms=5, batch.size=131072"
for size in 1k 100; do
  a=$(secs "$S" produce "c$run-s-$size" -b "$B" --acks all --linger-ms 5 --batch-size 131072 <"$tmp/$size")
  k=$(secs kcat -P -b "$B" -t "c$run-k-$size" -X acks=all -X enable.idempotence=true -X linger.ms=5 \
      -X batch.size=131072 <"$tmp/$size")
  echo "records of $size bytes: sluice produce $a s, kcat -P $k s"
done

echo "== producer API: 1,000,000 x 1 KiB, acks=all, linger.ms=5, batch.size=131072"
"$S" bench produce -b "$B" --topic "c$run-bench" --num-records 1000000 --acks all --batch-size 131072 2>/dev/null
"$PY" bench/librdkafka_produce.py --bootstrap "$B" --topic "c$run-rdk" --num-records 1000000 --acks all \
  --batch-size 131072

echo "== reading the 1 GB topic written above"
"$S" bench consume -b "$B" --topic "c$run-bench" 2>/dev/null
echo "kcat -C: $(secs kcat -C -b "$B" -t "c$run-bench" -o beginning -e -q) s"
