"""Hostile-input tests against the real hub binary ($HUB_BIN) and a real PostgreSQL.

Reuses the Python device kit's `livehub.LiveHub` (devices/python/tests/livehub.py), the
fault tests' `pgcluster.PgCluster` (Tests/Faults/pgcluster.py) and `hub_device`. Every test
prints one `HOSTILE` line (input, answer, the hub's RSS before and after), repeated under
"hostile-input figures" at the end of the run.
"""

import logging
import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "devices", "python", "tests"))  # livehub
sys.path.insert(0, os.path.join(HERE, "..", "Faults"))  # pgcluster
sys.path.insert(0, HERE)  # hostile_kit

_FIGURES = []


def pytest_report_header(config):
    if not os.environ.get("HUB_BIN"):
        return ("!!! HUB_BIN is not set: the hostile-input tests against the real hub binary will be SKIPPED. "
                "Set HUB_BIN=/path/to/hub to run them.")
    return f"hostile-input tests use HUB_BIN={os.environ['HUB_BIN']}"


def _kib(value):
    return f"{value}KiB" if isinstance(value, int) else "n/a"


@pytest.fixture
def figures(request):
    """``figures(input=…, answer=…, rss_before=KiB, rss_after=KiB)``: prints one line
    ``HOSTILE <test>: input=… answer=… rss_before=…KiB rss_after=…KiB`` and repeats it in the
    terminal summary. Call it before asserting, so a failing test still shows its figures."""

    def record(input, answer, rss_before=None, rss_after=None):
        line = (f"{request.node.name}: input={input} answer={answer} "
                f"rss_before={_kib(rss_before)} rss_after={_kib(rss_after)}")
        print(f"\nHOSTILE {line}", flush=True)
        _FIGURES.append(line)

    return record


def pytest_terminal_summary(terminalreporter):
    if _FIGURES:
        terminalreporter.section("hostile-input figures")
        for line in _FIGURES:
            terminalreporter.write_line(line)


# The device kit logs every lost connection at WARNING; here they are expected.
logging.getLogger("hub_device").setLevel(logging.ERROR)
