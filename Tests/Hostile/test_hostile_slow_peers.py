"""Peers that do not read, and HTTP clients that dawdle (hostile-spec classes 8 and 9;
contract section 7).

8. A /live dashboard subscribed to "*" that never reads, or that floods {"type":"ping"}
   without reading; a device that floods pings or frames without reading; an HTTP client
   pipelining 20,000 requests without reading: each is closed within about
   --write-timeout of the hub's writes no longer being taken (4008 for dashboards, 1008
   for devices, a plain close for HTTP, or just the TCP connection), and the hub's memory
   stays bounded. The floods go on until the hub stops reading (or a cap): the hub's
   answers must outgrow the kernel's send buffer (about 3 MiB here) before the hub has
   anything that is not taken.
9. Request headers must arrive within --header-timeout of their first byte (half-sent or
   trickled headers are cut); an idle connection is closed after --idle-timeout, a busy
   keep-alive one is not.

Whether the hub closed its end, and when its unsent bytes stopped growing (the kernel no
longer taking its writes), is read from /proc/net/tcp, so the client never has to read.
The close code, when one arrives, is read afterwards.

Flags: --write-timeout 3 --header-timeout 1 --idle-timeout 2 (new: the old binary refuses
to start); --bad-frames-per-minute 1000000 and --device-frame-rate 1000000 (existing), so
a flood of bad frames is about writing, not about the bad-frame limit or the frame rate.
"""

import struct
import time

from hostile_kit import (
    BINARY, CLOSE, PING, SKIP_WITHOUT_HUB, TEXT, CloseWatch, RawDevice, RawWebSocket, RssProbe, Streamer, assert_alive,
    assert_others_unaffected, drain, flood, hub_fixtures, parse_frames, tcp_socket, ws_frame,
)

pytestmark = SKIP_WITHOUT_HUB

WRITE_TIMEOUT, HEADER_TIMEOUT, IDLE_TIMEOUT = 3, 1, 2
SLACK_S = 4.0  # beyond the timeout: a timer's granularity, a loaded 2-core machine
RCVBUF = 4096

module_hub, hub = hub_fixtures(extra_args=[
    "--write-timeout", str(WRITE_TIMEOUT), "--header-timeout", str(HEADER_TIMEOUT),
    "--idle-timeout", str(IDLE_TIMEOUT), "--bad-frames-per-minute", "1000000", "--device-frame-rate", "1000000"])


def close_reason(data):
    """(code, reason text) of the first close frame in a server-to-client stream."""
    frames, _ = parse_frames(data)
    for opcode, payload in frames:
        if opcode == CLOSE:
            return (struct.unpack(">H", payload[:2])[0] if len(payload) >= 2 else 1005), payload[2:].decode(errors="replace")
    return None, None


def flood_and_watch(hub, sock, chunk, cap):
    """Sends ``chunk`` up to ``cap`` times without ever reading, until the hub stops taking
    bytes; meanwhile watches the hub's end. Returns (watch, chunks sent, all sent, bytes and
    frames that were waiting for this side)."""
    watch = CloseWatch(hub.port, sock.getsockname()[1]).start()
    sent, _, all_sent = flood(sock, (chunk for _ in range(cap)), seconds=40)
    watch.wait(WRITE_TIMEOUT + SLACK_S + 3)
    data, how = drain(sock, seconds=5)
    return watch, sent, all_sent, data, how


def check_closed(watch, what, code, reason, allowed_code):
    assert watch.closed_at is not None, f"{what} was never closed: {watch.describe()}"
    assert watch.stall_to_close <= WRITE_TIMEOUT + SLACK_S, (
        f"{what} was closed {watch.stall_to_close:.1f} s after the hub's writes stopped being taken, more than "
        f"--write-timeout {WRITE_TIMEOUT} + {SLACK_S} s")
    assert code in (None, allowed_code), f"{what} closed with {code} {reason!r}, expected {allowed_code} (or a plain TCP close)"


