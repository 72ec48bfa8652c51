"""TLS listeners (SSL) with real clients: confluent-kafka, kafka-python, aiokafka and kcat
produce and consume over TLS; mTLS with ssl.client.auth=required takes only clients whose
certificate the truststore signed; a plaintext client on the TLS port is closed while the
broker keeps serving. The DN-to-principal mapping is asserted by the broker's Rust tests
(security::tls and security::principal_mapper)."""
import asyncio
import socket
import ssl
import subprocess
import time

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from security import create_topic, end_offset, raw_request, read_reply_or_close, ssl_listener_settings

N = 20


@pytest.fixture(scope="module")
def tls_broker(request, tmp_path_factory):
    from conftest import Broker
    pki = request.getfixturevalue("pki")
    b = Broker(ssl_listener_settings(pki)).start()
    yield b
    b.cleanup()


@pytest.fixture(scope="module")
def mtls_broker(request):
    from conftest import Broker
    pki = request.getfixturevalue("pki")
    b = Broker(ssl_listener_settings(pki, "required")).start()
    yield b
    b.cleanup()


def ssl_conf(broker, pki, cert=None):
    conf = {"bootstrap.servers": broker.address("SSL"), "security.protocol": "SSL",
            "ssl.ca.location": str(pki / "ca.pem")}
    if cert:
        conf["ssl.certificate.location"] = str(pki / f"{cert}.pem")
        conf["ssl.key.location"] = str(pki / f"{cert}.key")
    return conf


def assert_tls_alert(errors, alert):
    seen = [(e.code(), e.str()) for e in errors]
    assert any(code == KafkaError._TRANSPORT and f"alert {alert}" in text for code, text in seen), seen


def produce(conf, topic, n=N):
    errors, delivered = [], []
    p = Producer({**conf, "message.timeout.ms": 8000, "error_cb": errors.append})
    for i in range(n):
        p.produce(topic, f"v{i}".encode(), on_delivery=lambda e, m: delivered.append(e))
    p.flush(15)
    return delivered, errors


def consume(conf, topic, n=N):
    c = Consumer({**conf, "group.id": "tls-it", "enable.auto.commit": False})
    c.assign([TopicPartition(topic, 0, 0)])
    out, deadline = [], time.time() + 15
    try:
        while len(out) < n and time.time() < deadline:
            m = c.poll(0.5)
            if m is not None and not m.error():
                out.append(m.value())
    finally:
        c.close()
    return out


def test_confluent_produces_and_consumes_over_ssl(tls_broker, pki, topic_name):
    conf = ssl_conf(tls_broker, pki)
    delivered, errors = produce(conf, topic_name)
    assert delivered == [None] * N, errors
    assert consume(conf, topic_name) == [f"v{i}".encode() for i in range(N)]


