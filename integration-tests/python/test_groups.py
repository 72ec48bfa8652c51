"""Consumer groups with real clients: rebalancing, commits, restarts, admin."""
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

GROUP_OVERRIDES = {"group.initial.rebalance.delay.ms": "0"}


def produce(b, topic, n, partitions):
    p = Producer({"bootstrap.servers": b.bootstrap})
    for i in range(n):
        p.produce(topic, value=f"{i}", partition=i % partitions)
    assert p.flush(10) == 0


def consumer(b, group, **extra):
    cfg = {"bootstrap.servers": b.bootstrap, "group.id": group, "auto.offset.reset": "earliest",
           "enable.auto.commit": False, "session.timeout.ms": 6000, "heartbeat.interval.ms": 500}
    cfg.update(extra)
    return Consumer(cfg)


def poll_until(consumers, pred, timeout=30):
    got = {id(c): [] for c in consumers}
    deadline = time.time() + timeout
    while time.time() < deadline and not pred(got):
        for c in consumers:
            m = c.poll(0.1)
            if m is not None and not m.error():
                got[id(c)].append(m)
    return got


def test_two_consumers_split_partitions_rebalance_and_resume_after_restart(broker_factory, topic_name):
    b = broker_factory(**GROUP_OVERRIDES)
    a = AdminClient({"bootstrap.servers": b.bootstrap})
    a.create_topics([NewTopic(topic_name, 4, 1)])[topic_name].result(10)
    produce(b, topic_name, 400, 4)
    c1, c2 = consumer(b, "g1"), consumer(b, "g1")
    c1.subscribe([topic_name])
    c2.subscribe([topic_name])
    def caught_up(consumers, end):
        # Every partition is assigned to someone and each owner has consumed up to `end`.
        owned = [tp for c in consumers for tp in c.position(c.assignment())]
        return sorted(tp.partition for tp in owned) == [0, 1, 2, 3] and all(tp.offset == end for tp in owned)

    # Redelivery after a rebalance is allowed (at least once); positions are what count.
    got = poll_until([c1, c2], lambda g: c1.assignment() and c2.assignment() and caught_up([c1, c2], 100))
    assert len({(m.partition(), m.offset()) for ms in got.values() for m in ms}) == 400
    parts1 = {tp.partition for tp in c1.assignment()}
    parts2 = {tp.partition for tp in c2.assignment()}
    assert parts1 and parts2 and not (parts1 & parts2), (parts1, parts2)
    c1.commit(asynchronous=False)
    c2.commit(asynchronous=False)
    # One leaves: the other takes over all partitions, from the committed offsets.
    c2.close()
    produce(b, topic_name, 40, 4)
    got = poll_until([c1], lambda g: caught_up([c1], 110))
    assert {m.partition() for m in got[id(c1)]} == {0, 1, 2, 3}
    assert min(m.offset() for m in got[id(c1)]) >= 100, "resumed from the other member's commits"
    c1.commit(asynchronous=False)
    committed = c1.committed([TopicPartition(topic_name, p) for p in range(4)], timeout=10)
    assert sum(tp.offset for tp in committed) == 440
    c1.close()
    # Committed offsets survive a broker restart: a new member resumes after them.
    b.restart()
    produce(b, topic_name, 8, 4)
    c3 = consumer(b, "g1")
    c3.subscribe([topic_name])
    got = poll_until([c3], lambda g: len(g[id(c3)]) >= 8, timeout=40)
    assert sorted(int(m.value()) for m in got[id(c3)]) == list(range(8))
    c3.close()


def test_group_admin_list_describe_delete_and_commit_metadata(broker_factory, topic_name):
    b = broker_factory(**GROUP_OVERRIDES)
    produce(b, topic_name, 10, 1)
    c = consumer(b, "g-admin")
    c.subscribe([topic_name])
    poll_until([c], lambda g: len(g[id(c)]) >= 10)
    c.commit(offsets=[TopicPartition(topic_name, 0, 7, metadata="hello")], asynchronous=False)
    got = c.committed([TopicPartition(topic_name, 0)], timeout=10)[0]
    assert (got.offset, got.metadata) == (7, "hello")
    a = AdminClient({"bootstrap.servers": b.bootstrap})
    listed = a.list_consumer_groups().result(10)
    assert "g-admin" in [g.group_id for g in listed.valid]
    desc = a.describe_consumer_groups(["g-admin"])["g-admin"].result(10)
    assert desc.state.name == "STABLE" and len(desc.members) == 1
    with_members = a.delete_consumer_groups(["g-admin"])["g-admin"]
    try:
        with_members.result(10)
        raise AssertionError("deleting a group with members must fail")
    except KafkaException as e:
        assert e.args[0].code() == KafkaError.NON_EMPTY_GROUP
    c.close()
    time.sleep(0.5)
    a.delete_consumer_groups(["g-admin"])["g-admin"].result(10)
    assert "g-admin" not in [g.group_id for g in a.list_consumer_groups().result(10).valid]


