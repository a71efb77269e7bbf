"""The alert rules in docs/prometheus under promtool, and Debian's `prometheus` scraping a
live hub: its series read back through the Prometheus HTTP API, the rules loaded, and an
alert going pending when the hub stops."""

import asyncio
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.parse
import urllib.request

import pytest

from hub_device import DeviceClient
from livehub import LiveHub, free_port

HUB_BIN = os.environ.get("HUB_BIN")
DOCS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "docs", "prometheus")
ALERTS = os.path.join(DOCS, "alerts.yml")
ALERT_NAMES = {"HubDown", "HubNotReady", "HubDatabaseWritesFailing", "HubIngestStalled", "HubIngestQueueNearBound",
               "HubRejectedFrameStorm", "HubCommandsTimingOut", "HubDashboardsLagging"}


def tool(name):
    path = shutil.which(name)
    assert path, f"{name} is not installed (Debian package prometheus)"
    return path


def test_the_rules_are_valid():
    run = subprocess.run([tool("promtool"), "check", "rules", ALERTS], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"SUCCESS: {len(ALERT_NAMES)} rules found" in run.stdout


def test_every_alert_has_cases_and_they_pass():
    tests = open(os.path.join(DOCS, "alerts.test.yml")).read()
    for name in ALERT_NAMES:
        assert f"alertname: {name}" in tests, f"no promtool case for {name}"
    run = subprocess.run([tool("promtool"), "test", "rules", "alerts.test.yml"], cwd=DOCS, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_the_example_configuration_is_valid():
    run = subprocess.run([tool("promtool"), "check", "config", os.path.join(DOCS, "prometheus.yml")],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


class Prometheus:
    """Debian's prometheus in a throwaway folder, scraping one target every second."""

    def __init__(self, target):
        self.root = tempfile.mkdtemp(prefix="hub-prom-")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = os.path.join(self.root, "prometheus.yml")
        with open(config, "w") as f:
            f.write(f"""global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - {ALERTS}
scrape_configs:
  - job_name: hub
    static_configs:
      - targets: ["{target}"]
""")
        self.log = open(os.path.join(self.root, "prometheus.log"), "wb")
        self.proc = subprocess.Popen(
            [tool("prometheus"), f"--config.file={config}", f"--storage.tsdb.path={self.root}/data",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def api(self, path, **params):
        url = f"{self.url}/api/v1/{path}" + ("?" + urllib.parse.urlencode(params) if params else "")
        with urllib.request.urlopen(url, timeout=5) as answer:
            body = json.load(answer)
        assert body["status"] == "success", body
        return body["data"]

    def value(self, query):
        """The query's single sample as a float, or None while it has none."""
        result = self.api("query", query=query)["result"]
        assert len(result) <= 1, result
        return float(result[0]["value"][1]) if result else None

    def eventually(self, what, check, timeout=60):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                last = check()
                if last:
                    return last
            except (OSError, ValueError) as error:  # not listening yet
                last = error
            time.sleep(0.5)
        self.log.flush()
        raise AssertionError(f"{what}: last saw {last!r}\n" + open(self.log.name, errors="replace").read()[-3000:])

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.root, ignore_errors=True)


def request(hub, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(hub.url + path, data=data, method=method,
                                 headers={"Authorization": f"Bearer {hub.api_token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as answer:
        return answer.status, json.load(answer)


@pytest.mark.skipif(not HUB_BIN, reason="HUB_BIN is not set")
def test_prometheus_reads_a_live_hub():
    hub = LiveHub(HUB_BIN)
    prometheus = None
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        hub.start()
        prometheus = Prometheus(f"127.0.0.1:{hub.port}")
        prometheus.eventually("the hub scraped", lambda: prometheus.value('up{job="hub"}') == 1)
        prometheus.eventually("the hub ready", lambda: prometheus.value('hub_ready{job="hub"}') == 1)
        assert prometheus.value('hub_ingest_queue_capacity{job="hub"}') == 200_000  # the default --queue-rows
        rules = {rule["name"] for group in prometheus.api("rules")["groups"] for rule in group["rules"]}
        assert rules == ALERT_NAMES

        # A device streams 5 frames of 3 readings; a command for an offline device expires.
        status, answer = request(hub, "POST", "/api/v1/devices", {"id": "prom-1"})
        assert status == 201, answer
        client = DeviceClient(hub.url, "prom-1", answer["token"])
        run = lambda coroutine: asyncio.run_coroutine_threadsafe(coroutine, loop).result(60)  # noqa: E731
        run(client.start())
        assert run(client.wait_connected(30))
        for i in range(5):
            run(client.send({"temp": 20.0 + i, "rpm": i, "ok": True}))
        assert run(client.wait_acked(timeout=30))
        status, _ = request(hub, "POST", "/api/v1/devices", {"id": "prom-offline"})
        assert status == 201
        status, _ = request(hub, "POST", "/api/v1/devices/prom-offline/commands", {"name": "reboot", "ttl_s": 1})
        assert status == 202
        prometheus.eventually("frames counted", lambda: prometheus.value('hub_frames_accepted_total{job="hub"}') == 5)
        assert prometheus.value('hub_readings_accepted_total{job="hub"}') == 15
        prometheus.eventually("a device online", lambda: prometheus.value('hub_devices_connected{job="hub"}') == 1)
        prometheus.eventually("committed batches", lambda: (prometheus.value('hub_ingest_batch_rows_sum{job="hub"}') or 0) >= 15)
        prometheus.eventually("the command expired",
                              lambda: prometheus.value('hub_commands_total{job="hub",status="expired"}') == 1)
        run(client.close(timeout=5))
        prometheus.eventually("the device offline", lambda: prometheus.value('hub_devices_connected{job="hub"}') == 0)
        assert prometheus.api("alerts")["alerts"] == []

        # The hub stops: its target goes down and HubDown is pending (it fires after 1 minute).
        hub.stop()
        prometheus.eventually("the target down", lambda: prometheus.value('up{job="hub"}') == 0)
        pending = prometheus.eventually(
            "HubDown pending", lambda: [a for a in prometheus.api("alerts")["alerts"] if a["labels"]["alertname"] == "HubDown"])
        assert pending[0]["state"] == "pending", pending
        assert pending[0]["labels"]["instance"] == f"127.0.0.1:{hub.port}"
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        if prometheus:
            prometheus.stop()
        hub.cleanup()
