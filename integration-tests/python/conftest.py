"""Starts real `sluice` brokers for the third-party-client tests.

The binary comes from SLUICE_BIN, or target/debug/sluice under CARGO_TARGET_DIR or the
workspace. Each broker gets a free port and its own data directory.
"""
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def sluice_bin() -> str:
    if os.environ.get("SLUICE_BIN"):
        return os.environ["SLUICE_BIN"]
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    return str(target / "debug" / "sluice")


class Broker:
    """One `sluice broker` process."""

    def __init__(self, overrides=None):
        self.data = tempfile.mkdtemp(prefix="sluice-it-")
        self.overrides = dict(overrides or {})
        self.port = None
        self.ports = {}
        self.metrics_port = None
        self.proc = None
        self.log = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def address(self, listener: str) -> str:
        """host:port of the named listener (given in the `listeners` override)."""
        return f"127.0.0.1:{self.ports[listener]}"

    def start(self):
        port = self.port or 0
        args = [sluice_bin(), "broker", "--listeners", f"PLAINTEXT://127.0.0.1:{port}",
                "--log-dirs", self.data, "--node-id", "1"]
        if self.metrics_port is None:
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            self.metrics_port = s.getsockname()[1]
            s.close()
        args += ["--override", f"sluice.metrics.listener=127.0.0.1:{self.metrics_port}"]
        for k, v in self.overrides.items():
            args += ["--override", f"{k}={v}"]
        self.log = open(os.path.join(self.data, "broker.log"), "ab")
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self.log)
        line = self.proc.stdout.readline().decode()
        m = re.search(r"listening on .*:(\d+)", line)
        if not m:
            raise RuntimeError(f"broker did not start: {line!r}; log in {self.data}/broker.log")
        self.port = int(m.group(1))
        # Then one line per Kafka listener: "sluice listener NAME on HOST:PORT".
        listeners = self.overrides.get("listeners", "PLAINTEXT://")
        for _ in [l for l in listeners.split(",") if l.strip() and not l.strip().startswith("CONTROLLER:")]:
            m = re.search(r"listener (\S+) on .*:(\d+)", self.proc.stdout.readline().decode())
            if m:
                self.ports[m.group(1)] = int(m.group(2))
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("broker port never accepted connections")

    def stop(self, sig=signal.SIGTERM, timeout=20):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=timeout)
        if self.log:
            self.log.close()
        return self.proc.returncode if self.proc else None

    def kill9(self):
        return self.stop(signal.SIGKILL)

    def restart(self):
        self.stop()
        return self.start()

    def cleanup(self):
        self.stop(signal.SIGKILL)
        shutil.rmtree(self.data, ignore_errors=True)


@pytest.fixture
def broker_factory():
    made = []

    def make(**overrides):
        b = Broker(overrides).start()
        made.append(b)
        return b

    yield make
    for b in made:
        b.cleanup()


@pytest.fixture(scope="module")
def broker():
    b = Broker({"group.initial.rebalance.delay.ms": "0"} if os.environ.get("SLUICE_GROUPS") else {}).start()
    yield b
    b.cleanup()


_counter = [0]


@pytest.fixture
def topic_name(request):
    _counter[0] += 1
    safe = re.sub(r"[^A-Za-z0-9._-]", "-", request.node.name)[:150]
    return f"t{_counter[0]}-{safe}"


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    """A test PKI from scripts/make-test-certs.sh: ca, server, client, other-ca, other-client."""
    d = tmp_path_factory.mktemp("pki")
    subprocess.run(["bash", str(ROOT / "scripts" / "make-test-certs.sh"), str(d)], check=True)
    return d
