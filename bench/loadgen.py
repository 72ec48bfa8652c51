#!/usr/bin/env python3
"""Broker load generator on librdkafka (confluent-kafka): the issue's workloads W1-W4.

Usage: bench/loadgen.py --bootstrap 127.0.0.1:9092 [--broker-pid PID] [--seconds 30] W1 W2 W3 W4

Prints MiB/s, records/s, produce latency p50/p99/p99.9 (send -> delivery report), end-to-end
latency for W3 (send -> consumed), and the CPU seconds used by the broker process and by this
client over the run. Python drives librdkafka's C producer, so at high record rates the client
itself can be the bottleneck: its CPU share is printed to make that visible.
"""
import argparse
import os
import resource
import threading
import time
import uuid

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

WORKLOADS = {
    # name: (partitions, acks, linger_ms, batch_bytes, producers, record_bytes, rate/s or None)
    "W1": (1, "1", 5, 128 * 1024, 1, 1024, None),
    "W2": (16, "all", 5, 128 * 1024, 2, 1024, None),
    "W3": (16, "all", 1, 16 * 1024, 1, 1024, 10_000),
    "W4": (6, "1", 5, 128 * 1024, 1, 100, None),
}


def cpu_seconds(pid):
    if not pid:
        return float("nan")
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(sorted_values, q):
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def run(name, bootstrap, seconds, broker_pid):
    partitions, acks, linger, batch, producers, size, rate = WORKLOADS[name]
    topic = f"bench-{name}-{uuid.uuid4().hex[:8]}"
    a = AdminClient({"bootstrap.servers": bootstrap})
    a.create_topics([NewTopic(topic, partitions, 1)])[topic].result(30)
    payload = os.urandom(size)
    lat, sent, lock = [], [0], threading.Lock()
    e2e = []
    stop = time.time() + seconds

    consumer_thread = None
    if rate:
        def consume():
            from confluent_kafka import TopicPartition
            c = Consumer({"bootstrap.servers": bootstrap, "group.id": topic, "enable.auto.commit": False})
            # Assign (no group join) so the group's initial rebalance delay does not skew latency.
            c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
            while time.time() < stop + 3:
                m = c.poll(0.1)
                if m is not None and not m.error():
                    e2e.append(time.time() * 1000 - m.timestamp()[1])
            c.close()
        consumer_thread = threading.Thread(target=consume)
        consumer_thread.start()
        time.sleep(2)

    def produce(idx):
        p = Producer({"bootstrap.servers": bootstrap, "acks": acks, "linger.ms": linger, "batch.size": batch,
                      "compression.type": "none", "queue.buffering.max.kbytes": 1048576,
                      "queue.buffering.max.messages": 1000000})
        local = []
        done = threading.Event()

        def poller():
            # Delivery reports run in the thread that polls: poll continuously so the measured
            # latency is the broker's, not this script's polling interval.
            while not done.is_set():
                p.poll(0.001)

        pt = threading.Thread(target=poller)
        pt.start()
        n = 0
        interval = (producers / rate) if rate else 0
        next_send = time.time()
        while time.time() < stop:
            t0 = time.time()
            try:
                p.produce(topic, payload, on_delivery=lambda e, m, t0=t0: local.append(time.time() - t0) if e is None else None)
                n += 1
            except BufferError:
                time.sleep(0.001)
                continue
            if rate:
                next_send += interval
                delay = next_send - time.time()
                if delay > 0:
                    time.sleep(delay)
        p.flush(60)
        done.set()
        pt.join()
        with lock:
            lat.extend(local)
            sent[0] += len(local)

    cpu0, ru0 = cpu_seconds(broker_pid), resource.getrusage(resource.RUSAGE_SELF)
    t_start = time.time()
    threads = [threading.Thread(target=produce, args=(i,)) for i in range(producers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.time() - t_start
    cpu1, ru1 = cpu_seconds(broker_pid), resource.getrusage(resource.RUSAGE_SELF)
    if consumer_thread:
        consumer_thread.join()
    lat.sort()
    e2e.sort()
    mib = sent[0] * size / elapsed / (1 << 20)
    client_cpu = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
    line = (f"{name}: {sent[0]} records in {elapsed:.1f}s = {sent[0] / elapsed:,.0f} records/s, {mib:,.1f} MiB/s; "
            f"produce latency ms p50 {pct(lat, .5) * 1000:.2f} p99 {pct(lat, .99) * 1000:.2f} p99.9 {pct(lat, .999) * 1000:.2f}; "
            f"broker CPU {cpu1 - cpu0:.1f}s, client CPU {client_cpu:.1f}s")
    if e2e:
        line += f"; end-to-end ms p50 {pct(e2e, .5):.1f} p99 {pct(e2e, .99):.1f}"
    print(line, flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", default="127.0.0.1:9092")
    ap.add_argument("--broker-pid", type=int, default=0)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("workloads", nargs="*", default=["W1", "W2", "W3", "W4"])
    args = ap.parse_args()
    for w in args.workloads:
        run(w, args.bootstrap, args.seconds, args.broker_pid)


if __name__ == "__main__":
    main()
