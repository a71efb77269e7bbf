"""Cluster tests: three `hub serve --cluster` nodes on one PostgreSQL, one nats-server.

1. Takeover with the old node alive: a device moves from node 1 to node 2 mid-stream. The
   welcome's `last_seq` equals PostgreSQL's mark, node 1 closes with 4001, a dashboard on
   node 3 sees offline(S) then online(S+1), and every frame is stored exactly once.
2. A zombie node: node 1 is stopped (SIGSTOP) with a batch it read and has not committed;
   the device moves to node 2 and resends; node 1 is resumed and its batch is fenced:
   0 duplicate rows, and node 1 counts the fenced frames.
3. Live and replay across nodes; a command made on one node reaches the device on another.
4. Commands of devices connected to no node expire on one node at a time (the expiry
   lease), also when its holder is stopped, and a resumed holder finds its lease gone.
"""

import asyncio
import json
import os
import re
import signal
import time
import urllib.request

from websockets.asyncio.client import connect

from hub_device import decode_ack, encode_telemetry

FRAMES = 200
READINGS = {"temp": 21.5, "count": 1}


def register(hub, device_id):
    status, answer = hub.rest("POST", "/api/v1/devices", {"id": device_id})
    assert status == 201, answer
    return answer["token"]


def device_url(hub, device_id):
    return hub.url.replace("http://", "ws://") + f"/devices/{device_id}"


def frame(seq):
    return encode_telemetry(seq, 1_763_769_600_000_000 + seq * 1000, READINGS)


def stored(database, device_id):
    """(distinct seqs, rows, max seq) of the device's readings in PostgreSQL."""
    line = database.psql(
        f"select count(distinct seq), count(*), coalesce(max(seq), 0) from telemetry where device_id = '{device_id}'")[0]
    return tuple(int(x) for x in line.split("|"))


def mark(database, device_id):
    line = database.psql(f"select last_seq, session, owner from device_registry where id = '{device_id}'")[0]
    last_seq, session, owner = line.split("|")
    return int(last_seq), int(session), owner