def test_a_dashboard_subscribed_to_everything_that_never_reads_is_closed(hub, figures):
    streamer = Streamer(hub, [f"sp-dash-{i}" for i in range(3)], readings=20, pace=0.005).start()
    rss = RssProbe(hub).start()
    try:
        dash = RawWebSocket(hub, "/live", headers={"Authorization": f"Bearer {hub.api_token}"}, rcvbuf=RCVBUF)
        assert dash.status == 101
        dash.recv_json("hello")
        dash.send_json({"type": "subscribe", "id": "s1", "devices": ["*"]})
        dash.recv_json("subscribed")
        watch = CloseWatch(hub.port, dash.local_port).start()  # from here on, never read
        watch.wait(30)
        acked_during = sum(len(c.acks) for c in streamer.clients)
    finally:
        streamer.stop()
        rss.stop()
    data, how = drain(dash.sock, seconds=5)
    code, reason = close_reason(data)
    dash.close()
    figures(input="/live subscribed to * with a 4 KiB receive window, never reading, 3 devices x 20 readings streaming",
            answer=(f"{watch.describe()}; close code {code} {reason!r}, stream {how}, {len(data)} bytes were waiting; "
                    f"{acked_during} acks to the streaming devices meanwhile; peak rss {rss.peak} KiB"),
            rss_before=rss.before, rss_after=rss.after)
    assert_alive(hub, "a dashboard that never reads")
    assert streamer.error is None, repr(streamer.error)
    check_closed(watch, "the stuck dashboard", code, reason, 4008)
    rss.assert_bounded()
    assert_others_unaffected(hub)


# Floods sized so the hub's answers outgrow what the kernel buffers for it (its send
# buffer grows to about 3 MiB here): only then has the hub bytes that are not taken.
JSON_PINGS = 400_000  # {"type":"pong"} is 17 bytes on the wire: 6.8 MB
WS_PINGS = 60_000  # a pong of 125 bytes is 127: 7.6 MB
BAD_FRAMES = 100_000  # `rejected` with seq null is about 75 bytes: 7.5 MB


def test_a_dashboard_flooding_pings_without_reading_is_closed(hub, figures):
    rss = RssProbe(hub).start()
    dash = RawWebSocket(hub, "/live", headers={"Authorization": f"Bearer {hub.api_token}"}, rcvbuf=RCVBUF)
    assert dash.status == 101
    dash.recv_json("hello")
    watch, sent, all_sent, data, how = flood_and_watch(hub, dash.sock, ws_frame(TEXT, b'{"type":"ping"}'), JSON_PINGS)
    rss.stop()
    code, reason = close_reason(data)
    pongs = sum(1 for op, p in parse_frames(data)[0] if op == TEXT and b"pong" in p)
    dash.close()
    figures(input=f"up to {JSON_PINGS} {{\"type\":\"ping\"}} on /live, never reading (4 KiB window)",
            answer=(f"{sent} pings taken ({'all' if all_sent else 'then the hub stopped reading'}); {watch.describe()}; "
                    f"close code {code} {reason!r}, {pongs} pongs were waiting, stream {how}; peak rss {rss.peak} KiB"),
            rss_before=rss.before, rss_after=rss.after)
    assert_alive(hub, "a ping flood that never reads")
    check_closed(watch, "the ping-flooding dashboard", code, reason, 4008)
    rss.assert_bounded()
    assert_others_unaffected(hub)


