"""Failed authentication, and bodies sent before their token is checked (hostile-spec
classes 9 (last sentence) and 10; contract section 7).

- A REST request with a bad token and a 100 MB declared body is answered 401 right after
  its headers, the body never sent.
- Past 20 failed authentications a second from one source address (401/403 on REST, on a
  device upgrade, on /live), that address gets 429 with Retry-After and code
  `too_many_failures` for every request until the budget refills; other addresses are
  unaffected (the client binds 127.0.0.2, 127.0.0.3, … as its source).
- Refused upgrades do not use the connect-rate budget of devices with a good token.

Flags: --connect-rate 50 (an existing one); the failure budget is the default, 20 a second,
so the old binary runs these too.
"""

import time

from hostile_kit import (
    SKIP_WITHOUT_HUB, RawWebSocket, RssProbe, assert_alive, assert_others_unaffected, hub_fixtures, read_http_response,
    tcp_socket,
)

pytestmark = SKIP_WITHOUT_HUB

CONNECT_RATE = 50
BUDGET = 20  # failed authentications per second per address: the default
module_hub, hub = hub_fixtures(extra_args=["--connect-rate", str(CONNECT_RATE)])

BAD_TOKEN = "not-the-token-0000000000"


def code_of(body):
    return body.get("error", {}).get("code") if isinstance(body, dict) else None


