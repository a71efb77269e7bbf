import os


def pytest_report_header(config):
    if not os.environ.get("HUB_BIN"):
        return ("!!! HUB_BIN is not set: the live tests against the real hub binary will be SKIPPED. "
                "Set HUB_BIN=/path/to/hub to run them.")
    return f"live tests use HUB_BIN={os.environ['HUB_BIN']}"
