"""Restarts, kill -9 and hostile input against a real broker."""
import os
import random
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import time
import urllib.request

import pytest
from confluent_kafka import KafkaError, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from test_clients import consume_all


def test_clean_restart_keeps_topics_ids_and_offsets(broker_factory, topic_name):
    b = broker_factory()
    a = AdminClient({"bootstrap.servers": b.bootstrap})
    a.create_topics([NewTopic(topic_name, 3, 1, config={"retention.ms": "123456789"})])[topic_name].result(10)
    tid = a.list_topics(topic_name, timeout=10).topics[topic_name]
    p = Producer({"bootstrap.servers": b.bootstrap})
    for i in range(300):
        p.produce(topic_name, value=f"{i}", partition=i % 3)
    assert p.flush(10) == 0
    del p, a
    assert b.stop() == 0, "clean shutdown exits 0"
    b.start()
    a = AdminClient({"bootstrap.servers": b.bootstrap})
    md = a.list_topics(topic_name, timeout=10).topics[topic_name]
    assert len(md.partitions) == 3
    for part in range(3):
        assert len(consume_all(b, topic_name, partition=part)) == 100
    del tid


def test_kill_9_during_acks_all_produce_loses_no_acknowledged_record(broker_factory, topic_name):
    b = broker_factory()
    acked, stop = [], threading.Event()
    p = Producer({"bootstrap.servers": b.bootstrap, "acks": "all", "enable.idempotence": True,
                  "linger.ms": 1, "message.timeout.ms": 60000, "reconnect.backoff.max.ms": 200})

    def on_delivery(err, msg):
        if err is None:
            acked.append(int(msg.value()))

    def produce():
        i = 0
        while not stop.is_set():
            try:
                p.produce(topic_name, value=f"{i}", on_delivery=on_delivery)
                i += 1
            except BufferError:
                pass
            p.poll(0)
            time.sleep(0.0005)

    t = threading.Thread(target=produce)
    t.start()
    time.sleep(1.5)
    b.kill9()
    time.sleep(0.5)
    b.start()
    time.sleep(1.5)
    stop.set()
    t.join()
    assert p.flush(60) == 0
    assert len(acked) > 100
    got = [int(m.value()) for m in consume_all(b, topic_name)]
    assert set(acked) <= set(got), f"lost {sorted(set(acked) - set(got))[:10]}"
    # Idempotence: no acknowledged record appears twice, and order is kept.
    assert len(got) == len(set(got))
    assert got == sorted(got)


def test_thousands_of_malformed_frames_close_only_their_connection(broker, topic_name):
    rnd = random.Random(7)
    for i in range(2000):
        kind = i % 4
        if kind == 0:
            payload = os.urandom(rnd.randrange(0, 64))
        elif kind == 1:  # a plausible header with a garbage body
            body = struct.pack(">hhi", rnd.choice([0, 1, 3, 18, 19]), rnd.randrange(-1, 20), i) + os.urandom(rnd.randrange(0, 40))
            payload = struct.pack(">i", len(body)) + body
        elif kind == 2:  # a frame that claims more than it sends
            payload = struct.pack(">i", rnd.randrange(10, 10_000)) + os.urandom(rnd.randrange(0, 9))
        elif i % 8 == 3:  # absurd sizes
            payload = struct.pack(">i", rnd.choice([-1, 0, 3, 2**31 - 1]))
        else:  # valid header, then an array length far beyond the frame (an allocation bomb)
            body = struct.pack(">hhih", 3, 0, i, 1) + b"x" + struct.pack(">i", 0x7fffffff - i)
            payload = struct.pack(">i", len(body)) + body
        s = socket.create_connection(("127.0.0.1", broker.port), timeout=2)
        try:
            # The broker may close first (it rejects a bad size prefix before reading on).
            s.sendall(payload)
            s.shutdown(socket.SHUT_WR)
            s.settimeout(2)
            while s.recv(4096):
                pass
        except (socket.timeout, OSError):
            pass
        finally:
            s.close()
    assert broker.proc.poll() is None, "broker is still running"
    p = Producer({"bootstrap.servers": broker.bootstrap})
    p.produce(topic_name, value=b"still serving")
    assert p.flush(10) == 0
    assert [m.value() for m in consume_all(broker, topic_name)] == [b"still serving"]


