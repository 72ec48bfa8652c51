"""A three-node Sluice cluster of local processes, and the checks every fault test ends with.

Every node is a voter of the metadata quorum and a broker. Ports are picked below the
ephemeral range, so a restarted node's port cannot meanwhile be taken by an outgoing
connection.
"""
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from conftest import ROOT, sluice_bin  # noqa: F401 (ROOT is re-exported for the docker tests)

# Faster than Kafka's defaults so a fault test takes seconds, not minutes.
FAST = {
    "broker.session.timeout.ms": "3000",
    "broker.heartbeat.interval.ms": "300",
    "replica.lag.time.max.ms": "4000",
    "replica.fetch.backoff.ms": "200",
    "group.initial.rebalance.delay.ms": "0",
    "offsets.topic.num.partitions": "6",
    "num.partitions": "3",
    "default.replication.factor": "3",
}


# Ports handed out in this process. A node binds its ports only when it starts, so without this
# two nodes of one cluster could draw the same free port.
_issued = set()


def free_port():
    while True:
        port = random.randrange(20000, 32000)
        if port in _issued:
            continue
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
            _issued.add(port)
            return port
        except OSError:
            continue
        finally:
            s.close()


class Node:
    def __init__(self, node_id, voters, overrides):
        self.id = node_id
        self.port = free_port()
        self.raft_port = free_port()
        self.metrics_port = free_port()
        self.data = tempfile.mkdtemp(prefix=f"sluice-node{node_id}-")
        self.voters = voters
        self.overrides = overrides
        self.proc = None
        self.log = None

    @property
    def bootstrap(self):
        return f"127.0.0.1:{self.port}"

    def launch(self):
        args = [sluice_bin(), "broker", "--node-id", str(self.id),
                "--listeners", f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.raft_port}",
                "--log-dirs", self.data,
                "--override", f"controller.quorum.voters={self.voters()}",
                "--override", f"sluice.metrics.listener=127.0.0.1:{self.metrics_port}"]
        for k, v in self.overrides.items():
            args += ["--override", f"{k}={v}"]
        self.log = open(os.path.join(self.data, "broker.log"), "ab")
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self.log)

    def wait_ready(self, timeout=30):
        line = self.proc.stdout.readline().decode()
        if "listening on" not in line:
            raise RuntimeError(f"node {self.id} did not start: {line!r}; log in {self.data}/broker.log")

    def metric(self, name):
        """The value of an unlabelled metric from this node's /metrics endpoint."""
        import urllib.request
        text = urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).read()
        for line in text.decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if self.alive():
            self.proc.send_signal(sig)
            if sig != signal.SIGSTOP:
                self.proc.wait(timeout=timeout)
        if self.log and sig not in (signal.SIGSTOP,):
            self.log.close()
            self.log = None


class ClusterView:
    """What a test sees of a cluster through Kafka clients."""

    bootstrap = ""

    def admin(self):
        return AdminClient({"bootstrap.servers": self.bootstrap})

    def partitions(self, topic):
        """{partition: (leader, replicas, isrs)} as the cluster reports it."""
        md = self.admin().list_topics(topic, timeout=10).topics[topic]
        return {p.id: (p.leader, list(p.replicas), list(p.isrs)) for p in md.partitions.values()}

    def controller(self):
        return self.admin().list_topics(timeout=10).controller_id

    def brokers(self):
        return sorted(self.admin().list_topics(timeout=10).brokers)

    def wait_until(self, what, check, timeout=40):
        deadline = time.time() + timeout
        last = None
        while time.time() < deadline:
            try:
                last = check()
                if last:
                    return last
            except Exception as e:  # the cluster may be between leaders
                last = e
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}; last: {last!r}")

    def create_topic(self, topic, partitions, rf, config, timeout=60):
        """Creates `topic`, retrying while the controller is moving (as an operator would:
        the request may time out during an election), then waits for a full ISR."""
        from confluent_kafka import KafkaError, KafkaException
        from confluent_kafka.admin import NewTopic
        deadline = time.time() + timeout
        retried = False
        while True:
            admin = self.admin()
            try:
                admin.create_topics([NewTopic(topic, partitions, rf, config=config)])[topic].result(30)
                break
            except KafkaException as e:
                err = e.args[0]
                if retried and err.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                    break
                if not err.retriable() and err.code() not in (KafkaError.REQUEST_TIMED_OUT,
                                                              KafkaError.NOT_CONTROLLER):
                    raise
                if time.time() > deadline:
                    raise
            except TimeoutError:
                if time.time() > deadline:
                    raise
            retried = True
            time.sleep(1)
        self.wait_full_isr(topic, rf)

    def wait_full_isr(self, topic, size=3, timeout=40):
        return self.wait_until(
            f"every partition of {topic} to have {size} in-sync replicas",
            lambda: all(len(isr) == size and leader >= 0
                        for leader, _, isr in self.partitions(topic).values()),
            timeout)


