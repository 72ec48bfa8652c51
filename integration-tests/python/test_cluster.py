"""Fault tests of a three-node cluster of local `sluice` processes, driven by librdkafka
(confluent-kafka) and kafka-python. Each ends by reading every partition back: every
acknowledged acks=all record is there exactly once, in order."""
import signal
import time

import pytest
from confluent_kafka import (Consumer, ElectionType, KafkaError, KafkaException, Producer,
                             TopicPartition)
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource
from kafka import KafkaProducer
from kafka.errors import NotEnoughReplicasError

from cluster import (Cluster, LoadGenerator, check_exactly_once_in_order, consume_group,
                     consume_while_the_coordinator_dies, coordinator_of)


@pytest.fixture
def cluster():
    c = Cluster().start()
    yield c
    c.cleanup()


def create(cluster, topic, partitions=3, rf=3, **config):
    config.setdefault("min.insync.replicas", "2")
    cluster.create_topic(topic, partitions, rf, config)


def set_min_insync(cluster, topic, n):
    admin = cluster.admin()
    entry = ConfigEntry("min.insync.replicas", str(n), incremental_operation=AlterConfigOpType.SET)
    resource = ConfigResource("topic", topic, incremental_configs=[entry])
    for f in admin.incremental_alter_configs([resource]).values():
        f.result(20)


def test_three_brokers_each_answer_metadata_for_all(cluster, topic_name):
    create(cluster, topic_name)
    for n in cluster.nodes:
        admin = AdminClient({"bootstrap.servers": n.bootstrap})

        def complete(md):
            parts = md.topics[topic_name].partitions
            return sorted(md.brokers) == [1, 2, 3] and len(parts) == 3 and all(
                len(p.replicas) == 3 and p.leader in (1, 2, 3) for p in parts.values())
        cluster.wait_until(f"node {n.id} to show the topic",
                           lambda: complete(admin.list_topics(topic_name, timeout=10)), 10)
    leaders = {p[0] for p in cluster.partitions(topic_name).values()}
    assert len(leaders) > 1, "leadership is spread over the brokers"


def test_kill_9_of_a_partition_leader_during_produce(cluster, topic_name):
    create(cluster, topic_name)
    victim = cluster.partitions(topic_name)[0][0]
    with LoadGenerator(cluster, topic_name) as load:
        time.sleep(2)
        cluster.kill(victim)
        cluster.wait_until("a new leader of partition 0",
                           lambda: cluster.partitions(topic_name)[0][0] not in (-1, victim))
        time.sleep(2)
        cluster.restart(victim)
        cluster.wait_full_isr(topic_name)
        time.sleep(1)
    assert not load.errors, load.errors[:3]
    check_exactly_once_in_order(cluster, load)


def test_kill_of_the_active_controller(cluster, topic_name):
    create(cluster, topic_name)
    controller = cluster.controller()
    with LoadGenerator(cluster, topic_name) as load:
        time.sleep(1)
        cluster.kill(controller)
        cluster.wait_until("a new controller", lambda: cluster.controller() not in (-1, controller))
        # The new controller decides: a topic can be created and leaders move off the dead node.
        create(cluster, topic_name + "-after", rf=2)
        time.sleep(1)
        cluster.restart(controller)
        cluster.wait_full_isr(topic_name)
    check_exactly_once_in_order(cluster, load)


def test_rolling_restart_of_all_nodes_under_load(cluster, topic_name):
    create(cluster, topic_name)
    with LoadGenerator(cluster, topic_name) as load:
        for n in cluster.nodes:
            time.sleep(1)
            cluster.kill(n.id, signal.SIGTERM)
            time.sleep(1)
            cluster.restart(n.id)
            cluster.wait_full_isr(topic_name)
    assert not load.errors, load.errors[:3]
    check_exactly_once_in_order(cluster, load)
    # The last restart left its partitions led elsewhere; ElectLeaders brings them back.
    admin = cluster.admin()
    tps = [TopicPartition(topic_name, p) for p in range(3)]
    results = admin.elect_leaders(ElectionType.PREFERRED, tps).result(30)
    assert all(e is None or e.code() == KafkaError.ELECTION_NOT_NEEDED for e in results.values()), results
    # Every broker shows it once the change reaches its metadata (milliseconds).
    cluster.wait_until("preferred leaders everywhere", lambda: all(
        leader == replicas[0] for leader, replicas, _ in cluster.partitions(topic_name).values()), 10)