def metric(hub, name):
    with urllib.request.urlopen(hub.url + "/metrics", timeout=10) as answer:
        text = answer.read().decode()
    found = re.search(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


async def open_device(hub, device_id, token):
    ws = await connect(device_url(hub, device_id), additional_headers={"Authorization": f"Bearer {token}"})
    welcome = json.loads(await asyncio.wait_for(ws.recv(), 10))
    assert welcome["type"] == "welcome", welcome
    return ws, welcome


async def read_acks(ws, into):
    """Collects acks until the socket closes; returns the close code."""
    try:
        async for message in ws:
            if isinstance(message, bytes):
                into.append(decode_ack(message))
    except Exception:
        pass
    return ws.close_code


async def dashboard(hub, pattern):
    ws = await connect(hub.url.replace("http://", "ws://") + "/live",
                       additional_headers={"Authorization": f"Bearer {hub.api_token}"})
    assert json.loads(await ws.recv())["type"] == "hello"
    await ws.send(json.dumps({"type": "subscribe", "id": "s1", "devices": [pattern]}))
    while json.loads(await ws.recv())["type"] != "subscribed":
        pass
    return ws


async def presence_events(ws, into, stop):
    while not stop.is_set():
        try:
            message = json.loads(await asyncio.wait_for(ws.recv(), 0.2))
        except asyncio.TimeoutError:
            continue
        if message["type"] == "presence":
            into.append((message["online"], message["session"]))


def test_takeover_with_the_old_node_alive(nodes, database):
    node1, node2, node3 = nodes.start(3)
    token = register(node1, "mover")
    state = {}

    async def main():
        watcher = await dashboard(node3, "mover")
        events, stop = [], asyncio.Event()
        watching = asyncio.ensure_future(presence_events(watcher, events, stop))

        ws1, welcome1 = await open_device(node1, "mover", token)
        acks1 = []
        reading1 = asyncio.ensure_future(read_acks(ws1, acks1))
        for seq in range(1, FRAMES // 2 + 1):
            await ws1.send(frame(seq))
        # Node 1 still holds frames in flight when the device shows up on node 2.
        started = time.monotonic()
        ws2, welcome2 = await open_device(node2, "mover", token)
        state["takeover_ms"] = (time.monotonic() - started) * 1000
        state["mark_at_welcome"] = mark(database, "mover")
        state["welcome1"], state["welcome2"] = welcome1, welcome2
        state["close1"] = await asyncio.wait_for(reading1, 10)
        state["acks1"] = max(acks1, default=0)

        acks2 = []
        reading2 = asyncio.ensure_future(read_acks(ws2, acks2))
        for seq in range(welcome2["last_seq"] + 1, FRAMES + 1):
            await ws2.send(frame(seq))
        deadline = time.monotonic() + 30
        while max(acks2, default=0) < FRAMES and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        state["acks2"] = max(acks2, default=0)
        loop = asyncio.get_running_loop()
        state["online_elsewhere"] = await loop.run_in_executor(None, lambda: node3.rest("GET", "/api/v1/devices/mover"))
        await ws2.close()
        await reading2
        await asyncio.sleep(0.5)  # the last presence event
        state["offline_elsewhere"] = await loop.run_in_executor(None, lambda: node3.rest("GET", "/api/v1/devices?online=true"))
        stop.set()
        await watching
        await watcher.close()
        state["events"] = events

    asyncio.run(asyncio.wait_for(main(), 120))
    s = state["welcome1"]["session"]
    print(f"\nCOUNTS takeover: takeover_ms={state['takeover_ms']:.1f} welcome2_last_seq={state['welcome2']['last_seq']} "
          f"node1_acked={state['acks1']} stored={stored(database, 'mover')} events={state['events']}")
    assert state["welcome2"]["session"] == s + 1
    last_seq, session, owner = state["mark_at_welcome"]
    assert (last_seq, session, owner) == (state["welcome2"]["last_seq"], s + 1, "node2")
    assert state["close1"] == 4001, f"node 1 closed with {state['close1']}"
    # What node 1 acked is at most what the welcome on node 2 says is stored.
    assert state["acks1"] <= state["welcome2"]["last_seq"]
    assert state["acks2"] == FRAMES, state["acks2"]
    assert stored(database, "mover") == (FRAMES, FRAMES * len(READINGS), FRAMES)
    # Node 3 holds no connection of the device, yet REST shows the cluster's view.
    assert state["online_elsewhere"][1]["online"] is True, state["online_elsewhere"]
    assert [d["id"] for d in state["offline_elsewhere"][1]] == [], state["offline_elsewhere"]
    events = state["events"]
    assert events[:1] == [(True, s)], events
    assert (False, s) in events and (True, s + 1) in events, events
    assert events.index((False, s)) < events.index((True, s + 1)), events


def test_a_zombie_node_is_fenced(nodes, database):
    # Node 1 holds each batch for 3 s before it commits: stopped in that window, it keeps
    # frames it read and has not committed.
    node1, node2 = nodes.start(2, per_node={1: ["--flush-ms", "3000"]})
    token = register(node1, "zombie-dev")
    state = {}

    async def main():
        ws1, welcome1 = await open_device(node1, "zombie-dev", token)
        for seq in range(1, FRAMES + 1):
            await ws1.send(frame(seq))
        await asyncio.sleep(0.3)  # node 1 has read them; its batch waits for the flush
        os.kill(node1.proc.pid, signal.SIGSTOP)
        state["stored_at_stop"] = stored(database, "zombie-dev")
        ws1.transport.abort()  # the device gives up on the silent node

        ws2, welcome2 = await open_device(node2, "zombie-dev", token)
        state["welcome2"] = welcome2
        acks2 = []
        reading2 = asyncio.ensure_future(read_acks(ws2, acks2))
        for seq in range(welcome2["last_seq"] + 1, FRAMES + 1):
            await ws2.send(frame(seq))
        deadline = time.monotonic() + 30
        while max(acks2, default=0) < FRAMES and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        state["acks2"] = max(acks2, default=0)

        os.kill(node1.proc.pid, signal.SIGCONT)
        # Node 1's writer wakes, tries its batch, and is fenced.
        deadline = time.monotonic() + 20
        while metric(node1, "hub_frames_fenced_total") == 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        state["fenced"] = metric(node1, "hub_frames_fenced_total")
        await asyncio.sleep(1.0)
        await ws2.close()
        await reading2

    asyncio.run(asyncio.wait_for(main(), 120))
    result = stored(database, "zombie-dev")
    print(f"\nCOUNTS zombie: stored_at_stop={state['stored_at_stop']} welcome2_last_seq={state['welcome2']['last_seq']} "
          f"fenced={state['fenced']} stored={result}")
    assert state["stored_at_stop"][0] == 0, "node 1 should still hold its batch when stopped"
    assert state["welcome2"]["last_seq"] == 0
    assert state["acks2"] == FRAMES
    assert state["fenced"] == FRAMES, f"node 1 fenced {state['fenced']} frames"
    assert result == (FRAMES, FRAMES * len(READINGS), FRAMES), f"duplicates or losses: {result}"
    assert mark(database, "zombie-dev")[:1] == (FRAMES,)


async def telemetry_seqs(ws, into, stop, device):
    """Appends the seq of every telemetry message for `device`, until `stop`."""
    while not stop.is_set():
        try:
            message = json.loads(await asyncio.wait_for(ws.recv(), 0.2))
        except asyncio.TimeoutError:
            continue
        if message["type"] == "telemetry" and message["device"] == device:
            into.append(message["seq"])
        elif message["type"] in ("error", "lagged"):
            into.append(message)


def test_live_and_replay_across_nodes(nodes, database):
    """A device streams to node 1. A dashboard on node 2 follows live from the start; one
    on node 3 subscribes mid-stream with resume from 0, so it replays history and then
    follows live. Each sees every frame once, in order, with no gap."""
    node1, node2, node3 = nodes.start(3)
    token = register(node1, "streamer")
    total = 600
    state = {}

    async def subscribe(hub, resume=None):
        ws = await connect(hub.url.replace("http://", "ws://") + "/live",
                           additional_headers={"Authorization": f"Bearer {hub.api_token}"})
        assert json.loads(await ws.recv())["type"] == "hello"
        request = {"type": "subscribe", "id": "s1", "devices": ["streamer"]}
        if resume is not None:
            request["resume"] = {"streamer": resume}
        await ws.send(json.dumps(request))
        return ws

    async def main():
        stop = asyncio.Event()
        live = await subscribe(node2)
        seen_live = []
        following = asyncio.ensure_future(telemetry_seqs(live, seen_live, stop, "streamer"))
        await asyncio.sleep(1.5)  # node 1 hears node 2's interest (heartbeat, or at once on change)

        ws, welcome = await open_device(node1, "streamer", token)
        acks = []
        reading = asyncio.ensure_future(read_acks(ws, acks))
        replayer, seen_replay, replaying = None, [], None
        for seq in range(1, total + 1):
            await ws.send(frame(seq))
            if seq == total // 2:
                replayer = await subscribe(node3, resume=0)
                replaying = asyncio.ensure_future(telemetry_seqs(replayer, seen_replay, stop, "streamer"))
            await asyncio.sleep(0.002)
        deadline = time.monotonic() + 30
        while (max(acks, default=0) < total or len(seen_live) < total or len(seen_replay) < total) \
                and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
        stop.set()
        await asyncio.gather(following, replaying)
        for socket in (live, replayer, ws):
            await socket.close()
        await reading
        state["live"], state["replay"] = seen_live, seen_replay

    asyncio.run(asyncio.wait_for(main(), 120))
    live, replay = state["live"], state["replay"]
    print(f"\nCOUNTS cross-node: live={len(live)} replay={len(replay)} stored={stored(database, 'streamer')}")
    assert live == list(range(1, total + 1)), f"live on node 2: {len(live)} events, first problems {[x for x in live if not isinstance(x, int)][:3]}"
    assert replay == list(range(1, total + 1)), f"replay then live on node 3: {len(replay)} events, {replay[:5]}…{replay[-5:]}"


def test_a_command_made_on_one_node_reaches_the_device_on_another(nodes, database):
    """REST on node 1, device on node 2, dashboard on node 3: the command is sent from
    node 2, its result reaches node 1's waiting caller, and node 3's dashboard sees every
    status change."""
    node1, node2, node3 = nodes.start(3)
    token = register(node1, "actuator")
    state = {}

    async def main():
        watcher = await dashboard(node3, "actuator")
        statuses, stop = [], asyncio.Event()

        async def watch():
            while not stop.is_set():
                try:
                    message = json.loads(await asyncio.wait_for(watcher.recv(), 0.2))
                except asyncio.TimeoutError:
                    continue
                if message["type"] == "command_status":
                    statuses.append(message["status"])

        watching = asyncio.ensure_future(watch())
        ws, _ = await open_device(node2, "actuator", token)

        async def device():
            async for message in ws:
                if isinstance(message, str) and json.loads(message)["type"] == "command":
                    command = json.loads(message)
                    await ws.send(json.dumps({"type": "command_ack", "id": command["id"]}))
                    await ws.send(json.dumps({"type": "command_result", "id": command["id"], "ok": True, "result": {"done": 1}}))

        answering = asyncio.ensure_future(device())
        await asyncio.sleep(0.3)
        loop = asyncio.get_running_loop()
        state["waited"] = await loop.run_in_executor(
            None, lambda: node1.rest("POST", "/api/v1/devices/actuator/commands", {"name": "blink", "params": {"n": 2}, "wait_s": 10}))
        await asyncio.sleep(0.5)
        stop.set()
        await watching
        answering.cancel()
        await ws.close()
        await watcher.close()
        state["statuses"] = statuses

    asyncio.run(asyncio.wait_for(main(), 60))
    print(f"\nCOUNTS command: waited={state['waited']} statuses={state['statuses']}")
    status, body = state["waited"]
    assert status == 200 and body["status"] == "succeeded" and body["result"] == {"done": 1}, state["waited"]
    assert state["statuses"] == ["queued", "sent", "delivered", "succeeded"], state["statuses"]


def lease_held(hub):
    return metric(hub, "hub_cluster_lease_held") == 1


def wait_for_one_holder(hubs, timeout):
    """Waits until exactly one of ``hubs`` holds the expiry lease; returns its index or None."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        holders = [i for i, hub in enumerate(hubs) if lease_held(hub)]
        if len(holders) == 1:
            return holders[0]
        time.sleep(0.2)
    return None


def expire_on(hub, device_id, timeout):
    """Posts a command with a time to live of 1 s for an offline device; returns its final
    status over REST and how long after the post it became final, as seconds."""
    status, body = hub.rest("POST", f"/api/v1/devices/{device_id}/commands", {"name": "sleep", "ttl_s": 1})
    assert status == 202, body
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        status, got = hub.rest("GET", f"/api/v1/commands/{body['id']}")
        if status == 200 and got["status"] not in ("queued", "sent", "delivered"):
            return got["status"], time.monotonic() - began
        time.sleep(0.1)
    return got.get("status"), None


def test_commands_of_devices_on_no_node_expire_on_one_node_at_a_time(nodes, database):
    """Three nodes: exactly one holds the expiry lease (an advisory lock), and a command for
    a device connected to no node expires within its time to live and a check. When the
    holder is stopped (SIGSTOP, its sockets open), a survivor ends its lease connection once
    its heartbeats are missed and takes the lease; the command expires there. Resumed, the
    old holder finds its lease gone: still exactly one holder."""
    hubs = nodes.start(3)
    for device_id in ("asleep-1", "asleep-2"):
        register(hubs[0], device_id)
    holder = wait_for_one_holder(hubs, 10)
    assert holder is not None, "no single holder of the expiry lease: " + str([lease_held(h) for h in hubs])
    samples = []
    for _ in range(10):
        samples.append(sum(lease_held(h) for h in hubs))
        time.sleep(0.1)
    other = hubs[(holder + 1) % 3]
    first = expire_on(other, "asleep-1", 10)

    os.kill(hubs[holder].proc.pid, signal.SIGSTOP)
    try:
        survivors = [h for i, h in enumerate(hubs) if i != holder]
        second = expire_on(survivors[0], "asleep-2", 20)
        new_holder = wait_for_one_holder(survivors, 10)
    finally:
        os.kill(hubs[holder].proc.pid, signal.SIGCONT)
    after_resume = wait_for_one_holder(hubs, 10)
    time.sleep(2)
    settled = [lease_held(h) for h in hubs]
    rows = database.psql("select status, count(*) from commands group by status order by 1")
    print(f"\nCOUNTS expiry lease: holder=node{holder + 1} holders_sampled={samples} first={first} "
          f"after_sigstop={second} new_holder={new_holder} after_resume={after_resume} settled={settled} rows={rows}")
    assert samples == [1] * 10, f"the lease should have exactly one holder at a time: {samples}"
    assert first[0] == "expired" and first[1] < 3, f"with the holder up: {first}"
    assert second[0] == "expired", f"with the holder stopped, the command never expired: {second}"
    assert new_holder is not None, "no survivor took the lease of the stopped node"
    assert sum(settled) == 1, f"after the stopped holder resumed: {settled}"
    assert rows == ["expired|2"], rows
