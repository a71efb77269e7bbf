"""Fault tests: the real hub binary ($HUB_BIN) and a real PostgreSQL, under faults.

1. kill -9 of the hub while 10 devices stream: every (device, seq) stored exactly once.
2. PostgreSQL stopped for 5 s mid-stream (fast shutdown): exactly once again, and no ack
   ever precedes the commit of what it acknowledges.
3. PostgreSQL down when the hub starts: the hub serves anyway, /readyz says 503, and
   devices are served once the database is up.
4. A dashboard that never reads: ingest keeps its rate, the hub's memory stays bounded.
5. A read-only, impossible or full data folder at start: a clear error, a non-zero exit.

Each test prints a `COUNTS` line (repeated under "fault-test counts" at the end of the
run). Skipped only when HUB_BIN is unset; a HUB_BIN that does not work fails.
"""

import asyncio
import base64
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request

import pytest

from hub_device import DeviceClient
from livehub import LiveHub
from pgcluster import PgCluster

HUB_BIN = os.environ.get("HUB_BIN")

pytestmark = pytest.mark.skipif(
    not HUB_BIN,
    reason="!!! HUB_BIN is not set: SKIPPING the fault tests against the real hub binary. "
           "Run them with HUB_BIN=/path/to/hub (e.g. a copy of .build/debug/hub) !!!")

DEVICES = 10
FRAMES = 2000  # per device
READINGS_PER_FRAME = 3


def readings(i):
    return {"temp": 20.0 + (i % 100) / 10, "count": i, "door": i % 2 == 0}


# ---------------------------------------------------------------------------- helpers


@pytest.fixture
def cluster():
    """A throwaway PostgreSQL cluster the test may stop and start."""
    pg = PgCluster()
    try:
        yield pg
    finally:
        pg.cleanup()


@pytest.fixture
def hubs(monkeypatch):
    """``hubs.new(database_url=None, auto_provision=False)``: a LiveHub (not started).
    Without a URL it runs its embedded cluster in its data folder. The options travel as
    the hub's documented environment variables, which LiveHub's child inherits."""

    made = []

    class Factory:
        @staticmethod
        def new(database_url=None, auto_provision=False):
            if database_url:
                monkeypatch.setenv("HUB_DATABASE_URL", database_url)
            else:
                monkeypatch.delenv("HUB_DATABASE_URL", raising=False)
            if auto_provision:
                monkeypatch.setenv("HUB_AUTO_PROVISION", "1")
            else:
                monkeypatch.delenv("HUB_AUTO_PROVISION", raising=False)
            hub = LiveHub(HUB_BIN)
            made.append(hub)
            return hub

    try:
        yield Factory
    finally:
        for hub in reversed(made):
            hub.cleanup()