def test_a_device_flooding_pings_without_reading_is_closed_with_1008(hub, figures):
    token = hub.register("sp-ping")
    device = RawDevice(hub, "sp-ping", token, rcvbuf=RCVBUF)
    rss = RssProbe(hub).start()
    watch, sent, all_sent, data, how = flood_and_watch(hub, device.ws.sock, ws_frame(PING, b"p" * 125), WS_PINGS)
    rss.stop()
    code, reason = close_reason(data)
    device.close()
    figures(input=f"device sends up to {WS_PINGS} WebSocket pings of 125 bytes, never reading (4 KiB window)",
            answer=(f"{sent} pings taken ({'all' if all_sent else 'then the hub stopped reading'}); {watch.describe()}; "
                    f"close code {code} {reason!r}, stream {how}; peak rss {rss.peak} KiB"),
            rss_before=rss.before, rss_after=rss.after)
    assert_alive(hub, "a device ping flood that never reads")
    check_closed(watch, "the ping-flooding device", code, reason, 1008)
    rss.assert_bounded()
    assert_others_unaffected(hub)


def test_a_device_flooding_frames_without_reading_is_closed_with_1008(hub, figures):
    """Each frame is refused (version 2), so each earns a `rejected` text that the device
    never reads; the bad-frame limit and the frame rate are out of the way (flags)."""
    token = hub.register("sp-frames")
    device = RawDevice(hub, "sp-frames", token, rcvbuf=RCVBUF)
    rss = RssProbe(hub).start()
    watch, sent, all_sent, data, how = flood_and_watch(
        hub, device.ws.sock, ws_frame(BINARY, b"\x02" + b"\x00" * 40), BAD_FRAMES)
    rss.stop()
    code, reason = close_reason(data)
    rejected = sum(1 for op, p in parse_frames(data)[0] if op == TEXT and b"rejected" in p)
    device.close()
    figures(input=f"device sends up to {BAD_FRAMES} bad frames (each answered `rejected`), never reading (4 KiB window)",
            answer=(f"{sent} frames taken ({'all' if all_sent else 'then the hub stopped reading'}); {watch.describe()}; "
                    f"close code {code} {reason!r}, {rejected} `rejected` were waiting, stream {how}; "
                    f"peak rss {rss.peak} KiB"),
            rss_before=rss.before, rss_after=rss.after)
    assert_alive(hub, "a device frame flood that never reads")
    assert reason != "too_many_bad_frames", "closed for the bad-frame limit, which this hub has at 1000000"
    check_closed(watch, "the frame-flooding device", code, reason, 1008)
    rss.assert_bounded()
    assert_others_unaffected(hub)


REQUESTS = 20_000


def test_pipelined_http_requests_that_are_never_read_are_bounded_and_closed(hub, figures):
    sock = tcp_socket(hub, rcvbuf=RCVBUF)
    rss = RssProbe(hub).start()
    request = f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{hub.port}\r\n\r\n".encode()
    watch, sent, all_sent, data, how = flood_and_watch(hub, sock, request, REQUESTS)
    rss.stop()
    answered = data.count(b"HTTP/1.1 200")
    sock.close()
    figures(input=f"{REQUESTS} pipelined GET /healthz on one connection, never reading (4 KiB window)",
            answer=(f"{sent} requests sent ({'all' if all_sent else 'then the hub stopped reading'}); {watch.describe()}; "
                    f"stream {how}, {answered} answers were waiting; peak rss {rss.peak} KiB"),
            rss_before=rss.before, rss_after=rss.after)
    assert_alive(hub, "20,000 pipelined requests")
    check_closed(watch, "the pipelining client", None, None, None)
    assert answered <= sent
    rss.assert_bounded()
    assert_others_unaffected(hub)


def seconds_until_closed(sock, limit, trickle=None):
    """Seconds until the hub closes (EOF, reset, or an answer then EOF), or None; while
    waiting, ``trickle`` (bytes) is sent one byte every 0.25 s. Also returns what came."""
    began = time.monotonic()
    got = b""
    trickle = list(trickle or b"")
    sock.settimeout(0.25)
    while time.monotonic() - began < limit:
        try:
            chunk = sock.recv(65536)
            if not chunk:
                return time.monotonic() - began, got
            got += chunk
        except TimeoutError:
            pass
        except ConnectionResetError:
            return time.monotonic() - began, got
        if trickle:
            try:
                sock.send(bytes([trickle.pop(0)]))
            except (BrokenPipeError, ConnectionResetError):
                return time.monotonic() - began, got
    return None, got


