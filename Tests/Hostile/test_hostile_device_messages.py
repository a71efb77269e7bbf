"""Values the database cannot store, device text floods, device paths without an id
(hostile-spec classes 3, 7 and 12; contract section 7).

3. A `command_result` whose `result` or `error` holds U+0000 (a string or a key, at any
   depth) or nests deeper than 32 levels gets `bad_message`, the command keeps its state,
   a later good result makes it `succeeded`; REST params, names and labels with U+0000 or
   too deep are 400, `ttl_s`/`wait_s` outside whole numbers in range are 400, /live
   `command` with such params is `bad_command`; never a 503, never others' commands failing.
7. Device text messages count against --device-frame-rate.
12. GET /devices and /devices/ with upgrade headers are 400.

Flags: only --device-frame-rate (an existing one), so the old binary runs these too.
"""

import json
import time
import uuid

from hostile_kit import (
    BINARY, SKIP_WITHOUT_HUB, TEXT, Live, RawDevice, RawWebSocket, Responder, RssProbe, assert_alive,
    assert_others_unaffected, hub_fixtures, nested, ws_frame,
)

pytestmark = SKIP_WITHOUT_HUB

FRAME_RATE = 500
module_hub, hub = hub_fixtures(extra_args=["--device-frame-rate", str(FRAME_RATE)])


def command_state(hub, command_id):
    status, body = hub.rest("GET", f"/api/v1/commands/{command_id}")
    assert status == 200, (status, body)
    return body["status"]


def wait_state(hub, command_id, want, seconds=5.0):
    deadline = time.monotonic() + seconds
    state = None
    while time.monotonic() < deadline:
        state = command_state(hub, command_id)
        if state == want:
            return state
        time.sleep(0.05)
    return state


def stored_state(hub, command_id, want, seconds=5.0):
    """The command's row in PostgreSQL, polled until it shows ``want``."""
    deadline = time.monotonic() + seconds
    rows = []
    while time.monotonic() < deadline:
        rows = hub.psql(f"select status from commands where id = '{command_id}'")
        if rows == [want]:
            break
        time.sleep(0.1)
    return rows[0] if rows else None


BAD_RESULTS = {
    "error with U+0000": {"ok": False, "error": "boom\u0000bang"},
    "result string with U+0000": {"ok": True, "result": "x\u0000y"},
    "result value with U+0000": {"ok": True, "result": {"k": "v\u0000"}},
    "result key with U+0000": {"ok": True, "result": {"k\u0000": "v"}},
    "U+0000 five levels down": {"ok": True, "result": {"a": [{"b": {"c": ["x", {"d": "y\u0000"}]}}]}},
    "key with U+0000 deep down": {"ok": True, "result": nested(20, {"e\u0000": 1})},
    "objects nested 40 deep": {"ok": True, "result": nested(40)},
    "arrays nested 40 deep": {"ok": True, "result": json.loads("[" * 40 + "1" + "]" * 40)},
}


def test_command_result_the_database_cannot_store_is_bad_message_and_keeps_the_state(hub, figures):
    token = hub.register("cmd-nul")
    device = RawDevice(hub, "cmd-nul", token)
    rss = RssProbe(hub)
    outcome = {}
    for n, (case, reply) in enumerate(BAD_RESULTS.items()):
        status, command = hub.rest("POST", "/api/v1/devices/cmd-nul/commands", {"name": "probe", "params": {"n": n}})
        if status != 202:  # e.g. a command store wedged by an earlier case
            outcome[case] = (f"POST answered {status}", None, None, None, None)
            continue
        sent = device.recv_text("command", where=lambda m: m["id"] == command["id"])
        before = "sent"
        if n % 2:  # half of them acked first: the state to keep is then "delivered"
            device.send_text({"type": "command_ack", "id": sent["id"]})
            before = wait_state(hub, sent["id"], "delivered")
        device.send_text(dict({"type": "command_result", "id": sent["id"]}, **reply))
        try:
            error = device.recv_text("error", timeout=3)
            answer = error.get("code")
        except TimeoutError:
            answer = "no error"
        time.sleep(0.1)
        after = command_state(hub, sent["id"])
        device.send_text({"type": "command_result", "id": sent["id"], "ok": True, "result": {"good": nested(10, n)}})
        final = wait_state(hub, sent["id"], "succeeded")
        stored = stored_state(hub, sent["id"], "succeeded")
        outcome[case] = (answer, before, after, final, stored)
    rss.stop()
    figures(input="command_result with U+0000 / nesting 40: " + "|".join(BAD_RESULTS),
            answer="; ".join(f"{case}:{a}, state {b}->{c}, good result->{d} (stored {e})"
                             for case, (a, b, c, d, e) in outcome.items()),
            rss_before=rss.before, rss_after=rss.after)
    assert_alive(hub, "command results the database cannot store")
    wrong = {case: got for case, got in outcome.items()
             if got[0] != "bad_message" or got[2] != got[1] or got[3:] != ("succeeded", "succeeded")}
    assert not wrong, ("expected bad_message, the state kept, then succeeded (in memory and stored) after a good "
                       f"result; got (answer, before, after, final, stored): {wrong}")
    rss.assert_bounded()
    device.close()
    assert_others_unaffected(hub)


