"""Real Kafka clients against a real `sluice` broker: kcat (librdkafka 2.0.2), confluent-kafka
(librdkafka 2.x), kafka-python and aiokafka."""
import asyncio
import subprocess
import time

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewPartitions, NewTopic

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]


def admin(broker):
    return AdminClient({"bootstrap.servers": broker.bootstrap})


def create(broker, name, partitions=1, config=None):
    a = admin(broker)  # the client must outlive its futures
    futs = a.create_topics([NewTopic(name, partitions, 1, config=config or {})])
    futs[name].result(10)


def consume_all(broker, topic, partition=0, offset=0, n=None, timeout=15):
    """Reads with confluent-kafka by assignment (no group) until `n` records or idle."""
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "it-assign", "enable.auto.commit": False,
                  "enable.partition.eof": True})
    c.assign([TopicPartition(topic, partition, offset)])
    out, deadline = [], time.time() + timeout
    try:
        while time.time() < deadline and (n is None or len(out) < n):
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    if n is None:
                        break
                    continue
                raise KafkaException(m.error())
            out.append(m)
    finally:
        c.close()
    return out


def test_kcat_lists_the_broker_and_topics(broker, topic_name):
    create(broker, topic_name, 2)
    out = subprocess.run(["kcat", "-b", broker.bootstrap, "-L", "-t", topic_name], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert "1 brokers" in out.stdout and f'topic "{topic_name}" with 2 partitions' in out.stdout


@pytest.mark.parametrize("codec", CODECS)
def test_kcat_produces_and_confluent_consumes_every_codec(broker, topic_name, codec):
    lines = "".join(f"k{i}:v{i}\n" for i in range(50))
    p = subprocess.run(["kcat", "-b", broker.bootstrap, "-P", "-t", topic_name, "-K:", "-z", codec],
                       input=lines, capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    got = consume_all(broker, topic_name, n=50)
    assert [(m.key(), m.value()) for m in got] == [(f"k{i}".encode(), f"v{i}".encode()) for i in range(50)]
    assert [m.offset() for m in got] == list(range(50))


@pytest.mark.parametrize("codec", CODECS)
def test_confluent_produces_and_kcat_consumes_with_headers_and_tombstones(broker, topic_name, codec):
    p = Producer({"bootstrap.servers": broker.bootstrap, "compression.type": codec, "acks": "all", "linger.ms": 5})
    for i in range(20):
        p.produce(topic_name, key=f"k{i}", value=None if i % 5 == 4 else f"v{i}", headers={"h": f"{i}"}, timestamp=1_700_000_000_000 + i)
    assert p.flush(15) == 0
    out = subprocess.run(["kcat", "-b", broker.bootstrap, "-C", "-t", topic_name, "-e", "-f", "%o|%k|%s|%T|%h\\n", "-Z"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    rows = [l.split("|") for l in out.stdout.splitlines()]
    assert len(rows) == 20
    for i, (off, k, v, ts, h) in enumerate(rows):
        assert (int(off), k, int(ts), h) == (i, f"k{i}", 1_700_000_000_000 + i, f"h={i}")
        assert v == ("NULL" if i % 5 == 4 else f"v{i}")


@pytest.mark.parametrize("acks", ["0", "1", "all"])
def test_produce_with_each_acks_setting(broker, topic_name, acks):
    create(broker, topic_name)
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": acks})
    for i in range(100):
        p.produce(topic_name, value=f"{i}")
    assert p.flush(15) == 0
    got = consume_all(broker, topic_name, n=100)
    assert [m.value() for m in got] == [f"{i}".encode() for i in range(100)]


def test_admin_create_describe_partitions_delete_and_errors(broker, topic_name):
    a = admin(broker)
    a.create_topics([NewTopic(topic_name, 3, 1)])[topic_name].result(10)
    md = a.list_topics(topic_name, timeout=10)
    assert len(md.topics[topic_name].partitions) == 3

    def err(fut):
        with pytest.raises(KafkaException) as e:
            fut.result(10)
        return e.value.args[0].code()

    assert err(a.create_topics([NewTopic(topic_name, 1, 1)])[topic_name]) == KafkaError.TOPIC_ALREADY_EXISTS
    assert err(a.create_topics([NewTopic("bad/name", 1, 1)])["bad/name"]) == KafkaError.TOPIC_EXCEPTION
    assert err(a.create_topics([NewTopic(topic_name + "x", 0, 1)])[topic_name + "x"]) == KafkaError.INVALID_PARTITIONS
    assert err(a.create_topics([NewTopic(topic_name + "y", 1, 3)])[topic_name + "y"]) == KafkaError.INVALID_REPLICATION_FACTOR
    a.create_partitions([NewPartitions(topic_name, 5)])[topic_name].result(10)
    assert len(a.list_topics(topic_name, timeout=10).topics[topic_name].partitions) == 5
    assert err(a.create_partitions([NewPartitions(topic_name, 2)])[topic_name]) == KafkaError.INVALID_PARTITIONS
    a.delete_topics([topic_name])[topic_name].result(10)
    assert err(a.delete_topics([topic_name])[topic_name]) == KafkaError.UNKNOWN_TOPIC_OR_PART


def test_message_near_and_over_max_message_bytes(broker, topic_name):
    create(broker, topic_name, config={"max.message.bytes": "200000"})
    p = Producer({"bootstrap.servers": broker.bootstrap, "message.max.bytes": 1_000_000, "compression.type": "none"})
    results = []
    # Separate flushes: one batch each, so the refusal of the second cannot sink the first.
    p.produce(topic_name, value=b"x" * 190_000, on_delivery=lambda e, m: results.append(e))
    p.flush(15)
    p.produce(topic_name, value=b"y" * 300_000, on_delivery=lambda e, m: results.append(e))
    p.flush(15)
    assert results[0] is None
    assert results[1] is not None and results[1].code() == KafkaError.MSG_SIZE_TOO_LARGE
    got = consume_all(broker, topic_name)
    assert [len(m.value()) for m in got] == [190_000]


def test_a_keyless_record_on_a_compacted_topic_fails_at_once_with_invalid_record(broker, topic_name):
    """Kafka refuses it as INVALID_RECORD (not retriable, KIP-467), so the producer fails that
    record at once instead of retrying it until message.timeout.ms; keyed records pass."""
    create(broker, topic_name, config={"cleanup.policy": "compact"})
    p = Producer({"bootstrap.servers": broker.bootstrap, "message.timeout.ms": 60_000, "linger.ms": 0})
    results = []
    started = time.monotonic()
    p.produce(topic_name, value=b"no key", on_delivery=lambda e, m: results.append(e))
    p.flush(30)
    p.produce(topic_name, key=b"k", value=b"keyed", on_delivery=lambda e, m: results.append(e))
    p.flush(15)
    assert results[0] is not None and results[0].code() == KafkaError.INVALID_RECORD, results
    assert not results[0].retriable()
    assert time.monotonic() - started < 30, "failed at once, not after message.timeout.ms"
    assert results[1] is None
    assert [m.value() for m in consume_all(broker, topic_name)] == [b"keyed"]


def test_consume_from_offset_inside_a_batch_and_by_timestamp(broker, topic_name):
    p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 50})
    for i in range(10):
        p.produce(topic_name, value=f"{i}", timestamp=1_000_000 + i * 10)
    assert p.flush(15) == 0
    # Offset 5 sits inside the single batch; the client must see exactly 5..9.
    assert [m.offset() for m in consume_all(broker, topic_name, offset=5)] == [5, 6, 7, 8, 9]
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "it-ts"})
    try:
        got = c.offsets_for_times([TopicPartition(topic_name, 0, 1_000_035)], timeout=10)
        assert got[0].offset == 4  # first record with timestamp >= target
        got = c.offsets_for_times([TopicPartition(topic_name, 0, 9_999_999)], timeout=10)
        assert got[0].offset == -1  # none: end
        lo, hi = c.get_watermark_offsets(TopicPartition(topic_name, 0), timeout=10)
        assert (lo, hi) == (0, 10)
    finally:
        c.close()


