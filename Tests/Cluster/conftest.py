"""Cluster tests: several real `hub serve --cluster` processes ($HUB_BIN) on loopback ports,
one `nats-server` and one PostgreSQL, all throwaway.

Reuses the device kit's `livehub.LiveHub` (devices/python/tests/livehub.py) and the fault
tests' `pgcluster.PgCluster` (Tests/Faults/pgcluster.py).
"""

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "devices", "python", "tests"))  # livehub
sys.path.insert(0, os.path.join(HERE, "..", "Faults"))  # pgcluster

from livehub import LiveHub, free_port  # noqa: E402
from pgcluster import PgCluster  # noqa: E402

HUB_BIN = os.environ.get("HUB_BIN")

_COUNTS = []


def pytest_report_header(config):
    if not HUB_BIN:
        return "!!! HUB_BIN is not set: the cluster tests will FAIL. Set HUB_BIN=/path/to/hub."
    return f"cluster tests use HUB_BIN={HUB_BIN}"


@pytest.fixture
def counts(request):
    """``counts(**fields)``: prints one COUNTS line and repeats it in the terminal summary
    ("cluster-test counts"). Call it before asserting, so a failing test shows its counts."""

    def record(**fields):
        line = f"{request.node.name}: " + " ".join(f"{key}={value}" for key, value in fields.items())
        print(f"\nCOUNTS {line}", flush=True)
        _COUNTS.append(line)

    return record


def pytest_terminal_summary(terminalreporter):
    if _COUNTS:
        terminalreporter.section("cluster-test counts")
        for line in _COUNTS:
            terminalreporter.write_line(line)


# The device kit logs every lost connection at WARNING; losing connections is the point of
# the fault tests here and would bury the summary.
logging.getLogger("hub_device").setLevel(logging.ERROR)


def wait_for_port(port, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


class NatsServer:
    """A throwaway `nats-server` on a free loopback port; `stop()`/`start()` keep the port."""

    def __init__(self):
        binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
        if not os.path.exists(binary):
            raise RuntimeError("nats-server is not installed (apt-get install nats-server); the cluster tests need it")
        self.binary = binary
        self.port = free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.log = tempfile.NamedTemporaryFile(prefix="nats-", suffix=".log", delete=False).name
        self.proc = None
        self.start()

    def start(self):
        self.proc = subprocess.Popen([self.binary, "-a", "127.0.0.1", "-p", str(self.port), "-l", self.log],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port)

    def stop(self):
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


@pytest.fixture
def nats():
    server = NatsServer()
    try:
        yield server
    finally:
        server.stop()
        os.unlink(server.log)


@pytest.fixture
def database():
    pg = PgCluster()
    try:
        yield pg
    finally:
        pg.cleanup()


@pytest.fixture
def nodes(nats, database):
    """``nodes.start(n, **flags)``: n started hub nodes (LiveHub) of one cluster; extra
    flags per node as ``{node index: [flags]}`` in ``per_node``."""
    assert HUB_BIN, "HUB_BIN must name the hub binary"
    made = []

    class Factory:
        @staticmethod
        def start(count, per_node=None):
            started = []
            for n in range(1, count + 1):
                args = ["--cluster", nats.url, "--node-id", f"node{n}", "--database-url", database.url]
                hub = LiveHub(HUB_BIN, args + (per_node or {}).get(n, []))
                made.append(hub)
                hub.start()
                started.append(hub)
            return started

    try:
        yield Factory
    finally:
        for hub in reversed(made):
            if hub.proc is not None:
                try:
                    hub.proc.send_signal(signal.SIGCONT)
                except ProcessLookupError:
                    pass
            hub.cleanup()
