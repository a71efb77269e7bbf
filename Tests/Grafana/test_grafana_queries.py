"""Every SQL query in docs/grafana/hub-fleet.json, with Grafana's macros and the
dashboard's variables expanded to concrete values, run against a live hub's database that
holds a week of readings and some rejected frames: each returns rows of the shape its panel
expects. They run as the read-only role that docs/operations.md#grafana creates."""

import asyncio
import json
import os
import re
import subprocess
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest
from websockets.sync.client import connect

from hub_device import DeviceClient
from livehub import LiveHub

HUB_BIN = os.environ.get("HUB_BIN")
DOCS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "docs", "grafana")
OPERATIONS = os.path.join(DOCS, "..", "operations.md")
DEVICE, METRICS = "graf-1", ("temp", "rpm")
NOW = datetime.now(timezone.utc)
FROM, TO = NOW - timedelta(days=7), NOW + timedelta(minutes=5)


def load_dashboard():
    with open(os.path.join(DOCS, "hub-fleet.json")) as f:
        return json.load(f)


def expand(sql, variables):
    """Grafana's PostgreSQL macros used by the dashboard, and its variables, as Grafana
    would expand them for the range FROM..TO. Any other macro fails the test."""
    stamp = lambda t: "'" + t.strftime("%Y-%m-%dT%H:%M:%SZ") + "'"  # noqa: E731
    sql = re.sub(r"\$__timeFilter\(([^)]+)\)", lambda m: f"{m.group(1)} BETWEEN {stamp(FROM)} AND {stamp(TO)}", sql)
    sql = sql.replace("$__timeFrom()", stamp(FROM)).replace("$__timeTo()", stamp(TO))
    for name, value in variables.items():
        sql = sql.replace(f"${name}", value)
    leftover = re.findall(r"\$\w+", sql)
    assert not leftover, f"unexpanded {leftover} in {sql}"
    return sql


def grafana_role_sql():
    """The SQL block of docs/operations.md's Grafana section: the role and its grants."""
    text = open(OPERATIONS).read()
    section = text[text.index("## Grafana"):]
    return re.search(r"```sql\n(.*?)```", section, re.S).group(1)