def test_offset_out_of_range_resets_per_auto_offset_reset(broker, topic_name):
    create(broker, topic_name)
    p = Producer({"bootstrap.servers": broker.bootstrap})
    for i in range(3):
        p.produce(topic_name, value=f"{i}")
    p.flush(10)
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "it-oor", "auto.offset.reset": "error", "enable.auto.commit": False})
    c.assign([TopicPartition(topic_name, 0, 100)])
    try:
        deadline, err = time.time() + 15, None
        while time.time() < deadline and err is None:
            m = c.poll(0.5)
            if m is not None and m.error():
                err = m.error()
        assert err is not None and err.code() == KafkaError._AUTO_OFFSET_RESET
    finally:
        c.close()


def test_unknown_topic_is_not_created_when_the_client_forbids_it(broker_factory, topic_name):
    b = broker_factory(**{"auto.create.topics.enable": "false"})
    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "x", "allow.auto.create.topics": False})
    try:
        md = c.list_topics(topic_name, timeout=10)
        assert md.topics[topic_name].error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART
    finally:
        c.close()


def test_idempotent_producer_writes_no_duplicates(broker, topic_name):
    p = Producer({"bootstrap.servers": broker.bootstrap, "enable.idempotence": True, "linger.ms": 2})
    for i in range(2000):
        p.produce(topic_name, key=f"{i % 7}", value=f"{i}")
    assert p.flush(20) == 0
    got = consume_all(broker, topic_name, n=2000)
    assert [m.value() for m in got] == [f"{i}".encode() for i in range(2000)]


