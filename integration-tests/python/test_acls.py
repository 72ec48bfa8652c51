"""ACLs with real clients: the ACL admin APIs (confluent-kafka, kafka-python) and what the
authorizer lets User:ANONYMOUS do (every PLAINTEXT connection is anonymous). ACLs are created
while ANONYMOUS is a super user, then the broker restarts without it."""
import time

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (AclBinding, AclBindingFilter, AclOperation, AclPermissionType,
                                   AdminClient, NewTopic, ResourcePatternType, ResourceType)

AUTHORIZER = {"authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer"}
ANON = "User:ANONYMOUS"
EVERY_ACL = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None,
                             AclOperation.ANY, AclPermissionType.ANY)


def admin(b):
    return AdminClient({"bootstrap.servers": b.bootstrap})


def binding(name, op, perm=AclPermissionType.ALLOW, principal=ANON,
            pattern=ResourcePatternType.LITERAL, rtype=ResourceType.TOPIC):
    return AclBinding(rtype, name, pattern, principal, "*", op, perm)


def create_acls(a, bindings):
    for f in a.create_acls(bindings).values():
        f.result(10)


def produce_one(b, topic):
    """The delivery error (None when written) of one record to `topic`."""
    p = Producer({"bootstrap.servers": b.bootstrap, "message.timeout.ms": 5000,
                  "enable.idempotence": False})
    errs = []
    p.produce(topic, value=b"v", on_delivery=lambda e, m: errs.append(e))
    p.flush(15)
    assert len(errs) == 1
    return errs[0]


def end_offset(b, topic):
    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "watermarks"})
    try:
        return c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)[1]
    finally:
        c.close()


def test_acl_admin_apis_with_confluent_kafka(broker_factory):
    b = broker_factory(**AUTHORIZER, **{"super.users": ANON})
    a = admin(b)
    wanted = [binding("orders", AclOperation.READ, principal="User:alice"),
              binding("pay-", AclOperation.WRITE, AclPermissionType.DENY, principal="User:*",
                      pattern=ResourcePatternType.PREFIXED),
              binding("app", AclOperation.READ, principal="User:alice", rtype=ResourceType.GROUP),
              binding("kafka-cluster", AclOperation.DESCRIBE, principal="User:alice",
                      rtype=ResourceType.BROKER)]
    create_acls(a, wanted)
    got = a.describe_acls(EVERY_ACL).result(10)
    assert sorted(map(str, got)) == sorted(map(str, wanted))
    # MATCH: every binding that applies to the topic `pay-in`.
    match = AclBindingFilter(ResourceType.TOPIC, "pay-in", ResourcePatternType.MATCH, None, None,
                             AclOperation.ANY, AclPermissionType.ANY)
    assert [str(x) for x in a.describe_acls(match).result(10)] == [str(wanted[1])]
    by_principal = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, "User:alice",
                                    None, AclOperation.ANY, AclPermissionType.ANY)
    deleted = a.delete_acls([by_principal])[by_principal].result(10)
    assert sorted(map(str, deleted)) == sorted(str(x) for x in wanted if "alice" in x.principal)
    assert [str(x) for x in a.describe_acls(EVERY_ACL).result(10)] == [str(wanted[1])]


def test_acl_admin_apis_with_kafka_python(broker_factory):
    from kafka.admin import (ACL, ACLFilter, ACLOperation, ACLPermissionType, ACLResourcePatternType,
                             KafkaAdminClient, ResourcePattern, ResourcePatternFilter)
    from kafka.admin import ResourceType as KResourceType

    b = broker_factory(**AUTHORIZER, **{"super.users": ANON})
    a = KafkaAdminClient(bootstrap_servers=b.bootstrap)
    try:
        good = ACL("User:bob", "*", ACLOperation.WRITE, ACLPermissionType.ALLOW,
                   ResourcePattern(KResourceType.TOPIC, "logs-", ACLResourcePatternType.PREFIXED))
        no_type = ACL("bob", "*", ACLOperation.WRITE, ACLPermissionType.ALLOW,
                      ResourcePattern(KResourceType.TOPIC, "logs", ACLResourcePatternType.LITERAL))
        prefixed_star = ACL("User:bob", "*", ACLOperation.WRITE, ACLPermissionType.ALLOW,
                            ResourcePattern(KResourceType.TOPIC, "*", ACLResourcePatternType.PREFIXED))
        res = a.create_acls([good, no_type, prefixed_star])
        assert [str(x) for x in res["succeeded"]] == [str(good)]
        # kafka-python lists the error of each refused ACL, in request order.
        assert [e.__name__ for e in res["failed"]] == ["InvalidRequestError", "InvalidRequestError"]
        every = ACLFilter(None, None, ACLOperation.ANY, ACLPermissionType.ANY,
                          ResourcePatternFilter(KResourceType.ANY, None, ACLResourcePatternType.ANY))
        acls, err = a.describe_acls(every)
        assert err.errno == 0 and [str(x) for x in acls] == [str(good)]
        [(_, deleted, err)] = a.delete_acls([every])
        assert err.errno == 0 and [str(x) for x in deleted] == [str(good)]
        assert a.describe_acls(every)[0] == []
    finally:
        a.close()