def test_a_follower_that_falls_behind_leaves_the_isr_and_catches_up(cluster, topic_name):
    create(cluster, topic_name, partitions=1)
    leader, replicas, _ = cluster.partitions(topic_name)[0]
    follower = next(r for r in replicas if r != leader)
    with LoadGenerator(cluster, topic_name) as load:
        time.sleep(1)
        cluster.kill(follower, signal.SIGSTOP)
        cluster.wait_until("the stopped follower to leave the ISR",
                           lambda: follower not in cluster.partitions(topic_name)[0][2])
        cluster.wait_until("the leader to report an under-replicated partition",
                           lambda: cluster.node(leader).metric("sluice_under_replicated_partitions") == 1)
        behind = load.total_acked()
        time.sleep(2)
        assert load.total_acked() > behind, "acks=all goes on with the remaining ISR"
        cluster.node(follower).proc.send_signal(signal.SIGCONT)
        cluster.wait_until("the follower to catch up and rejoin the ISR",
                           lambda: follower in cluster.partitions(topic_name)[0][2])
    check_exactly_once_in_order(cluster, load)
    # Its copy is complete: make it the only replica left and read from it.
    for n in cluster.nodes:
        if n.id != follower:
            cluster.kill(n.id, signal.SIGTERM)
    # With two of three voters down there is no controller to move leadership, so the
    # follower's copy is checked on disk through a restart of the others.
    for n in cluster.nodes:
        if n.id != follower:
            n.launch()
    for n in cluster.nodes:
        if n.id != follower:
            n.wait_ready()
    check_exactly_once_in_order(cluster, load)


def test_min_insync_replicas_refuses_acks_all_with_two_of_three_down(cluster, topic_name):
    create(cluster, topic_name, partitions=1, rf=3)
    leader, replicas, _ = cluster.partitions(topic_name)[0]
    p = KafkaProducer(bootstrap_servers=cluster.node(leader).bootstrap, acks="all", retries=0,
                      request_timeout_ms=8000)
    p.send(topic_name, b"before", partition=0).get(timeout=20)
    followers = [r for r in replicas if r != leader]
    # One follower down: the ISR shrinks to 2 = min.insync.replicas, produce still works.
    cluster.kill(followers[0])
    cluster.wait_until("the ISR to shrink", lambda: len(cluster.partitions(topic_name)[0][2]) == 2)
    p.send(topic_name, b"with two", partition=0).get(timeout=20)
    # Asking for three in-sync replicas when two are: NOT_ENOUGH_REPLICAS, nothing appended.
    set_min_insync(cluster, topic_name, 3)
    with pytest.raises(NotEnoughReplicasError):
        p.send(topic_name, b"needs three", partition=0).get(timeout=20)
    set_min_insync(cluster, topic_name, 2)
    # Two of three down: the controller quorum is gone with them, so the ISR cannot shrink;
    # the leader must not acknowledge on its own copy: acks=all fails (not enough replicas
    # or, as the ISR still names the dead follower, a timeout).
    cluster.kill(followers[1])
    for _ in range(3):
        with pytest.raises(Exception) as refused:
            p.send(topic_name, b"alone", partition=0).get(timeout=20)
        assert "NotEnoughReplicas" in repr(refused.value) or "Timeout" in repr(refused.value) \
            or "TimedOut" in repr(refused.value), refused.value
    p.close()
    for f in followers:
        cluster.node(f).launch()
    for f in followers:
        cluster.node(f).wait_ready()
    c = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": "chk", "auto.offset.reset": "earliest"})
    c.subscribe([topic_name])
    values, deadline = [], time.time() + 30
    while time.time() < deadline and len(values) < 2:
        m = c.poll(0.5)
        if m is not None and not m.error():
            values.append(m.value())
    c.close()
    assert values[:2] == [b"before", b"with two"], values


def test_a_consumer_group_whose_coordinator_dies(cluster, topic_name):
    create(cluster, topic_name)
    with LoadGenerator(cluster, topic_name) as load:
        time.sleep(2)
    group, killed = consume_while_the_coordinator_dies(cluster, topic_name, load, cluster.kill)
    # The group's committed offsets survived on the new coordinator: nothing is left to read.
    assert coordinator_of(cluster, group) != killed
    again = consume_group(cluster, topic_name, group, lambda s: False, timeout=8)
    assert again == [], f"{len(again)} records read again after the commits"


