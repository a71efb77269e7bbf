"""Reading times spread over the whole range the frame format allows (hostile-spec class 6;
contract section 7).

Every time from 0 to 253402300799999999 µs (the last microsecond of 9999) is stored;
readings on 1,500 different days and hundreds of different years do not make a partition
each (`pg_inherits` children of `reading` stay <= 20 through maintenance rounds, and after
a restart, which runs one at once); telemetry
queries without from_us/to_us answer 200.

Flags: --maintenance-interval 1 (new: the old binary refuses to start).
"""

import time

import pytest

from hostile_kit import (
    SKIP_WITHOUT_HUB, RawDevice, RssProbe, assert_alive, assert_others_unaffected, hub_fixtures,
)

pytestmark = SKIP_WITHOUT_HUB

module_hub, hub = hub_fixtures(extra_args=["--maintenance-interval", "1"])

END_US = 253_402_300_799_999_999  # 9999-12-31T23:59:59.999999Z
DAY = 86_400_000_000
MAX_PARTITIONS = 20
SPREAD, CONSECUTIVE_DAYS = 1000, 500


def times():
    spread = [i * (END_US // SPREAD) + 12_345_678 for i in range(1, SPREAD)]  # about every ten years
    days = [631_152_000_000_000 + d * DAY + 43_200_000_000 for d in range(CONSECUTIVE_DAYS)]  # noon, from 1990-01-01
    return [0, END_US] + spread + days


def partitions(hub):
    return int(hub.psql("select count(*) from pg_inherits where inhparent = 'reading'::regclass")[0])


@pytest.fixture(scope="module")
def spread(module_hub):
    """Device `rt-spread` sends one frame per time of ``times()``; the partition counts
    seen before and during the maintenance rounds that follow."""
    hub = module_hub
    before = partitions(hub)
    rss = RssProbe(hub)
    token = hub.register("rt-spread")
    device = RawDevice(hub, "rt-spread", token)
    sent = times()
    for t in sent:
        # time 0 needs base_time 1 and offset -1: base_time 0 asks for the hub's clock
        readings = [("t", 1.0, "f64", -1)] if t == 0 else {"t": 1.0}
        device.ws.send(0x2, device.encode(readings, base_time=1 if t == 0 else t))
    device.wait_ack(device.seq, timeout=60)
    device.close()
    seen = []
    for _ in range(8):  # about four maintenance rounds
        seen.append(partitions(hub))
        time.sleep(0.5)
    rss.stop()
    # Partition maintenance always runs at start: a restart makes sure at least one round
    # has seen the spread-out readings, whatever the interval.
    hub.stop()
    hub.start()
    for _ in range(6):
        seen.append(partitions(hub))
        time.sleep(0.5)
    return {"sent": sent, "before": before, "seen": seen, "rss": rss}


def test_readings_from_1970_to_9999_are_all_stored_without_a_partition_each(hub, spread, figures):
    hub.revive()
    rows, low, high = hub.psql(
        "select count(*), min((extract(epoch from ts) * 1000000)::bigint), max((extract(epoch from ts) * 1000000)::bigint) "
        "from telemetry where device_id = 'rt-spread'")[0].split("|")
    rss = spread["rss"]
    figures(input=f"{len(spread['sent'])} frames, times 0 .. {END_US} us ({SPREAD} spread, {CONSECUTIVE_DAYS} "
                  "consecutive days)",
            answer=f"{rows} rows stored, min {low} max {high}; partitions {spread['before']} before, "
                   f"max {max(spread['seen'])} over maintenance rounds ({spread['seen']})",
            rss_before=rss.before, rss_after=rss.after)
    assert_alive(hub, "readings spread over ten millennia")
    assert int(rows) == len(spread["sent"]), f"{rows} of {len(spread['sent'])} readings stored"
    assert (int(low), int(high)) == (0, END_US), (low, high)
    assert max(spread["seen"]) <= MAX_PARTITIONS, (f"{max(spread['seen'])} partitions of reading (was "
                                                   f"{spread['before']}): one per spread-out day?")
    rss.assert_bounded()
    assert_others_unaffected(hub)


def test_telemetry_queries_without_a_time_range_answer_200(hub, spread, figures):
    rss = RssProbe(hub)
    path = "/api/v1/devices/rt-spread"
    answers = {}
    for name, query in (("raw", "/telemetry"), ("raw metric", "/telemetry?metric=t&limit=10000"),
                        ("bucket_s=86400 agg=count", "/telemetry?bucket_s=86400&agg=count&limit=10000"),
                        ("bucket_s=1", "/telemetry?bucket_s=1&limit=10000"),
                        ("bucket_s=1 agg=count", "/telemetry?bucket_s=1&agg=count&limit=10000"),
                        ("bucket_s=3600 agg=sum", "/telemetry?bucket_s=3600&agg=sum&limit=10000"),
                        ("bucket_s=60 agg=last", "/telemetry?bucket_s=60&agg=last&limit=10000"),
                        ("latest", "/latest")):
        began = time.monotonic()
        status, body = hub.rest("GET", path + query)
        answers[name] = (status, body, time.monotonic() - began)
    after = partitions(hub)
    rss.stop()
    figures(input="GET telemetry without from_us/to_us over readings from 1970 to 9999",
            answer=", ".join(f"{n}:{s} ({len(b) if isinstance(b, (list, dict)) else b} rows, {t:.2f} s)"
                             for n, (s, b, t) in answers.items()) + f"; partitions {after}",
            rss_before=rss.before, rss_after=rss.after)
    assert_alive(hub, "unbounded telemetry queries")
    assert {n: s for n, (s, _, _) in answers.items() if s != 200} == {}, {n: (s, b) for n, (s, b, _) in answers.items()}
    total = len(spread["sent"])
    raw = answers["raw"][1]
    assert len(raw) == 1000 and raw[0]["ts_us"] == 0, raw[:2]  # the default limit, oldest first
    assert len(answers["raw metric"][1]) == total and answers["raw metric"][1][-1]["ts_us"] == END_US
    assert sum(r["value"] for r in answers["bucket_s=86400 agg=count"][1]) == total
    assert sum(r["value"] for r in answers["bucket_s=1 agg=count"][1]) == total
    assert answers["latest"][1]["t"]["ts_us"] == END_US, answers["latest"][1]
    rss.assert_bounded()
    assert_others_unaffected(hub)