def test_kafka_python_group_consumer_commits(broker_factory, topic_name):
    from kafka import KafkaConsumer
    b = broker_factory(**GROUP_OVERRIDES)
    produce(b, topic_name, 20, 1)
    c = KafkaConsumer(topic_name, bootstrap_servers=b.bootstrap, group_id="kp", auto_offset_reset="earliest",
                      enable_auto_commit=False, consumer_timeout_ms=10000)
    got = [m for _, m in zip(range(20), c)]
    assert len(got) == 20
    c.commit()
    c.close()
    c = consumer(b, "kp")
    try:
        tp = c.committed([TopicPartition(topic_name, 0)], timeout=10)[0]
        assert tp.offset == 20
    finally:
        c.close()


def test_aiokafka_group_consumer_commits_and_resumes(broker_factory, topic_name):
    import asyncio
    from aiokafka import AIOKafkaConsumer
    from aiokafka.structs import TopicPartition as ATP
    b = broker_factory(**GROUP_OVERRIDES)
    produce(b, topic_name, 30, 1)

    async def consume(n):
        c = AIOKafkaConsumer(topic_name, bootstrap_servers=b.bootstrap, group_id="aio", enable_auto_commit=False,
                             auto_offset_reset="earliest")
        await c.start()
        try:
            out = []
            while len(out) < n:
                batch = await asyncio.wait_for(c.getmany(timeout_ms=500), 30)
                for msgs in batch.values():
                    out.extend(int(m.value) for m in msgs)
            await c.commit({ATP(topic_name, 0): 20})
            return out[:n], await c.committed(ATP(topic_name, 0))
        finally:
            await c.stop()

    first, committed = asyncio.run(consume(20))
    assert first == list(range(20)) and committed == 20
    # A new member of the same group resumes from the commit.
    rest, _ = asyncio.run(consume(10))
    assert rest == list(range(20, 30))


def test_a_deleted_and_recreated_topic_starts_from_auto_offset_reset(broker_factory, topic_name):
    # Issue 22 item 6: the group's committed offsets go with the topic; a topic recreated under
    # the same name is read from auto.offset.reset, not from the old topic's offsets.
    b = broker_factory(**GROUP_OVERRIDES)
    a = AdminClient({"bootstrap.servers": b.bootstrap})
    a.create_topics([NewTopic(topic_name, 1, 1)])[topic_name].result(10)
    produce(b, topic_name, 10, 1)
    c = consumer(b, "g-recreate")
    c.subscribe([topic_name])
    poll_until([c], lambda g: len(g[id(c)]) >= 10)
    c.commit(offsets=[TopicPartition(topic_name, 0, 10)], asynchronous=False)
    c.close()
    a.delete_topics([topic_name])[topic_name].result(10)
    deadline = time.time() + 20
    while True:
        try:
            a.create_topics([NewTopic(topic_name, 1, 1)])[topic_name].result(10)
            break
        except KafkaException as e:
            if e.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS or time.time() > deadline:
                raise
            time.sleep(0.2)
    produce(b, topic_name, 15, 1)
    c = consumer(b, "g-recreate")
    try:
        deadline = time.time() + 10
        committed = c.committed([TopicPartition(topic_name, 0)], timeout=10)[0].offset
        while committed >= 0 and time.time() < deadline:
            time.sleep(0.2)
            committed = c.committed([TopicPartition(topic_name, 0)], timeout=10)[0].offset
        assert committed < 0, f"the deleted topic's offset {committed} is still committed"
        c.subscribe([topic_name])
        got = poll_until([c], lambda g: len(g[id(c)]) >= 15)
        assert sorted(int(m.value()) for m in got[id(c)]) == list(range(15))
    finally:
        c.close()
