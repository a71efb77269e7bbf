"""Aggregates that overflow (hostile-spec class 4; contract section 7).

Two readings x = 1.7e308 in one minute (each sent after the other's ack, so they are two
ingest batches and two minute deltas the rollup fold must add): bucketed `sum` answers
null, `avg` null, `count` 2, `min`/`max`/`last` 1.7e308, for bucket_s 60, 3600 and 86400,
with aligned (rollup) and unaligned (raw) ranges; 200, never 503. The rollup fold keeps up
(`rollup_delta` drains) and later readings of other metrics and devices sum correctly.
1e200 and 2e200 average to 1.5e200.

The hub runs with its defaults.
"""

import math
import time

from hostile_kit import (
    SKIP_WITHOUT_HUB, RawDevice, RssProbe, assert_alive, assert_others_unaffected, hub_fixtures, now_us,
)

pytestmark = SKIP_WITHOUT_HUB

module_hub, hub = hub_fixtures()

DAY, HOUR, MINUTE, SECOND = 86_400_000_000, 3_600_000_000, 60_000_000, 1_000_000
HUGE = 1.7e308


def yesterday():
    """Yesterday 00:00 UTC, in µs: a day whose partition exists, away from now."""
    return (now_us() // DAY - 1) * DAY


def bucket_start(ts, bucket_s):
    return ts - ts % (bucket_s * SECOND)


def query(hub, device, metric, bucket_s, agg, from_us, to_us):
    status, body = hub.rest(
        "GET", f"/api/v1/devices/{device}/telemetry?metric={metric}&bucket_s={bucket_s}&agg={agg}"
               f"&from_us={from_us}&to_us={to_us}")
    return status, body


def ranges(minute):
    """(name, from_us, to_us): aligned on days (answered from rollups), and cut inside the
    minute (answered from the readings)."""
    day = minute - minute % DAY
    return [("aligned", day, day + DAY), ("unaligned", minute + SECOND // 2, minute + 30 * SECOND)]


def check_buckets(hub, device, metric, minute, expected):
    """Asks every bucket size, range and aggregate of ``expected`` ({agg: value}); returns
    the list of mismatches as text, and the answers seen."""
    wrong, seen = [], {}
    for name, from_us, to_us in ranges(minute):
        for bucket_s in (60, 3600, 86400):
            for agg, want in expected.items():
                status, body = query(hub, device, metric, bucket_s, agg, from_us, to_us)
                label = f"{name} bucket_s={bucket_s} agg={agg}"
                if status != 200 or not isinstance(body, list) or len(body) != 1:
                    wrong.append(f"{label}: {status} {body}")
                    seen[label] = status
                    continue
                row = body[0]
                got = row.get("value")
                seen[label] = got
                same = (got is None and want is None) or (
                    got is not None and want is not None and math.isclose(got, want, rel_tol=1e-12))
                if not same or row.get("ts_us") != bucket_start(minute, bucket_s):
                    wrong.append(f"{label}: {row} (expected value {want}, ts_us {bucket_start(minute, bucket_s)})")
    return wrong, seen


def wait_folded(hub, seconds=15.0):
    """Seconds until `rollup_delta` is empty, or None."""
    began = time.monotonic()
    while time.monotonic() - began < seconds:
        if hub.psql("select (select count(*) from rollup_delta) + (select count(*) from rollup_pending)") == ["0"]:
            return time.monotonic() - began
        time.sleep(0.2)
    return None


def test_a_sum_past_the_f64_range_answers_null_and_the_rollups_keep_up(hub, figures):
    token = hub.register("agg-huge")
    device = RawDevice(hub, "agg-huge", token)
    minute = yesterday() + 5 * HOUR + 7 * MINUTE
    rss = RssProbe(hub)
    device.send_frame({"x": HUGE}, base_time=minute + 1 * SECOND)  # waits for its ack
    device.send_frame({"x": HUGE}, base_time=minute + 2 * SECOND)
    overflow = {"sum": None, "avg": None, "count": 2, "min": HUGE, "max": HUGE, "last": HUGE}
    wrong_before, seen = check_buckets(hub, "agg-huge", "x", minute, overflow)
    folded_s = wait_folded(hub)
    wrong_after, _ = check_buckets(hub, "agg-huge", "x", minute, overflow)  # now from the folded rollups

    # Later readings, of another metric and of another device, in other minutes.
    other_token = hub.register("agg-later")
    other = RawDevice(hub, "agg-later", other_token)
    later = minute + 20 * MINUTE
    for value in (1.0, 2.0, 3.0):
        other.send_frame({"z": value}, base_time=later + int(value) * SECOND)
    for value in (1.5, 2.5):
        device.send_frame({"y": value}, base_time=later + int(value * 2) * SECOND)
    folded_later_s = wait_folded(hub)
    wrong_later, _ = check_buckets(hub, "agg-later", "z", later, {"sum": 6.0, "count": 3, "avg": 2.0})
    wrong_later += check_buckets(hub, "agg-huge", "y", later, {"sum": 4.0, "count": 2, "max": 2.5})[0]
    rss.stop()
    figures(input="x=1.7e308 twice in one minute (two batches), buckets 60/3600/86400 aligned and unaligned",
            answer=(f"sum {seen.get('aligned bucket_s=60 agg=sum')}/{seen.get('unaligned bucket_s=60 agg=sum')}, "
                    f"avg {seen.get('aligned bucket_s=60 agg=avg')}, count {seen.get('aligned bucket_s=60 agg=count')}, "
                    f"max {seen.get('aligned bucket_s=86400 agg=max')}; {len(wrong_before)} wrong answers before the "
                    f"fold, {len(wrong_after)} after; rollup_delta empty after "
                    f"{'never' if folded_s is None else f'{folded_s:.1f} s'}, again after "
                    f"{'never' if folded_later_s is None else f'{folded_later_s:.1f} s'}; later sums "
                    f"{'right' if not wrong_later else 'WRONG'}"),
            rss_before=rss.before, rss_after=rss.after)
    assert_alive(hub, "readings whose sum overflows")
    assert not wrong_before, "answers for the overflowing bucket:\n" + "\n".join(wrong_before)
    assert folded_s is not None, f"rollup_delta never drained: the fold is stuck on the overflow\n{hub.logs()}"
    assert not wrong_after, "answers after the fold:\n" + "\n".join(wrong_after)
    assert folded_later_s is not None, "rollup_delta never drained after later readings"
    assert not wrong_later, "later readings of other metrics and devices:\n" + "\n".join(wrong_later)
    rss.assert_bounded()
    device.close()
    other.close()
    assert_others_unaffected(hub)


def test_the_avg_of_huge_values_does_not_overflow(hub, figures):
    token = hub.register("agg-avg")
    device = RawDevice(hub, "agg-avg", token)
    minute = yesterday() + 9 * HOUR + 31 * MINUTE
    rss = RssProbe(hub)
    device.send_frame({"w": 1e200}, base_time=minute + 10 * SECOND)
    device.send_frame({"w": 2e200}, base_time=minute + 20 * SECOND)
    expected = {"avg": 1.5e200, "sum": 3e200, "count": 2, "min": 1e200, "max": 2e200}
    wrong_before, seen = check_buckets(hub, "agg-avg", "w", minute, expected)
    folded_s = wait_folded(hub)
    wrong_after, _ = check_buckets(hub, "agg-avg", "w", minute, expected)
    rss.stop()
    figures(input="w=1e200 and w=2e200 in one minute",
            answer=(f"avg aligned {seen.get('aligned bucket_s=60 agg=avg')}, unaligned "
                    f"{seen.get('unaligned bucket_s=60 agg=avg')}, sum {seen.get('aligned bucket_s=3600 agg=sum')}; "
                    f"{len(wrong_before)} wrong before the fold, {len(wrong_after)} after"),
            rss_before=rss.before, rss_after=rss.after)
    assert_alive(hub, "huge readings")
    assert not wrong_before, "answers:\n" + "\n".join(wrong_before)
    assert folded_s is not None, "rollup_delta never drained"
    assert not wrong_after, "answers after the fold:\n" + "\n".join(wrong_after)
    rss.assert_bounded()
    device.close()
    assert_others_unaffected(hub)
