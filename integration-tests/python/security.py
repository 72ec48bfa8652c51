"""Helpers for the security tests: secured broker settings and end offsets read over the
PLAINTEXT listener, to prove a refused client wrote nothing."""
import socket
import struct

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def ssl_listener_settings(pki, client_auth="none"):
    return {
        "listeners": "PLAINTEXT://127.0.0.1:0,SSL://127.0.0.1:0",
        "ssl.keystore.location": str(pki / "server-keystore.pem"),
        "ssl.truststore.location": str(pki / "ca.pem"),
        "ssl.client.auth": client_auth,
    }


def create_topic(broker, name, partitions=1):
    a = AdminClient({"bootstrap.servers": broker.bootstrap})
    a.create_topics([NewTopic(name, partitions, 1)])[name].result(10)


def end_offset(broker, topic, partition=0):
    """The partition's high watermark, read over the PLAINTEXT listener."""
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "it-offsets"})
    try:
        return c.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)[1]
    finally:
        c.close()


def raw_request(api_key, version, body, correlation_id=7, client_id=b"raw"):
    """A request frame (header v1: non-flexible) for raw-socket tests."""
    header = struct.pack(">hhih", api_key, version, correlation_id, len(client_id)) + client_id
    payload = header + body
    return struct.pack(">i", len(payload)) + payload


def metadata_v1_all_topics():
    # Metadata v1: topics = null (-1) asks for every topic.
    return raw_request(3, 1, struct.pack(">i", -1))


def read_reply_or_close(sock, timeout=5):
    """The first bytes the broker sends back, b"" if it closes the connection first."""
    sock.settimeout(timeout)
    try:
        return sock.recv(4096)
    except ConnectionResetError:
        return b""
    except socket.timeout:
        raise AssertionError("the broker neither answered nor closed the connection")
