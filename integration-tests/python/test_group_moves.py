"""Consumer groups across coordinator moves and consumer restarts on a three-node cluster of
local `sluice` processes (issue 22, "what it must show"): kafka-python and aiokafka resume
from their commits when the coordinator dies (a coordinator error read as "no committed
offset" would reset them to `latest` and skip records), and static members of confluent-kafka
restarted one at a time within their session timeout get their partitions back with no
rebalance of the others and no committed record processed twice."""
import asyncio
import threading
import time
from collections import Counter

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from cluster import Cluster, LoadGenerator, coordinator_of

RECORDS = 300


@pytest.fixture
def cluster():
    c = Cluster().start()
    yield c
    c.cleanup()


def produce(cluster, topic, n=RECORDS):
    p = Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all"})
    for i in range(n):
        p.produce(topic, value=str(i).encode(), key=str(i).encode())
    assert p.flush(60) == 0


def commit_start(cluster, topic, group, partitions):
    """Commits offset 0 everywhere, so a consumer that resets to `latest` skips records."""
    c = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": group})
    try:
        c.commit(offsets=[TopicPartition(topic, p, 0) for p in range(partitions)],
                 asynchronous=False)
    finally:
        c.close()


def prepare(cluster, topic, group):
    cluster.create_topic(topic, 3, 3, {"min.insync.replicas": "2"})
    produce(cluster, topic)
    commit_start(cluster, topic, group, 3)


def kill_the_coordinator_once(cluster, group, seen, killed):
    if not killed and len(seen) > RECORDS // 3:
        victim = coordinator_of(cluster, group)
        cluster.kill(victim)
        killed.append(victim)


def test_kafka_python_resumes_from_its_commits_across_a_coordinator_move(cluster, topic_name):
    from kafka import KafkaConsumer
    group = "kp-" + topic_name
    prepare(cluster, topic_name, group)
    c = KafkaConsumer(topic_name, bootstrap_servers=cluster.bootstrap.split(","),
                      group_id=group, auto_offset_reset="latest", enable_auto_commit=False,
                      session_timeout_ms=10000, heartbeat_interval_ms=1000)
    seen, killed = set(), []
    deadline = time.time() + 120
    try:
        while len(seen) < RECORDS and time.time() < deadline:
            kill_the_coordinator_once(cluster, group, seen, killed)
            for records in c.poll(timeout_ms=200, max_records=10).values():
                seen.update(int(r.value) for r in records)
                try:
                    c.commit()
                except Exception:  # the coordinator may be moving; the next commit covers it
                    pass
    finally:
        c.close()
    assert killed, "the coordinator was killed mid-way"
    assert len(seen) == RECORDS, f"skipped {sorted(set(range(RECORDS)) - seen)[:10]}"


def test_aiokafka_resumes_from_its_commits_across_a_coordinator_move(cluster, topic_name):
    from aiokafka import AIOKafkaConsumer
    group = "aio-" + topic_name
    prepare(cluster, topic_name, group)

    async def consume():
        c = AIOKafkaConsumer(topic_name, bootstrap_servers=cluster.bootstrap, group_id=group,
                             auto_offset_reset="latest", enable_auto_commit=False,
                             session_timeout_ms=10000, heartbeat_interval_ms=1000)
        await c.start()
        seen, killed = set(), []
        deadline = time.time() + 120
        try:
            while len(seen) < RECORDS and time.time() < deadline:
                # The kill blocks this loop, as a slow poll would: heartbeats catch up.
                kill_the_coordinator_once(cluster, group, seen, killed)
                batches = await c.getmany(timeout_ms=200, max_records=10)
                for records in batches.values():
                    seen.update(int(r.value) for r in records)
                    try:
                        await c.commit()
                    except Exception:  # as above: the next commit covers it
                        pass
        finally:
            try:
                await c.stop()
            except asyncio.CancelledError:
                # aiokafka 0.14's Fetcher.close awaits the fetch it has just cancelled; one
                # backing off from the killed node re-raises that cancellation. Closed anyway.
                pass
        return seen, killed

    seen, killed = asyncio.run(consume())
    assert killed, "the coordinator was killed mid-way"
    assert len(seen) == RECORDS, f"skipped {sorted(set(range(RECORDS)) - seen)[:10]}"


class StaticMember:
    """One incarnation of a static consumer (`group.instance.id`) on its own thread:
    processes a batch of records, then commits synchronously; remembers its assignments."""

    def __init__(self, cluster, topic, group, instance, processed):
        self.consumer = Consumer({
            "bootstrap.servers": cluster.bootstrap, "group.id": group,
            "group.instance.id": instance, "session.timeout.ms": 30000,
            "heartbeat.interval.ms": 1000, "enable.auto.commit": False,
            "auto.offset.reset": "earliest", "topic.metadata.refresh.interval.ms": 1000})
        self.instance = instance
        self.assignments = []
        self.processed = processed  # shared: (partition, offset, committed)
        self.stop_flag = threading.Event()
        self.consumer.subscribe([topic], on_assign=self._assigned)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _assigned(self, _consumer, partitions):
        self.assignments.append(sorted(p.partition for p in partitions))

    def _run(self):
        while not self.stop_flag.is_set():
            batch = [m for m in self.consumer.consume(100, 0.2) if not m.error()]
            if not batch:
                continue
            try:
                self.consumer.commit(asynchronous=False)
                committed = True
            except Exception:  # committed again with the next batch, or read again
                committed = False
            self.processed.extend((m.partition(), m.offset(), committed) for m in batch)
        # A static member leaves no group on close: its place waits for its next incarnation.
        self.consumer.close()

    def stop(self):
        self.stop_flag.set()
        self.thread.join(30)


def test_a_rolling_restart_of_static_members_moves_no_partition_and_repeats_no_commit(
        cluster, topic_name):
    cluster.create_topic(topic_name, 6, 3, {"min.insync.replicas": "2"})
    group = "static-" + topic_name
    processed = []
    with LoadGenerator(cluster, topic_name) as load:
        members = {i: StaticMember(cluster, topic_name, group, f"c{i}", processed)
                   for i in range(3)}
        cluster.wait_until(
            "the three members to share the six partitions",
            lambda: all(len(m.assignments[-1]) == 2 for m in members.values() if m.assignments)
            and sorted(p for m in members.values() if m.assignments
                       for p in m.assignments[-1]) == list(range(6)), 60)
        time.sleep(2)
        settled = {i: len(m.assignments) for i, m in members.items()}
        for i in range(3):
            old = members[i]
            old.stop()
            assert len(old.assignments) == settled[i], \
                f"c{i} was assigned again before its restart: {old.assignments}"
            members[i] = StaticMember(cluster, topic_name, group, f"c{i}", processed)
            cluster.wait_until(f"c{i} back", lambda i=i: members[i].assignments, 30)
            assert members[i].assignments[-1] == old.assignments[-1], "its partitions back"
            time.sleep(2)
        time.sleep(2)
    produced = load.total_acked()
    cluster.wait_until(
        "every acknowledged record processed",
        lambda: len({(p, o) for p, o, _ in processed}) >= produced, 90)
    for m in members.values():
        m.stop()
    # No restarted incarnation was assigned twice either: the restarts made no rebalance.
    for m in members.values():
        assert len(m.assignments) == 1, f"{m.instance} was assigned again: {m.assignments}"
    times = Counter((p, o) for p, o, _ in processed)
    repeated = {(p, o) for p, o, ok in processed if ok and times[(p, o)] > 1}
    assert not repeated, f"committed records processed twice: {sorted(repeated)[:10]}"