class Cluster(ClusterView):
    def __init__(self, n=3, voters=None, **overrides):
        """`n` nodes; the first `voters` (default: all) vote in the metadata quorum."""
        self.nodes = []
        self.voter_count = voters or n
        settings = dict(FAST)
        settings.update(overrides)
        for i in range(1, n + 1):
            self.nodes.append(Node(i, self.voters, settings))

    def voters(self):
        return ",".join(f"{n.id}@127.0.0.1:{n.raft_port}" for n in self.nodes[:self.voter_count])

    def node(self, node_id):
        return next(n for n in self.nodes if n.id == node_id)

    @property
    def bootstrap(self):
        return ",".join(n.bootstrap for n in self.nodes)

    def start(self):
        # A node serves only once a quorum formed, so all launch before any is awaited.
        for n in self.nodes:
            n.launch()
        for n in self.nodes:
            n.wait_ready()
        return self

    def restart(self, node_id):
        n = self.node(node_id)
        n.launch()
        n.wait_ready()

    def kill(self, node_id, sig=signal.SIGKILL):
        self.node(node_id).stop(sig)

    def cleanup(self):
        for n in self.nodes:
            if n.alive():
                n.proc.send_signal(signal.SIGCONT)
                n.proc.kill()
                n.proc.wait()
            if os.environ.get("KEEP_CLUSTER_DATA"):
                print(f"node {n.id} data and log kept in {n.data}")
            else:
                shutil.rmtree(n.data, ignore_errors=True)


class LoadGenerator:
    """Produces increasing integers with an idempotent acks=all producer until stopped,
    remembering which were acknowledged, per partition, in acknowledgement order."""

    def __init__(self, cluster, topic, **config):
        conf = {"bootstrap.servers": cluster.bootstrap, "acks": "all", "enable.idempotence": True,
                "linger.ms": 2, "message.timeout.ms": 120000, "reconnect.backoff.max.ms": 200,
                "topic.metadata.refresh.interval.ms": 1000}
        conf.update(config)
        self.producer = Producer(conf)
        self.topic = topic
        self.acked = {}
        self.errors = []
        self.stop_flag = threading.Event()
        self.sent = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _on_delivery(self, err, msg):
        if err is None:
            self.acked.setdefault(msg.partition(), []).append(int(msg.value()))
        else:
            self.errors.append(err)

    def _run(self):
        i = 0
        while not self.stop_flag.is_set():
            try:
                self.producer.produce(self.topic, value=str(i).encode(), key=str(i % 97).encode(),
                                      on_delivery=self._on_delivery)
                i += 1
            except BufferError:
                pass
            self.producer.poll(0)
            time.sleep(0.001)
        self.sent = i

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self):
        if not self.stop_flag.is_set():
            self.stop_flag.set()
            self.thread.join()
            remaining = self.producer.flush(120)
            assert remaining == 0, f"{remaining} records were never acknowledged or failed"

    def total_acked(self):
        return sum(len(v) for v in self.acked.values())


def read_partition(cluster, topic, partition, timeout=60):
    """Every record of one partition, from the beginning to its current end."""
    c = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": f"check-{time.time()}",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    try:
        _, high = c.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
        c.assign([TopicPartition(topic, partition, 0)])
        out, deadline = [], time.time() + timeout
        position = 0
        while position < high and time.time() < deadline:
            m = c.poll(0.5)
            if m is None or m.error():
                continue
            out.append(int(m.value()))
            position = m.offset() + 1
        assert position >= high, f"read {position} of {high} records of {topic}-{partition}"
        return out
    finally:
        c.close()


