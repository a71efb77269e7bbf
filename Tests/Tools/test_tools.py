"""`hub tail`, `hub send` and `hub status` against a live hub: what they print and their exit codes."""

import asyncio
import json
import os
import re
import subprocess
import threading
from datetime import datetime, timezone

import pytest

from hub_device import DeviceClient
from livehub import LiveHub

HUB_BIN = os.environ.get("HUB_BIN")
pytestmark = pytest.mark.skipif(not HUB_BIN, reason="HUB_BIN is not set")


@pytest.fixture(scope="module")
def fleet():
    """A hub with one device online that answers `reboot` (echoing its params), fails
    `fail`, and never answers `hang`; and one registered device that stays offline."""
    hub = LiveHub(HUB_BIN)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    run = lambda coroutine: asyncio.run_coroutine_threadsafe(coroutine, loop).result(60)  # noqa: E731
    try:
        hub.start()
        online = DeviceClient(hub.url, "tool-1", hub.add_device("tool-1"))

        @online.command("reboot")
        def reboot(params):
            return params

        @online.command("fail")
        def fail(params):
            raise RuntimeError("asked to fail")

        @online.command("hang")
        async def hang(params):
            await asyncio.sleep(3600)

        run(online.start())
        assert run(online.wait_connected(30))
        run(online.send({"temp": 21.5}))
        assert run(online.wait_acked(timeout=30))
        hub.add_device("tool-offline")
        yield hub
        run(online.close(timeout=5))
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        hub.cleanup()


def tool(hub, *args, token=True, timeout=60):
    argv = [HUB_BIN, *args, "--url", hub.url] + (["--api-token", hub.api_token] if token is True else
                                                  (["--api-token", token] if token else []))
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def statuses(out):
    return [line.split()[1] for line in out.splitlines()]


def test_send_prints_each_change_and_exits_0_on_success(fleet):
    done = tool(fleet, "send", "tool-1", "reboot", "--params", '{"delay_s": 1}', "--wait", "20")
    assert done.returncode == 0, done.stdout + done.stderr
    seen = statuses(done.stdout)
    assert seen[0] == "queued" and seen[-1] == "succeeded", done.stdout
    assert set(seen) <= {"queued", "sent", "delivered", "succeeded"} and "sent" in seen, done.stdout
    assert 'result {"delay_s":1}' in done.stdout.splitlines()[-1]
    # The command is stored as the tool says.
    command_id = done.stdout.splitlines()[0].split("id ")[1].strip()
    status, answer = fleet.rest("GET", f"/api/v1/commands/{command_id}")
    assert status == 200 and answer["status"] == "succeeded" and answer["result"] == {"delay_s": 1}


def test_send_json_lines_are_the_hubs_messages(fleet):
    done = tool(fleet, "send", "tool-1", "reboot", "--json", "--wait", "20")
    assert done.returncode == 0, done.stderr
    messages = [json.loads(line) for line in done.stdout.splitlines()]
    assert all(m["type"] == "command_status" and m["device"] == "tool-1" for m in messages)
    assert messages[0]["status"] == "queued" and messages[-1]["status"] == "succeeded"


@pytest.mark.parametrize("args,code,last", [
    (["tool-1", "fail"], 1, "failed"),
    (["tool-1", "hang", "--ttl", "2", "--wait", "30"], 2, "timed_out"),
    (["tool-offline", "reboot", "--ttl", "1", "--wait", "30"], 2, "expired"),
    (["tool-offline", "reboot", "--wait", "1"], 4, "queued"),
])
def test_send_exit_code_per_final_state(fleet, args, code, last):
    done = tool(fleet, "send", *args)
    assert done.returncode == code, done.stdout + done.stderr
    assert statuses(done.stdout)[-1] == last, done.stdout


