"""The `sluice` tools (on sluice-client) against real third-party clients: records written by
one side are read by the other, with keys, headers and every codec; keys land on the
partitions librdkafka's and kafka-python's murmur2 partitioners choose."""
import json
import subprocess

import pytest
from confluent_kafka import Producer
from kafka import KafkaConsumer, KafkaProducer

from conftest import sluice_bin
from test_clients import CODECS, consume_all, create


def sluice(broker, *args, stdin=None, timeout=60):
    return subprocess.run([sluice_bin(), *args, "-b", broker.bootstrap], input=stdin, capture_output=True,
                          timeout=timeout)


def ok(p):
    assert p.returncode == 0, p.stderr.decode()
    return p.stdout.decode()


def lines(n):
    return "".join(f"key-{i}:value-{i}\n" for i in range(n)).encode()


@pytest.mark.parametrize("codec", CODECS)
def test_sluice_produces_and_librdkafka_and_kafka_python_consume(broker, topic_name, codec):
    create(broker, topic_name, 1)
    ok(sluice(broker, "produce", topic_name, "--key-separator", ":", "-H", "origin=sluice", "-H", "codec=" + codec,
              "--compression-codec", codec, stdin=lines(100)))

    got = consume_all(broker, topic_name, n=100)
    assert [(m.key(), m.value()) for m in got] == [(f"key-{i}".encode(), f"value-{i}".encode()) for i in range(100)]
    assert got[0].headers() == [("origin", b"sluice"), ("codec", codec.encode())]

    c = KafkaConsumer(topic_name, bootstrap_servers=broker.bootstrap, auto_offset_reset="earliest",
                      consumer_timeout_ms=10_000, enable_auto_commit=False)
    try:
        records = [r for _, r in zip(range(100), c)]
    finally:
        c.close()
    assert [(r.key, r.value) for r in records] == [(f"key-{i}".encode(), f"value-{i}".encode()) for i in range(100)]
    assert records[-1].headers == [("origin", b"sluice"), ("codec", codec.encode())]


@pytest.mark.parametrize("codec", CODECS)
def test_librdkafka_and_kafka_python_produce_and_sluice_consumes(broker, topic_name, codec):
    create(broker, topic_name, 1)
    p = Producer({"bootstrap.servers": broker.bootstrap, "compression.type": codec, "linger.ms": 5})
    for i in range(50):
        p.produce(topic_name, key=f"rk{i}", value=f"rv{i}", headers=[("from", b"librdkafka"), ("bin", b"\xff\x00")])
    assert p.flush(30) == 0
    kp = KafkaProducer(bootstrap_servers=broker.bootstrap, compression_type=None if codec == "none" else codec)
    for i in range(50):
        kp.send(topic_name, key=f"pk{i}".encode(), value=f"pv{i}".encode(), headers=[("from", b"kafka-python")])
    kp.flush(30)
    kp.close()

    out = ok(sluice(broker, "consume", topic_name, "--from-beginning", "--max-messages", "100", "--json"))
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["offset"] for r in records] == list(range(100))
    assert [(r["key"], r["value"]) for r in records[:50]] == [(f"rk{i}", f"rv{i}") for i in range(50)]
    assert [(r["key"], r["value"]) for r in records[50:]] == [(f"pk{i}", f"pv{i}") for i in range(50)]
    assert records[0]["headers"] == [{"key": "from", "value": "librdkafka"}, {"key": "bin", "value": {"base64": "/wA="}}]
    assert records[99]["headers"] == [{"key": "from", "value": "kafka-python"}]

    text = ok(sluice(broker, "consume", topic_name, "--from-beginning", "--max-messages", "2", "--print-key",
                     "--print-offset", "--property", "key.separator=|"))
    assert text == "Offset:0|rk0|rv0\nOffset:1|rk1|rv1\n"


def test_keys_land_where_librdkafka_murmur2_and_kafka_python_put_them(broker, topic_name):
    partitions = 7
    create(broker, topic_name, partitions)
    keys = [f"user-{i}" for i in range(200)] + ["", "a", "\u00e9t\u00e9", "0123456789" * 10]
    keys = [k for k in keys if "\n" not in k and ":" not in k and k]
    ok(sluice(broker, "produce", topic_name, "-K", ":", stdin="".join(f"{k}:x\n" for k in keys).encode()))

    placed = {}
    for p in range(partitions):
        for m in consume_all(broker, topic_name, partition=p):
            placed[m.key().decode()] = p
    assert set(placed) == set(keys)

    # librdkafka with the Java-compatible partitioner.
    rd = {}
    p = Producer({"bootstrap.servers": broker.bootstrap, "partitioner": "murmur2_random"})
    for k in keys:
        p.produce(topic_name, key=k, value=b"y", on_delivery=lambda err, m: rd.__setitem__(m.key().decode(), m.partition()))
    assert p.flush(30) == 0
    assert rd == placed

    # kafka-python's default partitioner is the Java one too.
    kp = KafkaProducer(bootstrap_servers=broker.bootstrap)
    futures = {k: kp.send(topic_name, key=k.encode(), value=b"z") for k in keys}
    kp.flush(30)
    assert {k: f.get(10).partition for k, f in futures.items()} == placed
    kp.close()


def test_produce_and_consume_compose_in_a_pipe(broker, topic_name):
    create(broker, topic_name, 3)
    ok(sluice(broker, "produce", topic_name, stdin=b"".join(b"line %d\n" % i for i in range(30))))
    out = ok(sluice(broker, "consume", topic_name, "--from-beginning", "--max-messages", "30"))
    assert sorted(out.splitlines()) == sorted(f"line {i}" for i in range(30))
    # Without --max-messages, --timeout-ms ends the read once the topic is drained.
    out = ok(sluice(broker, "consume", topic_name, "--from-beginning", "--timeout-ms", "1500"))
    assert len(out.splitlines()) == 30


