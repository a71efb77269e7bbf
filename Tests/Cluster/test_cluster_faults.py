"""Cluster fault tests: hub nodes on one PostgreSQL and one nats-server, under faults.

1. kill -9 of one of three nodes mid-stream: 30 devices stream, each to a random node on
   every (re)connect; dashboards on the other two nodes replay from 0 and follow; 20
   commands, posted over REST on random nodes to random devices, are in flight (15 of them
   held by their device until the kill, so they are not final when it comes). Every
   (device, seq) is stored exactly once, every acked frame reaches each dashboard
   subscription exactly once, and every command reaches a final state: succeeded, with its
   device's answer (run at least once).
2. Commands across two nodes: 10 commands over REST on random nodes to random devices
   while they stream, with both nodes up, settle within 10 s, commands posted on the other
   node than their device's included; then one node is killed and 10 more are posted on the
   survivor: every command reaches a final state, answered by its device.
3. nats-server stopped for 5 s: the node with the devices keeps ingesting, its /readyz says
   503 and then 200 again, and a dashboard on the other node has every acked frame exactly
   once, in order.
4. PostgreSQL stopped for 5 s under two nodes: 0 lost, 0 duplicated, no ack before the
   commit of what it acknowledges.

Each test prints a COUNTS line (repeated under "cluster-test counts" at the end).
"""

import asyncio
import os
import random
import time
from collections import Counter

from cluster_kit import (
    FINAL_STATES, READINGS_PER_FRAME, Dashboard, RecordingClient, RoamingClient, acks_ahead_of_commits,
    commit_times, finish, ranges, register, stored_counts, stream, wait_status, wait_until,
)


def device_log_lines(hubs, device):
    """Every node's log lines that name ``device``, for a failure message."""
    lines = []
    for n, hub in enumerate(hubs):
        for name in sorted(os.listdir(hub.root)):
            if name.startswith("hub-") and name.endswith(".err"):
                with open(os.path.join(hub.root, name), errors="replace") as f:
                    lines += [f"    node{n + 1}: {line.rstrip()}" for line in f if f"device={device} " in line
                              or line.rstrip().endswith(f"device={device}")]
    return "\n".join(lines)


# ---------------------------------------------------------------------------- 1. kill -9 of a node

KILL_DEVICES, KILL_FRAMES, KILL_COMMANDS = 30, 400, 20
KILL_ROUND = KILL_FRAMES * 2 // 5
COMMANDS_ROUND = KILL_FRAMES // 10  # all posted well before the kill
COMMANDS_TO_NODE1 = 4  # the first commands go to devices on node 1, the others to any device