def test_send_refused_and_unreachable(fleet):
    done = tool(fleet, "send", "nobody", "reboot", "--wait", "5")
    assert done.returncode == 5 and "not_found" in done.stderr, done.stdout + done.stderr
    done = tool(fleet, "send", "tool-1", "reboot", "--params", "[1]")
    assert done.returncode == 64 and "--params must be a JSON object" in done.stderr  # usage
    done = subprocess.run([HUB_BIN, "send", "tool-1", "reboot", "--url", "http://127.0.0.1:1", "--api-token", "x" * 32],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 6, done.stdout + done.stderr


def test_status_summarises_the_fleet(fleet):
    done = tool(fleet, "status", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads(done.stdout)
    assert summary["ready"] is True and summary["readiness"] == "ready"
    assert summary["devices"] == 2 and summary["devices_online"] == 1 and summary["device_connections"] == 1
    assert summary["frames_accepted"] >= 1 and summary["readings_accepted"] >= 1
    assert summary["queue_capacity"] == 200_000
    status, fleet_summary = fleet.rest("GET", "/api/v1/summary")
    assert status == 200
    for key in ("readings_per_s", "rejected_last_hour", "commands_pending"):
        assert isinstance(summary[key], (int, float)) and summary[key] >= 0, summary
    assert summary["commands_pending"] == fleet_summary["commands_pending"]
    text = tool(fleet, "status")
    assert text.returncode == 0
    assert any(line.split()[:2] == ["devices", "2"] for line in text.stdout.splitlines()), text.stdout


def test_status_exit_codes(fleet):
    done = tool(fleet, "status", token="y" * 32)
    assert done.returncode == 5, done.stdout + done.stderr
    done = subprocess.run([HUB_BIN, "status", "--url", "http://127.0.0.1:1", "--api-token", "x" * 32],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 6, done.stdout + done.stderr


TAIL_FRAMES = 400  # each with temp (a number), door (a boolean) and state (a string)


def reading_values(n):
    return {"temp": n + 0.25, "door": n % 3 == 0, "state": f"s{n}"}


@pytest.fixture(scope="module")
def tailed(fleet):
    """Device tail-1 with its first half of TAIL_FRAMES frames stored; `stream_rest` sends
    the second half."""
    token = fleet.add_device("tail-1")
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    run = lambda coroutine: asyncio.run_coroutine_threadsafe(coroutine, loop).result(120)  # noqa: E731
    device = DeviceClient(fleet.url, "tail-1", token)

    async def send(first, last):
        for n in range(first, last + 1):
            await device.send(reading_values(n))
            if n % 25 == 0:
                await asyncio.sleep(0.02)  # a stream, not one burst
        assert await device.wait_acked(timeout=60)

    run(device.start())
    assert run(device.wait_connected(30))
    run(send(1, TAIL_FRAMES // 2))
    try:
        yield lambda: run(send(TAIL_FRAMES // 2 + 1, TAIL_FRAMES))
    finally:
        run(device.close(timeout=5))
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def test_tail_replays_then_follows_live_with_no_gap_or_repeat(fleet, tailed):
    argv = [HUB_BIN, "tail", "tail-*", "--since", "1h", "--json", "--count", str(3 * TAIL_FRAMES),
            "--url", fleet.url, "--api-token", fleet.api_token]
    tail = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        tailed()  # the second half while the tool replays the first
        out, err = tail.communicate(timeout=60)
    finally:
        tail.kill()
    assert tail.returncode == 0, err
    readings = [json.loads(line) for line in out.splitlines()]
    assert len(readings) == 3 * TAIL_FRAMES, err
    assert "replay done" in err
    for metric in ("temp", "door", "state"):
        seqs = [r["seq"] for r in readings if r["metric"] == metric]
        assert seqs == list(range(1, TAIL_FRAMES + 1)), f"{metric}: not every seq once, in order"
    for r in readings:
        assert r["device"] == "tail-1" and set(r) == {"device", "seq", "metric", "ts_us", "value"}
        assert r["value"] == reading_values(r["seq"])[r["metric"]], r
    # What the tool printed is what the hub stored.
    status, stored = fleet.rest("GET", "/api/v1/devices/tail-1/telemetry?metric=temp&limit=1")
    first = next(r for r in readings if r["metric"] == "temp")
    assert status == 200 and (stored[0]["seq"], stored[0]["ts_us"]) == (first["seq"], first["ts_us"])


def test_tail_text_is_aligned_and_filtered(fleet, tailed):
    done = tool(fleet, "tail", "tail-1", "--since", "1h", "--metric", "temp", "--metric", "state", "--count", "6")
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 6, done.stdout
    pattern = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6})Z  tail-1 +(\d+)  (temp|state) +(\S.*)$")
    parsed = [pattern.match(line) for line in lines]
    assert all(parsed), done.stdout
    assert len({line.index("temp") if "temp" in line else line.index("state") for line in lines}) == 1, "columns not aligned"
    # Every seq's two filtered readings (in either order), and nothing else.
    assert sorted((int(m[2]), m[3], m[4]) for m in parsed) == [
        (n, metric, value) for n in (1, 2, 3) for metric, value in (("state", f'"s{n}"'), ("temp", f"{n}.25"))]
    status, stored = fleet.rest("GET", "/api/v1/devices/tail-1/telemetry?metric=temp&limit=1")
    stamp = datetime.strptime(next(m for m in parsed if m[3] == "temp")[1], "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=timezone.utc)
    assert round(stamp.timestamp() * 1e6) == stored[0]["ts_us"]


def test_tail_duration_ends_with_0(fleet, tailed):
    done = tool(fleet, "tail", "tool-offline", "--duration", "1")
    assert done.returncode == 0 and done.stdout == "", done.stdout + done.stderr


def test_tail_exit_codes(fleet):
    done = tool(fleet, "tail", "bad pattern!", "--duration", "10")
    assert done.returncode == 5 and "hub: " in done.stderr, done.stdout + done.stderr
    done = tool(fleet, "tail", "--duration", "10", token="y" * 32)
    assert done.returncode == 5 and "refused the token" in done.stderr, done.stdout + done.stderr
    done = tool(fleet, "tail", "--since", "yesterday")
    assert done.returncode == 64 and "--since must look like" in done.stderr
    done = subprocess.run([HUB_BIN, "tail", "--url", "http://127.0.0.1:1", "--api-token", "x" * 32],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 6, done.stdout + done.stderr