def test_kcat_produces_and_consumes_over_ssl(tls_broker, pki, topic_name):
    base = ["kcat", "-b", tls_broker.address("SSL"), "-X", "security.protocol=SSL",
            "-X", f"ssl.ca.location={pki / 'ca.pem'}", "-t", topic_name]
    p = subprocess.run(base + ["-P"], input="".join(f"k{i}\n" for i in range(N)),
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    c = subprocess.run(base + ["-C", "-o", "beginning", "-c", str(N), "-e"],
                       capture_output=True, text=True, timeout=60)
    assert c.returncode == 0, c.stderr
    assert c.stdout.split() == [f"k{i}" for i in range(N)]


def test_kafka_python_produces_and_consumes_over_ssl(tls_broker, pki, topic_name):
    from kafka import KafkaConsumer, KafkaProducer
    conf = {"bootstrap_servers": tls_broker.address("SSL"), "security_protocol": "SSL",
            "ssl_cafile": str(pki / "ca.pem")}
    p = KafkaProducer(**conf)
    for i in range(N):
        p.send(topic_name, f"v{i}".encode()).get(timeout=15)
    p.close()
    c = KafkaConsumer(topic_name, auto_offset_reset="earliest", consumer_timeout_ms=10000, **conf)
    got = [m.value for _, m in zip(range(N), c)]
    c.close()
    assert got == [f"v{i}".encode() for i in range(N)]


def test_aiokafka_produces_and_consumes_over_ssl(tls_broker, pki, topic_name):
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.helpers import create_ssl_context

    async def run():
        ctx = create_ssl_context(cafile=str(pki / "ca.pem"))
        conf = {"bootstrap_servers": tls_broker.address("SSL"), "security_protocol": "SSL", "ssl_context": ctx}
        p = AIOKafkaProducer(**conf)
        await p.start()
        try:
            for i in range(N):
                await p.send_and_wait(topic_name, f"v{i}".encode())
        finally:
            await p.stop()
        c = AIOKafkaConsumer(topic_name, auto_offset_reset="earliest", **conf)
        await c.start()
        got = []
        try:
            while len(got) < N:
                batch = await asyncio.wait_for(c.getmany(timeout_ms=1000), 15)
                for msgs in batch.values():
                    got += [m.value for m in msgs]
        finally:
            await c.stop()
        return got

    assert asyncio.run(run()) == [f"v{i}".encode() for i in range(N)]


def test_mtls_takes_a_client_certificate_of_the_truststore(mtls_broker, pki, topic_name):
    conf = ssl_conf(mtls_broker, pki, cert="client")
    delivered, errors = produce(conf, topic_name)
    assert delivered == [None] * N, errors
    assert end_offset(mtls_broker, topic_name) == N


def test_mtls_refuses_a_certificate_from_another_ca_and_nothing_is_written(mtls_broker, pki, topic_name):
    create_topic(mtls_broker, topic_name)
    delivered, errors = produce(ssl_conf(mtls_broker, pki, cert="other-client"), topic_name, n=3)
    assert delivered and all(e is not None and e.code() == KafkaError._MSG_TIMED_OUT for e in delivered), delivered
    # The broker's CertificateRequest names only its CA, so OpenSSL sends no certificate and
    # the broker ends the handshake with TLS alert 116 (certificate_required).
    assert_tls_alert(errors, "certificate required")
    assert end_offset(mtls_broker, topic_name) == 0


def test_mtls_refuses_a_client_without_a_certificate(mtls_broker, pki, topic_name):
    create_topic(mtls_broker, topic_name)
    delivered, errors = produce(ssl_conf(mtls_broker, pki), topic_name, n=3)
    assert delivered and all(e is not None and e.code() == KafkaError._MSG_TIMED_OUT for e in delivered), delivered
    assert_tls_alert(errors, "certificate required")
    assert end_offset(mtls_broker, topic_name) == 0


def test_a_plaintext_client_on_the_tls_port_is_closed_and_others_are_served(tls_broker, pki, topic_name):
    before = tls_broker.proc.poll()
    s = socket.create_connection(("127.0.0.1", tls_broker.ports["SSL"]), timeout=5)
    # An ApiVersions v0 request, in the clear.
    s.sendall(raw_request(18, 0, b""))
    reply = read_reply_or_close(s)
    s.close()
    # Whatever rustls answers (a TLS alert record, 0x15) is not a Kafka response, then EOF.
    assert reply == b"" or reply[0] == 0x15, reply
    assert before is None and tls_broker.proc.poll() is None
    # A TLS client still works, on the same listener.
    ctx = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    with socket.create_connection(("127.0.0.1", tls_broker.ports["SSL"]), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as t:
            t.sendall(raw_request(18, 0, b""))
            head = t.recv(8)
            assert len(head) == 8 and int.from_bytes(head[4:8], "big") == 7
    delivered, errors = produce(ssl_conf(tls_broker, pki), topic_name, n=2)
    assert delivered == [None, None], errors
