"""SASL/PLAIN on SASL_PLAINTEXT and SASL_SSL listeners with confluent-kafka, kafka-python,
aiokafka and kcat; and what an attacker sees: a wrong password or an unknown user gets
SASL_AUTHENTICATION_FAILED with Kafka's message, a request before authentication closes
the connection unanswered, and in every case nothing is written (the topic's end offset is
read over the PLAINTEXT listener)."""
import asyncio
import socket
import subprocess
import time

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from security import create_topic, end_offset, metadata_v1_all_topics, read_reply_or_close

N = 20
JAAS = ('org.apache.kafka.common.security.plain.PlainLoginModule required username="admin" '
        'password="admin-secret" user_admin="admin-secret" user_alice="alice-secret";')
PROTOCOLS = ["SASL_PLAINTEXT", "SASL_SSL"]


@pytest.fixture(scope="module")
def sasl_broker(request):
    from conftest import Broker
    pki = request.getfixturevalue("pki")
    b = Broker({
        "listeners": "PLAINTEXT://127.0.0.1:0,SASL_PLAINTEXT://127.0.0.1:0,SASL_SSL://127.0.0.1:0",
        "sasl.enabled.mechanisms": "PLAIN",
        "listener.name.sasl_plaintext.plain.sasl.jaas.config": JAAS,
        "listener.name.sasl_ssl.plain.sasl.jaas.config": JAAS,
        "listener.name.sasl_ssl.ssl.keystore.location": str(pki / "server-keystore.pem"),
    }).start()
    yield b
    b.cleanup()


def conf(broker, pki, protocol, user="alice", password="alice-secret"):
    c = {"bootstrap.servers": broker.address(protocol), "security.protocol": protocol,
         "sasl.mechanisms": "PLAIN", "sasl.username": user, "sasl.password": password}
    if protocol == "SASL_SSL":
        c["ssl.ca.location"] = str(pki / "ca.pem")
    return c