def check_exactly_once_in_order(cluster, load, settle=15):
    """Every acknowledged record is in the log exactly once, in acknowledgement order.

    Right after a leader change the new leader's high watermark may trail the old one's
    until its followers fetch again (as in Kafka), so records not yet visible are looked for
    again for up to `settle` seconds; a record lost for good stays missing."""
    assert load.total_acked() > 0, "nothing was acknowledged"
    for partition, acked in load.acked.items():
        deadline = time.time() + settle
        while True:
            got = read_partition(cluster, load.topic, partition)
            missing = set(acked) - set(got)
            if not missing or time.time() > deadline:
                break
            time.sleep(0.5)
        assert len(got) == len(set(got)), f"duplicates in partition {partition}"
        assert not missing, f"partition {partition} lost acknowledged records {sorted(missing)[:10]}"
        where = {v: i for i, v in enumerate(got)}
        positions = [where[v] for v in acked]
        assert positions == sorted(positions), f"partition {partition} is out of order"


def consume_group(cluster, topic, group, until, timeout=90, on_poll=None):
    """Consumes with group `group` (committing after each record) until `until(seen)`."""
    c = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": group,
                  "auto.offset.reset": "earliest", "enable.auto.commit": False,
                  "session.timeout.ms": 6000, "heartbeat.interval.ms": 500,
                  "topic.metadata.refresh.interval.ms": 1000})
    c.subscribe([topic])
    seen, deadline = [], time.time() + timeout
    try:
        while time.time() < deadline and not until(seen):
            if on_poll:
                on_poll(seen)
            m = c.poll(0.2)
            if m is None or m.error():
                continue
            seen.append(int(m.value()))
            try:
                c.commit(message=m, asynchronous=False)
            except Exception:  # the coordinator may be moving; the next commit covers it
                pass
    finally:
        c.close()
    return seen


def coordinator_of(cluster, group):
    admin = cluster.admin()
    d = admin.describe_consumer_groups([group])[group].result(20)
    return d.coordinator.id


def consume_while_the_coordinator_dies(cluster, topic, load, kill):
    """Consumes every record `load` acknowledged with a new group (committing as it goes),
    calling `kill(coordinator id)` a third of the way through. Returns (group, the killed
    coordinator's id)."""
    produced = {v for vs in load.acked.values() for v in vs}
    group = "g-" + topic
    killed = []

    def kill_coordinator_once(seen):
        if not killed and len(seen) > len(produced) // 3:
            victim = coordinator_of(cluster, group)
            kill(victim)
            killed.append(victim)

    seen = consume_group(cluster, topic, group, lambda s: produced <= set(s),
                         on_poll=kill_coordinator_once)
    assert killed, "the coordinator was killed mid-way"
    assert produced <= set(seen), f"missed {len(produced - set(seen))} records"
    return group, killed[0]


class TimedLoadGenerator(LoadGenerator):
    """A LoadGenerator that also remembers when each record was acknowledged (monotonic
    seconds) and its latency from produce() to the acknowledgement, for stall figures."""

    def __init__(self, cluster, topic, **config):
        super().__init__(cluster, topic, **config)
        self.acks = []  # (ack time, partition, latency in seconds or None)

    def _on_delivery(self, err, msg):
        super()._on_delivery(err, msg)
        if err is None:
            self.acks.append((time.monotonic(), msg.partition(), msg.latency()))


def out_of_sync_partitions(view):
    """Every partition, of every topic, without a leader or whose ISR is not all its
    replicas, as (topic, partition, leader, replicas, isr)."""
    md = view.admin().list_topics(timeout=10)
    out = []
    for name, t in sorted(md.topics.items()):
        if t.error is not None:
            out.append((name, None, None, None, str(t.error)))
            continue
        for p in sorted(t.partitions.values(), key=lambda p: p.id):
            if p.leader < 0 or sorted(p.isrs) != sorted(p.replicas):
                out.append((name, p.id, p.leader, list(p.replicas), list(p.isrs)))
    return out


def wait_cluster_in_sync(view, brokers, timeout=90):
    """Waits until `brokers` are all registered and every partition of every topic has a
    leader and all its replicas in sync, as an operator waits between two restarts."""
    def in_sync():
        # Raised rather than returned, so a timeout names what was still lagging.
        live = view.brokers()
        if live != sorted(brokers):
            raise AssertionError(f"live brokers {live}")
        lagging = out_of_sync_partitions(view)
        if lagging:
            raise AssertionError(f"not in sync: {lagging[:5]}")
        return True

    return view.wait_until(f"brokers {sorted(brokers)} up and every ISR full", in_sync, timeout)
