"""The REST calls a fleet's page needs, against the real hub: the device list paged and
filtered, a device's rejected frames, and the fleet summary. What a user sees: statuses,
bodies, and rows in PostgreSQL."""

import asyncio
import json
import os
import threading
import time

import pytest
from websockets.asyncio.client import connect

from hub_device import DeviceClient
from livehub import LiveHub

HUB_BIN = os.environ.get("HUB_BIN")
pytestmark = pytest.mark.skipif(not HUB_BIN, reason="HUB_BIN is not set")

PAGED = [f"pg-{n:02}" for n in range(25)]


@pytest.fixture(scope="module")
def fleet():
    """25 devices pg-00…pg-24 (labels site a or b), three of them online and streaming."""
    hub = LiveHub(HUB_BIN)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    run = lambda coroutine: asyncio.run_coroutine_threadsafe(coroutine, loop).result(60)  # noqa: E731
    clients = []
    try:
        hub.start()
        tokens = {}
        for n, device in enumerate(PAGED):
            status, body = hub.rest("POST", "/api/v1/devices", {"id": device, "labels": {"site": "ab"[n % 2]}})
            assert status == 201, body
            tokens[device] = body["token"]
        for device in PAGED[:3]:
            client = DeviceClient(hub.url, device, tokens[device])
            run(client.start())
            assert run(client.wait_connected(30))
            clients.append(client)
        hub.tokens = tokens
        hub.run = run
        hub.clients = clients
        yield hub
    finally:
        for client in clients:
            run(client.close(timeout=5))
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        hub.cleanup()


def ids(answer):
    return [device["id"] for device in answer]


def test_the_list_pages_with_limit_and_after_in_id_order(fleet):
    seen, after = [], None
    while True:
        status, page = fleet.rest("GET", "/api/v1/devices?prefix=pg-&limit=10" + (f"&after={after}" if after else ""))
        assert status == 200, page
        assert len(page) <= 10
        if not page:
            break
        seen += ids(page)
        after = page[-1]["id"]
    assert seen == PAGED  # every device once, in order
    status, everything = fleet.rest("GET", "/api/v1/devices?prefix=pg-")
    assert status == 200 and ids(everything) == PAGED  # no limit: all, as before


def test_the_list_filters_by_label_and_online_state(fleet):
    status, site_b = fleet.rest("GET", "/api/v1/devices?prefix=pg-&label=site:b")
    assert status == 200 and ids(site_b) == PAGED[1::2]
    status, none = fleet.rest("GET", "/api/v1/devices?label=site:c")
    assert status == 200 and none == []
    status, online = fleet.rest("GET", "/api/v1/devices?prefix=pg-&online=true")
    assert status == 200 and ids(online) == PAGED[:3]
    # The limit counts online devices, not rows read: two, not fewer.
    status, two = fleet.rest("GET", "/api/v1/devices?prefix=pg-&online=true&limit=2")
    assert status == 200 and ids(two) == PAGED[:2]
    status, offline = fleet.rest("GET", "/api/v1/devices?prefix=pg-&online=false&limit=5&after=pg-10")
    assert status == 200 and ids(offline) == PAGED[11:16]
    status, both = fleet.rest("GET", "/api/v1/devices?prefix=pg-&online=true&label=site:a")
    assert status == 200 and ids(both) == ["pg-00", "pg-02"]


@pytest.mark.parametrize("query", ["limit=0", "limit=1001", "limit=ten", "label=site", "label=:a", "online=maybe"])
def test_bad_list_parameters_get_400(fleet, query):
    status, body = fleet.rest("GET", f"/api/v1/devices?{query}")
    assert status == 400 and body["error"]["code"] == "bad_request", body


def test_a_devices_rejected_frames_newest_first(fleet):
    device = "pg-20"

    async def send_bad_frames():
        async with connect(fleet.url.replace("http://", "ws://") + f"/devices/{device}",
                           additional_headers={"Authorization": f"Bearer {fleet.tokens[device]}"}) as ws:
            welcome = json.loads(await ws.recv())
            assert welcome["type"] == "welcome"
            answers = []
            # Too short to carry a seq, then a frame with seq 7 and trailing garbage.
            for frame in (b"\x01", bytes([1, 1]) + (7).to_bytes(8, "big") + b"\x00" * 8 + b"\x00\xff\xff"):
                await ws.send(frame)
                answers.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
            return answers

    answers = fleet.run(send_bad_frames())
    assert [a["type"] for a in answers] == ["rejected", "rejected"], answers
    deadline = time.time() + 10
    while True:
        status, rows = fleet.rest("GET", f"/api/v1/devices/{device}/rejected")
        if status == 200 and len(rows) == 2 or time.time() > deadline:
            break
        time.sleep(0.2)
    assert status == 200 and len(rows) == 2, rows
    assert [r["seq"] for r in rows] == [answers[1]["seq"], None]  # newest first
    assert [r["reason"] for r in rows] == [answers[1]["reason"], answers[0]["reason"]]
    assert [r["bytes"] for r in rows] == [21, 1]
    assert rows[0]["received_us"] >= rows[1]["received_us"] > (time.time() - 60) * 1e6
    stored = fleet.psql(f"SELECT count(*) FROM rejected_frames WHERE device_id = '{device}'")
    assert stored == ["2"]
    status, one = fleet.rest("GET", f"/api/v1/devices/{device}/rejected?limit=1")
    assert status == 200 and one == rows[:1]
    status, none = fleet.rest("GET", "/api/v1/devices/pg-21/rejected")
    assert status == 200 and none == []
    assert fleet.rest("GET", "/api/v1/devices/nobody/rejected")[0] == 404
    assert fleet.rest("GET", f"/api/v1/devices/{device}/rejected?limit=0")[0] == 400


def test_the_summary_counts_the_fleet(fleet):
    # Readings committed lately, and one command that waits for an offline device.
    for client in fleet.clients:
        for n in range(50):
            fleet.run(client.send({"temp": n}))
    for client in fleet.clients:
        assert fleet.run(client.wait_acked(timeout=30))
    status, command = fleet.rest("POST", "/api/v1/devices/pg-24/commands", {"name": "reboot", "ttl_s": 600})
    assert status == 202, command
    status, summary = fleet.rest("GET", "/api/v1/summary")
    assert status == 200, summary
    assert set(summary) == {"devices", "devices_online", "readings_per_s", "rejected_last_hour", "rejected_by_reason",
                            "commands_pending", "server_time_us"}
    assert summary["devices"] == len(PAGED) and summary["devices_online"] == 3
    assert summary["readings_per_s"] > 0  # 150 readings within the last 10 s
    rejected = int(fleet.psql("SELECT count(*) FROM rejected_frames WHERE received_at > now() - interval '1 hour'")[0])
    assert summary["rejected_last_hour"] == rejected == sum(summary["rejected_by_reason"].values())
    codes = fleet.psql("SELECT DISTINCT split_part(reason, ':', 1) FROM rejected_frames ORDER BY 1")
    assert sorted(summary["rejected_by_reason"]) == codes and all(":" not in code for code in codes)
    pending = int(fleet.psql("SELECT count(*) FROM commands WHERE status IN ('queued', 'sent', 'delivered')")[0])
    assert summary["commands_pending"] == pending >= 1
    assert abs(summary["server_time_us"] - time.time() * 1e6) < 60e6
    # Nothing committed for a while: the rate falls back to 0.
    time.sleep(11.5)
    assert fleet.rest("GET", "/api/v1/summary")[1]["readings_per_s"] == 0
