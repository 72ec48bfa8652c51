"""Fault tests of the docker-compose cluster (three containers on a private Docker network,
each its own host): a network partition that isolates a leader, kill -9 of a leader, kill of
the active controller, a frozen (paused) follower, a rolling restart, a coordinator's death. Clients run on the host through the published ports 19092/29092/39092,
as a user would. The image is built from this repository (the debug binary, to skip a
release build); nothing is pulled.
"""
import os
import subprocess
import tempfile
import time

import pytest

from cluster import (ROOT, ClusterView, LoadGenerator, check_exactly_once_in_order,
                     consume_while_the_coordinator_dies)

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


def test_rolling_restart_of_the_containers_under_load(docker_cluster, topic_name):
    c = docker_cluster
    create(c, topic_name)
    with LoadGenerator(c, topic_name) as load:
        for node in (1, 2, 3):
            time.sleep(1)
            docker("restart", "--time", "30", c.container(node))
            c.wait_full_isr(topic_name, timeout=90)
    assert not load.errors, load.errors[:3]
    check_exactly_once_in_order(c, load)


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