def http_get(url, timeout=10.0):
    """(status, body text); status 0 when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            return answer.status, answer.read().decode(errors="replace")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")
    except (OSError, urllib.error.URLError) as error:
        return 0, str(error)


def register(hub, device_id):
    status, answer = hub.rest("POST", "/api/v1/devices", {"id": device_id})
    assert status == 201, answer
    return answer["token"]


def sql_list(ids):
    return ",".join(f"'{i}'" for i in ids)


def stored_counts(psql, device_ids, frames):
    """Frame-level counts of what the `telemetry` relation holds for these devices, which
    each sent seq 1..frames with READINGS_PER_FRAME readings: sent, stored (frames with all
    their readings), duplicates (rows beyond one per (device, seq, metric), plus rows with
    a seq that was never sent), lost (frames missing or incomplete)."""
    rows = psql("select device_id, seq, count(*), count(distinct metric) from telemetry "
                f"where device_id in ({sql_list(device_ids)}) group by 1, 2")
    stored = duplicates = 0
    for line in rows:
        _, seq, n, distinct = line.split("|")
        seq, n, distinct = int(seq), int(n), int(distinct)
        if not 1 <= seq <= frames:
            duplicates += n
            continue
        duplicates += n - distinct
        if distinct == READINGS_PER_FRAME:
            stored += 1
    sent = len(device_ids) * frames
    return {"sent": sent, "stored": stored, "duplicates": duplicates, "lost": sent - stored,
            "readings_sent": sent * READINGS_PER_FRAME, "rows": sum(int(l.split("|")[2]) for l in rows)}


def rollup_counts(psql, device_ids, relation):
    """{device: readings counted} in an hourly rollup relation: `telemetry_hourly` (the
    rollups plus every delta not folded yet, in one snapshot) or the folded `rollup_1h`."""
    if relation == "telemetry_hourly":
        sql = (f"select device_id, sum(count) from telemetry_hourly where device_id in ({sql_list(device_ids)}) "
               "group by 1")
    else:
        sql = ("select d.id, sum(h.count) from rollup_1h h join device_registry d on d.key = h.device_key "
               f"where d.id in ({sql_list(device_ids)}) group by 1")
    return {device: int(n) for device, n in (line.split("|") for line in psql(sql))}


def rollups_settled(psql, timeout=60.0):
    """Waits until no delta is left to fold or held by a writer; the seconds it took."""
    started = time.monotonic()
    while psql("select (select count(*) from rollup_delta) + (select count(*) from rollup_pending)") != ["0"]:
        assert time.monotonic() - started < timeout, "the rollup deltas did not settle"
        time.sleep(0.2)
    return time.monotonic() - started


def assert_rollups_count_every_reading(psql, device_ids, frames):
    """Each device's readings are counted once in the rollups, before the fold settles
    (deltas written, held by a writer, or rebuilt after a crash) and after it."""
    expected = {i: frames * READINGS_PER_FRAME for i in device_ids}
    assert rollup_counts(psql, device_ids, "telemetry_hourly") == expected
    rollups_settled(psql)
    assert rollup_counts(psql, device_ids, "rollup_1h") == expected
    assert rollup_counts(psql, device_ids, "telemetry_hourly") == expected


class RecordingClient(DeviceClient):
    """A DeviceClient that timestamps every durability promise it gets: each binary ack and
    each welcome's last_seq (both say: everything up to this seq is committed)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.acks = []  # (seq, time.time() at receipt)

    def _acked(self, seq):  # the kit's single entry point for acks and welcome marks
        if seq > 0:
            self.acks.append((seq, time.time()))
        super()._acked(seq)


async def stream(clients, frames, fault_at, fault, pace=0.004, burst=300):
    """Round-robin: frame i of every client, then a short pause, so the stream spans the
    fault; the ``burst`` rounds before round ``fault_at`` go at full speed, so the fault hits
    many frames in flight; at round ``fault_at`` the coroutine ``fault()`` starts beside the
    stream."""
    fault_task = None
    for i in range(frames):
        for client in clients:
            await client.send(readings(i))
        if i == fault_at:
            fault_task = asyncio.ensure_future(fault())
        await asyncio.sleep(0 if fault_at - burst <= i < fault_at else pace)
    if fault_task is not None:
        await fault_task


async def finish(clients, timeout=120):
    acked = await asyncio.gather(*(c.wait_acked(timeout) for c in clients))
    unacked = sum(c.pending for c in clients)
    for client in clients:
        await client.close(1)
    return all(acked), unacked


# ---------------------------------------------------------------------------- 1. kill -9


