"""Database time (hostile-spec class 11; contract section 7), on a throwaway PgCluster the
hub uses through --database-url.

- While a psql session holds `LOCK TABLE device_registry IN ACCESS EXCLUSIVE MODE`,
  GET /api/v1/devices answers 503 with code `timeout` after about --statement-timeout, and
  /readyz answers within 2 s even with more such requests waiting than the hub has
  database connections.
- While `reading` and `metric` are locked, a replay (`since_us`) answers
  {"type":"error","code":"replay_failed"}, then `replay_done`, then live events.
- After a PostgreSQL restart, the first /readyz once writes have recovered answers 200.

Flags: --statement-timeout 1 (new: the old binary refuses to start).
"""

import concurrent.futures
import os
import subprocess
import time

import pytest

from hostile_kit import (
    HUB_BIN, SKIP_WITHOUT_HUB, HostileHub, Live, RawDevice, RssProbe, assert_alive, assert_others_unaffected,
)
from pgcluster import PgCluster

pytestmark = SKIP_WITHOUT_HUB

STATEMENT_TIMEOUT = 1


@pytest.fixture(scope="module")
def cluster():
    pg = PgCluster()
    try:
        yield pg
    finally:
        pg.cleanup()


@pytest.fixture(scope="module")
def module_hub(cluster):
    made = HostileHub(HUB_BIN, cluster=cluster, extra_args=["--statement-timeout", str(STATEMENT_TIMEOUT)])
    try:
        made.start()
        yield made
    finally:
        made.cleanup()


@pytest.fixture
def hub(module_hub, cluster):
    if not cluster.running:
        cluster.start()
    module_hub.revive()
    return module_hub