def test_kill_9_of_a_node_while_30_devices_stream(nodes, database, counts):
    node1, node2, node3 = hubs = nodes.start(3)
    ids = [f"k9-{n:02}" for n in range(KILL_DEVICES)]
    tokens = {i: register(node1, i) for i in ids}
    rng = random.Random()
    seed = rng.randrange(10**6)
    rng.seed(seed)
    runs = {i: [] for i in ids}  # device -> the `n` of every command it started
    answered = set()  # (device, n) of every command whose handler returned
    sent = []  # {"id", "device", "n", "hold", "posted_on", "device_on", "params", ...}
    state = {}

    def answer(device, killed):
        async def handler(params):  # a slow device: most commands are answered only after the kill
            runs[device].append(params["n"])
            if params["hold"]:
                await killed.wait()
            await asyncio.sleep(params["delay_s"])
            answered.add((device, params["n"]))
            return {"n": params["n"], "device": device}
        return handler

    async def main():
        loop = asyncio.get_running_loop()
        killed, posted = asyncio.Event(), asyncio.Event()
        clients = [RoamingClient(hubs, i, tokens[i], backoff_max=1.0) for i in ids]
        by_id = {c.device_id: c for c in clients}
        for client in clients:
            client.on_command("echo", answer(client.device_id, killed))
            await client.start()
        assert all(await asyncio.gather(*(c.wait_connected(30) for c in clients))), "devices did not connect"
        dashboards = [Dashboard(node2, "dashboard on node 2"), Dashboard(node3, "dashboard on node 3")]

        async def subscribe():  # mid-stream: history to replay, then live
            for dashboard in dashboards:
                await dashboard.open(["k9-*"], resume={i: 0 for i in ids})

        async def post_commands():
            # 3 of 4 are held by their device until the kill and answered 0-3 s after it; the
            # others are answered at once. Posted on any of the 3 nodes, to any device (the
            # first few to devices on node 1), all at once.
            state["posting_began"] = time.time()
            on_node1 = sorted(c.device_id for c in clients if c.connected and c.node == 0)
            plan = []
            for n in range(KILL_COMMANDS):
                device = rng.choice(on_node1 if n < COMMANDS_TO_NODE1 and on_node1 else ids)
                hold = n % 4 != 0
                params = {"n": n, "hold": hold, "delay_s": round(rng.uniform(0, 3.0 if hold else 0.3), 2)}
                client = by_id[device]
                plan.append({"device": device, "n": n, "hold": hold, "posted_on": rng.randrange(3),
                             "device_on": client.node if client.connected else None, "params": params})

            async def post(c):
                status, body = await loop.run_in_executor(None, lambda: hubs[c["posted_on"]].rest(
                    "POST", f"/api/v1/devices/{c['device']}/commands",
                    {"name": "echo", "params": c["params"], "ttl_s": 300}))
                assert status == 202, (status, body)
                c["id"] = body["id"]
                sent.append(c)

            try:
                await asyncio.gather(*(post(c) for c in plan))
            finally:
                state["posted_at"] = time.time()
                posted.set()

        async def kill():
            await posted.wait()  # every command is stored before the kill
            on_node1 = [c for c in clients if c.connected and c.node == 0]
            state["devices_on_node1"] = len(on_node1)
            state["pending_at_kill"] = sum(c.pending for c in clients)
            state["pending_on_node1"] = sum(c.pending for c in on_node1)
            state["sessions_at_kill"] = {c.device_id: c.welcome.session for c in on_node1}
            state["acked_at_kill"] = sum(c.acked_seq for c in clients)
            state["devices_at_kill"] = {c.device_id: (c.node if c.connected else None, c.acked_seq, c.pending)
                                        for c in clients}
            for c in sent:  # a command its device has not answered yet cannot be final at the kill
                c["device_on_at_kill"] = by_id[c["device"]].node if by_id[c["device"]].connected else None
                c["started_at_kill"] = c["n"] in runs[c["device"]]
                c["answered_at_kill"] = (c["device"], c["n"]) in answered
            node1.kill()
            state["killed_at"] = time.time()
            killed.set()

        await stream(clients, KILL_FRAMES, {KILL_FRAMES // 5: subscribe, COMMANDS_ROUND: post_commands,
                                            KILL_ROUND: kill}, burst=50)

        async def get(k, command_id):  # on the surviving nodes, in turn
            status, body = await loop.run_in_executor(
                None, lambda: hubs[1 + k % 2].rest("GET", f"/api/v1/commands/{command_id}"))
            return body if status == 200 else {"status": f"HTTP {status}"}

        final_by = time.monotonic() + 60
        while True:
            final = {c["id"]: await get(k, c["id"]) for k, c in enumerate(sent)}
            if all(b.get("status") in FINAL_STATES for b in final.values()) or time.monotonic() > final_by:
                break
            await asyncio.sleep(0.5)
        state["commands_final"] = final
        state["commands_final_after_s"] = time.time() - state["killed_at"]

        state["all_acked"], state["unacked"] = await finish(clients, timeout=60)
        state["acked_after_kill"] = sum(1 for c in clients for _, at in c.acks if at > state["killed_at"])
        state["moved"] = sum(1 for c in clients if c.device_id in state["sessions_at_kill"]
                             and c.welcome.session > state["sessions_at_kill"][c.device_id])
        expected = {i: KILL_FRAMES for i in ids}
        await wait_until(lambda: all(d.has_all(expected) for d in dashboards), 30, step=0.2)
        await asyncio.sleep(0.5)  # anything repeated late
        for dashboard in dashboards:
            await dashboard.close()
        state["replay_done"] = [d.replay_done for d in dashboards]
        state["checks"] = [d.check(expected) for d in dashboards]
        state["gaps"] = []  # for a failure: what each device with a missing or repeated seq went through
        for d in dashboards:
            for device in ids:
                got = d.seqs.get(device, [])
                missing = sorted(set(range(1, KILL_FRAMES + 1)) - set(got))
                repeated = sorted(seq for seq, times in Counter(got).items() if times > 1)
                if missing or repeated:
                    node, acked, pending = state["devices_at_kill"][device]
                    client = by_id[device]
                    welcomes = [(round(at - state["killed_at"], 2), f"node{n + 1}", session, last)
                                for at, n, session, last in client.welcomes]
                    state["gaps"].append(
                        f"  {d.label}: {device} missing {ranges(missing) or '-'}, repeated {ranges(repeated) or '-'}; "
                        f"at the kill on {'node%d' % (node + 1) if node is not None else 'none'}, acked {acked}, "
                        f"{pending} unacked; welcomes (s after the kill, node, session, last_seq) {welcomes}; "
                        f"node picks {[n + 1 for n in client.picks]}\n" + device_log_lines(hubs, device))

    asyncio.run(asyncio.wait_for(main(), 210))
    result = stored_counts(database.psql, ids, KILL_FRAMES)
    (seen2, failures2), (seen3, failures3) = state["checks"]
    final = state["commands_final"]
    by_status = {}
    for body in final.values():
        by_status[body.get("status")] = by_status.get(body.get("status"), 0) + 1
    not_final_at_kill = [c for c in sent if not c["answered_at_kill"]]
    counts(**result, devices_on_node1=state["devices_on_node1"], unacked_at_kill=state["pending_at_kill"],
           unacked_on_node1_at_kill=state["pending_on_node1"], acks_after_kill=state["acked_after_kill"],
           moved=state["moved"], unacked_at_end=state["unacked"],
           dashboard2=seen2, dashboard3=seen3,
           seed=seed, commands=len(sent), command_final_states=by_status,
           commands_posted_on_node1=sum(1 for c in sent if c["posted_on"] == 0),
           commands_cross_node=sum(1 for c in sent if c["device_on"] is not None and c["device_on"] != c["posted_on"]),
           commands_to_devices_on_node1=sum(1 for c in sent if c["device_on_at_kill"] == 0),
           commands_not_final_at_kill=len(not_final_at_kill),
           commands_not_final_at_kill_device_on_node1=sum(1 for c in not_final_at_kill if c["device_on_at_kill"] == 0),
           commands_running_on_devices_at_kill=sum(1 for c in not_final_at_kill if c["started_at_kill"]),
           command_runs_on_devices=sum(len(r) for r in runs.values()),
           commands_posting_s=round(state["posted_at"] - state["posting_began"], 2),
           commands_posted_before_kill_s=round(state["killed_at"] - state["posted_at"], 2),
           commands_final_after_kill_s=round(state["commands_final_after_s"], 1))
    assert state["devices_on_node1"] > 0 and state["pending_on_node1"] > 0, "the kill should hit frames in flight on node 1"
    assert state["all_acked"], f"{state['unacked']} frames never acked after the kill\n{node2.logs()}\n{node3.logs()}"
    assert state["acked_after_kill"] > 0
    assert state["moved"] == state["devices_on_node1"], "every device on node 1 should have reconnected elsewhere"
    assert (result["duplicates"], result["lost"]) == (0, 0), result
    assert result["stored"] == KILL_DEVICES * KILL_FRAMES
    assert state["replay_done"] == [True, True]

    def describe(commands):
        return "\n".join(
            f"  n={c['n']} {c['device']}: posted on node{c['posted_on'] + 1}, device on "
            f"{'node%d' % (c['device_on_at_kill'] + 1) if c['device_on_at_kill'] is not None else 'none'} at the kill, "
            f"{'answered' if c['answered_at_kill'] else 'running' if c['started_at_kill'] else 'not started'} "
            f"at the kill: {final[c['id']]}" for c in commands)

    assert len(sent) == KILL_COMMANDS
    not_final = [c for c in sent if final[c["id"]].get("status") not in FINAL_STATES]
    assert not not_final, (f"{len(not_final)} of {len(sent)} commands not in a final state 60 s after the stream "
                           f"(seed {seed}):\n" + describe(not_final) + f"\n{node2.logs()}\n{node3.logs()}")
    wrong = [c for c in sent if final[c["id"]].get("status") != "succeeded"
             or final[c["id"]].get("result") != {"n": c["n"], "device": c["device"]}]
    assert not wrong, f"commands not answered by their device (seed {seed}):\n" + describe(wrong)
    for c in sent:  # at least once: a device may run a command twice
        assert c["n"] in runs[c["device"]], f"device {c['device']} never ran command n={c['n']}"
    assert not_final_at_kill, "every command was final before the kill: the kill hit none in flight"
    assert any(c["device_on_at_kill"] == 0 for c in not_final_at_kill), \
        "no command in flight at the kill was for a device on node 1"
    assert not failures2 + failures3, "\n".join(failures2 + failures3 + state["gaps"])


