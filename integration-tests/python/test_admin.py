"""Configs, DeleteRecords, cluster and log-dir description with real admin clients."""
from confluent_kafka import KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, ConfigSource,
                                   NewTopic)

from test_clients import consume_all


def test_describe_configs_lists_every_topic_config_with_source(broker, topic_name):
    a = AdminClient({"bootstrap.servers": broker.bootstrap})
    a.create_topics([NewTopic(topic_name, 1, 1, config={"retention.ms": "3600000"})])[topic_name].result(10)
    res = ConfigResource(ConfigResource.Type.TOPIC, topic_name)
    configs = a.describe_configs([res])[res].result(10)
    assert len(configs) >= 10, "every config, not an empty list"
    assert configs["retention.ms"].value == "3600000"
    assert configs["retention.ms"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert configs["cleanup.policy"].value == "delete" and configs["cleanup.policy"].is_default
    assert configs["max.message.bytes"].value == "1048588"


def test_incremental_and_legacy_alter_configs(broker, topic_name):
    a = AdminClient({"bootstrap.servers": broker.bootstrap})
    a.create_topics([NewTopic(topic_name, 1, 1)])[topic_name].result(10)
    res = ConfigResource(ConfigResource.Type.TOPIC, topic_name, incremental_configs=[
        ConfigEntry("max.message.bytes", "2000", incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("cleanup.policy", "compact", incremental_operation=AlterConfigOpType.APPEND)])
    a.incremental_alter_configs([res])[res].result(10)
    d = ConfigResource(ConfigResource.Type.TOPIC, topic_name)
    configs = a.describe_configs([d])[d].result(10)
    assert configs["max.message.bytes"].value == "2000"
    assert configs["cleanup.policy"].value == "compact,delete"
    # max.message.bytes is enforced per topic at once.
    p = Producer({"bootstrap.servers": broker.bootstrap})
    errs = []
    p.produce(topic_name, key=b"k", value=b"x" * 5000, on_delivery=lambda e, m: errs.append(e))
    p.flush(10)
    assert errs[0] is not None and errs[0].name() == "MSG_SIZE_TOO_LARGE"
    bad = ConfigResource(ConfigResource.Type.TOPIC, topic_name, incremental_configs=[
        ConfigEntry("retention.ms", "soon", incremental_operation=AlterConfigOpType.SET)])
    try:
        a.incremental_alter_configs([bad])[bad].result(10)
        raise AssertionError("a bad value must be refused")
    except KafkaException as e:
        assert e.args[0].name() == "INVALID_CONFIG"


def test_delete_records_moves_the_low_watermark(broker, topic_name):
    p = Producer({"bootstrap.servers": broker.bootstrap})
    for i in range(10):
        p.produce(topic_name, value=f"{i}")
        p.flush(10)
    a = AdminClient({"bootstrap.servers": broker.bootstrap})
    tp = TopicPartition(topic_name, 0, 6)
    out = a.delete_records([tp])[tp].result(10)
    assert out.low_watermark == 6
    assert [m.offset() for m in consume_all(broker, topic_name, offset=6)] == [6, 7, 8, 9]


def test_describe_cluster_and_kafka_python_describe_configs(broker, topic_name):
    a = AdminClient({"bootstrap.servers": broker.bootstrap})
    c = a.describe_cluster().result(10)
    assert [n.id for n in c.nodes] == [1] and c.controller.id == 1
    from kafka.admin import ConfigResource as KCR, ConfigResourceType, KafkaAdminClient, NewTopic as KNT
    ka = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    ka.create_topics([KNT(topic_name, 2, 1)])
    assert len(ka.describe_topics([topic_name])[0]["partitions"]) == 2
    resp = ka.describe_configs([KCR(ConfigResourceType.TOPIC, topic_name)], config_filter="all")
    text = str(resp)
    assert "retention.ms" in text and "segment.bytes" in text
    ka.close()


def test_metrics_and_health_endpoints(broker, topic_name):
    import urllib.request
    p = Producer({"bootstrap.servers": broker.bootstrap})
    p.produce(topic_name, value=b"m")
    p.flush(10)
    base = f"http://127.0.0.1:{broker.metrics_port}"
    assert urllib.request.urlopen(base + "/health", timeout=5).read() == b"ok\n"
    text = urllib.request.urlopen(base + "/metrics", timeout=5).read().decode()
    assert 'sluice_requests_total{api="Produce"}' in text
    assert "sluice_request_duration_seconds" in text and "sluice_bytes_in_total" in text
    assert "sluice_active_connections" in text and "sluice_produce_bytes_total" in text


def test_manual_replica_assignment_with_confluent_kafka_and_kafka_python(broker, topic_name):
    from kafka import KafkaAdminClient
    from kafka.admin import NewPartitions as KpNewPartitions, NewTopic as KpNewTopic
    from kafka.errors import InvalidReplicationAssignmentError

    a = AdminClient({"bootstrap.servers": broker.bootstrap})
    a.create_topics([NewTopic(topic_name, num_partitions=2, replica_assignment=[[1], [1]])])[topic_name].result(10)
    md = a.list_topics(topic_name, timeout=10).topics[topic_name]
    assert sorted(md.partitions) == [0, 1]
    assert all(p.replicas == [1] and p.leader == 1 for p in md.partitions.values())
    bad = topic_name + "-bad"
    try:
        a.create_topics([NewTopic(bad, num_partitions=1, replica_assignment=[[1, 7]])])[bad].result(10)
        raise AssertionError("an unregistered broker must be refused")
    except KafkaException as e:
        assert e.args[0].name() == "INVALID_REPLICA_ASSIGNMENT"
    assert bad not in a.list_topics(timeout=10).topics

    kp = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        kp.create_partitions({topic_name: KpNewPartitions(4, [[1], [1]])})
        other = topic_name + "-kp"
        kp.create_topics([KpNewTopic(other, -1, -1, replica_assignments={0: [1], 1: [1], 2: [1]})])
        md = a.list_topics(timeout=10).topics
        assert len(md[topic_name].partitions) == 4
        assert len(md[other].partitions) == 3
        try:
            kp.create_partitions({topic_name: KpNewPartitions(6, [[1]])})
            raise AssertionError("one assignment for two new partitions must be refused")
        except InvalidReplicationAssignmentError:
            pass
    finally:
        kp.close()


def test_timestamp_bounds_refuse_records_with_invalid_timestamp(broker, topic_name):
    import time
    a = AdminClient({"bootstrap.servers": broker.bootstrap})
    a.create_topics([NewTopic(topic_name, 1, 1, config={
        "message.timestamp.before.max.ms": "3600000",
        "message.timestamp.after.max.ms": "60000"})])[topic_name].result(10)
    res = ConfigResource(ConfigResource.Type.TOPIC, topic_name)
    configs = a.describe_configs([res])[res].result(10)
    assert configs["message.timestamp.before.max.ms"].value == "3600000"
    assert configs["max.compaction.lag.ms"].value == str(2**63 - 1)
    assert configs["min.cleanable.dirty.ratio"].value == "0.5"
    now = int(time.time() * 1000)
    p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0})
    results = {}
    for name, ts in [("now", now), ("day-old", now - 86_400_000), ("future", now + 600_000)]:
        p.produce(topic_name, key=name.encode(), value=b"v", timestamp=ts,
                  on_delivery=lambda e, m, name=name: results.__setitem__(name, e))
        p.flush(10)
    assert results["now"] is None
    assert results["day-old"] is not None and results["day-old"].name() == "INVALID_TIMESTAMP"
    assert results["future"] is not None and results["future"].name() == "INVALID_TIMESTAMP"
    records = consume_all(broker, topic_name)
    assert [m.key() for m in records] == [b"now"], "nothing of the refused records was written"
