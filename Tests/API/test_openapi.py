"""The REST API against its OpenAPI document, on the real hub binary ($HUB_BIN).

The document is `Sources/HubTransport/REST/openapi.json` (shipped in the binary, served at
`GET /api/v1/openapi.json`; `docs/openapi.json` links to it).

1. The symlink, and the served document is the file.
2. The rules the document can only state in prose (JSON Schema cannot say them), each
   checked with one request: nesting depth, U+0000, the byte length of a command name,
   params size, `agg` without `bucket_s`, `from_us` after `to_us`, the 64-bit time range.
3. A read-only token gets 403 on every call that changes something.
4. schemathesis (Tests/API/requirements.txt) with every check it has, against a hub with
   a connected device that has stored telemetry and answers commands. Any finding fails.

Skipped only when HUB_BIN is unset; a HUB_BIN that does not work fails. The schemathesis
run takes under a minute; `API_FUZZ_EXAMPLES` (per operation, default 100),
`API_FUZZ_SEED` (default fixed, `random` for a new one each run) and `API_FUZZ_ARGS`
(more schemathesis options, e.g. `--continue-on-failure`) change it. When it finds
something, its reports (JUnit, and a HAR of every request and answer) stay in the
folder the test prints.
"""

import asyncio
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

import pytest

from hub_device import DeviceClient, Reading
from livehub import LiveHub

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
DOCUMENT = os.path.join(ROOT, "Sources", "HubTransport", "REST", "openapi.json")
DOCS_LINK = os.path.join(ROOT, "docs", "openapi.json")
CONFIG = os.path.join(HERE, "schemathesis.toml")

HUB_BIN = os.environ.get("HUB_BIN")
needs_hub = pytest.mark.skipif(
    not HUB_BIN,
    reason="!!! HUB_BIN is not set: SKIPPING the API tests against the real hub binary. "
           "Run them with HUB_BIN=/path/to/hub (e.g. a copy of .build/debug/hub) !!!")

LIVE_DEVICE = "api-live-1"  # named in schemathesis.toml too
IDLE_DEVICE = "api-idle-1"
EXAMPLE_DEVICE = "sensor-1"  # the document's example id, which schemathesis's examples phase uses
READ_TOKEN = "api-test-read-only-token"

EXAMPLES = int(os.environ.get("API_FUZZ_EXAMPLES", "100"))
SEED = os.environ.get("API_FUZZ_SEED", "20261201")
END_OF_TIME_US = 253402300800000000
INT64_MIN, INT64_MAX = -(2 ** 63), 2 ** 63 - 1


# ---------------------------------------------------------------------------- helpers


class OnlineDevice:
    """A device kit client on an event loop of its own thread: connected while the tests
    run, and answering commands (`reboot` echoes its params, `fail` fails, anything else
    is `unsupported`)."""

    def __init__(self, url, device_id, token):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=f"device-{device_id}", daemon=True)
        self.client = DeviceClient(url, device_id, token)

        @self.client.command("reboot")
        def reboot(params):
            return params

        @self.client.command("fail")
        def fail(params):
            raise RuntimeError("asked to fail")

    def run(self, coroutine, timeout=60):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def start(self):
        self.thread.start()
        self.run(self.client.start())
        assert self.run(self.client.wait_connected(30)), "the device did not connect"

    def stop(self):
        try:
            self.run(self.client.close(timeout=5), timeout=30)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)


def request(hub, method, path, body=None, token=None, raw=None):
    """One call: (status, parsed JSON or None, headers). `raw` sends bytes as they are."""
    data = raw if raw is not None else None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if token is not False:
        headers["Authorization"] = f"Bearer {token or hub.api_token}"
    call = urllib.request.Request(hub.url + path, method=method, data=data, headers=headers)
    try:
        with urllib.request.urlopen(call, timeout=30) as answer:
            text = answer.read()
            return answer.status, json.loads(text) if text else None, answer.headers
    except urllib.error.HTTPError as error:
        text = error.read()
        return error.code, json.loads(text) if text else None, error.headers


def nested(levels):
    """An object nested `levels` deep, itself included: nested(1) == {}."""
    value = {}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


def load_document():
    with open(DOCUMENT, encoding="utf-8") as f:
        return json.load(f)


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def hub():
    if not HUB_BIN:
        pytest.skip("HUB_BIN is not set")
    previous = os.environ.get("HUB_READ_TOKEN")
    os.environ["HUB_READ_TOKEN"] = READ_TOKEN  # LiveHub's child inherits it (--read-token)
    hub = LiveHub(HUB_BIN)
    try:
        hub.start()
        yield hub
    finally:
        hub.cleanup()
        if previous is None:
            os.environ.pop("HUB_READ_TOKEN", None)
        else:
            os.environ["HUB_READ_TOKEN"] = previous


