"""SASL principals meet the authorizer: the user a client authenticates as is the principal
ACLs are checked against. Each refusal asserts the client's error and that nothing was
written (end offsets read by the super user)."""
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import (AclBinding, AclOperation, AclPermissionType, AdminClient, NewTopic,
                                   ResourcePatternType, ResourceType)

JAAS = ('org.apache.kafka.common.security.plain.PlainLoginModule required username="admin" '
        'password="admin-secret" user_admin="admin-secret" user_alice="alice-secret" '
        'user_bob="bob-secret";')


@pytest.fixture(scope="module")
def secured():
    from conftest import Broker
    b = Broker({
        "listeners": "SASL_PLAINTEXT://127.0.0.1:0",
        "sasl.enabled.mechanisms": "PLAIN",
        "listener.name.sasl_plaintext.plain.sasl.jaas.config": JAAS,
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users": "User:admin",
    }).start()
    yield b
    b.cleanup()


def conf(b, user):
    return {"bootstrap.servers": b.address("SASL_PLAINTEXT"), "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanisms": "PLAIN", "sasl.username": user, "sasl.password": f"{user}-secret"}


def produce_one(b, user, topic):
    results = []
    p = Producer({**conf(b, user), "message.timeout.ms": 6000})
    p.produce(topic, b"v", on_delivery=lambda e, m: results.append(e))
    p.flush(10)
    return results[0] if results else "no delivery report"


def end_offset(b, topic):
    c = Consumer({**conf(b, "admin"), "group.id": "it-offsets"})
    try:
        return c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)[1]
    finally:
        c.close()


def allow(principal, topic, op, pattern=ResourcePatternType.LITERAL, perm=AclPermissionType.ALLOW):
    return AclBinding(ResourceType.TOPIC, topic, pattern, principal, "*", op, perm)


def test_acls_apply_to_the_sasl_user(secured, topic_name):
    a = AdminClient(conf(secured, "admin"))
    a.create_topics([NewTopic(topic_name, 1, 1)])[topic_name].result(10)

    e = produce_one(secured, "alice", topic_name)
    assert e is not None and e.name() == "TOPIC_AUTHORIZATION_FAILED", e
    assert end_offset(secured, topic_name) == 0

    for f in a.create_acls([allow("User:alice", topic_name, AclOperation.WRITE)]).values():
        f.result(10)
    assert produce_one(secured, "alice", topic_name) is None
    assert end_offset(secured, topic_name) == 1

    # Everyone may write topics with this prefix, but a DENY for bob wins over that ALLOW.
    for f in a.create_acls([
        allow("User:*", topic_name[:8], AclOperation.WRITE, ResourcePatternType.PREFIXED),
        allow("User:bob", topic_name, AclOperation.WRITE, perm=AclPermissionType.DENY),
    ]).values():
        f.result(10)
    e = produce_one(secured, "bob", topic_name)
    assert e is not None and e.name() == "TOPIC_AUTHORIZATION_FAILED", e
    assert end_offset(secured, topic_name) == 1, "bob wrote nothing"
    assert produce_one(secured, "alice", topic_name) is None
    assert end_offset(secured, topic_name) == 2