class Lock:
    """A psql session holding ``LOCK TABLE <tables> IN ACCESS EXCLUSIVE MODE`` for up to
    ``seconds``, until ``release()``."""

    def __init__(self, cluster, tables, seconds=20):
        self.cluster, self.tables = cluster, tables
        env = dict(os.environ, PGAPPNAME="hostile-lock")
        self.proc = subprocess.Popen(
            ["psql", "-X", "-h", cluster.dir, "-p", str(cluster.port), "-U", "hub", "-d", "hub", "-c",
             f"BEGIN; LOCK TABLE {tables} IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep({seconds}); COMMIT;"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        first = tables.split(",")[0].strip()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            held = cluster.psql(
                "select count(*) from pg_locks l join pg_stat_activity a on a.pid = l.pid "
                f"where a.application_name = 'hostile-lock' and l.relation = '{first}'::regclass "
                "and l.mode = 'AccessExclusiveLock' and l.granted")
            if held == ["1"]:
                self.since = time.monotonic()
                return
            time.sleep(0.05)
        self.release()
        raise AssertionError(f"could not lock {tables} within 15 s")

    def release(self):
        self.cluster.psql("select pg_terminate_backend(pid) from pg_stat_activity where application_name = 'hostile-lock'")
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def timed(fn, *args):
    began = time.monotonic()
    result = fn(*args)
    return result, time.monotonic() - began


def test_a_rest_statement_past_the_timeout_answers_503_and_readyz_does_not_wait(hub, cluster, figures):
    hub.register("dbt-one")
    rss = RssProbe(hub)
    lock = Lock(cluster, "device_registry")
    try:
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            lists = [pool.submit(timed, hub.request, "GET", "/api/v1/devices") for _ in range(6)]
            time.sleep(0.3)  # the list requests hold every database connection the hub has for them
            readyz, readyz_s = timed(hub.request, "GET", "/readyz", None, None)
            answers = [f.result(30) for f in lists]
        held_s = time.monotonic() - lock.since
    finally:
        lock.release()
    after = hub.request("GET", "/api/v1/devices")
    rss.stop()
    statuses = [(status, body.get("error", {}).get("code") if isinstance(body, dict) else body, round(took, 1))
                for (status, _, body), took in answers]
    figures(input=f"LOCK TABLE device_registry (held {held_s:.1f} s), 6 x GET /api/v1/devices, then GET /readyz "
                  f"(--statement-timeout {STATEMENT_TIMEOUT})",
            answer=f"devices: {statuses}; /readyz {readyz[0]} after {readyz_s:.2f} s; after the lock {after[0]}",
            rss_before=rss.before, rss_after=rss.after)
    assert_alive(hub, "statements behind a lock")
    assert all(s == 503 and code == "timeout" for s, code, _ in statuses), f"expected 503 timeout for each: {statuses}"
    assert max(t for _, _, t in statuses) <= STATEMENT_TIMEOUT * 2 + 3, f"the timeouts took too long: {statuses}"
    assert readyz_s < 2.0, f"/readyz waited {readyz_s:.2f} s behind the REST statements ({readyz[0]})"
    assert readyz[0] in (200, 503), readyz
    assert after[0] == 200, f"GET /api/v1/devices after the lock: {after[0]} {after[2]}"
    rss.assert_bounded()
    assert_others_unaffected(hub)


def test_a_replay_past_the_timeout_answers_replay_failed_then_goes_live(hub, cluster, figures):
    token = hub.register("dbt-replay")
    device = RawDevice(hub, "dbt-replay", token)
    for i in range(20):
        device.send_frame({"temp": 20.0 + i})
    rss = RssProbe(hub)
    live = Live(hub)
    lock = Lock(cluster, "reading, metric")
    events = []
    try:
        live.send({"type": "subscribe", "id": "r1", "devices": ["dbt-replay"], "since_us": 0})
        began = time.monotonic()
        new = []
        deadline = began + 15
        while time.monotonic() < deadline:
            try:
                message = live.recv(("subscribed", "error", "replay_done", "telemetry"), 0.5)
            except TimeoutError:
                continue
            events.append((message["type"], message.get("code") or message.get("seq"), round(time.monotonic() - began, 2)))
            if message["type"] == "replay_done" and not new:
                for i in range(3):  # live frames: pushed at once, committed once the lock is gone
                    new.append(device.send_frame({"temp": 40.0 + i}, wait=False))
            if message["type"] == "telemetry" and message.get("seq") == (new[-1] if new else None):
                break
        lock_held_s = time.monotonic() - lock.since  # released only below: replay_failed came while it was held
    finally:
        lock.release()
    device.wait_ack(device.seq, timeout=30)
    live.close()
    device.close()
    rss.stop()
    kinds = [kind for kind, _, _ in events]
    figures(input=f"subscribe since_us=0 while reading and metric are locked (--statement-timeout {STATEMENT_TIMEOUT})",
            answer=f"{events} (lock held {lock_held_s:.1f} s)", rss_before=rss.before, rss_after=rss.after)
    assert_alive(hub, "a replay behind a lock")
    assert "error" in kinds, f"no replay_failed: {events}"
    error = events[kinds.index("error")]
    assert error[1] == "replay_failed", events
    assert error[2] <= STATEMENT_TIMEOUT + 3, f"replay_failed only after {error[2]} s: {events}"
    assert "replay_done" in kinds and kinds.index("replay_done") > kinds.index("error"), events
    live_seqs = [seq for kind, seq, _ in events if kind == "telemetry"]
    assert live_seqs[-3:] == new, f"the live frames {new} did not follow: {events}"
    rss.assert_bounded()
    assert_others_unaffected(hub)


def test_readyz_answers_200_on_the_first_probe_after_a_postgres_restart(hub, cluster, figures):
    token = hub.register("dbt-restart")
    device = RawDevice(hub, "dbt-restart", token)
    device.send_frame({"temp": 1.0})
    before = hub.request("GET", "/readyz", None, None)
    rss = RssProbe(hub)
    cluster.stop()
    down = hub.request("GET", "/readyz", None, None)
    seq = device.send_frame({"temp": 2.0}, wait=False)
    time.sleep(1.0)
    cluster.start()
    recovered_s = device.wait_ack(seq, timeout=60)  # writes have recovered: the frame is committed
    first, first_s = timed(hub.request, "GET", "/readyz", None, None)
    rest = [hub.request("GET", "/api/v1/devices")[0] for _ in range(4)]  # ready means served
    rss.stop()
    device.close()
    figures(input="PostgreSQL stopped (fast) and started under the hub",
            answer=(f"/readyz before {before[0]}, while down {down[0]} {str(down[2]).strip()!r}; writes recovered "
                    f"{recovered_s:.1f} s after the start; first /readyz then {first[0]} {str(first[2]).strip()!r} "
                    f"after {first_s:.2f} s; REST then {rest}"),
            rss_before=rss.before, rss_after=rss.after)
    assert_alive(hub, "a PostgreSQL restart")
    assert before[0] == 200 and down[0] == 503, (before[:1], down[:1])
    assert first[0] == 200, f"the first /readyz after writes recovered: {first[0]} {first[2]}"
    assert rest == [200] * 4, f"/readyz said 200, but GET /api/v1/devices right after answered {rest}"
    rss.assert_bounded()
    assert_others_unaffected(hub)