@pytest.fixture(scope="module")
def fleet(hub):
    """Registers the devices, stores telemetry of every kind for the live one, and leaves
    commands in several states."""
    tokens = {}
    for device, labels in ((LIVE_DEVICE, {"site": "lab", "kind": "live"}), (IDLE_DEVICE, {"site": "lab"}),
                           (EXAMPLE_DEVICE, {"site": "a"})):
        status, answer, _ = request(hub, "POST", "/api/v1/devices", {"id": device, "labels": labels})
        assert status == 201, (status, answer)
        tokens[device] = answer["token"]

    device = OnlineDevice(hub.url, LIVE_DEVICE, tokens[LIVE_DEVICE])
    device.start()
    try:
        send = lambda readings, base_time=None: device.run(device.client.send(readings, base_time))  # noqa: E731
        send({"temp": 21.5, "rpm": 1200, "door.open": True, "fw": "1.4.2"})
        send({"temp": 22.0, "rpm": -7, "door.open": False, "note": "a string only"})
        # A bucket whose sum leaves the f64 range: null for sum and avg.
        send([Reading("big", 1.7e308), Reading("big", 1.7e308, offset_us=1)], 1_700_000_000_000_000)
        send([Reading("ibig", INT64_MAX, type="i64"), Reading("ineg", INT64_MIN, type="i64")], 1_700_000_000_000_000)
        send([Reading("early", 1.0)], 1)  # the first microsecond after the epoch
        send([Reading("late", 2.0)], END_OF_TIME_US - 1)  # the last one of year 9999
        send([Reading("tiny", 5e-324), Reading("zero", -0.0)])
        assert device.run(device.client.wait_acked(timeout=30)), "telemetry not acked"

        for name, params in (("reboot", {"delay_s": 1, "why": "test", "nested": [1, 2.5, None, {"x": True}]}),
                             ("fail", {}), ("unknown-name", {})):
            status, answer, _ = request(hub, "POST", f"/api/v1/devices/{LIVE_DEVICE}/commands",
                                        {"name": name, "params": params, "wait_s": 10})
            assert status == 200, (name, status, answer)
        for ttl in (1, 300):  # the first expires, the second stays queued
            status, answer, _ = request(hub, "POST", f"/api/v1/devices/{IDLE_DEVICE}/commands",
                                        {"name": "reboot", "ttl_s": ttl})
            assert status == 202, (status, answer)
        yield tokens
    finally:
        device.stop()


# ---------------------------------------------------------------------------- the document


def test_docs_link_to_the_shipped_document():
    assert os.path.islink(DOCS_LINK)
    assert os.readlink(DOCS_LINK) == "../Sources/HubTransport/REST/openapi.json"
    assert os.path.realpath(DOCS_LINK) == os.path.realpath(DOCUMENT)
    assert load_document()["openapi"] == "3.1.0"


@needs_hub
def test_the_hub_serves_the_document_without_a_token(hub):
    try:
        with urllib.request.urlopen(hub.url + "/api/v1/openapi.json", timeout=10) as answer:
            content_type = answer.headers["Content-Type"]
            served = json.loads(answer.read())
    except urllib.error.HTTPError as error:
        pytest.fail(f"GET /api/v1/openapi.json without a token answered {error.code}: {error.read()[:300]!r}")
    assert content_type.split(";")[0].strip() == "application/json"
    assert served == load_document()


# ---------------------------------------------------------------------------- rules in prose

RULES = [
    # (what, method, path, body, expected status)
    ("a member may nest 32 levels", "POST", "/commands", {"name": "x", "params": nested(32)}, 202),
    ("33 levels are refused", "POST", "/commands", {"name": "x", "params": nested(33)}, 400),
    ("33 levels are refused in a member the route ignores too", "POST", "/commands",
     {"name": "x", "extra": [nested(32)]}, 400),
    ("U+0000 in a params string", "POST", "/commands", {"name": "x", "params": {"a": "b\u0000"}}, 400),
    ("U+0000 in a params member name", "POST", "/commands", {"name": "x", "params": {"\u0000": 1}}, 400),
    ("U+0000 in a command name", "POST", "/commands", {"name": "re\u0000boot"}, 400),
    ("U+0000 in a label value", "POST", "", {"id": "api-rules-nul", "labels": {"a": "\u0000"}}, 400),
    ("U+0000 in a label name", "PATCH", "/device", {"labels": {"\u0000": "a"}}, 400),
    ("a name of 64 bytes (32 characters)", "POST", "/commands", {"name": "é" * 32}, 202),
    ("a name of 66 bytes (33 characters)", "POST", "/commands", {"name": "é" * 33}, 400),
    ("params of 16,384 bytes as JSON", "POST", "/commands", {"name": "x", "params": {"a": "x" * 16376}}, 202),
    ("params over 16,384 bytes as JSON", "POST", "/commands", {"name": "x", "params": {"a": "x" * 16377}}, 400),
    ("a boolean is not a ttl_s", "POST", "/commands", {"name": "x", "ttl_s": True}, 400),
    ("a boolean is not a wait_s", "POST", "/commands", {"name": "x", "wait_s": False}, 400),
    ("agg needs bucket_s", "GET", "/telemetry?agg=avg", None, 400),
    ("from_us after to_us", "GET", "/telemetry?from_us=5&to_us=4", None, 400),
    ("any 64-bit from_us and to_us", "GET", f"/telemetry?from_us={INT64_MIN}&to_us={INT64_MAX}", None, 200),
    ("any 64-bit range in buckets", "GET", f"/telemetry?from_us={INT64_MIN}&to_us={INT64_MAX}&bucket_s=60&agg=sum",
     None, 200),
    ("to_us before the epoch", "GET", f"/telemetry?to_us={INT64_MIN}", None, 200),
    ("the widest bucket", "GET", f"/telemetry?bucket_s={END_OF_TIME_US // 1000000}&from_us=0", None, 200),
    ("a bucket wider than that", "GET", f"/telemetry?bucket_s={END_OF_TIME_US // 1000000 + 1}", None, 400),
    ("U+0000 in the query", "GET", "/telemetry?metric=temp%00", None, 400),
    ("a bad escape in the query", "GET", "/telemetry?metric=%zz", None, 400),
]


