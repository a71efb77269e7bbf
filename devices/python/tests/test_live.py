"""Against the real hub: $HUB_BIN serve with its embedded PostgreSQL, killed mid-stream.

Skipped only when HUB_BIN is unset (CI sets it). A HUB_BIN that does not work fails.
"""

import asyncio
import math
import os
import time

import pytest

from hub_device import DeviceClient
from livehub import LiveHub

HUB_BIN = os.environ.get("HUB_BIN")

pytestmark = pytest.mark.skipif(
    not HUB_BIN,
    reason="!!! HUB_BIN is not set: SKIPPING the live tests against the real hub binary. "
           "Run them with HUB_BIN=/path/to/hub (e.g. a copy of .build/debug/hub) !!!")


@pytest.fixture(scope="module")
def hub():
    live = LiveHub(HUB_BIN)
    try:
        yield live
    finally:
        live.cleanup()  # SIGTERM; and PostgreSQL too, should the hub have left it running


def readings(i):
    values = {"temp": 21.0 + 3.0 * math.sin(i / 50), "count": i, "door": i % 7 == 0}
    if i % 100 == 0:
        values["fw"] = "1.4.2"
    return values


def expected_rows(frames):
    return sum(len(readings(i)) for i in frames)


def stored(hub, device_id):
    rows, distinct, min_seq, max_seq, seqs = hub.psql(
        "select count(*), count(distinct (seq, metric)), min(seq), max(seq), count(distinct seq) "
        f"from telemetry where device_id = '{device_id}'")[0].split("|")
    return int(rows), int(distinct), int(min_seq), int(max_seq), int(seqs)


def test_stream_survives_a_hub_kill_and_restart(hub):
    hub.ensure_running()
    token = hub.add_device("py-kill")
    frames = 3000

    async def main():
        loop = asyncio.get_running_loop()
        async with DeviceClient(hub.url, "py-kill", token, backoff_max=2.0) as client:
            pending_at_kill = None
            for i in range(frames):
                await client.send(readings(i))
                if i % 25 == 24:
                    await asyncio.sleep(0.005)  # spread the stream over the crash and the restart
                if i == 1000:
                    pending_at_kill = client.pending
                    hub.kill()
                if i == 2000:
                    assert not client.connected
                    await loop.run_in_executor(None, hub.start)
            assert pending_at_kill and pending_at_kill > 0
            assert await client.wait_acked(120), f"{client.pending} frames unacked"
            assert client.welcome.session >= 2

    asyncio.run(asyncio.wait_for(main(), 300))
    rows, distinct, min_seq, max_seq, seqs = stored(hub, "py-kill")
    assert (rows, distinct) == (expected_rows(range(frames)), expected_rows(range(frames)))
    assert (min_seq, max_seq, seqs) == (1, frames, frames)
    assert hub.psql("select last_seq from devices where id = 'py-kill'") == [str(frames)]


def test_spool_carries_unacked_frames_over_a_device_restart(hub, tmp_path):
    hub.ensure_running()
    token = hub.add_device("py-spool")
    spool = str(tmp_path / "spool.bin")

    async def first_life():
        client = DeviceClient(hub.url, "py-spool", token, spool_path=spool, backoff_max=1.0)
        await client.start()
        for i in range(200):
            await client.send(readings(i))
        assert await client.wait_acked(60)
        await asyncio.get_running_loop().run_in_executor(None, hub.kill)
        for i in range(200, 400):
            await client.send(readings(i))
        assert client.pending == 200
        # the device dies here: no close(), the process ends with 200 frames unacked

    async def second_life():
        client = DeviceClient(hub.url, "py-spool", token, spool_path=spool, backoff_max=1.0)
        assert client.pending == 200
        await client.start()
        await asyncio.get_running_loop().run_in_executor(None, hub.start)
        for i in range(400, 500):
            await client.send(readings(i))
        assert await client.wait_acked(120), f"{client.pending} frames unacked"
        await client.close()

    asyncio.run(asyncio.wait_for(first_life(), 120))
    asyncio.run(asyncio.wait_for(second_life(), 300))
    rows, distinct, min_seq, max_seq, seqs = stored(hub, "py-spool")
    assert (rows, distinct) == (expected_rows(range(500)), expected_rows(range(500)))
    assert (min_seq, max_seq, seqs) == (1, 500, 500)


def test_queued_commands_survive_a_hub_kill_and_are_delivered_in_order(hub):
    hub.ensure_running()
    token = hub.add_device("py-cmd")
    ids = []
    for n in range(5):
        status, command = hub.rest("POST", "/api/v1/devices/py-cmd/commands",
                                   {"name": "set_interval", "params": {"seconds": n}})
        assert (status, command["status"]) == (202, "queued"), command
        ids.append(command["id"])
    hub.kill()  # SIGKILL right after the 202s: they must have been committed already
    hub.start()

    async def device():
        received = []
        async with DeviceClient(hub.url, "py-cmd", token) as client:
            @client.command("set_interval")
            def set_interval(params):
                received.append(params["seconds"])
                return {"interval": params["seconds"]}

            loop = asyncio.get_running_loop()
            deadline = loop.time() + 30
            while loop.time() < deadline:
                states = [hub.rest("GET", f"/api/v1/commands/{i}")[1]["status"] for i in ids]
                if states == ["succeeded"] * 5:
                    break
                await asyncio.sleep(0.1)
        return received

    received = asyncio.run(asyncio.wait_for(device(), 60))
    assert received == [0, 1, 2, 3, 4]
    # Stored, not just in the hub's memory: the final states reach PostgreSQL.
    for _ in range(50):
        rows = hub.psql("select status, result::text from commands where device_id = 'py-cmd' order by created_at")
        if rows == [f'succeeded|{{"interval": {n}}}' for n in range(5)]:
            break
        time.sleep(0.1)
    assert rows == [f'succeeded|{{"interval": {n}}}' for n in range(5)]


def test_hub_simulate_summary_matches_the_database(hub):
    """`hub simulate` registers its fleet through the API, drops connections at random,
    and its summary's counts are what PostgreSQL holds."""
    import re
    import subprocess

    hub.ensure_running()
    done = subprocess.run(
        [HUB_BIN, "simulate", "--url", hub.url, "--api-token", hub.api_token, "-n", "20", "--prefix", "pysim",
         "--rate", "5", "-t", "6", "--disconnect-every", "2"],
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    frames = int(re.search(r"frames sent\s+(\d+)", done.stdout).group(1))
    readings = int(re.search(r"readings sent\s+(\d+)", done.stdout).group(1))
    reconnects = int(re.search(r"reconnects\s+(\d+)", done.stdout).group(1))
    assert "unacked at end     0" in done.stdout and "matches every device's frames" in done.stdout, done.stdout
    assert frames > 300 and reconnects > 0, done.stdout
    stored = hub.psql("select count(*), count(distinct (device_id, seq)) from telemetry where device_id like 'pysim-%'")
    assert stored == [f"{readings}|{frames}"], done.stdout
