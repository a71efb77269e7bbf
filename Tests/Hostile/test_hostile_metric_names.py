"""Metric names without bound (hostile-spec class 5; contract section 7).

With --max-metrics-per-device 5, a frame that would give a device a sixth distinct name is
rejected whole (`rejected`, reason `too_many_metrics…`, acked, kept in rejected_frames);
frames with known names still go in. With --max-metrics 20, the same past 20 names in the
whole hub. Both survive a restart of the hub.

Flags: --max-metrics-per-device 5 --max-metrics 20 (new: the old binary refuses to start).
"""

from hostile_kit import (
    SKIP_WITHOUT_HUB, RawDevice, RssProbe, assert_alive, assert_others_unaffected, hub_fixtures,
)

pytestmark = SKIP_WITHOUT_HUB

PER_DEVICE, HUB_WIDE = 5, 20
module_hub, hub = hub_fixtures(extra_args=["--max-metrics-per-device", str(PER_DEVICE), "--max-metrics", str(HUB_WIDE)])

TOKENS = {}


def device(hub, device_id):
    if device_id not in TOKENS:
        TOKENS[device_id] = hub.register(device_id)
    dev = RawDevice(hub, device_id, TOKENS[device_id])
    dev.hub = hub
    return dev


def send(dev, names):
    """One frame with these metric names; (seq, the `rejected` reason or None). Waits for
    the frame's ack (a rejected frame is acked too, once it is in rejected_frames)."""
    seq = dev.send_frame({name: 1.0 for name in names})
    kept = quarantined(dev.hub, dev.device_id, seq)
    try:
        rejected = dev.recv_text("rejected", timeout=5 if kept else 0.05, where=lambda m: m.get("seq") == seq)
        return seq, rejected.get("reason")
    except TimeoutError:
        return seq, (f"in rejected_frames ({kept[0]}) but no `rejected` message" if kept else None)


def rows(hub, device_id, seq):
    return int(hub.psql(f"select count(*) from telemetry where device_id = '{device_id}' and seq = {seq}")[0])


def quarantined(hub, device_id, seq):
    return hub.psql(f"select reason from rejected_frames where device_id = '{device_id}' and seq = {seq}")


def names_held(hub):
    return int(hub.psql("select count(*) from metric")[0])


def test_a_frame_that_would_give_a_device_a_sixth_metric_name_is_rejected_whole(hub, figures):
    rss = RssProbe(hub)
    a = device(hub, "mn-a")
    steps = [
        (["a.m1", "a.m2", "a.m3"], None),
        (["a.m4", "a.m5"], None),
        (["a.m1", "a.m6"], "too_many_metrics"),  # a sixth name: the whole frame, a.m1 too
        (["a.m2", "a.m5"], None),  # known names still go in
        (["a.m7"], "too_many_metrics"),
    ]
    got = []
    for names, want in steps:
        seq, reason = send(a, names)
        got.append((names, seq, reason, rows(hub, "mn-a", seq), quarantined(hub, "mn-a", seq), want))
    # The limit is per device: another device may use a name mn-a was refused.
    b = device(hub, "mn-b")
    b_seq, b_reason = send(b, ["a.m6"])
    rss.stop()
    figures(input=f"--max-metrics-per-device {PER_DEVICE}: frames " + " ".join("{" + ",".join(n) + "}" for n, *_ in got),
            answer="; ".join(f"seq {seq}: {reason or 'stored'} ({n} rows)" for _, seq, reason, n, _, _ in got)
                   + f"; mn-b {{a.m6}}: {b_reason or 'stored'}",
            rss_before=rss.before, rss_after=rss.after)
    assert_alive(hub, "too many metric names")
    for names, seq, reason, stored, kept, want in got:
        if want is None:
            assert reason is None and stored == len(names), f"{names} (seq {seq}): {reason}, {stored} rows"
        else:
            assert reason is not None and reason.startswith(want), f"{names} (seq {seq}): reason {reason!r}"
            assert stored == 0, f"{names} (seq {seq}) rejected but {stored} of its rows stored: not rejected whole"
            assert kept and kept[0].startswith(want), f"{names} (seq {seq}) not in rejected_frames: {kept}"
    assert a.acked >= got[-1][1], "the rejected frames were not acked"
    assert b_reason is None and rows(hub, "mn-b", b_seq) == 1, f"mn-b's first name refused: {b_reason}"
    rss.assert_bounded()
    a.close()
    b.close()
    assert_others_unaffected(hub)