def test_request_headers_must_arrive_within_the_header_timeout(hub, figures):
    rss = RssProbe(hub)
    results = {}
    half = tcp_socket(hub)
    half.sendall(f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{hub.port}\r\nX-Half: ".encode())
    results["half-sent headers"] = seconds_until_closed(half, HEADER_TIMEOUT + SLACK_S + 2)
    half.close()
    slow = tcp_socket(hub)
    slow.sendall(b"G")  # the first byte starts the clock
    results["headers trickled 4 bytes/s"] = seconds_until_closed(
        slow, HEADER_TIMEOUT + SLACK_S + 2, trickle=b"ET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 200)
    slow.close()
    rss.stop()
    figures(input=f"headers half-sent, and trickled one byte per 0.25 s (--header-timeout {HEADER_TIMEOUT})",
            answer=", ".join(f"{k}: closed after {'never' if t is None else f'{t:.1f} s'}"
                             f"{' answer ' + got[:12].decode(errors='replace') if got else ''}"
                             for k, (t, got) in results.items()),
            rss_before=rss.before, rss_after=rss.after)
    assert_alive(hub, "slow headers")
    for case, (took, got) in results.items():
        assert took is not None and took <= HEADER_TIMEOUT + SLACK_S, f"{case}: not closed within the header timeout ({took})"
        assert b"HTTP/1.1 200" not in got, f"{case}: the request was served: {got[:100]!r}"
    rss.assert_bounded()
    assert_others_unaffected(hub)


def test_an_idle_connection_is_closed_after_the_idle_timeout_and_a_busy_one_is_not(hub, figures):
    rss = RssProbe(hub)
    silent = tcp_socket(hub)
    silent_s, _ = seconds_until_closed(silent, IDLE_TIMEOUT + SLACK_S + 2)
    silent.close()

    kept = tcp_socket(hub)
    request = f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{hub.port}\r\n\r\n".encode()
    kept.sendall(request)
    first = kept.recv(65536)
    after_answer_s, _ = seconds_until_closed(kept, IDLE_TIMEOUT + SLACK_S + 2)
    kept.close()

    busy = tcp_socket(hub)
    busy_answers, busy_closed = 0, None
    began = time.monotonic()
    while time.monotonic() - began < IDLE_TIMEOUT * 2 + 0.5:  # a request every 0.5 s, past two idle timeouts
        try:
            busy.sendall(request)
            busy.settimeout(3)
            if b"HTTP/1.1 200" in busy.recv(65536):
                busy_answers += 1
        except OSError as error:
            busy_closed = f"{type(error).__name__} after {time.monotonic() - began:.1f} s"
            break
        time.sleep(0.5)
    busy.close()
    rss.stop()
    fmt = lambda t: "never" if t is None else f"{t:.1f} s"
    figures(input=f"--idle-timeout {IDLE_TIMEOUT}: a silent connection; idle after one answer; a request every 0.5 s",
            answer=(f"silent closed after {fmt(silent_s)}, idle after an answer closed after {fmt(after_answer_s)}, "
                    f"busy: {busy_answers} answers{', then ' + busy_closed if busy_closed else ', still open'}"),
            rss_before=rss.before, rss_after=rss.after)
    assert_alive(hub, "idle connections")
    assert b"HTTP/1.1 200" in first
    for case, took in (("silent", silent_s), ("idle after an answer", after_answer_s)):
        assert took is not None, f"{case}: never closed"
        # the idle timeout, not the header timeout (no request has started)
        assert IDLE_TIMEOUT - 0.5 <= took <= IDLE_TIMEOUT + SLACK_S, f"{case}: closed after {took:.1f} s"
    assert busy_closed is None and busy_answers >= 8, f"a busy keep-alive connection was closed: {busy_closed}"
    rss.assert_bounded()
    assert_others_unaffected(hub)