def test_rest_params_names_and_labels_with_u0000_or_too_deep_are_400_never_503(hub, figures):
    hub.register("rest-nul")
    status, _ = hub.rest("PATCH", "/api/v1/devices/rest-nul", {"labels": {"site": "a"}})
    assert status == 200
    rss = RssProbe(hub)
    cases = {
        "params value U+0000": ("POST", "/api/v1/devices/rest-nul/commands", {"name": "x", "params": {"k": "a\u0000"}}),
        "params key U+0000": ("POST", "/api/v1/devices/rest-nul/commands", {"name": "x", "params": {"k\u0000": 1}}),
        "params U+0000 deep": ("POST", "/api/v1/devices/rest-nul/commands",
                               {"name": "x", "params": {"a": {"b": [1, {"c": "\u0000"}]}}}),
        "params nested 40": ("POST", "/api/v1/devices/rest-nul/commands", {"name": "x", "params": nested(40)}),
        "params arrays nested 40": ("POST", "/api/v1/devices/rest-nul/commands",
                                    {"name": "x", "params": {"a": json.loads("[" * 40 + "]" * 40)}}),
        "name U+0000": ("POST", "/api/v1/devices/rest-nul/commands", {"name": "re\u0000boot", "params": {}}),
        "create labels value U+0000": ("POST", "/api/v1/devices", {"id": "rest-nul-2", "labels": {"site": "a\u0000"}}),
        "create labels key U+0000": ("POST", "/api/v1/devices", {"id": "rest-nul-3", "labels": {"si\u0000te": "a"}}),
        "patch labels value U+0000": ("PATCH", "/api/v1/devices/rest-nul", {"labels": {"site": "b\u0000"}}),
        "patch labels key U+0000": ("PATCH", "/api/v1/devices/rest-nul", {"labels": {"\u0000": "b"}}),
    }
    answers = {}
    for case, (method, path, body) in cases.items():
        status, _, reply = hub.request(method, path, body)
        code = reply.get("error", {}).get("code") if isinstance(reply, dict) else None
        answers[case] = (status, code)
    good = {
        "params nested 10": hub.rest("POST", "/api/v1/devices/rest-nul/commands", {"name": "x", "params": nested(10)})[0],
    }
    after_labels = hub.rest("GET", "/api/v1/devices/rest-nul")[1].get("labels")
    not_created = [hub.rest("GET", f"/api/v1/devices/{d}")[0] for d in ("rest-nul-2", "rest-nul-3")]
    rss.stop()
    figures(input="REST " + "|".join(cases), answer=", ".join(f"{c}:{s} {k}" for c, (s, k) in answers.items())
            + f"; params nested 10:{good['params nested 10']}; labels after {after_labels}",
            rss_before=rss.before, rss_after=rss.after)
    assert_alive(hub, "REST bodies with U+0000")
    assert not [c for c, (s, _) in answers.items() if s == 503], f"503 while the database is up: {answers}"
    assert {c: s for c, (s, _) in answers.items() if s != 400} == {}, f"expected 400 everywhere: {answers}"
    assert {c: k for c, (_, k) in answers.items() if c.startswith("params") and k != "bad_request"} == {}, (
        f"expected code bad_request for params: {answers}")
    assert good["params nested 10"] == 202, good
    assert after_labels == {"site": "a"}, f"a refused PATCH changed the labels: {after_labels}"
    assert not_created == [404, 404], f"a refused POST created a device: {not_created}"
    rss.assert_bounded()
    assert_others_unaffected(hub)


def test_ttl_s_and_wait_s_must_be_whole_seconds_in_range(hub, figures):
    rss = RssProbe(hub)
    with Responder(hub, "ttl-dev"):
        path = "/api/v1/devices/ttl-dev/commands"
        answers = {}
        for field, values in (("ttl_s", [1e300, -1, 0, 1.5, "5", True, 86401]),
                              ("wait_s", [1e300, -1, 1.5, "5", True, 61])):
            for value in values:
                status, _, reply = hub.request("POST", path, {"name": "echo", "params": {}, field: value})
                answers[f"{field}={json.dumps(value)}"] = status
        good = {
            "ttl_s=1": hub.rest("POST", path, {"name": "echo", "params": {}, "ttl_s": 1})[0],
            "ttl_s=86400": hub.rest("POST", path, {"name": "echo", "params": {}, "ttl_s": 86400})[0],
            "wait_s=0": hub.rest("POST", path, {"name": "echo", "params": {}, "wait_s": 0})[0],
            "wait_s=60": hub.rest("POST", path, {"name": "echo", "params": {}, "wait_s": 60})[0],
        }
    rss.stop()
    figures(input="POST commands with " + "|".join(list(answers) + list(good)),
            answer=", ".join(f"{k}:{v}" for k, v in {**answers, **good}.items()),
            rss_before=rss.before, rss_after=rss.after)
    assert_alive(hub, "ttl_s / wait_s out of range")
    assert not [k for k, v in answers.items() if v == 503], f"503 while the database is up: {answers}"
    assert {k: v for k, v in answers.items() if v != 400} == {}, f"expected 400 for each: {answers}"
    assert good == {"ttl_s=1": 202, "ttl_s=86400": 202, "wait_s=0": 202, "wait_s=60": 200}, good
    rss.assert_bounded()
    assert_others_unaffected(hub)


