"""Fault tests against the real hub binary ($HUB_BIN) and a real PostgreSQL.

Reuses the Python device kit's `livehub.LiveHub` (devices/python/tests/livehub.py) and
`hub_device.DeviceClient`; `pgcluster.PgCluster` (beside this file) is a throwaway cluster
that a test can stop and start under the hub.
"""

import logging
import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "devices", "python", "tests"))  # livehub

_COUNTS = []


def pytest_report_header(config):
    if not os.environ.get("HUB_BIN"):
        return ("!!! HUB_BIN is not set: the fault tests against the real hub binary will be SKIPPED. "
                "Set HUB_BIN=/path/to/hub to run them.")
    return f"fault tests use HUB_BIN={os.environ['HUB_BIN']}"


@pytest.fixture
def counts(request):
    """``counts(sent=…, stored=…, duplicates=…, lost=…, **more)``: prints one summary line
    and repeats it in the terminal summary ("fault-test counts"). Call it before asserting,
    so a failing test still shows its counts."""

    def record(**fields):
        line = f"{request.node.name}: " + " ".join(f"{key}={value}" for key, value in fields.items())
        print(f"\nCOUNTS {line}", flush=True)
        _COUNTS.append(line)

    return record


def pytest_terminal_summary(terminalreporter):
    if _COUNTS:
        terminalreporter.section("fault-test counts")
        for line in _COUNTS:
            terminalreporter.write_line(line)


# The device kit logs every lost connection at WARNING; here they are the point of the
# tests and would bury the summary. The hub's own logs come with any failure.
logging.getLogger("hub_device").setLevel(logging.ERROR)
