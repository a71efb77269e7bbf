"""What the cluster fault tests share: a device that picks a random node on every connect,
a /live dashboard that counts every (device, seq) it gets, a round-based stream with
events at chosen rounds, and polling helpers.

The exactly-once and ack-before-commit checks are the fault tests' own
(Tests/Faults/test_faults.py: `stored_counts`, `RecordingClient`, `commit_times`,
`acks_ahead_of_commits`), imported from there; Tests/Faults is on the path (conftest.py).
"""

import asyncio
import json
import random
import time
from collections import defaultdict

from websockets.asyncio.client import connect

from hub_device.client import device_url
from test_faults import (  # noqa: F401  (re-exported for the tests)
    READINGS_PER_FRAME, RecordingClient, acks_ahead_of_commits, commit_times, finish, http_get, readings,
    register, stored_counts,
)

FINAL_STATES = {"succeeded", "failed", "expired", "timed_out", "cancelled"}  # contract section 3


class RoamingClient(RecordingClient):
    """A device that connects to a random node of ``hubs`` on every (re)connect (the kit
    reads ``self.url`` at each connect), and timestamps every ack and welcome mark.
    ``node`` is the index (0-based) of the node it picked last; ``picks`` all of them;
    ``welcomes`` (time, node, session, last_seq) of every welcome."""

    def __init__(self, hubs, device_id, token, rng=random, **kwargs):
        self._targets = [device_url(hub.url, device_id) for hub in hubs]
        self._rng = rng
        self.node = None
        self.picks = []
        self.welcomes = []
        super().__init__(hubs[0].url, device_id, token, **kwargs)

    async def _serve(self, ws, welcome):
        self.welcomes.append((time.time(), self.node, welcome.session, welcome.last_seq))
        await super()._serve(ws, welcome)

    @property
    def url(self):
        self.node = self._rng.randrange(len(self._targets))
        self.picks.append(self.node)
        return self._targets[self.node]

    @url.setter
    def url(self, value):  # DeviceClient.__init__ sets one; the choice is made at each connect
        pass