@needs_hub
@pytest.mark.parametrize("what,method,path,body,expected", RULES, ids=[rule[0] for rule in RULES])
def test_a_rule_the_document_states_in_prose(hub, fleet, what, method, path, body, expected):
    device = "api-rules-1"
    request(hub, "POST", "/api/v1/devices", {"id": device})  # 201, or 409 after the first
    if path == "":
        full = "/api/v1/devices"
    elif path == "/device":
        full = f"/api/v1/devices/{device}"
    elif path.startswith("/telemetry"):
        full = f"/api/v1/devices/{LIVE_DEVICE}{path}"
    else:
        full = f"/api/v1/devices/{device}{path}"
    status, answer, _ = request(hub, method, full, body)
    assert status == expected, f"{method} {full}: {status} {str(answer)[:300]}"
    if expected == 400:
        assert answer["error"]["code"] == "bad_request", answer


@needs_hub
def test_a_read_only_token_changes_nothing(hub, fleet):
    changes = [
        ("POST", "/api/v1/devices", {"id": "api-read-only"}),
        ("PATCH", f"/api/v1/devices/{IDLE_DEVICE}", {"enabled": False}),
        ("DELETE", f"/api/v1/devices/{IDLE_DEVICE}", None),
        ("POST", f"/api/v1/devices/{IDLE_DEVICE}/token", None),
        ("POST", f"/api/v1/devices/{IDLE_DEVICE}/commands", {"name": "reboot"}),
        ("DELETE", "/api/v1/commands/00000000-0000-0000-0000-000000000000", None),
        ("PATCH", "/api/v1/devices/no-such-device", {}),  # before anything about the resource
    ]
    for method, path, body in changes:
        status, answer, _ = request(hub, method, path, body, token=READ_TOKEN)
        assert (status, answer["error"]["code"]) == (403, "forbidden"), (method, path, status, answer)
    status, answer, _ = request(hub, "GET", f"/api/v1/devices/{IDLE_DEVICE}", token=READ_TOKEN)
    assert status == 200 and answer["enabled"] is True, answer


# ---------------------------------------------------------------------------- schemathesis


def schemathesis_command(hub, report_dir):
    seed = [] if SEED == "random" else ["--seed", SEED]
    return [
        sys.executable, "-m", "schemathesis.cli", "--config-file", CONFIG, "--no-color",
        "run", DOCUMENT,
        "--url", hub.url,
        "--header", f"Authorization: Bearer {hub.api_token}",
        "--max-examples", str(EXAMPLES),
        *seed,
        "--workers", "1",  # two threads trip CPython 3.11's gh-106905 (ast.parse from hypothesis)
        "--request-timeout", "20",
        "--rate-limit", "auto",  # a 429 with Retry-After (failed-authentication limit) is waited out
        "--generation-database", "none",
        "--report", "junit,har", "--report-dir", report_dir,
        *shlex.split(os.environ.get("API_FUZZ_ARGS", "")),
    ]


@needs_hub
def test_schemathesis_finds_nothing(hub, fleet):
    report_dir = tempfile.mkdtemp(prefix="hub-schemathesis-")
    command = schemathesis_command(hub, report_dir)
    environment = dict(os.environ, SCHEMATHESIS_HOOKS="schemathesis_hooks",
                       PYTHONPATH=os.pathsep.join(filter(None, [HERE, os.environ.get("PYTHONPATH")])))
    started = time.monotonic()
    done = subprocess.run(command, cwd=report_dir, env=environment, capture_output=True, text=True, timeout=600)
    output = done.stdout + done.stderr
    shown = " ".join(part if not part.startswith("Authorization:") else "'Authorization: Bearer …'" for part in command)
    print(f"\n{shown}\n(exit {done.returncode} after {time.monotonic() - started:.0f} s, reports in {report_dir})")
    print(output[-6000:])
    assert done.returncode == 0, f"schemathesis found problems (exit {done.returncode}):\n{output[-30000:]}\n{hub.logs()}"
    shutil.rmtree(report_dir, ignore_errors=True)  # kept when something was found
