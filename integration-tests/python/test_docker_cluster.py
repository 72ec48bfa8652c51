"""Fault tests of the docker-compose cluster (three containers on a private Docker network,
each its own host): a network partition that isolates a leader, kill -9 of a leader, kill of
the active controller, a frozen (paused) follower, a rolling restart with controlled shutdowns
(its produce stall measured), a coordinator's death. Clients run on the host through the
published ports 19092/29092/39092, as a user would. The image is built from this repository
(the debug binary, to skip a release build); nothing is pulled.
"""
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from ack_timing import window_figures
from cluster import (ROOT, ClusterView, LoadGenerator, TimedLoadGenerator,
                     check_exactly_once_in_order, consume_while_the_coordinator_dies,
                     wait_cluster_in_sync)

PROJECT = "sluicetest"


def compose(*args, check=True):
    return subprocess.run(["docker-compose", "-p", PROJECT, *args], cwd=ROOT, check=check,
                          capture_output=True, text=True)


def docker(*args, check=True):
    return subprocess.run(["docker", *args], check=check, capture_output=True, text=True)


class DockerCluster(ClusterView):
    bootstrap = "localhost:19092,localhost:29092,localhost:39092"

    def container(self, node_id):
        # Names differ between docker-compose v1 and v2; the id does not.
        return compose("ps", "-q", f"sluice{node_id}").stdout.strip()

    @property
    def network(self):
        return f"{PROJECT}_default"


HOST_PORTS = (19092, 29092, 39092)


def reserve_host_ports():
    """39092 lies in Linux's ephemeral range: an outgoing connection of an earlier test may
    hold it when docker-compose publishes it. Reserving the three ports keeps the kernel from
    handing them out (root only; without it the collision is merely unlikely)."""
    path = "/proc/sys/net/ipv4/ip_local_reserved_ports"
    try:
        with open(path) as f:
            current = f.read().strip()
        wanted = ",".join(filter(None, [current] + [str(p) for p in HOST_PORTS]))
        with open(path, "w") as f:
            f.write(wanted)
    except OSError as e:
        print(f"could not reserve {HOST_PORTS}: {e}")


@pytest.fixture(scope="module")
def docker_cluster():
    reserve_host_ports()
    subprocess.run(["docker/build-context.sh"], cwd=ROOT, check=True, capture_output=True,
                   env={**os.environ, "SLUICE_PROFILE": "debug"})
    compose("down", "-v", check=False)
    compose("up", "-d", "--build")
    c = DockerCluster()
    try:
        c.wait_until("three brokers behind localhost:19092", lambda: c.brokers() == [1, 2, 3], 90)
        yield c
    finally:
        logs = compose("logs", "--no-color", check=False).stdout
        compose("down", "-v", check=False)
        path = os.path.join(tempfile.gettempdir(), f"{PROJECT}-compose.log")
        with open(path, "w") as f:
            f.write(logs)
        print(f"the containers' logs are in {path}")


def create(c, topic, partitions=3):
    # A node of the previous test may still be rejoining: wait until every broker sees it.
    for port in HOST_PORTS:
        node = ClusterView()
        node.bootstrap = f"localhost:{port}"
        c.wait_until(f"three live brokers as localhost:{port} sees them",
                     lambda: node.brokers() == [1, 2, 3], 90)
    c.create_topic(topic, partitions, 3, {"min.insync.replicas": "2"})


def test_compose_cluster_shows_three_brokers(docker_cluster):
    out = subprocess.run(["kcat", "-b", "localhost:19092", "-L"], capture_output=True, text=True,
                         check=True, timeout=30).stdout
    assert " 3 brokers:" in out, out
    for port in HOST_PORTS:
        assert f"localhost:{port}" in out


def test_network_partition_isolating_a_leader_then_heal(docker_cluster, topic_name):
    c = docker_cluster
    create(c, topic_name)
    leader = c.partitions(topic_name)[0][0]
    with LoadGenerator(c, topic_name) as load:
        time.sleep(2)
        docker("network", "disconnect", c.network, c.container(leader))
        try:
            c.wait_until("partition 0 to get a leader on the majority side",
                         lambda: c.partitions(topic_name)[0][0] not in (-1, leader), 60)
            time.sleep(3)
        finally:
            docker("network", "connect", c.network, c.container(leader))
        c.wait_full_isr(topic_name, timeout=90)
        time.sleep(1)
    check_exactly_once_in_order(c, load)