def test_acl_apis_without_an_authorizer_answer_security_disabled(broker_factory):
    from kafka.admin import (ACLFilter, ACLOperation, ACLPermissionType, ACLResourcePatternType,
                             KafkaAdminClient, ResourcePatternFilter)
    from kafka.admin import ResourceType as KResourceType
    from kafka.errors import SecurityDisabledError

    b = broker_factory()
    a = admin(b)
    with pytest.raises(KafkaException) as e:
        create_acls(a, [binding("t", AclOperation.READ)])
    assert e.value.args[0].code() == KafkaError.SECURITY_DISABLED
    # librdkafka drops DescribeAcls' top-level error; kafka-python reports it.
    k = KafkaAdminClient(bootstrap_servers=b.bootstrap)
    try:
        every = ACLFilter(None, None, ACLOperation.ANY, ACLPermissionType.ANY,
                          ResourcePatternFilter(KResourceType.ANY, None, ACLResourcePatternType.ANY))
        with pytest.raises(SecurityDisabledError):
            k.describe_acls(every)
    finally:
        k.close()


@pytest.fixture
def restricted(broker_factory):
    """A broker whose ACLs let ANONYMOUS write and read `open`, read and write topics
    prefixed `pre-`, use the group `app`, and deny it `denied` (which everyone else may
    write); the topics `closed`, `prefix-other` and `denied` exist."""
    b = broker_factory(**AUTHORIZER, **{"super.users": ANON, "auto.create.topics.enable": "false"})
    a = admin(b)
    topics = ["open", "closed", "pre-in", "prefix-other", "denied"]
    for f in a.create_topics([NewTopic(t, 1, 1) for t in topics]).values():
        f.result(10)
    create_acls(a, [
        binding("open", AclOperation.WRITE), binding("open", AclOperation.READ),
        binding("pre-", AclOperation.ALL, pattern=ResourcePatternType.PREFIXED),
        binding("app", AclOperation.READ, rtype=ResourceType.GROUP),
        binding("denied", AclOperation.WRITE, principal="User:*"),
        binding("denied", AclOperation.WRITE, AclPermissionType.DENY),
    ])
    b.overrides.pop("super.users")
    b.restart()
    return b


def unrestricted(b):
    """The same broker with ANONYMOUS a super user again, to look at what was written."""
    b.overrides["super.users"] = ANON
    b.restart()
    return b


def test_anonymous_writes_only_where_acls_allow(restricted):
    b = restricted
    assert produce_one(b, "open") is None
    assert produce_one(b, "pre-in") is None
    # No ACL; a DENY over an ALLOW for everyone; a prefix that does not match.
    for topic in ["closed", "denied", "prefix-other"]:
        err = produce_one(b, topic)
        assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, (topic, err)
    unrestricted(b)
    assert {t: end_offset(b, t) for t in ["open", "pre-in", "closed", "denied", "prefix-other"]} == {
        "open": 1, "pre-in": 1, "closed": 0, "denied": 0, "prefix-other": 0}


def test_metadata_hides_topics_anonymous_may_not_describe(restricted):
    md = admin(restricted).list_topics(timeout=10)
    assert sorted(md.topics) == ["denied", "open", "pre-in"], \
        "closed and prefix-other are hidden; a DENY of WRITE does not deny DESCRIBE"
    one = admin(restricted).list_topics(topic="closed", timeout=10)
    assert one.topics["closed"].error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    assert one.topics["closed"].partitions == {}