def produce(c, topic, n=N):
    errors, delivered = [], []
    p = Producer({**c, "message.timeout.ms": 6000, "error_cb": errors.append})
    for i in range(n):
        p.produce(topic, f"v{i}".encode(), on_delivery=lambda e, m: delivered.append(e))
    p.flush(15)
    return delivered, errors


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_confluent_produces_and_consumes_with_plain(sasl_broker, pki, topic_name, protocol):
    c = conf(sasl_broker, pki, protocol)
    delivered, errors = produce(c, topic_name)
    assert delivered == [None] * N, errors
    consumer = Consumer({**c, "group.id": "sasl-it", "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic_name, 0, 0)])
    got, deadline = [], time.time() + 15
    while len(got) < N and time.time() < deadline:
        m = consumer.poll(0.5)
        if m is not None and not m.error():
            got.append(m.value())
    consumer.close()
    assert got == [f"v{i}".encode() for i in range(N)]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_kcat_produces_and_consumes_with_plain(sasl_broker, pki, topic_name, protocol):
    base = ["kcat", "-b", sasl_broker.address(protocol), "-X", f"security.protocol={protocol}",
            "-X", "sasl.mechanisms=PLAIN", "-X", "sasl.username=admin", "-X", "sasl.password=admin-secret",
            "-t", topic_name]
    if protocol == "SASL_SSL":
        base += ["-X", f"ssl.ca.location={pki / 'ca.pem'}"]
    p = subprocess.run(base + ["-P"], input="".join(f"k{i}\n" for i in range(N)),
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    c = subprocess.run(base + ["-C", "-o", "beginning", "-c", str(N), "-e"],
                       capture_output=True, text=True, timeout=60)
    assert c.returncode == 0, c.stderr
    assert c.stdout.split() == [f"k{i}" for i in range(N)]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_kafka_python_produces_and_consumes_with_plain(sasl_broker, pki, topic_name, protocol):
    from kafka import KafkaConsumer, KafkaProducer
    c = {"bootstrap_servers": sasl_broker.address(protocol), "security_protocol": protocol,
         "sasl_mechanism": "PLAIN", "sasl_plain_username": "alice", "sasl_plain_password": "alice-secret"}
    if protocol == "SASL_SSL":
        c["ssl_cafile"] = str(pki / "ca.pem")
    p = KafkaProducer(**c)
    for i in range(N):
        p.send(topic_name, f"v{i}".encode()).get(timeout=15)
    p.close()
    consumer = KafkaConsumer(topic_name, auto_offset_reset="earliest", consumer_timeout_ms=10000, **c)
    got = [m.value for _, m in zip(range(N), consumer)]
    consumer.close()
    assert got == [f"v{i}".encode() for i in range(N)]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_aiokafka_produces_and_consumes_with_plain(sasl_broker, pki, topic_name, protocol):
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.helpers import create_ssl_context

    async def run():
        c = {"bootstrap_servers": sasl_broker.address(protocol), "security_protocol": protocol,
             "sasl_mechanism": "PLAIN", "sasl_plain_username": "alice", "sasl_plain_password": "alice-secret"}
        if protocol == "SASL_SSL":
            c["ssl_context"] = create_ssl_context(cafile=str(pki / "ca.pem"))
        p = AIOKafkaProducer(**c)
        await p.start()
        try:
            for i in range(N):
                await p.send_and_wait(topic_name, f"v{i}".encode())
        finally:
            await p.stop()
        consumer = AIOKafkaConsumer(topic_name, auto_offset_reset="earliest", **c)
        await consumer.start()
        got = []
        try:
            while len(got) < N:
                batch = await asyncio.wait_for(consumer.getmany(timeout_ms=1000), 15)
                for msgs in batch.values():
                    got += [m.value for m in msgs]
        finally:
            await consumer.stop()
        return got

    assert asyncio.run(run()) == [f"v{i}".encode() for i in range(N)]


def assert_refused(errors):
    seen = [(e.code(), e.str()) for e in errors]
    assert any(code == KafkaError._AUTHENTICATION
               and "Authentication failed: Invalid username or password" in text for code, text in seen), seen


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("user,password", [("alice", "wrong"), ("mallory", "alice-secret")],
                         ids=["wrong-password", "unknown-user"])
def test_confluent_refused_credentials_write_nothing(sasl_broker, pki, topic_name, protocol, user, password):
    create_topic(sasl_broker, topic_name)
    delivered, errors = produce(conf(sasl_broker, pki, protocol, user, password), topic_name, n=3)
    assert delivered and all(e is not None for e in delivered), delivered
    assert_refused(errors)
    assert end_offset(sasl_broker, topic_name) == 0


def test_kafka_python_sees_the_authentication_failure(sasl_broker, topic_name, caplog):
    from kafka import KafkaProducer
    from kafka.errors import KafkaTimeoutError
    create_topic(sasl_broker, topic_name)
    caplog.set_level("DEBUG", logger="kafka")
    with pytest.raises(KafkaTimeoutError, match="Unable to bootstrap"):
        KafkaProducer(bootstrap_servers=sasl_broker.address("SASL_PLAINTEXT"), security_protocol="SASL_PLAINTEXT",
                      sasl_mechanism="PLAIN", sasl_plain_username="alice", sasl_plain_password="wrong",
                      max_block_ms=5000)
    # kafka-python retries bootstrap and logs each broker answer it got.
    assert "Authentication failed: Invalid username or password" in caplog.text
    assert end_offset(sasl_broker, topic_name) == 0


def test_aiokafka_sees_the_authentication_failure(sasl_broker, topic_name, caplog):
    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import KafkaConnectionError
    create_topic(sasl_broker, topic_name)
    caplog.set_level("DEBUG", logger="aiokafka")

    async def run():
        p = AIOKafkaProducer(bootstrap_servers=sasl_broker.address("SASL_PLAINTEXT"), security_protocol="SASL_PLAINTEXT",
                             sasl_mechanism="PLAIN", sasl_plain_username="mallory", sasl_plain_password="x")
        try:
            await p.start()
        finally:
            await p.stop()

    with pytest.raises(KafkaConnectionError, match="Unable to bootstrap"):
        asyncio.run(run())
    assert "Authentication failed: Invalid username or password" in caplog.text
    assert end_offset(sasl_broker, topic_name) == 0


@pytest.mark.parametrize("protocol", ["SASL_PLAINTEXT"])
def test_a_request_before_authentication_closes_the_connection_unanswered(sasl_broker, topic_name, protocol):
    create_topic(sasl_broker, topic_name)
    s = socket.create_connection(("127.0.0.1", sasl_broker.ports[protocol]), timeout=5)
    s.sendall(metadata_v1_all_topics())
    assert read_reply_or_close(s) == b""
    s.close()
    assert end_offset(sasl_broker, topic_name) == 0