def test_group_describe_shows_lag_and_reset_moves_offsets(broker, topic_name):
    create(broker, topic_name, 2)
    ok(sluice(broker, "produce", topic_name, "-p", "0", stdin=b"".join(b"%d\n" % i for i in range(10))))
    group = "g-" + topic_name
    ok(sluice(broker, "consume", topic_name, "--group", group, "--from-beginning", "--max-messages", "4"))
    described = ok(sluice(broker, "group", "describe", group))
    row = next(line.split() for line in described.splitlines() if line.startswith(group))
    # GROUP TOPIC PARTITION CURRENT-OFFSET LOG-END-OFFSET LAG ...
    assert row[1:6] == [topic_name, "0", "4", "10", "6"], described

    plan = ok(sluice(broker, "group", "reset-offsets", group, "--topic", f"{topic_name}:0", "--to-earliest"))
    assert plan.splitlines()[1].split() == [group, topic_name, "0", "0"]
    assert ok(sluice(broker, "group", "describe", group)).splitlines()[-1].split()[3] == "4"
    ok(sluice(broker, "group", "reset-offsets", group, "--topic", f"{topic_name}:0", "--shift-by", "-3", "--execute"))
    out = ok(sluice(broker, "consume", topic_name, "--group", group, "--max-messages", "7"))
    assert out.splitlines() == [str(i) for i in range(1, 8)]

    assert group in ok(sluice(broker, "group", "list"))
    ok(sluice(broker, "group", "delete", group))
    gone = sluice(broker, "group", "describe", group)
    assert gone.returncode == 1 and b"does not exist" in gone.stderr


def test_topic_commands_and_clear_errors(broker, topic_name):
    ok(sluice(broker, "topic", "create", topic_name, "--partitions", "2", "--config", "retention.ms=60000"))
    again = sluice(broker, "topic", "create", topic_name)
    assert again.returncode == 1 and topic_name.encode() in again.stderr and b"already exists" in again.stderr
    ok(sluice(broker, "topic", "alter", topic_name, "--partitions", "3", "--config", "cleanup.policy=compact"))
    described = ok(sluice(broker, "topic", "describe", topic_name))
    assert "PartitionCount: 3" in described and "cleanup.policy=compact" in described and "retention.ms=60000" in described
    assert topic_name in ok(sluice(broker, "topic", "list")).splitlines()
    ok(sluice(broker, "topic", "delete", topic_name))
    missing = sluice(broker, "consume", topic_name, "--from-beginning", "--timeout-ms", "500")
    assert missing.returncode == 1 and topic_name.encode() in missing.stderr
    assert b"panicked" not in missing.stderr

    usage = sluice(broker, "topic", "create")
    assert usage.returncode == 2 and b"Usage:" in usage.stderr
    bad = sluice(broker, "consume", topic_name, "--offset", "5")
    assert bad.returncode == 1 and b"--partition" in bad.stderr
    assert "Cluster id:" in ok(sluice(broker, "cluster", "describe"))


def test_bench_reports_throughput_and_percentiles(broker, topic_name):
    out = ok(sluice(broker, "bench", "produce", "--topic", topic_name, "--partitions", "2", "--num-records", "5000",
                    "--record-size", "100"))
    header, row = out.splitlines()[:2]
    assert header.split()[:5] == ["BENCH", "RECORDS", "SECONDS", "MB/s", "RECORDS/s"] and "p99.9" in header
    assert row.split()[:2] == ["produce", "5000"]
    out = ok(sluice(broker, "bench", "consume", "--topic", topic_name))
    assert out.splitlines()[1].split()[:2] == ["consume", "5000"]
    out = ok(sluice(broker, "bench", "e2e", "--topic", topic_name + "-e2e", "--num-records", "500", "--throughput", "1000"))
    assert out.splitlines()[1].split()[:2] == ["end-to-end", "500"]


def test_completions_are_generated():
    out = subprocess.run([sluice_bin(), "completions", "bash"], capture_output=True, timeout=30)
    assert out.returncode == 0 and b"reset-offsets" in out.stdout


def test_a_record_too_large_is_skipped_and_the_rest_delivered(broker, topic_name):
    create(broker, topic_name, 1)
    lines = b"first\n" + b"x" * 2_000_000 + b"\nlast\n"
    p = sluice(broker, "produce", topic_name, stdin=lines)
    assert p.returncode == 1 and b"line 2" in p.stderr and b"max.request.size" in p.stderr, p.stderr
    out = ok(sluice(broker, "consume", topic_name, "--from-beginning", "--timeout-ms", "1500"))
    assert out.splitlines() == ["first", "last"]
    # A topic that cannot exist stops the run with a sentence naming it.
    bad = sluice(broker, "produce", "bad name!", stdin=b"a\nb\n")
    assert bad.returncode == 1 and b"bad name!" in bad.stderr and b"line 1" in bad.stderr, bad.stderr


def test_a_broker_logging_to_a_file_writes_no_colour_codes(broker):
    """The broker's log goes to a file here (stderr redirected): plain text, as an operator's
    log shipper or grep expects; colour is for a terminal only."""
    with open(f"{broker.data}/broker.log", "rb") as f:
        log = f.read()
    assert b"listening on" in log or b"INFO" in log, log[:200]
    assert b"\x1b[" not in log, log[:200]