def test_reading_needs_read_on_the_topic_and_the_group(restricted):
    b = restricted
    assert produce_one(b, "open") is None
    unrestricted(b)
    assert produce_one(b, "closed") is None
    b.overrides.pop("super.users")
    b.restart()

    def first_event(group, topic):
        c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": group,
                      "auto.offset.reset": "earliest", "enable.auto.commit": False})
        try:
            c.subscribe([topic])
            deadline = time.time() + 20
            while time.time() < deadline:
                m = c.poll(0.5)
                if m is None:
                    continue
                return m
            return None
        finally:
            c.close()

    m = first_event("app", "open")
    assert m is not None and m.error() is None and m.value() == b"v"
    # A group without READ: refused before anything is read.
    m = first_event("other-group", "open")
    assert m is not None and m.error() is not None
    assert m.error().code() == KafkaError.GROUP_AUTHORIZATION_FAILED, m.error()
    # The allowed group, on a topic without READ: its record is never delivered.
    m = first_event("app", "closed")
    assert m is not None and m.error() is not None
    assert m.error().code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, m.error()


def sluice_acl(b, *args):
    import subprocess

    from conftest import sluice_bin
    return subprocess.run([sluice_bin(), "acl", *args, "--bootstrap-server", b.bootstrap],
                          capture_output=True, timeout=60, text=True)


def test_sluice_acl_adds_lists_and_removes_with_kafka_acls_flags(broker_factory):
    b = broker_factory(**AUTHORIZER, **{"super.users": ANON})
    r = sluice_acl(b, "add", "--allow-principal", "User:alice", "--operation", "Read",
                   "--operation", "Write", "--topic", "orders", "--resource-pattern-type", "PREFIXED")
    assert r.returncode == 0, r.stderr
    r = sluice_acl(b, "add", "--deny-principal", "User:bob", "--deny-host", "10.0.0.1",
                   "--group", "app")
    assert r.returncode == 0, r.stderr
    # What a third-party client sees.
    a = admin(b)
    got = sorted(str(x) for x in a.describe_acls(EVERY_ACL).result(10))
    assert got == sorted(str(x) for x in [
        binding("orders", AclOperation.READ, principal="User:alice", pattern=ResourcePatternType.PREFIXED),
        binding("orders", AclOperation.WRITE, principal="User:alice", pattern=ResourcePatternType.PREFIXED),
        AclBinding(ResourceType.GROUP, "app", ResourcePatternType.LITERAL, "User:bob", "10.0.0.1",
                   AclOperation.ALL, AclPermissionType.DENY)])
    listed = sluice_acl(b, "list")
    assert listed.returncode == 0, listed.stderr
    assert ("Current ACLs for resource `ResourcePattern(resourceType=TOPIC, name=orders, "
            "patternType=PREFIXED)`:") in listed.stdout
    assert "(principal=User:alice, host=*, operation=READ, permissionType=ALLOW)" in listed.stdout
    assert "(principal=User:bob, host=10.0.0.1, operation=ALL, permissionType=DENY)" in listed.stdout
    only_bob = sluice_acl(b, "list", "--principal", "User:bob")
    assert "alice" not in only_bob.stdout and "User:bob" in only_bob.stdout
    # A filter that names no ACL removes nothing.
    r = sluice_acl(b, "remove", "--topic", "orders", "--force")
    assert r.returncode == 0 and "Removed 0 ACL(s)" in r.stdout, r.stdout + r.stderr
    r = sluice_acl(b, "remove", "--topic", "orders", "--resource-pattern-type", "PREFIXED",
                   "--allow-principal", "User:alice", "--operation", "Write", "--force")
    assert r.returncode == 0 and "Removed 1 ACL(s)" in r.stdout, r.stdout + r.stderr
    r = sluice_acl(b, "remove", "--topic", "orders", "--resource-pattern-type", "PREFIXED", "--force")
    assert r.returncode == 0 and "Removed 1 ACL(s)" in r.stdout, r.stdout + r.stderr
    assert [str(x) for x in a.describe_acls(EVERY_ACL).result(10)] == [
        str(AclBinding(ResourceType.GROUP, "app", ResourcePatternType.LITERAL, "User:bob", "10.0.0.1",
                       AclOperation.ALL, AclPermissionType.DENY))]
    # A refusal is reported with the broker's error.
    bad = sluice_acl(b, "add", "--allow-principal", "alice", "--topic", "t")
    assert bad.returncode != 0 and "InvalidRequest (42)" in bad.stderr, bad.stderr