def test_kafka_python_detects_a_modern_broker_and_round_trips(broker, topic_name):
    from kafka import KafkaConsumer, KafkaProducer
    from kafka import TopicPartition as KTP
    p = KafkaProducer(bootstrap_servers=broker.bootstrap, compression_type="gzip", acks="all")
    assert p.config["api_version"] >= (2, 1), p.config["api_version"]
    for i in range(30):
        p.send(topic_name, key=b"k", value=f"{i}".encode(), headers=[("h", b"1")])
    p.flush(15)
    p.close()
    c = KafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False, consumer_timeout_ms=5000)
    c.assign([KTP(topic_name, 0)])
    c.seek_to_beginning()
    got = [m for _, m in zip(range(30), c)]
    c.close()
    assert [m.value for m in got] == [f"{i}".encode() for i in range(30)]
    assert got[0].headers == [("h", b"1")]


def test_aiokafka_round_trip_with_lz4(broker, topic_name):
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.structs import TopicPartition as ATP

    async def run():
        p = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, compression_type="lz4", acks="all")
        await p.start()
        try:
            for i in range(25):
                await p.send_and_wait(topic_name, f"{i}".encode(), key=b"k")
        finally:
            await p.stop()
        c = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False, auto_offset_reset="earliest")
        await c.start()
        try:
            c.assign([ATP(topic_name, 0)])
            out = []
            while len(out) < 25:
                batch = await asyncio.wait_for(c.getmany(timeout_ms=1000), 15)
                for msgs in batch.values():
                    out.extend(m.value for m in msgs)
            return out
        finally:
            await c.stop()

    assert asyncio.run(run()) == [f"{i}".encode() for i in range(25)]


def test_long_poll_fetch_returns_as_soon_as_data_arrives(broker, topic_name):
    create(broker, topic_name)
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "it-lp", "fetch.wait.max.ms": 5000, "enable.auto.commit": False})
    c.assign([TopicPartition(topic_name, 0, 0)])
    try:
        c.poll(1.0)  # the fetch is now parked on the broker
        p = Producer({"bootstrap.servers": broker.bootstrap})
        p.produce(topic_name, value=b"wake")
        p.flush(10)
        sent = time.time()
        m = None
        while m is None and time.time() - sent < 10:
            m = c.poll(0.1)
        assert m is not None and m.value() == b"wake"
        # Woken by the append, not by fetch.wait.max.ms (5 s) expiring.
        assert time.time() - sent < 4
    finally:
        c.close()


@pytest.mark.parametrize("codec", ["zstd", "gzip", "snappy", "lz4", "uncompressed"])
def test_a_topic_codec_is_read_back_by_every_client(broker, topic_name, codec):
    """The leader recompresses each producer's batches to the topic's compression.type."""
    from aiokafka import AIOKafkaConsumer
    from aiokafka.structs import TopicPartition as ATP
    from kafka import KafkaConsumer
    from kafka import TopicPartition as KTP
    create(broker, topic_name, config={"compression.type": codec, "compression.zstd.level": "7"})
    for producer_codec in ["none", "lz4", "gzip"]:
        p = Producer({"bootstrap.servers": broker.bootstrap, "compression.codec": producer_codec,
                      "linger.ms": 5})
        for i in range(20):
            p.produce(topic_name, key=b"k", value=f"{producer_codec}-{i}".encode() * 20)
        assert p.flush(10) == 0
    want = [f"{c}-{i}".encode() * 20 for c in ["none", "lz4", "gzip"] for i in range(20)]
    assert [m.value() for m in consume_all(broker, topic_name, n=60)] == want
    c = KafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False, consumer_timeout_ms=5000)
    c.assign([KTP(topic_name, 0)])
    c.seek_to_beginning()
    assert [m.value for _, m in zip(range(60), c)] == want
    c.close()

    async def aio():
        ac = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False,
                              auto_offset_reset="earliest")
        await ac.start()
        try:
            ac.assign([ATP(topic_name, 0)])
            out = []
            while len(out) < 60:
                batch = await asyncio.wait_for(ac.getmany(timeout_ms=1000), 15)
                for msgs in batch.values():
                    out.extend(m.value for m in msgs)
            return out
        finally:
            await ac.stop()
    assert asyncio.run(aio()) == want