def test_a_bad_token_with_a_huge_declared_body_is_answered_401_before_the_body(hub, figures):
    rss = RssProbe(hub)
    answers = {}
    for case, auth, length in (("bad token, 100 MB", f"Authorization: Bearer {BAD_TOKEN}\r\n", 104857600),
                               ("no token, 100 MB", "", 104857600),
                               ("bad token, 512 KiB (under the body limit)", f"Authorization: Bearer {BAD_TOKEN}\r\n", 524288)):
        sock = tcp_socket(hub, source="127.0.0.9", timeout=3)
        sock.sendall((f"POST /api/v1/devices HTTP/1.1\r\nHost: 127.0.0.1:{hub.port}\r\n{auth}"
                      f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n").encode())
        began = time.monotonic()
        try:
            status, _, body = read_http_response(sock)
            answers[case] = (status, code_of(body), time.monotonic() - began)
        except (TimeoutError, ConnectionError) as error:
            answers[case] = (None, type(error).__name__, time.monotonic() - began)
        sock.close()
    rss.stop()
    figures(input="POST /api/v1/devices with Content-Length 104857600 or 524288 and no body sent (bad token / no token)",
            answer=", ".join(f"{c}: {s} {k} after {t:.2f} s" for c, (s, k, t) in answers.items()),
            rss_before=rss.before, rss_after=rss.after)
    assert_alive(hub, "a huge declared body")
    for case, (status, code, took) in answers.items():
        assert status == 401 and took < 2.0, f"{case}: {status} {code} after {took:.2f} s, expected 401 at once"
    rss.assert_bounded()
    assert_others_unaffected(hub)


def burst(send, n):
    """``n`` calls of ``send()`` (each returns (status, headers, body)) as fast as they go."""
    began = time.monotonic()
    answers = [send() for _ in range(n)]
    return answers, time.monotonic() - began


def check_burst(answers, elapsed, what):
    statuses = [a[0] for a in answers]
    refills = int(BUDGET * elapsed) + 1
    first_refusal = next((i for i, s in enumerate(statuses) if s == 429), None)
    problems = []
    if statuses[:BUDGET] != [answers[0][0]] * BUDGET or answers[0][0] not in (401, 403):
        problems.append(f"{what}: the first {BUDGET} answers should be plain 401/403: {statuses[:BUDGET]}")
    if first_refusal is None:
        problems.append(f"{what}: no 429 in {len(statuses)} failures within {elapsed:.2f} s: {statuses}")
    elif statuses.count(401) + statuses.count(403) > BUDGET + refills:
        problems.append(f"{what}: {statuses.count(401) + statuses.count(403)} failures let through in {elapsed:.2f} s")
    for status, headers, body in answers:
        if status == 429:
            if not headers.get("retry-after", "").isdigit() or int(headers["retry-after"]) < 1:
                problems.append(f"{what}: a 429 without a Retry-After of whole seconds: {headers}")
                break
            if code_of(body) != "too_many_failures":
                problems.append(f"{what}: a 429 with body {body}")
                break
    return problems


def counts(answers):
    out = {}
    for status, _, _ in answers:
        out[status] = out.get(status, 0) + 1
    return " ".join(f"{k}x{v}" for k, v in sorted(out.items(), key=lambda kv: str(kv[0])))


def test_rest_failures_past_the_budget_get_429_per_address(hub, figures):
    rss = RssProbe(hub)
    blocked = "127.0.0.2"
    answers, elapsed = burst(lambda: hub.request("GET", "/api/v1/devices", token=BAD_TOKEN, source=blocked), 40)
    good_while_blocked = hub.request("GET", "/api/v1/devices", source=blocked)
    good_elsewhere = hub.request("GET", "/api/v1/devices", source="127.0.0.1")
    bad_elsewhere = hub.request("GET", "/api/v1/devices", token=BAD_TOKEN, source="127.0.0.3")
    retry_after = next((int(h["retry-after"]) for s, h, _ in answers if s == 429 and h.get("retry-after", "").isdigit()), 1)
    time.sleep(min(retry_after, 5) + 0.2)
    good_after = hub.request("GET", "/api/v1/devices", source=blocked)
    bad_after = hub.request("GET", "/api/v1/devices", token=BAD_TOKEN, source=blocked)
    rss.stop()
    problems = check_burst(answers, elapsed, "REST from 127.0.0.2")
    figures(input="40 REST calls with a bad token from 127.0.0.2 in a burst; then a good one from .2, .1; a bad one from .3",
            answer=(f"burst {counts(answers)} in {elapsed:.2f} s (Retry-After {retry_after}); good from .2 at once "
                    f"{good_while_blocked[0]}, good from .1 {good_elsewhere[0]}, bad from .3 {bad_elsewhere[0]}; after "
                    f"Retry-After: good from .2 {good_after[0]}, bad from .2 {bad_after[0]}"),
            rss_before=rss.before, rss_after=rss.after)
    assert_alive(hub, "a burst of bad tokens")
    assert not problems, "\n".join(problems)
    assert good_while_blocked[0] == 429 and code_of(good_while_blocked[2]) == "too_many_failures", (
        f"a good token from the blocked address right after the burst: {good_while_blocked[:1]} {good_while_blocked[2]}")
    assert (good_elsewhere[0], bad_elsewhere[0]) == (200, 401), "another address was affected"
    assert (good_after[0], bad_after[0]) == (200, 401), f"the budget did not refill after Retry-After {retry_after}"
    rss.assert_bounded()
    assert_others_unaffected(hub)


def upgrade(hub, path, token, source):
    ws = RawWebSocket(hub, path, headers={"Authorization": f"Bearer {token}"}, source=source)
    ws.close()
    return ws.status, ws.headers, ws.body


def test_failed_device_and_live_upgrades_count_and_get_429_too(hub, figures):
    token = hub.register("auth-disabled")
    status, _ = hub.rest("PATCH", "/api/v1/devices/auth-disabled", {"enabled": False})
    assert status == 200
    hub.register("auth-dev")
    good_token = hub.register("auth-good")
    rss = RssProbe(hub)
    bursts = {
        "device upgrades, bad token, from .4": ("127.0.0.4", "/devices/auth-dev", BAD_TOKEN),
        "/live upgrades, bad token, from .5": ("127.0.0.5", "/live", BAD_TOKEN),
        "disabled device upgrades (403), from .6": ("127.0.0.6", "/devices/auth-disabled", token),
    }
    results, problems = {}, []
    for what, (source, path, tok) in bursts.items():
        answers, elapsed = burst(lambda: upgrade(hub, path, tok, source), 32)
        results[what] = (counts(answers), elapsed)
        problems += check_burst(answers, elapsed, what)
    good_device = upgrade(hub, "/devices/auth-good", good_token, "127.0.0.1")[0]
    good_live = upgrade(hub, "/live", hub.api_token, "127.0.0.7")[0]
    rss.stop()
    figures(input="32 refused upgrades in a burst from each of .4 (device, bad token), .5 (/live), .6 (disabled, 403)",
            answer="; ".join(f"{w}: {c} in {e:.2f} s" for w, (c, e) in results.items())
                   + f"; a good device from .1: {good_device}, a good /live from .7: {good_live}",
            rss_before=rss.before, rss_after=rss.after)
    assert_alive(hub, "bursts of refused upgrades")
    assert not problems, "\n".join(problems)
    assert (good_device, good_live) == (101, 101), f"good upgrades from other addresses: {good_device}, {good_live}"
    rss.assert_bounded()
    assert_others_unaffected(hub)


def test_refused_upgrades_do_not_use_the_connect_rate_budget(hub, figures):
    hub.register("rate-dev")
    good_token = hub.register("rate-good")
    time.sleep(1.2)  # the connect-rate bucket full again
    rss = RssProbe(hub)
    sources = [f"127.0.0.{n}" for n in range(10, 15)]
    refused = []
    began = time.monotonic()
    for source in sources:  # 18 each: under the failure budget of every address
        refused += [upgrade(hub, "/devices/rate-dev", BAD_TOKEN, source)[0] for _ in range(18)]
    elapsed = time.monotonic() - began
    good = upgrade(hub, "/devices/rate-good", good_token, "127.0.0.1")
    live = upgrade(hub, "/live", hub.api_token, "127.0.0.1")
    rss.stop()
    figures(input=f"{len(refused)} upgrades with a bad token from 5 addresses in {elapsed:.2f} s "
                  f"(--connect-rate {CONNECT_RATE}), then a good device and a good /live",
            answer=f"refused: {', '.join(f'{s}x{refused.count(s)}' for s in sorted(set(refused)))}; good device "
                   f"{good[0]} {good[2] if good[0] != 101 else ''}, good /live {live[0]}",
            rss_before=rss.before, rss_after=rss.after)
    assert_alive(hub, "a burst of refused upgrades")
    assert set(refused) == {401}, f"refused upgrades answered {sorted(set(refused))}, expected 401 only"
    assert good[0] == 101, f"a good device after {len(refused)} refused upgrades: {good[0]} {good[2]}"
    assert live[0] == 101, f"a good /live after {len(refused)} refused upgrades: {live[0]}"
    rss.assert_bounded()
    assert_others_unaffected(hub)