def test_saturated_broker_slows_producers_down_and_loses_nothing(broker_factory, topic_name):
    # A tiny request-memory budget: 3 producers of ~900 KiB requests must queue, not crash.
    b = broker_factory(**{"queued.max.request.bytes": "1000000"})
    results, threads = [], []

    def run(k):
        p = Producer({"bootstrap.servers": b.bootstrap, "acks": "all", "linger.ms": 20, "batch.size": 900_000,
                      "compression.type": "none"})
        for i in range(3000):
            while True:
                try:
                    p.produce(topic_name, key=f"{k}", value=b"z" * 1000, on_delivery=lambda e, m: results.append(e))
                    break
                except BufferError:
                    p.poll(0.01)
        assert p.flush(60) == 0

    for k in range(3):
        t = threading.Thread(target=run, args=(k,))
        t.start()
        threads.append(t)
    for t in threads:
        t.join()
    assert len(results) == 9000 and all(e is None for e in results)
    assert b.proc.poll() is None
    assert len(consume_all(b, topic_name, n=9000, timeout=30)) == 9000


@pytest.fixture
def small_disk():
    """An 8 MiB tmpfs with 3 MiB of ballast, to fill up and then free (root only, as CI runs)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small file system needs root")
    path = tempfile.mkdtemp(prefix="sluice-small-disk-")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", path], check=True)
    ballast = os.path.join(path, "ballast")
    with open(ballast, "wb") as f:
        f.write(b"\0" * (3 << 20))
    yield path, ballast
    subprocess.run(["umount", "-l", path], check=False)
    shutil.rmtree(path, ignore_errors=True)


def metric(b, name):
    body = urllib.request.urlopen(f"http://127.0.0.1:{b.metrics_port}/metrics", timeout=5).read().decode()
    return [line for line in body.splitlines() if line.startswith(name + "{")]


def test_a_full_disk_is_logged_once_measured_and_recovered_from(broker_factory, topic_name, small_disk):
    path, ballast = small_disk
    b = broker_factory(**{"log.dirs": os.path.join(path, "data")})
    a = AdminClient({"bootstrap.servers": b.bootstrap})  # outlives its future
    a.create_topics([NewTopic(topic_name, 1, 1)])[topic_name].result(10)
    p = Producer({"bootstrap.servers": b.bootstrap, "acks": "all", "retries": 0, "linger.ms": 0,
                  "message.timeout.ms": 10000})
    results = []

    def send(n):
        for i in range(n):
            p.produce(topic_name, value=bytes([i % 256]) * 50_000,
                      on_delivery=lambda e, m: results.append((e, m.offset())))
            p.flush(10)

    send(200)  # 10 MB into what is left of 8 MiB
    failed = [e for e, _ in results if e is not None]
    assert failed and {e.code() for e in failed} == {KafkaError.KAFKA_STORAGE_ERROR}, failed[:3]
    acked_before = sum(1 for e, _ in results if e is None)
    assert acked_before >= 60, "the disk took appends until it was full"
    assert any(line.endswith(" 1") for line in metric(b, "sluice_log_dir_offline")), \
        metric(b, "sluice_log_dir_offline")
    time.sleep(1.5)  # a housekeeping pass measures the space
    free = [float(line.rsplit(" ", 1)[1]) for line in metric(b, "sluice_log_dir_free_bytes")]
    assert free and free[0] < 1 << 20, free

    os.remove(ballast)  # space returns
    results.clear()
    send(5)
    assert [e for e, _ in results] == [None] * 5, "writable again without a restart"
    assert all(line.endswith(" 0") for line in metric(b, "sluice_log_dir_offline"))
    with open(os.path.join(b.data, "broker.log"), encoding="utf-8", errors="replace") as f:
        log = f.read()
    assert log.count("log directory cannot be written") == 1, "logged once, not per request"
    assert log.count("log directory writable again") == 1
    assert len(consume_all(b, topic_name)) == acked_before + 5, "every acknowledged record is there"