def test_kill_9_of_a_leader_container_then_restart(docker_cluster, topic_name):
    c = docker_cluster
    create(c, topic_name)
    leader = c.partitions(topic_name)[1][0]
    with LoadGenerator(c, topic_name) as load:
        time.sleep(2)
        docker("kill", "--signal", "KILL", c.container(leader))
        c.wait_until("partition 1 to get a new leader",
                     lambda: c.partitions(topic_name)[1][0] not in (-1, leader), 60)
        time.sleep(2)
        docker("start", c.container(leader))
        c.wait_full_isr(topic_name, timeout=90)
    assert not load.errors, load.errors[:3]
    check_exactly_once_in_order(c, load)


def test_a_paused_follower_falls_behind_and_catches_up(docker_cluster, topic_name):
    c = docker_cluster
    create(c, topic_name, partitions=1)
    leader, replicas, _ = c.partitions(topic_name)[0]
    follower = next(r for r in replicas if r != leader)
    with LoadGenerator(c, topic_name) as load:
        time.sleep(1)
        docker("pause", c.container(follower))
        try:
            c.wait_until("the paused follower to leave the ISR",
                         lambda: follower not in c.partitions(topic_name)[0][2], 60)
            time.sleep(2)
        finally:
            docker("unpause", c.container(follower))
        c.wait_until("the follower to rejoin the ISR",
                     lambda: follower in c.partitions(topic_name)[0][2], 90)
    check_exactly_once_in_order(c, load)


def test_kill_of_the_active_controller_container(docker_cluster, topic_name):
    c = docker_cluster
    create(c, topic_name)
    controller = c.controller()
    with LoadGenerator(c, topic_name) as load:
        time.sleep(1)
        docker("kill", "--signal", "KILL", c.container(controller))
        c.wait_until("a new controller", lambda: c.controller() not in (-1, controller), 60)
        time.sleep(1)
        docker("start", c.container(controller))
        c.wait_full_isr(topic_name, timeout=90)
    check_exactly_once_in_order(c, load)


def controlled_shutdowns(c, node):
    """How often the container of `node` logged each end of a controlled shutdown so far
    (its log spans every start of the container)."""
    out = docker("logs", c.container(node))
    logs = out.stdout + out.stderr
    return {"moved away": logs.count("controlled shutdown: leaderships moved away"),
            "no controller": logs.count("controlled shutdown: no controller"),
            "timed out": logs.count("controlled shutdown did not finish in time")}


# How long each broker stays down, as an upgrade or a long log recovery keeps it: past
# broker.session.timeout.ms (9 s by default), so the figures show whether a stopped broker
# holds up acks=all in the ISRs it stayed in until its lease ran out (issue 21, item 6)
# rather than only for as long as it was down.
DOWNTIME_S = float(os.environ.get("SLUICE_ROLLING_DOWNTIME_S", "12"))


def active_controller(c):
    """The active controller's id, or None while Metadata names none (-1)."""
    node = c.controller()
    return node if node in (1, 2, 3) else None


def stall_report_path():
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    return target / "rolling-restart.json"


