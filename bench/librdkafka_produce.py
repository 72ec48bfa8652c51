#!/usr/bin/env python3
"""`sluice bench produce`'s workload driven through librdkafka (confluent-kafka), for a
side-by-side figure: N records of S random bytes, no key, to one topic, then flush.

Usage: bench/librdkafka_produce.py --bootstrap 127.0.0.1:9092 --topic T [--num-records N]
       [--record-size S] [--acks all] [--linger-ms 5] [--batch-size 16384] [--partitions 1]
Prints the same columns as `sluice bench produce`: MB/s (10^6 bytes), records/s and the
send-to-acknowledgement latency percentiles of every record.
"""
import argparse
import os
import time

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", default="127.0.0.1:9092")
    ap.add_argument("--topic", required=True)
    ap.add_argument("--partitions", type=int, default=1)
    ap.add_argument("--num-records", type=int, default=1_000_000)
    ap.add_argument("--record-size", type=int, default=1024)
    ap.add_argument("--acks", default="all")
    ap.add_argument("--linger-ms", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=16384)
    a = ap.parse_args()
    admin = AdminClient({"bootstrap.servers": a.bootstrap})
    try:
        admin.create_topics([NewTopic(a.topic, a.partitions, 1)])[a.topic].result(30)
    except Exception as e:  # an existing topic is fine
        if "already exists" not in str(e):
            raise
    p = Producer({
        "bootstrap.servers": a.bootstrap,
        "acks": a.acks,
        "enable.idempotence": a.acks in ("all", "-1"),
        "linger.ms": a.linger_ms,
        "batch.size": a.batch_size,
        "queue.buffering.max.kbytes": 32 * 1024,  # the Java client's buffer.memory
    })
    value = os.urandom(a.record_size)
    latencies = []
    now = time.perf_counter

    def done(err, _msg, sent):
        if err is not None:
            raise SystemExit(f"delivery failed: {err}")
        latencies.append(now() - sent)

    start = now()
    for _ in range(a.num_records):
        t = now()
        while True:
            try:
                p.produce(a.topic, value, on_delivery=lambda e, m, t=t: done(e, m, t))
                break
            except BufferError:
                p.poll(0.001)
        p.poll(0)
    p.flush(120)
    elapsed = now() - start
    latencies.sort()

    def ms(q):
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000

    print("BENCH       RECORDS  SECONDS  MB/s  RECORDS/s  p50 ms  p99 ms  p99.9 ms  max ms")
    print(f"librdkafka  {a.num_records}  {elapsed:.1f}  {a.num_records * a.record_size / 1e6 / elapsed:.1f}  "
          f"{a.num_records / elapsed:.0f}  {ms(0.5):.2f}  {ms(0.99):.2f}  {ms(0.999):.2f}  {latencies[-1] * 1000:.2f}")


if __name__ == "__main__":
    main()