class Dashboard:
    """A /live connection on one node with one subscription; a background reader keeps
    every telemetry seq per device in arrival order, and every `lagged` or `error`."""

    def __init__(self, hub, label):
        self.hub, self.label = hub, label
        self.seqs = defaultdict(list)  # device -> [seq, …] in arrival order
        self.problems = []  # lagged / error messages
        self.replay_done = False
        self.ws = self.task = None

    async def open(self, devices, resume=None, sub="s1"):
        self.ws = await connect(self.hub.url.replace("http://", "ws://") + "/live",
                                additional_headers={"Authorization": f"Bearer {self.hub.api_token}"},
                                max_size=None)
        hello = json.loads(await asyncio.wait_for(self.ws.recv(), 10))
        assert hello["type"] == "hello", hello
        request = {"type": "subscribe", "id": sub, "devices": devices}
        if resume is not None:
            request["resume"] = resume
        await self.ws.send(json.dumps(request))
        while True:
            message = json.loads(await asyncio.wait_for(self.ws.recv(), 10))
            if message["type"] == "subscribed":
                break
            assert message["type"] != "error", f"{self.label}: {message}"
        self.task = asyncio.ensure_future(self._read())
        return self

    async def _read(self):
        try:
            async for text in self.ws:
                message = json.loads(text)
                kind = message["type"]
                if kind == "telemetry":
                    self.seqs[message["device"]].append(message["seq"])
                elif kind == "replay_done":
                    self.replay_done = True
                elif kind in ("lagged", "error"):
                    self.problems.append(message)
        except Exception:  # the connection went away; what came is kept
            pass

    def distinct(self):
        return sum(len(set(s)) for s in self.seqs.values())

    def has_all(self, expected):
        """Whether every seq 1..expected[device] has arrived."""
        return all(set(range(1, top + 1)) <= set(self.seqs.get(d, ())) for d, top in expected.items())

    async def close(self):
        if self.ws is not None:
            await self.ws.close()
        if self.task is not None:
            await asyncio.wait_for(self.task, 10)

    def check(self, expected, ordered=False):
        """Against ``expected`` = {device: top acked seq}: every seq 1..top exactly once (and,
        with ``ordered``, in increasing order per device). Returns (counts, failures): a dict
        for the COUNTS line and a list of readable failures."""
        failures, missing_total, duplicate_total, disorder_total, extra_total = [], 0, 0, 0, 0
        for device in sorted(expected):
            top, got = expected[device], self.seqs.get(device, [])
            seen, repeated = set(), []
            for seq in got:
                if seq in seen:
                    repeated.append(seq)
                seen.add(seq)
            missing = sorted(set(range(1, top + 1)) - seen)
            extra = sorted(s for s in seen if not 1 <= s <= top)
            disorder = [(a, b) for a, b in zip(got, got[1:]) if b <= a] if ordered else []
            missing_total += len(missing)
            duplicate_total += len(repeated)
            extra_total += len(extra)
            disorder_total += len(disorder)
            if missing:
                failures.append(f"{self.label} missed seqs {ranges(missing)} of device {device} ({len(missing)} of {top})")
            if repeated:
                failures.append(f"{self.label} got seqs {ranges(sorted(set(repeated)))} of device {device} more than once "
                                f"({len(repeated)} repeats)")
            if extra:
                failures.append(f"{self.label} got seqs {ranges(extra)} of device {device}, beyond the acked {top}")
            if disorder:
                failures.append(f"{self.label} got device {device} out of order {len(disorder)} times, first "
                                f"{disorder[0][0]} then {disorder[0][1]}")
        unexpected = sorted(set(self.seqs) - set(expected))
        if unexpected:
            failures.append(f"{self.label} got devices it should not: {unexpected[:5]}")
        if self.problems:
            failures.append(f"{self.label} got {len(self.problems)} lagged/error messages, first {self.problems[0]}")
        counts = {"events": sum(len(s) for s in self.seqs.values()), "distinct": self.distinct(),
                  "missing": missing_total, "repeats": duplicate_total, "extra": extra_total,
                  "lagged_or_error": len(self.problems)}
        if ordered:
            counts["out_of_order"] = disorder_total
        return counts, failures


def ranges(seqs):
    """[1, 2, 3, 7, 9, 10] -> '1–3, 7, 9–10' (the first 6 runs, then how many more)."""
    runs = []
    for seq in seqs:
        if runs and seq == runs[-1][1] + 1:
            runs[-1][1] = seq
        else:
            runs.append([seq, seq])
    text = ", ".join(f"{a}" if a == b else f"{a}–{b}" for a, b in runs[:6])
    return text + (f" and {len(runs) - 6} more runs" if len(runs) > 6 else "")


async def stream(clients, frames, events=None, pace=0.01, burst=0):
    """Round-robin: frame i of every client, then ``pace`` s; at round r the coroutine
    function ``events[r]`` starts beside the stream. The ``burst`` rounds before the last
    event go without a pause, so that event hits many frames in flight. Returns when all
    are sent and every event has finished."""
    events = events or {}
    last = max(events, default=-1)
    started = []
    for i in range(frames):
        for client in clients:
            await client.send(readings(i))
        if i in events:
            started.append(asyncio.ensure_future(events[i]()))
        await asyncio.sleep(0 if last - burst <= i < last else pace)
    for task in started:
        await task


async def wait_until(predicate, timeout, step=0.05):
    """Polls ``predicate()`` until true or ``timeout`` s; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        await asyncio.sleep(step)


async def wait_status(loop, url, want, timeout, step=0.1):
    """Polls GET ``url`` until it answers ``want``; (status seen last, seconds taken)."""
    began = time.monotonic()
    while True:
        status, _ = await loop.run_in_executor(None, http_get, url, 2.0)
        if status == want or time.monotonic() - began >= timeout:
            return status, time.monotonic() - began
        await asyncio.sleep(step)