def test_hub_kill_9_while_10_devices_stream(hubs, counts):
    hub = hubs.new()
    hub.start()
    ids = [f"k9-{n}" for n in range(DEVICES)]
    tokens = {i: register(hub, i) for i in ids}
    state = {}

    async def main():
        loop = asyncio.get_running_loop()
        clients = [DeviceClient(hub.url, i, tokens[i], backoff_max=1.0) for i in ids]
        for client in clients:
            await client.start()

        async def kill_and_restart():
            state["pending_at_kill"] = sum(c.pending for c in clients)
            state["acked_at_kill"] = sum(c.acked_seq for c in clients)
            hub.kill()
            # Its PostgreSQL keeps running: the batches whose deltas the hub held are there.
            state["held_batches_at_kill"] = int((await loop.run_in_executor(
                None, hub.psql, "select count(*) from rollup_pending"))[0])
            await asyncio.sleep(0.5)
            await loop.run_in_executor(None, hub.start)

        await stream(clients, FRAMES, FRAMES * 2 // 5, kill_and_restart)
        state["all_acked"], state["unacked"] = await finish(clients)
        state["sessions"] = sorted({c.welcome.session for c in clients})

    asyncio.run(asyncio.wait_for(main(), 300))
    result = stored_counts(hub.psql, ids, FRAMES)
    marks = hub.psql(f"select count(*) from devices where id in ({sql_list(ids)}) and last_seq = {FRAMES}")
    counts(**result, unacked_at_kill=state["pending_at_kill"], acked_at_kill=state["acked_at_kill"],
           unacked_at_end=state["unacked"], held_batches_at_kill=state["held_batches_at_kill"])
    assert state["pending_at_kill"] > 0, "the kill should hit frames in flight"
    assert state["held_batches_at_kill"] > 0, "the kill should leave held rollup deltas to rebuild"
    assert state["all_acked"], f"{state['unacked']} frames never acked after the restart\n{hub.logs()}"
    assert min(state["sessions"]) >= 2, f"devices did not reconnect: sessions {state['sessions']}"
    assert (result["duplicates"], result["lost"]) == (0, 0), result
    assert result["stored"] == DEVICES * FRAMES
    assert marks == [str(DEVICES)]
    assert_rollups_count_every_reading(hub.psql, ids, FRAMES)


# ---------------------------------------------------------------------------- 2. database stop


def commit_times(cluster, device_ids):
    """{device: {seq: epoch seconds of the earliest commit of that frame's rows}}, read from
    PostgreSQL's commit timestamps (track_commit_timestamp is on in PgCluster)."""
    out = {i: {} for i in device_ids}
    for line in cluster.psql(
            "select d.id, r.seq, extract(epoch from min(pg_xact_commit_timestamp(r.xmin))) "
            "from reading r join device_registry d on d.key = r.device_key "
            f"where d.id in ({sql_list(device_ids)}) group by 1, 2"):
        device, seq, committed = line.split("|")
        out[device][int(seq)] = float(committed) if committed else float("inf")
    return out


def acks_ahead_of_commits(clients, commits, tolerance=1e-5):
    """Every promise (seq N received at t) needs every frame 1..N committed before t."""
    checked, violations = 0, []
    for client in clients:
        if not client.acks:
            continue
        committed = commits[client.device_id]
        top = max(seq for seq, _ in client.acks)
        prefix, latest = [0.0] * (top + 1), 0.0
        for seq in range(1, top + 1):
            latest = max(latest, committed.get(seq, float("inf")))
            prefix[seq] = latest
        for seq, at in client.acks:
            checked += 1
            if prefix[seq] > at + tolerance:
                violations.append(f"{client.device_id} ack {seq} at {at:.6f}, "
                                  f"frames up to it committed at {prefix[seq]:.6f} ({prefix[seq] - at:+.6f} s)")
    return checked, violations


async def live_presence_checks(cluster, clients, stop, stats):
    """While streaming: take a device's newest ack N and check at once, in PostgreSQL, that
    frames 1..N are all there. A psql that fails (database down) counts as unverifiable."""
    last = {c.device_id: 0 for c in clients}
    n = 0
    while not stop.is_set():
        client = clients[n % len(clients)]
        n += 1
        if not client.acks or client.acks[-1][0] <= last[client.device_id]:
            await asyncio.sleep(0.005)
            continue
        seq, at = client.acks[-1]
        last[client.device_id] = seq
        proc = await asyncio.create_subprocess_exec(
            "psql", "-X", "-h", cluster.dir, "-p", str(cluster.port), "-U", "hub", "hub", "-Atc",
            f"select count(distinct seq) from telemetry where device_id = '{client.device_id}' and seq <= {seq}",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, _ = await proc.communicate()
        if proc.returncode != 0:
            stats["unverifiable"] += 1
            await asyncio.sleep(0.05)
            continue
        stats["checked"] += 1
        present = int(out.strip() or 0)
        if present != seq:
            stats["violations"].append(f"{client.device_id} ack {seq} at {at:.3f}: only {present} frames stored "
                                       f"when checked {time.time() - at:.3f} s later")


def test_database_stopped_5_s_mid_stream(cluster, hubs, counts):
    hub = hubs.new(database_url=cluster.url)
    hub.start()
    ids = [f"pg-{n}" for n in range(DEVICES)]
    tokens = {i: register(hub, i) for i in ids}
    outage_s = 5.0
    state = {}
    live = {"checked": 0, "unverifiable": 0, "violations": []}

    async def main():
        loop = asyncio.get_running_loop()
        clients = [RecordingClient(hub.url, i, tokens[i], backoff_max=1.0) for i in ids]
        for client in clients:
            await client.start()
        stop = asyncio.Event()
        checker = asyncio.ensure_future(live_presence_checks(cluster, clients, stop, live))

        async def outage():
            state["acked_at_stop"] = sum(c.acked_seq for c in clients)
            await loop.run_in_executor(None, cluster.stop)
            state["down_at"] = down = time.time()
            state["pending_at_stop"] = sum(c.pending for c in clients)
            state["readyz_down"] = await loop.run_in_executor(None, http_get, hub.url + "/readyz")
            await asyncio.sleep(max(0.0, outage_s - (time.time() - down)))
            state["up_at"] = time.time()
            state["acked_while_down"] = sum(c.acked_seq for c in clients) - state["acked_at_stop"]
            await loop.run_in_executor(None, cluster.start)

        await stream(clients, FRAMES, FRAMES * 3 // 10, outage)
        state["all_acked"], state["unacked"] = await finish(clients)
        stop.set()
        await checker
        return clients

    clients = asyncio.run(asyncio.wait_for(main(), 300))
    result = stored_counts(cluster.psql, ids, FRAMES)
    checked, violations = acks_ahead_of_commits(clients, commit_times(cluster, ids))
    promises_during_outage = sum(1 for c in clients for _, at in c.acks if state["down_at"] < at < state["up_at"])
    deadline = time.monotonic() + 30
    while (ready := http_get(hub.url + "/readyz"))[0] != 200 and time.monotonic() < deadline:
        time.sleep(0.2)
    counts(**result, pending_at_stop=state["pending_at_stop"], acks_checked_against_commit_time=checked,
           acks_before_commit=len(violations), live_checks=live["checked"],
           live_unverifiable=live["unverifiable"], live_violations=len(live["violations"]),
           acks_received_while_down=promises_during_outage, readyz_while_down=state["readyz_down"][0])
    assert state["pending_at_stop"] > 0, "the stop should hit frames in flight"
    assert state["all_acked"], f"{state['unacked']} frames never acked after the restart\n{hub.logs()}"
    assert not violations, "acks sent before the commit:\n" + "\n".join(violations[:20])
    assert not live["violations"], "acked frames missing from the database:\n" + "\n".join(live["violations"][:20])
    assert checked >= DEVICES and live["checked"] > 0
    assert (result["duplicates"], result["lost"]) == (0, 0), result
    assert result["stored"] == DEVICES * FRAMES
    assert state["readyz_down"][0] == 503, state["readyz_down"]
    assert ready[0] == 200, f"/readyz after the restart: {ready}"
    assert_rollups_count_every_reading(cluster.psql, ids, FRAMES)


# ---------------------------------------------------------------------------- 3. database down at start


def hub_cli(*args):
    done = subprocess.run([HUB_BIN, *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"hub {' '.join(args)}: {done.returncode}\n{done.stdout}{done.stderr}"
    return done.stdout


STARTUP_WAIT_S = 30  # docs/operations.md: "startup wait for the database: 30 s"


def test_hub_starts_while_the_database_is_down(cluster, hubs, counts):
    out = hub_cli("devices", "add", "nodb-1", "--database-url", cluster.url)  # also applies the schema
    token = re.search(r"^token: (\S+)", out, re.M).group(1)
    cluster.stop()

    hub = hubs.new(database_url=cluster.url)
    began = time.monotonic()
    try:
        hub.start(timeout=15)  # expected: the banner although the database is down
    except RuntimeError as error:
        waiting = hub.proc is not None and hub.proc.poll() is None
        if waiting:
            hub.kill()
        counts(sent=0, stored=0, duplicates=0, lost=0,
               hub_came_up="no_banner_within_15s" + ("_still_starting" if waiting else "_exited"))
        pytest.fail(f"the hub did not come up while its database was down "
                    f"({'still starting' if waiting else 'it exited'} after {time.monotonic() - began:.0f} s): {error}")
    status, body = http_get(hub.url + "/readyz")
    assert status == 503 and "database" in body, (status, body)
    frames = 200
    state = {}

    async def main():
        loop = asyncio.get_running_loop()
        client = DeviceClient(hub.url, "nodb-1", token, backoff_max=1.0)
        await client.start()

        async def sender():
            for i in range(frames):
                await client.send(readings(i))

        sending = asyncio.ensure_future(sender())
        # Down past the documented startup wait: the hub must neither exit nor pretend readiness.
        while time.monotonic() - began < STARTUP_WAIT_S + 2:
            assert hub.proc.poll() is None, f"the hub exited with {hub.proc.returncode}\n{hub.logs()}"
            status, body = await loop.run_in_executor(None, http_get, hub.url + "/readyz")
            assert status == 503, (status, body)
            assert client.acked_seq == 0, "an ack while the database is down"
            await asyncio.sleep(1)
        await loop.run_in_executor(None, cluster.start)
        up = time.monotonic()
        while (await loop.run_in_executor(None, http_get, hub.url + "/readyz"))[0] != 200:
            assert time.monotonic() - up < 30, "/readyz not 200 within 30 s of the database coming up"
            await asyncio.sleep(0.2)
        state["ready_after_s"] = time.monotonic() - up
        await sending
        state["all_acked"] = await client.wait_acked(60)
        state["unacked"] = client.pending
        await client.close(1)

    asyncio.run(asyncio.wait_for(main(), 180))
    result = stored_counts(cluster.psql, ["nodb-1"], frames)
    counts(**result, ready_after_db_up_s=round(state["ready_after_s"], 2))
    assert state["all_acked"], f"{state['unacked']} frames unacked\n{hub.logs()}"
    assert (result["duplicates"], result["lost"]) == (0, 0), result


# ---------------------------------------------------------------------------- 4. a dashboard that never reads


def ws_text(text):
    """One masked WebSocket text frame (client to server)."""
    payload, mask = text.encode(), os.urandom(4)
    size = len(payload)
    head = bytes([0x81, 0x80 | size]) if size < 126 else bytes([0x81, 0x80 | 126]) + size.to_bytes(2, "big")
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


class StuckDashboard:
    """/live over a raw socket with a tiny receive buffer: upgrades, subscribes to every
    device, reads up to its `subscribed`, and then never reads again."""

    def __init__(self, port, token):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)  # before connect: a small window
        sock.settimeout(10)
        sock.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        sock.sendall((f"GET /live?token={token} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                      f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(4096)
        head, data = data.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101"), head
        sock.sendall(ws_text(json.dumps({"type": "subscribe", "id": "s1", "devices": ["*"]})))
        while b'"subscribed"' not in data:
            data += sock.recv(4096)
        self.sock = sock  # from here on, never read

    def close(self):
        self.sock.close()


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"^VmRSS:\s+(\d+) kB", f.read(), re.M).group(1))


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tcp_send_queue(local_port, remote_port):
    """Bytes the kernel holds unsent on the IPv4 loopback connection local_port -> remote_port."""
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if (int(fields[1].split(":")[1], 16), int(fields[2].split(":")[1], 16)) == (local_port, remote_port):
                return int(fields[4].split(":")[0], 16)
    return 0


BENCH_DEVICES, BENCH_READINGS = 20, 10
# 12 pairs: with 8, two noise bursts on the 2-core CI machine put the median at 0.898 in
# one run (the same binary measured 0.94-1.02 in three runs by hand); more pairs steady the
# median without moving the bar.
PAIRS, WINDOW_S, SETTLE_S, LONG_STUCK_S = 12, 2.0, 1.0, 10.0
DASHBOARD_QUEUE_MIB = 4  # docs/operations.md: "events waiting for one slow dashboard: 4 MiB, then conflation"
RSS_SLACK_MIB = 16


class IngestProbe:
    """Committed readings/s and hub CPU over a window. Committed = the bench devices' marks
    in PostgreSQL (device_registry.last_seq, committed in the same transaction as the rows)."""

    def __init__(self, hub):
        self.hub = hub

    def committed_frames(self):
        return int(self.hub.psql("select coalesce(sum(last_seq), 0) from device_registry where id like 'bench-%'")[0])

    def window(self, seconds):
        t0, c0, u0 = time.monotonic(), self.committed_frames(), cpu_seconds(self.hub.proc.pid)
        time.sleep(seconds)
        t1, c1, u1 = time.monotonic(), self.committed_frames(), cpu_seconds(self.hub.proc.pid)
        readings = (c1 - c0) * BENCH_READINGS
        return readings / (t1 - t0), (u1 - u0) / max(readings, 1) * 1e6  # readings/s, hub CPU µs per reading


def test_a_dashboard_that_never_reads_does_not_slow_ingest(hubs, counts):
    hub = hubs.new(auto_provision=True)
    hub.start()
    probe = IngestProbe(hub)
    idle_kib = rss_kib(hub.proc.pid)
    phase, rss = ["warm-up"], {"warm-up": [], "without": [], "with": []}
    stop = threading.Event()

    def sample_rss():
        while not stop.is_set():
            rss[phase[0]].append(rss_kib(hub.proc.pid))
            time.sleep(0.05)

    # The load: `hub bench ingest` against this hub, D devices as fast as acks allow, for
    # the whole test; the dashboard comes and goes underneath it.
    bench = subprocess.Popen(
        [HUB_BIN, "bench", "ingest", "--url", f"ws://127.0.0.1:{hub.port}", "-d", str(BENCH_DEVICES),
         "-r", str(BENCH_READINGS), "-t", "600", "--no-ceiling"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sampler = threading.Thread(target=sample_rss, daemon=True)
    sampler.start()
    without, with_, ratios, send_queues = [], [], [], []

    def stuck_window(seconds):
        dashboard = StuckDashboard(hub.port, hub.api_token)
        phase[0] = "with"
        try:
            time.sleep(SETTLE_S)  # past the first burst into the socket and the queue
            result = probe.window(seconds)
            send_queues.append(tcp_send_queue(hub.port, dashboard.sock.getsockname()[1]))
        finally:
            dashboard.close()
        phase[0] = "warm-up"
        time.sleep(0.5)
        return result

    try:
        deadline = time.monotonic() + 60
        while probe.committed_frames() == 0:
            assert bench.poll() is None, f"hub bench ingest exited with {bench.returncode}"
            assert time.monotonic() < deadline, "the load never got going"
            time.sleep(0.1)
        time.sleep(2)
        for pair in range(PAIRS):  # A B, B A, …: drift and the machine's noise hit both sides alike
            result = {}
            for side in (("without", "with") if pair % 2 == 0 else ("with", "without")):
                if side == "with":
                    result[side] = stuck_window(WINDOW_S)
                else:
                    phase[0] = "without"
                    result[side] = probe.window(WINDOW_S)
                    phase[0] = "warm-up"
            without.append(result["without"])
            with_.append(result["with"])
            ratios.append(result["with"][0] / result["without"][0])
        # Memory: one dashboard stuck for longer, at full ingest speed. An unbounded queue
        # would grow by the whole stream (several MB/s here); the bound allows the
        # documented queue only.
        stuck_window(LONG_STUCK_S)
        assert bench.poll() is None, f"hub bench ingest exited with {bench.returncode}"
    finally:
        bench.kill()
        bench.wait()
        stop.set()
        sampler.join()

    ratio = statistics.median(ratios)
    peak_without, peak_with = max(rss["without"]), max(rss["with"])
    bound_kib = peak_without + (DASHBOARD_QUEUE_MIB + RSS_SLACK_MIB) * 1024
    counts(median_readings_per_s_without=round(statistics.median(r for r, _ in without)),
           median_readings_per_s_with=round(statistics.median(r for r, _ in with_)),
           pair_ratios=[round(r, 2) for r in ratios], median_ratio=round(ratio, 3),
           hub_cpu_us_per_reading_without=round(statistics.median(c for _, c in without), 2),
           hub_cpu_us_per_reading_with=round(statistics.median(c for _, c in with_), 2),
           dashboard_unsent_kib_min=min(send_queues) // 1024, rss_idle_mib=idle_kib // 1024,
           rss_peak_without_mib=peak_without // 1024, rss_peak_with_mib=peak_with // 1024,
           rss_bound_mib=bound_kib // 1024)
    assert min(send_queues) >= 256 * 1024, f"the dashboard was not stuck: unsent bytes {send_queues}"
    assert peak_with <= bound_kib, (f"hub RSS {peak_with} KiB with a stuck dashboard, over the bound {bound_kib} KiB "
                                    f"(peak without {peak_without} + {DASHBOARD_QUEUE_MIB} MiB queue + {RSS_SLACK_MIB} MiB slack)")
    assert ratio >= 0.9, (f"ingest with a stuck dashboard at {ratio:.0%} of the rate without (median of "
                          f"{PAIRS} alternating pairs): {ratios}")


# ---------------------------------------------------------------------------- 5. bad data folder at start


def mount_tmpfs(path, options):
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", path], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"!!! mount is not permitted here ({done.stderr.strip()}): SKIPPING this data-folder fault. "
                    "Run the fault tests as root with CAP_SYS_ADMIN to test it !!!")


def postgres_processes(path):
    """PIDs of PostgreSQL servers whose command line names a folder under ``path``."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "postgres" in cmdline and f"-D {path}" in cmdline:
            found.append(int(pid))
    return found


BAD_FOLDERS = {
    # case: (how to make it, what the message must say)
    "read-only": ("a read-only tmpfs mount", r"read-only|read only"),
    "under-a-file": ("a path below a regular file", r"not a directory"),
    "full-disk": ("a 4 MiB tmpfs: initdb runs out of space", r"no space left on device"),
}


@pytest.mark.parametrize("case", list(BAD_FOLDERS))
def test_bad_data_folder_at_start(case, counts):
    root = tempfile.mkdtemp(prefix="hub-bad-")
    os.chmod(root, 0o755)  # PostgreSQL runs as the postgres user
    mounted = None
    try:
        if case == "read-only":
            data_dir = mounted = os.path.join(root, "ro")
            os.mkdir(data_dir)
            mount_tmpfs(data_dir, "ro,size=1m")
        elif case == "under-a-file":
            open(os.path.join(root, "file"), "w").close()
            data_dir = os.path.join(root, "file", "sub")
        else:
            data_dir = mounted = os.path.join(root, "small")
            os.mkdir(data_dir)
            mount_tmpfs(data_dir, "size=4m,mode=755")
        began = time.monotonic()
        try:
            done = subprocess.run(
                [HUB_BIN, "serve", "--data-dir", data_dir, "--port", "0", "--host", "127.0.0.1", "--api-token", "fault-test-api-token"],
                capture_output=True, text=True, timeout=90, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as timeout:
            pytest.fail(f"the hub neither served nor exited within 90 s on {BAD_FOLDERS[case][0]}: {timeout.stderr}")
        took = time.monotonic() - began
        output = done.stdout + done.stderr
        leftovers = postgres_processes(root)
        counts(case=case, exit_code=done.returncode, seconds=round(took, 2), postgres_left_running=len(leftovers),
               message=json.dumps(output.strip().splitlines()[-1][:200] if output.strip() else ""))
        assert done.returncode > 0, f"exit code {done.returncode} (negative: killed by a signal)\n{output}"
        assert root in output, f"the message does not name the folder:\n{output}"
        assert re.search(BAD_FOLDERS[case][1], output, re.I), f"the message does not give the cause:\n{output}"
        assert not re.search(r"fatal error|stack dump|backtrace|segmentation", output, re.I), output
        assert "telemetry hub ready" not in output
        assert not leftovers, f"a failed start left PostgreSQL running: pids {leftovers}"
    finally:
        for pid in postgres_processes(root):
            os.kill(pid, signal.SIGINT)
        if mounted:
            for _ in range(50):
                if subprocess.run(["umount", mounted], capture_output=True).returncode == 0:
                    break
                time.sleep(0.1)
            else:
                subprocess.run(["umount", "-l", mounted], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("signal_name,after_s", [("SIGTERM", 30.0), ("SIGINT", 30.0), ("SIGINT", 0.3)])
def test_demo_exits_on_a_signal(signal_name, after_s, counts):
    """`hub demo` streams its simulated fleet; a signal ends the whole process, its client
    event loop included, with exit code 0 and the embedded cluster stopped."""
    root = tempfile.mkdtemp(prefix="hub-demo-")
    os.chmod(root, 0o755)
    port = free_port()
    process = subprocess.Popen(
        [HUB_BIN, "demo", "--data-dir", root, "--port", str(port), "--devices", "5", "--interval", "0.2"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True)
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(process.stdout), daemon=True)
    reader.start()
    try:
        if after_s > 1:
            deadline = time.monotonic() + 90
            while not any("demo fleet" in line for line in lines):
                assert process.poll() is None, "".join(lines)
                assert time.monotonic() < deadline, "no demo banner within 90 s:\n" + "".join(lines)
                time.sleep(0.1)
        time.sleep(after_s)
        signalled = time.monotonic()
        process.send_signal(getattr(signal, signal_name))
        try:
            code = process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pytest.fail(f"`hub demo` still runs 30 s after {signal_name}:\n" + "".join(lines[-20:]))
        took = time.monotonic() - signalled
        reader.join(timeout=5)
        counts(signal=signal_name, after_s=after_s, exit_code=code, seconds_to_exit=round(took, 2))
        assert code == 0, "".join(lines[-20:])
        assert any("stopped" in line for line in lines), "".join(lines[-20:])
        assert not postgres_processes(root), "the embedded cluster still runs"
        if after_s > 1:
            assert sum("device connected" in line for line in lines) >= 5
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for pid in postgres_processes(root):
            os.kill(pid, signal.SIGINT)
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.parametrize("flags", [["--interval", "nan"], ["--interval", "0"], ["--interval", "1e300"], ["--devices", "10001"]])
def test_demo_refuses_flags_out_of_range(flags):
    """A bad flag is a usage error (exit code 64) that names the flag, never a crash."""
    done = subprocess.run([HUB_BIN, "demo", *flags], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    output = done.stdout + done.stderr
    assert done.returncode == 64, f"exit code {done.returncode}\n{output}"
    assert flags[0] in output, output
    assert not re.search(r"fatal error|stack dump|backtrace|Program crashed", output, re.I), output