def test_rolling_restart_with_controlled_shutdowns_under_acks_all_load_loses_nothing(
        docker_cluster, topic_name):
    """Kafka's rolling restart: each broker in turn gets SIGTERM (`docker stop`), which makes
    it hand its leaderships over through the controller before it exits; it is started again
    (after DOWNTIME_S) and the next one waits until every partition of the cluster is back
    in sync. An idempotent acks=all producer (RF 3, min.insync.replicas 2) writes
    throughout; every acknowledged record must be read back once, in order. How long
    acknowledgements stalled during each restart is measured and reported, never asserted
    on."""
    c = docker_cluster
    create(c, topic_name)
    windows = []
    with TimedLoadGenerator(c, topic_name) as load:
        wait_cluster_in_sync(c, [1, 2, 3])
        time.sleep(1)  # past the producer's first metadata and connections
        steady_start = time.monotonic()
        time.sleep(2)  # a steady state to compare the restarts with
        steady = (steady_start, time.monotonic())
        # The active controller last, as Kafka's operators roll a cluster: each other broker
        # is then stopped under a stable controller, and the controller's own restart (with
        # its election) is measured apart.
        controller = c.wait_until("an active controller", lambda: active_controller(c))
        for node in sorted({1, 2, 3} - {controller}) + [controller]:
            before = controlled_shutdowns(c, node)
            was_controller = c.controller() == node
            start = time.monotonic()
            # SIGTERM, then SIGKILL only after 30 s: the handover may take up to 10 s.
            docker("stop", "--time", "30", c.container(node))
            stopped = time.monotonic()
            exit_code = docker("inspect", "-f", "{{.State.ExitCode}}", c.container(node)).stdout
            after = controlled_shutdowns(c, node)
            time.sleep(max(0.0, DOWNTIME_S - (time.monotonic() - start)))
            docker("start", c.container(node))
            started = time.monotonic()
            wait_cluster_in_sync(c, [1, 2, 3])
            windows.append({"node": node, "was_controller": was_controller, "start": start,
                            "stop_s": round(stopped - start, 3),
                            "started_s": round(started - start, 3), "end": time.monotonic(),
                            "exit_code": exit_code.strip(),
                            "handover": {k: after[k] - before[k] for k in after}})
        time.sleep(1)
    # The figures first, so a failing run still leaves them.
    report_stalls(load, steady, windows, topic_name)
    assert not load.errors, load.errors[:3]
    check_exactly_once_in_order(c, load)
    for w in windows:
        # A clean exit after a completed handover: the SIGTERM path is a controlled shutdown.
        assert w["exit_code"] == "0", w
        assert w["handover"] == {"moved away": 1, "no controller": 0, "timed out": 0}, w


def report_stalls(load, steady, windows, topic_name):
    """Prints the stall figures of each restart and writes them to target/rolling-restart.json."""
    if not load.acks:
        print("no record was acknowledged: no stall figures")
        return
    first = min(t for t, _, _ in load.acks)
    report = {"topic": topic_name, "acked": load.total_acked(), "downtime_s": DOWNTIME_S,
              "steady": window_figures(load.acks, *steady), "restarts": []}
    for w in windows:
        figures = window_figures(load.acks, w["start"], w["end"])
        report["restarts"].append({"node": w["node"], "was_controller": w["was_controller"],
                                   "stop_s": w["stop_s"], "started_s": w["started_s"],
                                   "until_in_sync_s": round(w["end"] - w["start"], 3),
                                   **figures})
    report["whole_run"] = window_figures(load.acks, first, max(t for t, _, _ in load.acks))
    path = stall_report_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nproduce stall per controlled restart, each broker down {DOWNTIME_S} s "
          f"(written to {path}):")
    print(f"  steady state: p99 ack latency {report['steady']['p99_latency_s']} s, "
          f"longest gap {report['steady']['longest_gap_s']} s")
    for r in report["restarts"]:
        print(f"  broker {r['node']}{' (controller)' if r['was_controller'] else ''}: "
              f"longest gap between acks {r['longest_gap_s']} s "
              f"(from {r['longest_gap_from_s']} s after docker stop began) "
              f"(per partition {r['longest_gap_per_partition_s']}), "
              f"records sent meanwhile: p99 ack latency {r['p99_latency_s']} s, "
              f"max {r['max_latency_s']} s; "
              f"docker stop took {r['stop_s']} s, started again at {r['started_s']} s, "
              f"back in sync at {r['until_in_sync_s']} s")
    print(f"  whole run: {report['acked']} acked, p99 ack latency "
          f"{report['whole_run']['p99_latency_s']} s")


def test_a_consumer_group_whose_coordinator_container_dies(docker_cluster, topic_name):
    c = docker_cluster
    create(c, topic_name)
    with LoadGenerator(c, topic_name) as load:
        time.sleep(2)
    killed = []

    def kill(node):
        docker("kill", "--signal", "KILL", c.container(node))
        killed.append(node)

    try:
        consume_while_the_coordinator_dies(c, topic_name, load, kill)
    finally:
        for node in killed:
            docker("start", c.container(node))
    c.wait_until("three live brokers", lambda: c.brokers() == [1, 2, 3], 90)