def fill_hub_names(hub):
    """New names, one per frame and at most PER_DEVICE per device, until the hub refuses
    one. Returns (names held when refused, the reason, the refused name's device and seq)."""
    assert_others_unaffected(hub)  # its names ("temp", "count") are known before the hub is full
    for d in range(HUB_WIDE // PER_DEVICE + 2):
        dev = device(hub, f"mn-fill-{d}")
        try:
            for k in range(PER_DEVICE):
                held = names_held(hub)
                seq, reason = send(dev, [f"fill.{d}.{k}"])
                if reason is not None:
                    return held, reason, dev.device_id, seq
        finally:
            dev.close()
    return names_held(hub), None, None, None


def test_names_past_the_hub_wide_limit_are_rejected(hub, figures):
    rss = RssProbe(hub)
    held, reason, refused_device, refused_seq = fill_hub_names(hub)
    z = device(hub, "mn-z")
    known_seq, known_reason = send(z, ["temp"])  # known in the hub, new for mn-z
    mixed_seq, mixed_reason = send(z, ["count", "brand.new"])  # one new name: the whole frame
    total = names_held(hub)
    rss.stop()
    figures(input=f"--max-metrics {HUB_WIDE}: one new name per frame until refused; then mn-z {{temp}}, "
                  "{count,brand.new}",
            answer=f"refused at {held} names held: {reason}; mn-z {{temp}}: {known_reason or 'stored'}, "
                   f"{{count,brand.new}}: {mixed_reason or 'stored'} ({rows(hub, 'mn-z', mixed_seq)} rows); "
                   f"{total} names held",
            rss_before=rss.before, rss_after=rss.after)
    assert_alive(hub, "names past the hub-wide limit")
    assert reason is not None and reason.startswith("too_many_metrics"), f"never refused (held {held}): {reason}"
    assert held == HUB_WIDE, f"the hub refused a name with {held} names held; the limit is {HUB_WIDE}"
    assert rows(hub, refused_device, refused_seq) == 0 and quarantined(hub, refused_device, refused_seq)
    assert known_reason is None and rows(hub, "mn-z", known_seq) == 1, known_reason
    assert mixed_reason is not None and mixed_reason.startswith("too_many_metrics"), mixed_reason
    assert rows(hub, "mn-z", mixed_seq) == 0
    assert total == HUB_WIDE, f"{total} names held, over the limit of {HUB_WIDE}"
    rss.assert_bounded()
    z.close()
    assert_others_unaffected(hub)


def test_the_metric_limits_survive_a_restart(hub, figures):
    # The state of the tests above; made here if this test runs alone.
    a = device(hub, "mn-a")
    for names in (["a.m1", "a.m2", "a.m3"], ["a.m4", "a.m5"]):
        send(a, names)
    a.close()
    if names_held(hub) < HUB_WIDE:
        fill_hub_names(hub)
    hub.stop()
    hub.start()
    rss = RssProbe(hub)
    a = device(hub, "mn-a")
    sixth_seq, sixth = send(a, ["a.m8"])
    known_seq, known = send(a, ["a.m1", "a.m5"])
    fresh = device(hub, "mn-after-restart")
    new_seq, new = send(fresh, ["after.restart"])
    old_seq, old = send(fresh, ["temp"])
    rss.stop()
    figures(input="after a restart: mn-a {a.m8} (a sixth name), mn-a {a.m1,a.m5}, a fresh device {after.restart} "
                  "(hub full), {temp}",
            answer=f"{sixth or 'stored'}; {known or 'stored'}; {new or 'stored'}; {old or 'stored'}",
            rss_before=rss.before, rss_after=rss.after)
    assert_alive(hub, "the restart")
    assert sixth is not None and sixth.startswith("too_many_metrics"), f"a sixth name after the restart: {sixth}"
    assert known is None and rows(hub, "mn-a", known_seq) == 2, known
    assert new is not None and new.startswith("too_many_metrics"), f"a new name in a full hub after the restart: {new}"
    assert old is None and rows(hub, "mn-after-restart", old_seq) == 1, old
    assert names_held(hub) == HUB_WIDE
    rss.assert_bounded()
    a.close()
    fresh.close()
    assert_others_unaffected(hub)