def query(hub, sql, user="grafana"):
    """(column names, rows) of one statement, through psql on the hub's socket."""
    done = subprocess.run(
        ["psql", "-h", os.path.join(hub.data_dir, "postgres"), "-U", user, "hub", "-X", "-A", "-F", "\t", "-P", "footer=off",
         "-v", "ON_ERROR_STOP=1", "-c", sql], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"{sql}\n{done.stderr}"
    lines = done.stdout.splitlines()
    return lines[0].split("\t"), [line.split("\t") for line in lines[1:]]


def number(text):
    return float(text)


def timestamp(text):
    return datetime.fromisoformat(text)


@pytest.fixture(scope="module")
def hub():
    if not HUB_BIN:
        pytest.skip("HUB_BIN is not set")
    hub = LiveHub(HUB_BIN)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        hub.start()
        query(hub, grafana_role_sql(), user="hub")
        run = lambda coroutine: asyncio.run_coroutine_threadsafe(coroutine, loop).result(60)  # noqa: E731
        token = hub.add_device(DEVICE)
        client = DeviceClient(hub.url, DEVICE, token)
        run(client.start())
        assert run(client.wait_connected(30))
        # A week of readings: every 6 hours, and 90 in the last hour (which then keeps minute rows).
        now_us = int(NOW.timestamp() * 1_000_000)
        times = [now_us - h * 3_600_000_000 for h in range(6, 24 * 7, 6)] + [now_us - s * 30_000_000 for s in range(1, 91)]
        for i, at in enumerate(times):
            run(client.send({"temp": 20.0 + i % 7, "rpm": 1000 + i}, at))
        assert run(client.wait_acked(timeout=60))
        run(client.close(timeout=5))
        # Two frames the hub cannot take: stored in rejected_frames.
        with connect(hub.url.replace("http", "ws") + f"/devices/{DEVICE}",
                     additional_headers={"Authorization": f"Bearer {token}"}) as ws:
            ws.recv(timeout=10)  # welcome
            for junk in (b"\x00not a frame", b"\xff" * 40):
                ws.send(junk)
                assert '"rejected"' in ws.recv(timeout=10)
        deadline = time.monotonic() + 30
        while hub.psql("SELECT (SELECT count(*) FROM rollup_delta) + (SELECT count(*) FROM rollup_pending)") != ["0"]:
            assert time.monotonic() < deadline, "the rollups were not folded"
            time.sleep(0.2)
        yield hub
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        hub.cleanup()


def panel_queries():
    dashboard = load_dashboard()
    return [(panel["title"], panel["type"], target["format"], target["rawSql"])
            for panel in dashboard["panels"] for target in panel["targets"]]


def test_the_dashboard_uses_the_provisioned_datasource():
    dashboard = load_dashboard()
    with open(os.path.join(DOCS, "datasource.yml")) as f:
        provisioning = f.read()
    uids = {t["datasource"]["uid"] for p in dashboard["panels"] for t in p["targets"]}
    uids |= {v["datasource"]["uid"] for v in dashboard["templating"]["list"]}
    assert uids == {"telemetry-hub"}
    assert "uid: telemetry-hub" in provisioning and "type: grafana-postgresql-datasource" in provisioning


def test_the_variables_list_the_device_and_its_metrics(hub):
    variables = {v["name"]: v["query"] for v in load_dashboard()["templating"]["list"]}
    _, rows = query(hub, expand(variables["device"], {}))
    assert [DEVICE] in rows
    _, rows = query(hub, expand(variables["metric"], {"device": DEVICE}))
    assert sorted(r[0] for r in rows) == sorted(METRICS)


@pytest.mark.parametrize("title,kind,fmt,sql", panel_queries(), ids=[q[0] for q in panel_queries()])
def test_a_panel_query_returns_rows_of_its_shape(hub, title, kind, fmt, sql):
    columns, rows = query(hub, expand(sql, {"device": DEVICE, "metric": "temp"}))
    assert rows, f"{title}: no rows"
    if fmt == "time_series":
        assert columns[0] == "time", f"{title}: the first column is {columns[0]!r}, not time"
        times = [timestamp(r[0]) for r in rows]
        assert times == sorted(times), f"{title}: not ordered by time"
        assert all(FROM - timedelta(hours=1) <= t <= TO for t in times), f"{title}: a time outside the range"
        names = [c for c in columns[1:] if c != "metric"]
        assert names, f"{title}: no value column"
        for row in rows:
            for column, cell in zip(columns[1:], row[1:]):
                if column != "metric":
                    number(cell)  # every value is a number
    else:
        assert len(rows[0]) == len(columns)


def test_the_numbers_match_what_was_sent(hub):
    panels = {p["title"]: p["targets"][0]["rawSql"] for p in load_dashboard()["panels"]}
    variables = {"device": DEVICE, "metric": "temp"}
    _, rows = query(hub, expand(panels["Devices seen in the last 5 minutes"], variables))
    assert rows == [["1"]]
    _, rows = query(hub, expand(panels["Readings/s committed (hourly average, from the rollups)"], variables))
    committed = sum(number(r[1]) * 3600 for r in rows)
    sent = int(hub.psql(f"SELECT count(*) FROM telemetry WHERE device_id = '{DEVICE}'")[0])
    assert round(committed) == sent == 2 * (27 + 90)
    _, rows = query(hub, expand(panels["$device: hourly average of each metric (from the rollups)"], variables))
    assert {r[1] for r in rows} == set(METRICS)
    _, rows = query(hub, expand(panels["$device: minute min / max of $metric (from the rollups and, for sparse hours, the readings)"], variables))
    assert min(number(r[1]) for r in rows) == 20.0 and max(number(r[2]) for r in rows) == 26.0
    assert len(rows) >= 27 + 45  # every sparse reading, and the last hour's minutes
    _, rows = query(hub, expand(panels["Latest rejected frames"], variables))
    assert len(rows) == 2 and {r[1] for r in rows} == {DEVICE}
    _, rows = query(hub, expand(panels["Rejected frames per hour, by reason"], variables))
    assert sum(int(r[2]) for r in rows) == 2


@pytest.mark.parametrize("view,width", [("telemetry_hourly", "1 hour"), ("telemetry_minutely", "1 minute")])
def test_the_rollup_views_match_the_raw_readings(hub, view, width):
    """The readable rollups give, per hour or minute, what the raw readings give: sparse
    hours (one reading each) and a dense last hour alike."""
    columns, rows = query(hub, f"SELECT metric, bucket, count, value_count, sum, min, max, avg FROM {view} "
                               f"WHERE device_id = '{DEVICE}' ORDER BY metric, bucket")
    assert columns == ["metric", "bucket", "count", "value_count", "sum", "min", "max", "avg"]
    _, raw = query(hub, f"SELECT metric, date_bin('{width}', ts, timestamptz 'epoch'), count(*), count(value), "
                        f"sum(value), min(value), max(value), avg(value) FROM telemetry "
                        f"WHERE device_id = '{DEVICE}' GROUP BY 1, 2 ORDER BY 1, 2")
    assert len(rows) == len(raw) > 2 * 27, (len(rows), len(raw))
    for got, want in zip(rows, raw):
        assert got[:4] == want[:4], (got, want)  # metric, bucket, count, value_count
        assert [round(number(v), 6) for v in got[4:]] == [round(number(v), 6) for v in want[4:]], (got, want)
    # A minute with several readings is there too (the last hour keeps minute rows).
    assert max(int(r[2]) for r in rows) >= 2