def test_live_command_with_u0000_or_deep_params_is_bad_command(hub, figures):
    hub.register("live-cmd")
    rss = RssProbe(hub)
    live = Live(hub)
    base = {"type": "command", "ref": "r1", "device": "live-cmd", "name": "x"}
    answers = {
        "params U+0000": live.answer(dict(base, params={"k": "\u0000"})),
        "params key U+0000": live.answer(dict(base, params={"\u0000": 1})),
        "params nested 40": live.answer(dict(base, params=nested(40))),
        "name U+0000": live.answer(dict(base, name="x\u0000")),
        "ttl_s 1.5": live.answer(dict(base, params={}, ttl_s=1.5)),
        "ttl_s true": live.answer(dict(base, params={}, ttl_s=True)),
        "ttl_s 1e300": live.answer(dict(base, params={}, ttl_s=1e300)),
    }
    good = live.answer(dict(base, params=nested(10)))
    pong = live.pong()
    live.close()
    rss.stop()
    figures(input="/live command " + "|".join(answers), answer=", ".join(f"{k}:{v}" for k, v in answers.items())
            + f"; nested 10:{good}" + (" +pong" if pong else " +no-pong"), rss_before=rss.before, rss_after=rss.after)
    assert_alive(hub, "/live commands with U+0000")
    assert {k: v for k, v in answers.items() if v != "bad_command"} == {}, answers
    assert good == "command_status" and pong
    rss.assert_bounded()
    assert_others_unaffected(hub)


TEXTS = 2000


def test_device_text_messages_count_against_the_frame_rate(hub, figures):
    token = hub.register("text-flood")
    device = RawDevice(hub, "text-flood", token)
    device.send_frame({"temp": 1.0})
    time.sleep(1.2)  # the rate bucket full again: one second's worth
    rss = RssProbe(hub)
    texts = b"".join(ws_frame(TEXT, json.dumps({"type": "command_ack", "id": str(uuid.uuid4())}).encode())
                     for _ in range(TEXTS))
    frame = ws_frame(BINARY, device.encode({"temp": 2.0}))
    began = time.monotonic()
    device.ws.sock.sendall(texts + frame)
    try:
        device.wait_ack(device.seq, timeout=TEXTS / FRAME_RATE + 20)
        took = time.monotonic() - began
        answer = f"frame after {TEXTS} texts acked after {took:.2f} s"
    except (TimeoutError, ConnectionError) as error:
        took, answer = None, f"frame never acked: {error}"
    rss.stop()
    expected = (TEXTS - FRAME_RATE) / FRAME_RATE  # the bucket holds one second's worth
    figures(input=f"{TEXTS} command_ack texts then 1 frame at --device-frame-rate {FRAME_RATE}",
            answer=f"{answer} (at the rate: >= {expected:.1f} s)", rss_before=rss.before, rss_after=rss.after)
    assert_alive(hub, "a flood of command_ack texts")
    assert took is not None, answer
    assert took >= 0.7 * expected, (f"the frame sent after {TEXTS} text messages was acked after {took:.2f} s: the texts "
                                    f"were not read at {FRAME_RATE}/s (expected about {expected:.1f} s)")
    rss.assert_bounded()
    device.close()
    assert_others_unaffected(hub)


def test_device_paths_without_an_id_are_400_on_upgrade(hub, figures):
    token = hub.register("path-dev")
    rss = RssProbe(hub)
    answers = {}
    for path in ("/devices", "/devices/", "/devices?token=" + token, "/devices/?token=" + token):
        ws = RawWebSocket(hub, path, headers={"Authorization": f"Bearer {token}"})
        answers[path.replace(token, "<token>")] = ws.status
        ws.close()
    rss.stop()
    figures(input="GET /devices and /devices/ with upgrade headers",
            answer=", ".join(f"{p}:{s}" for p, s in answers.items()), rss_before=rss.before, rss_after=rss.after)
    assert_alive(hub, "upgrades on /devices")
    assert set(answers.values()) == {400}, answers
    rss.assert_bounded()
    assert_others_unaffected(hub)