def test_a_whole_cluster_restart_keeps_topics_records_and_group_offsets(cluster, topic_name):
    create(cluster, topic_name)
    with LoadGenerator(cluster, topic_name) as load:
        time.sleep(1)
    group = "g-" + topic_name
    produced = {v for vs in load.acked.values() for v in vs}
    seen = consume_group(cluster, topic_name, group, lambda s: produced <= set(s))
    assert produced <= set(seen)
    before = cluster.admin().list_topics(topic_name, timeout=10).topics[topic_name]
    for n in cluster.nodes:
        cluster.kill(n.id, signal.SIGTERM)
    cluster.start()
    cluster.wait_full_isr(topic_name)
    after = cluster.admin().list_topics(topic_name, timeout=10).topics[topic_name]
    assert sorted(after.partitions) == sorted(before.partitions)
    check_exactly_once_in_order(cluster, load)
    again = consume_group(cluster, topic_name, group, lambda s: False, timeout=8)
    assert again == [], f"{len(again)} records read again: group offsets were lost"


def test_partition_reassignment_moves_replicas_and_leadership(cluster, topic_name):
    from kafka import KafkaAdminClient
    from kafka import TopicPartition as KTopicPartition
    create(cluster, topic_name, partitions=1, rf=1, **{"min.insync.replicas": "1"})
    old = cluster.partitions(topic_name)[0][1]
    target = [b for b in (1, 2, 3) if b not in old]
    admin = KafkaAdminClient(bootstrap_servers=cluster.bootstrap)
    try:
        with LoadGenerator(cluster, topic_name) as load:
            time.sleep(1)
            errors = admin.alter_partition_reassignments({KTopicPartition(topic_name, 0): target})
            assert all(e is None for e in errors.values()), errors
            cluster.wait_until("the partition to move to its new replicas",
                               lambda: cluster.partitions(topic_name)[0][1] == target
                               and sorted(cluster.partitions(topic_name)[0][2]) == sorted(target)
                               and cluster.partitions(topic_name)[0][0] in target)
            assert admin.list_partition_reassignments() == {}, "nothing left in progress"
            time.sleep(1)
        check_exactly_once_in_order(cluster, load)
        # Cancelling when nothing is in progress is refused with NO_REASSIGNMENT_IN_PROGRESS.
        errors = admin.alter_partition_reassignments({KTopicPartition(topic_name, 0): None})
        assert [e.errno for e in errors.values()] == [85], errors
    finally:
        admin.close()


def test_a_broker_outside_the_voters_follows_the_metadata_as_a_learner(topic_name):
    c = Cluster(n=4, voters=3).start()
    try:
        c.wait_until("four brokers", lambda: c.brokers() == [1, 2, 3, 4])
        create(c, topic_name, partitions=4, rf=4)
        learner = c.node(4)
        md = AdminClient({"bootstrap.servers": learner.bootstrap}).list_topics(topic_name, timeout=10)
        assert len(md.topics[topic_name].partitions) == 4, "the learner answers from the metadata"
        assert any(p[0] == 4 for p in c.partitions(topic_name).values()), "it leads partitions too"
        with LoadGenerator(c, topic_name) as load:
            time.sleep(1)
            c.kill(4)
            c.wait_until("no partition led by the learner",
                         lambda: all(p[0] != 4 for p in c.partitions(topic_name).values()))
            c.restart(4)
            c.wait_full_isr(topic_name, 4)
        check_exactly_once_in_order(c, load)
    finally:
        c.cleanup()


def test_a_topic_deleted_while_a_broker_was_down_leaves_its_disk_when_it_returns(cluster, topic_name):
    import os
    create(cluster, topic_name, partitions=1)
    away = cluster.nodes[2]
    log_dir = os.path.join(away.data, f"{topic_name}-0")
    assert os.path.isdir(log_dir)
    cluster.kill(away.id, signal.SIGTERM)
    # If the stopped node was the controller, the request may wait out an election: retry as
    # an operator would.
    def deleted():
        admin = cluster.admin()
        try:
            admin.delete_topics([topic_name])[topic_name].result(10)
        except Exception as e:
            return "UNKNOWN_TOPIC" in repr(e)
        return True
    cluster.wait_until("the topic to be deleted", deleted, 60)
    cluster.restart(away.id)
    cluster.wait_until("the stray log to be deleted", lambda: not os.path.exists(log_dir))


def test_delete_records_waits_for_every_live_replica(topic_name):
    # A frozen broker stays unfenced for 20 s, far longer than the request below takes.
    cluster = Cluster(**{"broker.session.timeout.ms": "20000"}).start()
    try:
        delete_records_waits_for_every_live_replica(cluster, topic_name)
    finally:
        cluster.cleanup()