# ---------------------------------------------------------------------------- 2. commands across nodes

COMMAND_DEVICES, COMMANDS = 8, 20


def test_commands_across_nodes_reach_a_final_state(nodes, database, counts):
    node1, node2 = hubs = nodes.start(2)
    ids = [f"cmd-{n}" for n in range(COMMAND_DEVICES)]
    tokens = {i: register(node1, i) for i in ids}
    rng = random.Random()
    seed = rng.randrange(10**6)
    rng.seed(seed)
    runs = {i: [] for i in ids}  # device -> the `n` of every command it ran
    sent = []  # {"id", "device", "n", "posted_on", "device_on", "phase"}
    state = {}

    def answer(device):
        def handler(params):
            runs[device].append(params["n"])
            return {"n": params["n"], "device": device}
        return handler

    async def main():
        loop = asyncio.get_running_loop()
        clients = {i: RoamingClient(hubs, i, tokens[i], backoff_max=1.0) for i in ids}
        for client in clients.values():
            client.on_command("echo", answer(client.device_id))
            await client.start()
        assert all(await asyncio.gather(*(c.wait_connected(30) for c in clients.values()))), "devices did not connect"
        live = [0, 1]

        async def post(n, phase):
            device = rng.choice(ids)
            node = rng.choice(live)
            client = clients[device]
            status, body = await loop.run_in_executor(None, lambda: hubs[node].rest(
                "POST", f"/api/v1/devices/{device}/commands", {"name": "echo", "params": {"n": n}, "ttl_s": 300}))
            assert status == 202, (status, body)
            sent.append({"id": body["id"], "device": device, "n": n, "posted_on": node,
                         "device_on": client.node if client.connected else None, "phase": phase})

        async def get(command_id):
            status, body = await loop.run_in_executor(None, lambda: hubs[live[-1]].rest("GET", f"/api/v1/commands/{command_id}"))
            return body if status == 200 else {"status": f"HTTP {status}"}

        async def statuses():
            return {c["id"]: await get(c["id"]) for c in sent}

        async def background():
            for i in range(100_000):
                for client in clients.values():
                    await client.send({"temp": 20.0 + i % 10, "count": i, "door": i % 2 == 0})
                await asyncio.sleep(0.05)

        streaming = asyncio.ensure_future(background())
        try:
            # Phase A: both nodes up; a command and its device are on different nodes about half the time.
            for n in range(COMMANDS // 2):
                await post(n, "A")
                await asyncio.sleep(0.2)
            settle_by = time.monotonic() + 10
            while time.monotonic() < settle_by:
                before_kill = await statuses()
                if all(b.get("status") in FINAL_STATES for b in before_kill.values()):
                    break
                await asyncio.sleep(0.3)
            state["before_kill"] = before_kill
            node1.kill()
            live.remove(0)
            # Phase B: node 2 only; node 1's devices come over to it.
            for n in range(COMMANDS // 2, COMMANDS):
                await post(n, "B")
                await asyncio.sleep(0.2)
            final_by = time.monotonic() + 60
            while True:
                final = await statuses()
                if all(b.get("status") in FINAL_STATES for b in final.values()) or time.monotonic() > final_by:
                    break
                await asyncio.sleep(0.5)
            state["final"] = final
        finally:
            streaming.cancel()
            await asyncio.gather(streaming, return_exceptions=True)
            for client in clients.values():
                await client.close(2)

    asyncio.run(asyncio.wait_for(main(), 150))
    final, before = state["final"], state["before_kill"]
    by_status = {}
    for body in final.values():
        by_status[body.get("status")] = by_status.get(body.get("status"), 0) + 1
    cross = [c for c in sent if c["phase"] == "A" and c["device_on"] is not None and c["device_on"] != c["posted_on"]]
    unsettled_before = [c for c in sent if c["phase"] == "A" and before[c["id"]].get("status") not in FINAL_STATES]
    counts(seed=seed, commands=len(sent), final_states=by_status,
           phase_a_cross_node=len(cross), phase_a_unsettled_before_kill=len(unsettled_before),
           phase_a_cross_node_unsettled_before_kill=sum(1 for c in unsettled_before if c in cross),
           runs_on_devices=sum(len(r) for r in runs.values()))

    def describe(commands, states):
        return "\n".join(f"  n={c['n']} {c['device']} phase {c['phase']}: posted on node{c['posted_on'] + 1}, device on "
                         f"{'node%d' % (c['device_on'] + 1) if c['device_on'] is not None else 'none'}: "
                         f"{states[c['id']].get('status')}" for c in commands)

    not_final = [c for c in sent if final[c["id"]].get("status") not in FINAL_STATES]
    assert not not_final, f"{len(not_final)} of {len(sent)} commands not in a final state after 60 s:\n" + \
        describe(not_final, final)
    wrong = [c for c in sent if final[c["id"]].get("status") != "succeeded"
             or final[c["id"]].get("result") != {"n": c["n"], "device": c["device"]}]
    assert not wrong, "commands not answered by their device:\n" + describe(wrong, final)
    for c in sent:
        assert c["n"] in runs[c["device"]], f"device {c['device']} never ran command n={c['n']}"
    assert cross, f"no command was posted on the other node than its device's (seed {seed})"
    assert not unsettled_before, ("with both nodes up, commands still unsettled 10 s after they were posted:\n"
                                  + describe(unsettled_before, before))


# ---------------------------------------------------------------------------- 3. nats-server stopped

NATS_DEVICES, NATS_FRAMES, NATS_OUTAGE_S = 10, 600, 5.0


def test_nats_stopped_5_s_mid_stream(nodes, nats, database, counts):
    node1, node2 = nodes.start(2)
    ids = [f"nats-{n}" for n in range(NATS_DEVICES)]
    tokens = {i: register(node1, i) for i in ids}
    state = {}

    async def main():
        loop = asyncio.get_running_loop()
        dashboard = await Dashboard(node2, "dashboard on node 2").open(["nats-*"])
        await asyncio.sleep(1.5)  # node 1 hears node 2's interest
        clients = [RecordingClient(node1.url, i, tokens[i], backoff_max=1.0) for i in ids]
        for client in clients:
            await client.start()

        async def outage():
            state["acked_at_stop"] = sum(c.acked_seq for c in clients)
            await loop.run_in_executor(None, nats.stop)
            state["down_at"] = down = time.time()
            state["readyz_down"] = await wait_status(loop, node1.url + "/readyz", 503, 5.0)
            await asyncio.sleep(max(0.0, NATS_OUTAGE_S - (time.time() - down)))
            state["acked_while_down"] = sum(c.acked_seq for c in clients) - state["acked_at_stop"]
            await loop.run_in_executor(None, nats.start)
            state["up_at"] = time.time()
            state["readyz_up"] = await wait_status(loop, node1.url + "/readyz", 200, 15.0)

        await stream(clients, NATS_FRAMES, {NATS_FRAMES // 4: outage}, pace=0.02)
        state["all_acked"], state["unacked"] = await finish(clients, timeout=60)
        state["acks_while_down"] = sum(1 for c in clients for _, at in c.acks if state["down_at"] < at < state["up_at"])
        expected = {i: NATS_FRAMES for i in ids}
        await wait_until(lambda: dashboard.has_all(expected), 20, step=0.2)
        await asyncio.sleep(0.5)
        await dashboard.close()
        state["check"] = dashboard.check(expected, ordered=True)

    asyncio.run(asyncio.wait_for(main(), 150))
    result = stored_counts(database.psql, ids, NATS_FRAMES)
    seen, failures = state["check"]
    counts(**result, acks_while_nats_down=state["acks_while_down"], frames_acked_while_down=state["acked_while_down"],
           readyz_node1_down=f"{state['readyz_down'][0]}@{state['readyz_down'][1]:.1f}s",
           readyz_node1_up=f"{state['readyz_up'][0]}@{state['readyz_up'][1]:.1f}s",
           unacked_at_end=state["unacked"], dashboard2=seen)
    assert state["acks_while_down"] > 0 and state["acked_while_down"] > 0, "node 1 stopped acking without NATS"
    assert state["readyz_down"][0] == 503, f"/readyz on node 1 with NATS down: {state['readyz_down']}"
    assert state["readyz_up"][0] == 200, f"/readyz on node 1 after NATS is back: {state['readyz_up']}"
    assert state["all_acked"], f"{state['unacked']} frames never acked\n{node1.logs()}"
    assert (result["duplicates"], result["lost"]) == (0, 0), result
    assert not failures, "\n".join(failures)


# ---------------------------------------------------------------------------- 4. PostgreSQL stopped

PG_DEVICES, PG_FRAMES, PG_OUTAGE_S = 10, 1000, 5.0


def test_database_stopped_5_s_under_two_nodes(nodes, database, counts):
    hubs = nodes.start(2)
    ids = [f"pg-{n}" for n in range(PG_DEVICES)]
    tokens = {i: register(hubs[0], i) for i in ids}
    state = {}

    async def main():
        loop = asyncio.get_running_loop()
        clients = [RoamingClient(hubs, i, tokens[i], backoff_max=1.0) for i in ids]
        for client in clients:
            await client.start()
        assert all(await asyncio.gather(*(c.wait_connected(30) for c in clients))), "devices did not connect"
        state["nodes_used"] = sorted({c.node for c in clients})

        async def outage():
            await loop.run_in_executor(None, database.stop)
            state["down_at"] = time.time()
            state["pending_at_stop"] = sum(c.pending for c in clients)
            await asyncio.sleep(PG_OUTAGE_S)
            state["up_at"] = time.time()
            await loop.run_in_executor(None, database.start)

        await stream(clients, PG_FRAMES, {PG_FRAMES * 3 // 10: outage}, pace=0.004, burst=300)
        state["all_acked"], state["unacked"] = await finish(clients, timeout=90)
        state["reconnects"] = sum(len(c.picks) - 1 for c in clients)
        return clients

    clients = asyncio.run(asyncio.wait_for(main(), 150))
    result = stored_counts(database.psql, ids, PG_FRAMES)
    checked, violations = acks_ahead_of_commits(clients, commit_times(database, ids))
    acks_while_down = sum(1 for c in clients for _, at in c.acks if state["down_at"] < at < state["up_at"])
    counts(**result, nodes_used=[n + 1 for n in state["nodes_used"]], pending_at_stop=state["pending_at_stop"],
           reconnects=state["reconnects"], acks_checked_against_commit_time=checked,
           acks_before_commit=len(violations), acks_received_while_down=acks_while_down,
           unacked_at_end=state["unacked"])
    assert state["nodes_used"] == [0, 1], f"the devices should start on both nodes: {state['nodes_used']}"
    assert state["pending_at_stop"] > 0, "the stop should hit frames in flight"
    assert state["all_acked"], f"{state['unacked']} frames never acked after the restart\n" + \
        "\n".join(h.logs() for h in hubs)
    assert not violations, "acks sent before the commit:\n" + "\n".join(violations[:20])
    assert checked >= PG_DEVICES
    assert (result["duplicates"], result["lost"]) == (0, 0), result
    assert result["stored"] == PG_DEVICES * PG_FRAMES
    assert result["rows"] == PG_DEVICES * PG_FRAMES * READINGS_PER_FRAME
