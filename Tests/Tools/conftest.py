"""Terminal tools: hub send and hub status against the real hub ($HUB_BIN).

Reuses the Python device kit's `livehub.LiveHub` (devices/python/tests/livehub.py) and
`hub_device.DeviceClient`.
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "devices", "python", "tests"))  # livehub


def pytest_report_header(config):
    if not os.environ.get("HUB_BIN"):
        return ("!!! HUB_BIN is not set: the API tests against the real hub binary will be SKIPPED. "
                "Set HUB_BIN=/path/to/hub to run them.")
    return f"Terminal-tool tests use HUB_BIN={os.environ['HUB_BIN']}"