def delete_records_waits_for_every_live_replica(cluster, topic_name):
    create(cluster, topic_name, partitions=1)
    cluster.wait_full_isr(topic_name)
    p = Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all"})
    for i in range(100):
        p.produce(topic_name, str(i).encode(), partition=0)
    assert p.flush(30) == 0
    leader, replicas, _ = cluster.partitions(topic_name)[0]
    frozen = next(r for r in replicas if r != leader)
    admin = cluster.admin()
    admin.list_topics(topic_name, timeout=10)  # connected and knowing the leader before the freeze
    tp = TopicPartition(topic_name, 0, 60)

    # A live (unfenced) follower that does not fetch cannot confirm: the request times out.
    cluster.kill(frozen, signal.SIGSTOP)
    try:
        with pytest.raises(KafkaException) as e:
            admin.delete_records([tp], operation_timeout=1, request_timeout=15)[tp].result(20)
        assert e.value.args[0].code() == KafkaError.REQUEST_TIMED_OUT, e.value
    finally:
        cluster.node(frozen).proc.send_signal(signal.SIGCONT)
    deleted = admin.delete_records([tp], operation_timeout=30, request_timeout=40)[tp].result(60)
    assert deleted.low_watermark == 60

    # Every replica moved its log start before the answer: a new leader has it too. (A clean
    # stop, so leadership moves without waiting out the long session timeout.)
    cluster.kill(leader, signal.SIGTERM)
    cluster.wait_until("a new leader", lambda: cluster.partitions(topic_name)[0][0] not in (-1, leader))
    c = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": f"{topic_name}-w"})
    try:
        assert cluster.wait_until(
            "the new leader's watermarks",
            lambda: c.get_watermark_offsets(TopicPartition(topic_name, 0), timeout=5)) == (60, 100)
    finally:
        c.close()


def test_an_unclean_election_on_request_brings_an_offline_partition_back(topic_name):
    from kafka import KafkaAdminClient
    from kafka import TopicPartition as KTopicPartition
    # The partition lives on the two brokers outside the quorum, so losing both keeps it.
    c = Cluster(n=5, voters=3).start()
    admin = None
    try:
        c.wait_until("five brokers", lambda: c.brokers() == [1, 2, 3, 4, 5])
        create(c, topic_name, partitions=1, rf=2, **{"min.insync.replicas": "1"})
        admin = KafkaAdminClient(bootstrap_servers=c.bootstrap)
        errors = admin.alter_partition_reassignments({KTopicPartition(topic_name, 0): [4, 5]})
        assert all(e is None for e in errors.values()), errors
        c.wait_until("the partition on brokers 4 and 5",
                     lambda: c.partitions(topic_name)[0][1] == [4, 5]
                     and sorted(c.partitions(topic_name)[0][2]) == [4, 5])
        leader = c.partitions(topic_name)[0][0]
        follower = 9 - leader
        tp = TopicPartition(topic_name, 0)
        cf = c.admin()

        # Not offline: no unclean election needed.
        [err] = cf.elect_leaders(ElectionType.UNCLEAN, [tp]).result(20).values()
        assert err is not None and err.code() == KafkaError.ELECTION_NOT_NEEDED, err

        # The follower dies and leaves the ISR; then the leader dies: offline, its ISR the
        # dead leader alone. The follower returns but, out of sync, may not lead by itself.
        c.kill(follower)
        c.wait_until("the ISR to shrink", lambda: c.partitions(topic_name)[0][2] == [leader])
        c.kill(leader)
        c.restart(follower)
        c.wait_until("the follower to be back", lambda: follower in c.brokers())
        c.wait_until("the partition offline", lambda: c.partitions(topic_name)[0][0] == -1)
        time.sleep(1)
        assert c.partitions(topic_name)[0][0] == -1, "no clean leader appeared"

        # Retried as an operator would while the admin client finds a live controller.
        c.wait_until("an unclean election",
                     lambda: cf.elect_leaders(ElectionType.UNCLEAN, [tp]).result(20) == {tp: None})
        # Every broker shows it once the change reaches its metadata (milliseconds).
        c.wait_until("the returned replica to lead, alone in the ISR",
                     lambda: c.partitions(topic_name)[0][0::2] == (follower, [follower]), 10)
        p = Producer({"bootstrap.servers": c.bootstrap, "acks": "all"})
        p.produce(topic_name, b"after", partition=0)
        assert p.flush(30) == 0, "the partition takes writes again"
    finally:
        if admin is not None:
            admin.close()
        c.cleanup()
