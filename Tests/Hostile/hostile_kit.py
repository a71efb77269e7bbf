"""Shared pieces of the hostile-input tier: a hub started with extra flags, byte-level
clients (raw sockets, hand-made WebSocket frames), the hub's memory, and the one check
every test ends with, `assert_others_unaffected(hub)`.

Reuses `livehub.LiveHub` (devices/python/tests/livehub.py), `pgcluster.PgCluster`
(Tests/Faults/pgcluster.py) and the Python device kit `hub_device`; conftest.py puts
their folders on sys.path.
"""

from __future__ import annotations

import asyncio
import base64
import http.client
import itertools
import json
import os
import re
import select
import socket
import subprocess
import ssl
import struct
import threading
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import pytest

from hub_device import DeviceClient
from livehub import LiveHub

HUB_BIN = os.environ.get("HUB_BIN")

SKIP_WITHOUT_HUB = pytest.mark.skipif(
    not HUB_BIN,
    reason="!!! HUB_BIN is not set: SKIPPING the hostile-input tests against the real hub binary. "
           "Run them with HUB_BIN=/path/to/hub (e.g. .build/debug/hub) !!!")

RSS_BOUND_MIB = 64  # growth of the hub's RSS any one hostile input may cause, unless a test says otherwise
API_TOKEN = "hostile-api-token-0123"  # >= 16 characters, as section 7 requires

_DEFAULT = object()


# ---------------------------------------------------------------------------- the hub


class HostileHub(LiveHub):
    """A LiveHub started with extra `hub serve` flags.

    - ``extra_args``: flags appended to ``hub serve`` (the new limits and timeouts);
    - ``cluster``: a `PgCluster` to use through ``--database-url`` (no embedded cluster);
    - ``data_dir_name``: the data folder's name inside the temp root; the hub makes it;
    - ``api_token``: ``None`` lets the hub generate one into ``<data-dir>/api-token``;
    - ``tls``: ``(cert, key)`` PEM paths: https/wss, with a client context trusting the cert.

    The hub's environment has every ``HUB_*`` variable removed (except ``HUB_PG_BIN``), so
    nothing from the caller's shell changes what a test starts.
    """

    def __init__(self, binary: str, extra_args: Sequence[str] = (), cluster=None,
                 data_dir_name: Optional[str] = None, api_token: Optional[str] = API_TOKEN,
                 tls: Optional[Tuple[str, str]] = None) -> None:
        super().__init__(binary)
        self.extra_args = list(extra_args)
        self.cluster = cluster
        self.pass_api_token = api_token is not None
        self.api_token = api_token or ""
        self.tls = tls
        self.client_ssl: Optional[ssl.SSLContext] = None
        if data_dir_name is not None:
            os.rmdir(self.data_dir)  # LiveHub made "data" (0755); this hub makes its own folder
            self.data_dir = os.path.join(self.root, data_dir_name)
        if tls:
            self.url = self.url.replace("http://", "https://")
            self.client_ssl = ssl.create_default_context(cafile=tls[0])
        self.revived = 0

    @property
    def ws_url(self) -> str:
        return self.url.replace("http", "ws", 1)

    @property
    def connect_options(self) -> Dict[str, Any]:
        """For `DeviceClient(..., connect_options=...)` and `websockets.connect`."""
        return {"ssl": self.client_ssl} if self.client_ssl else {}

    def argv(self) -> List[str]:
        argv = [self.binary, "serve", "--data-dir", self.data_dir, "--port", str(self.port), "--host", "127.0.0.1"]
        if self.pass_api_token:
            argv += ["--api-token", self.api_token]
        if self.cluster is not None:
            argv += ["--database-url", self.cluster.url]
        if self.tls:
            argv += ["--tls-cert", self.tls[0], "--tls-key", self.tls[1]]
        return argv + self.extra_args

    def start(self, timeout: float = 120.0) -> None:
        """LiveHub.start with this hub's argv: waits for the banner with its address."""
        self.starts += 1
        out = os.path.join(self.root, f"hub-{self.starts}.out")
        err = open(os.path.join(self.root, f"hub-{self.starts}.err"), "wb")
        env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_") or k == "HUB_PG_BIN"}
        self.proc = subprocess.Popen(self.argv(), stdout=open(out, "wb"), stderr=err, stdin=subprocess.DEVNULL, env=env)
        deadline = time.monotonic() + timeout
        while self.url not in open(out, encoding="utf-8", errors="replace").read():
            if self.proc.poll() is not None:
                raise RuntimeError(f"hub exited with {self.proc.returncode} at start ({' '.join(self.argv()[1:])}):\n"
                                   f"{self.logs()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"no banner from the hub within {timeout} s:\n{self.logs()}")
            time.sleep(0.05)
        if not self.pass_api_token:
            with open(os.path.join(self.data_dir, "api-token")) as f:
                self.api_token = f.read().strip()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def revive(self) -> None:
        """Before each test: a hub that an earlier test killed is started again (loudly),
        so every test is judged on its own input."""
        if self.proc is not None and self.proc.poll() is not None:
            code = self.proc.returncode
            self.proc = None
            self.revived += 1
            print(f"\n!!! the module's hub had died (exit {code}) in an earlier test; starting it again", flush=True)
            self.start()
        elif self.proc is None:
            self.start()

    def psql(self, sql: str) -> List[str]:
        if self.cluster is not None:
            return self.cluster.psql(sql)
        return super().psql(sql)

    def postgres_pid(self) -> Optional[int]:
        return None if self.cluster is not None else super().postgres_pid()

    # ---------------------------------------------------------------- HTTP

    def request(self, method: str, path: str, body: Any = None, token: Any = _DEFAULT,
                headers: Optional[Dict[str, str]] = None, source: Optional[str] = None,
                raw: Optional[bytes] = None, timeout: float = 30.0) -> Tuple[int, Dict[str, str], Any]:
        """One HTTP request on its own connection: (status, lower-cased headers, JSON or text).
        ``token``: the API token by default, ``None`` for none; ``source``: bind this local
        address (127.0.0.x) first."""
        kwargs: Dict[str, Any] = {"timeout": timeout}
        if source:
            kwargs["source_address"] = (source, 0)
        if self.tls:
            conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.client_ssl, **kwargs)
        else:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, **kwargs)
        sent_headers: Dict[str, str] = {}
        token = self.api_token if token is _DEFAULT else token
        if token is not None:
            sent_headers["Authorization"] = f"Bearer {token}"
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        if data is not None:
            sent_headers["Content-Type"] = "application/json"
        sent_headers.update(headers or {})
        try:
            conn.request(method, path, body=data, headers=sent_headers)
            answer = conn.getresponse()
            text = answer.read()
            try:
                parsed = json.loads(text) if text else None
            except ValueError:
                parsed = text.decode(errors="replace")
            return answer.status, {k.lower(): v for k, v in answer.getheaders()}, parsed
        finally:
            conn.close()

    def rest(self, method: str, path: str, body: Any = None) -> Tuple[int, Any]:
        status, _, parsed = self.request(method, path, body)
        return status, parsed

    def register(self, device_id: str) -> str:
        status, answer = self.rest("POST", "/api/v1/devices", {"id": device_id})
        assert status == 201, f"registering {device_id}: {status} {answer}"
        return answer["token"]


def hub_fixtures(**options):
    """``module_hub, hub = hub_fixtures(extra_args=[...])`` in a test module: one hub per
    module (started once; a failed start fails every test of the module with the hub's
    output), and a per-test ``hub`` that restarts it should an earlier test have killed it."""

    @pytest.fixture(scope="module")
    def module_hub():
        made = HostileHub(HUB_BIN, **options)
        try:
            made.start()
            yield made
        finally:
            made.cleanup()

    @pytest.fixture
    def hub(module_hub):
        module_hub.revive()
        return module_hub

    return module_hub, hub


def assert_alive(hub: HostileHub, after: str) -> None:
    assert hub.proc is not None and hub.proc.poll() is None, (
        f"the hub died after {after} (exit {hub.proc.returncode if hub.proc else '?'}):\n{hub.logs()}")


# ---------------------------------------------------------------------------- memory


def rss_kib(pid: int) -> Optional[int]:
    try:
        with open(f"/proc/{pid}/status") as f:
            return int(re.search(r"^VmRSS:\s+(\d+) kB", f.read(), re.M).group(1))
    except (OSError, AttributeError):
        return None


class RssProbe:
    """The hub's VmRSS: ``before`` at creation, ``peak`` of the samples (``sample()``, or a
    background thread between ``start()`` and ``stop()``), ``after`` at ``stop()``. Follows
    the hub should it be restarted (``restarted`` tells; the growth is then not meaningful)."""

    def __init__(self, hub: HostileHub) -> None:
        self.hub = hub
        self.pid = hub.proc.pid
        self.before = rss_kib(self.pid) or 0
        self.peak = self.before
        self.after: Optional[int] = None
        self.restarted = False
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def sample(self) -> Optional[int]:
        proc = self.hub.proc
        if proc is not None and proc.pid != self.pid:
            self.restarted = True
        value = rss_kib(proc.pid) if proc is not None and proc.poll() is None else None
        if value is not None and not self.restarted:
            self.peak = max(self.peak, value)
        return value

    def start(self, every: float = 0.05) -> "RssProbe":
        def loop():
            while not self._stop.is_set():
                self.sample()
                time.sleep(every)

        self._thread = threading.Thread(target=loop, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> Optional[int]:
        self._stop.set()
        if self._thread:
            self._thread.join()
        self.after = self.sample()
        return self.after

    def assert_bounded(self, mib: int = RSS_BOUND_MIB) -> None:
        if self.after is None:
            self.stop()
        assert not self.restarted, "the hub was restarted during the test: its RSS growth cannot be judged"
        growth = self.peak - self.before
        assert growth < mib * 1024, (f"hub RSS grew by {growth} KiB (before {self.before} KiB, peak {self.peak} KiB, "
                                     f"after {self.after} KiB), over the bound of {mib} MiB")


# ---------------------------------------------------------------------------- everyone else

_OTHERS = itertools.count(1)


def assert_others_unaffected(hub: HostileHub, frames: int = 5, timeout: float = 20.0) -> None:
    """(a) a freshly registered device streams ``frames`` frames: all acked, all rows in
    PostgreSQL; (b) a command to another device, connected with a DeviceClient that has a
    handler, sent with ``wait_s``, reaches ``succeeded`` with the handler's result.

    Runs in a thread of its own (its own event loop), so it may be called from plain code
    and, blocking, from inside a running loop; ``await others_unaffected(hub)`` does not block."""
    assert_alive(hub, "the hostile input (before checking the others)")
    n = next(_OTHERS)
    streamer, responder = f"others-{os.getpid()}-{n}-s", f"others-{os.getpid()}-{n}-r"
    tokens = {device: hub.register(device) for device in (streamer, responder)}
    outcome: Dict[str, Any] = {}

    async def main():
        s = DeviceClient(hub.url, streamer, tokens[streamer], backoff_max=0.5, connect_options=hub.connect_options)
        r = DeviceClient(hub.url, responder, tokens[responder], backoff_max=0.5, connect_options=hub.connect_options)

        @r.command("echo")
        def echo(params):
            return {"echo": params}

        await s.start()
        await r.start()
        try:
            for i in range(frames):
                await asyncio.wait_for(s.send({"temp": 20.0 + i, "count": i}), timeout)
            outcome["acked"] = await s.wait_acked(timeout)
            outcome["unacked"] = s.pending
            outcome["connected"] = await r.wait_connected(timeout)
            began = time.monotonic()
            outcome["command"] = await asyncio.get_running_loop().run_in_executor(
                None, lambda: hub.rest("POST", f"/api/v1/devices/{responder}/commands",
                                       {"name": "echo", "params": {"n": n}, "wait_s": 10}))
            outcome["command_s"] = time.monotonic() - began
        finally:
            await s.close(1)
            await r.close(1)

    def run():
        try:
            asyncio.run(asyncio.wait_for(main(), timeout * 3))
        except BaseException as error:  # reported by the caller
            outcome["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout * 3 + 10)
    assert not thread.is_alive(), "assert_others_unaffected: hung"
    assert "error" not in outcome, f"others affected: {outcome['error']!r}\n{hub.logs()}"
    assert outcome["acked"], f"others affected: {outcome['unacked']} of {frames} frames of {streamer} never acked\n{hub.logs()}"
    rows = hub.psql(f"select count(*) from telemetry where device_id = '{streamer}'")
    assert rows == [str(2 * frames)], f"others affected: {rows} rows of {streamer} in PostgreSQL, expected {2 * frames}"
    assert outcome["connected"], f"others affected: {responder} never got its welcome"
    status, body = outcome["command"]
    assert status == 200 and isinstance(body, dict) and body.get("status") == "succeeded", (
        f"others affected: the command to {responder} answered {status} {body} after {outcome['command_s']:.1f} s")
    assert body.get("result") == {"echo": {"n": n}}, body
    assert_alive(hub, "checking the others")


async def others_unaffected(hub: HostileHub) -> None:
    await asyncio.get_running_loop().run_in_executor(None, assert_others_unaffected, hub)


# ---------------------------------------------------------------------------- raw sockets


def tcp_socket(hub: HostileHub, source: Optional[str] = None, rcvbuf: Optional[int] = None,
               timeout: float = 10.0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)  # before connect: a small window
    if source:
        sock.bind((source, 0))
    sock.settimeout(timeout)
    sock.connect(("127.0.0.1", hub.port))
    return sock


def read_http_head(sock: socket.socket, data: bytes = b"") -> Tuple[int, Dict[str, str], bytes]:
    """Reads one response head: (status, lower-cased headers, bytes after the head)."""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a full response head: {data[:200]!r}")
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, rest


def read_http_response(sock: socket.socket) -> Tuple[int, Dict[str, str], Any]:
    status, headers, rest = read_http_head(sock)
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    body = rest[:length]
    try:
        return status, headers, json.loads(body) if body else None
    except ValueError:
        return status, headers, body.decode(errors="replace")


def ws_frame(opcode: int, payload: bytes = b"", fin: bool = True) -> bytes:
    """One masked client-to-server WebSocket frame."""
    mask = os.urandom(4)
    size = len(payload)
    first = (0x80 if fin else 0) | opcode
    if size < 126:
        head = struct.pack(">BB", first, 0x80 | size)
    elif size < 65536:
        head = struct.pack(">BBH", first, 0x80 | 126, size)
    else:
        head = struct.pack(">BBQ", first, 0x80 | 127, size)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


TEXT, BINARY, CLOSE, PING, PONG = 0x1, 0x2, 0x8, 0x9, 0xA


def parse_frame(data: bytes) -> Optional[Tuple[int, bytes, bytes]]:
    """The first server-to-client frame in ``data``: (opcode, payload, the rest), or None
    while it is incomplete."""
    if len(data) < 2:
        return None
    opcode, size, at = data[0] & 0x0F, data[1] & 0x7F, 2
    if size == 126:
        if len(data) < 4:
            return None
        size, at = struct.unpack(">H", data[2:4])[0], 4
    elif size == 127:
        if len(data) < 10:
            return None
        size, at = struct.unpack(">Q", data[2:10])[0], 10
    if data[1] & 0x80:
        at += 4
    if len(data) < at + size:
        return None
    return opcode, data[at:at + size], data[at + size:]


def parse_frames(data: bytes) -> Tuple[List[Tuple[int, bytes]], bytes]:
    """Every complete frame in ``data``: ([(opcode, payload)], the incomplete rest)."""
    frames = []
    while True:
        one = parse_frame(data)
        if one is None:
            return frames, data
        frames.append(one[:2])
        data = one[2]


class RawWebSocket:
    """A WebSocket client over a plain socket, for byte-level control: a small receive
    buffer, a chosen source address, hand-made frames, and never reading if need be."""

    def __init__(self, hub: HostileHub, path: str, headers: Optional[Dict[str, str]] = None,
                 source: Optional[str] = None, rcvbuf: Optional[int] = None, timeout: float = 10.0) -> None:
        self.sock = tcp_socket(hub, source=source, rcvbuf=rcvbuf, timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{hub.port}", "Upgrade: websocket", "Connection: Upgrade",
                 f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.status, self.headers, self.buffer = read_http_head(self.sock)
        self.body: Any = None
        if self.status != 101:
            length = int(self.headers.get("content-length", "0"))
            while len(self.buffer) < length:
                chunk = self.sock.recv(65536)
                if not chunk:
                    break
                self.buffer += chunk
            try:
                self.body = json.loads(self.buffer[:length]) if length else None
            except ValueError:
                self.body = self.buffer[:length].decode(errors="replace")

    @property
    def local_port(self) -> int:
        return self.sock.getsockname()[1]

    def send(self, opcode: int, payload: bytes) -> None:
        self.sock.sendall(ws_frame(opcode, payload))

    def send_json(self, message: Any) -> None:
        self.send(TEXT, json.dumps(message).encode())

    def recv_frame(self, timeout: float = 10.0) -> Tuple[int, bytes]:
        deadline = time.monotonic() + timeout
        while True:
            one = parse_frame(self.buffer)
            if one is not None:
                opcode, payload, self.buffer = one
                return opcode, payload
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no frame")
            self.sock.settimeout(left)
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buffer += chunk

    def recv_json(self, want=None, timeout: float = 10.0) -> Dict[str, Any]:
        """The next text message (of type ``want``, skipping others)."""
        deadline = time.monotonic() + timeout
        while True:
            opcode, payload = self.recv_frame(max(0.01, deadline - time.monotonic()))
            if opcode == TEXT:
                message = json.loads(payload)
                if want is None or message.get("type") in ((want,) if isinstance(want, str) else want):
                    return message
            elif opcode == CLOSE:
                code = struct.unpack(">H", payload[:2])[0] if len(payload) >= 2 else None
                raise ConnectionError(f"closed with {code}")

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def drain(sock: socket.socket, seconds: float = 10.0, max_bytes: int = 256 << 20) -> Tuple[bytes, str]:
    """Reads until EOF, a reset, ``seconds`` or ``max_bytes``: (bytes, how it ended)."""
    data = bytearray()
    deadline = time.monotonic() + seconds
    while len(data) < max_bytes:
        left = deadline - time.monotonic()
        if left <= 0:
            return bytes(data), "still open"
        sock.settimeout(left)
        try:
            chunk = sock.recv(1 << 20)
        except socket.timeout:
            return bytes(data), "still open"
        except ConnectionResetError:
            return bytes(data), "reset"
        if not chunk:
            return bytes(data), "eof"
        data += chunk
    return bytes(data), "too much data"


def close_code(data: bytes) -> Optional[int]:
    """The code of the first close frame in a server-to-client byte stream."""
    frames, _ = parse_frames(data)
    for opcode, payload in frames:
        if opcode == CLOSE:
            return struct.unpack(">H", payload[:2])[0] if len(payload) >= 2 else 1005
    return None


# ---------------------------------------------------------------------------- the hub's side of a socket

_TCP_STATES = {"01": "ESTABLISHED", "02": "SYN_SENT", "03": "SYN_RECV", "04": "FIN_WAIT1", "05": "FIN_WAIT2",
               "06": "TIME_WAIT", "07": "CLOSE", "08": "CLOSE_WAIT", "09": "LAST_ACK", "0A": "LISTEN", "0B": "CLOSING"}


def hub_side(hub_port: int, client_port: int) -> Optional[Tuple[str, int, int]]:
    """The hub's end of the loopback connection to ``client_port``, from /proc/net/tcp:
    (state, bytes the hub has queued unsent, inode; 0 once the hub closed its descriptor),
    or None when the kernel no longer has it."""
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            local, remote = fields[1].split(":"), fields[2].split(":")
            if int(local[1], 16) == hub_port and int(remote[1], 16) == client_port:
                return _TCP_STATES.get(fields[3], fields[3]), int(fields[4].split(":")[0], 16), int(fields[9])
    return None


def hub_closed(hub_port: int, client_port: int) -> bool:
    side = hub_side(hub_port, client_port)
    return side is None or side[0] != "ESTABLISHED" or side[2] == 0


def wait_hub_closed(hub_port: int, client_port: int, timeout: float) -> Optional[float]:
    """Seconds until the hub closed its end (without this side reading), or None."""
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        if hub_closed(hub_port, client_port):
            return time.monotonic() - began
        time.sleep(0.05)
    return None


def flood(sock: socket.socket, chunks, seconds: float) -> Tuple[int, int, bool]:
    """Sends ``chunks`` (an iterable of bytes) without ever reading, for at most
    ``seconds``; stops early when the hub stops taking bytes for 1 s or resets.
    Returns (chunks sent whole, bytes sent, whether all were sent)."""
    sock.setblocking(False)
    sent_chunks = sent_bytes = 0
    deadline = time.monotonic() + seconds
    stalled_since = None
    try:
        for chunk in chunks:
            view = memoryview(chunk)
            while view:
                if time.monotonic() > deadline:
                    return sent_chunks, sent_bytes, False
                _, writable, _ = select.select([], [sock], [], 0.05)
                if not writable:
                    stalled_since = stalled_since or time.monotonic()
                    if time.monotonic() - stalled_since > 1.0:
                        return sent_chunks, sent_bytes, False
                    continue
                stalled_since = None
                try:
                    n = sock.send(view)
                except BlockingIOError:
                    continue
                except (BrokenPipeError, ConnectionResetError):
                    return sent_chunks, sent_bytes, False
                view = view[n:]
                sent_bytes += n
            sent_chunks += 1
        return sent_chunks, sent_bytes, True
    finally:
        sock.setblocking(True)


# ---------------------------------------------------------------------------- streaming devices


class RecordingClient(DeviceClient):
    """A DeviceClient that timestamps each ack (seq, monotonic time)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.acks: List[Tuple[int, float]] = []
        self.sent: Dict[int, float] = {}

    def _acked(self, seq):
        if seq > 0:
            self.acks.append((seq, time.monotonic()))
        super()._acked(seq)


class Streamer:
    """Devices that stream in a background thread: every ``pace`` seconds each sends one
    frame of ``readings`` readings, for as long as it runs. ``window(seconds)`` measures
    frames acked per second and the ack latency of the frames sent in the window."""

    def __init__(self, hub: HostileHub, ids: Sequence[str], readings: int = 5, pace: float = 0.01,
                 max_buffer: int = 2000) -> None:
        self.hub = hub
        self.ids = list(ids)
        self.tokens = {device: hub.register(device) for device in self.ids}
        self.readings = readings
        self.pace = pace
        self.max_buffer = max_buffer
        self.clients: List[RecordingClient] = []
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.error: Optional[BaseException] = None

    def start(self) -> "Streamer":
        self._thread.start()
        assert self._ready.wait(30), f"streaming devices never connected\n{self.hub.logs()}"
        assert self.error is None, repr(self.error)
        return self

    def _run(self) -> None:
        async def main():
            self.clients = [RecordingClient(self.hub.url, device, self.tokens[device], backoff_max=0.5,
                                            max_buffer=self.max_buffer, connect_options=self.hub.connect_options)
                            for device in self.ids]
            for client in self.clients:
                await client.start()
            for client in self.clients:
                await client.wait_connected(30)
            self._ready.set()
            i = 0
            while not self._stop.is_set():
                for client in self.clients:
                    values = {f"m{k}": float(i + k) for k in range(self.readings)}
                    seq = await client.send(values)
                    client.sent[seq] = time.monotonic()
                i += 1
                await asyncio.sleep(self.pace)
            for client in self.clients:
                await client.close(2)

        try:
            asyncio.run(main())
        except BaseException as error:
            self.error = error
            self._ready.set()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def window(self, seconds: float, settle: float = 2.0) -> Dict[str, float]:
        """Streams for ``seconds``, then waits ``settle`` s for the acks of the frames sent in
        the window: frames sent, frames acked per second of window, ack latency (send to
        the first ack covering the frame; inf when none came)."""
        began = time.monotonic()
        time.sleep(seconds)
        ended = time.monotonic()
        time.sleep(settle)
        latencies = []
        for client in self.clients:
            acks = list(client.acks)
            j = 0
            for seq, at in sorted((s, a) for s, a in list(client.sent.items()) if began <= a < ended):
                while j < len(acks) and acks[j][0] < seq:
                    j += 1
                latencies.append(acks[j][1] - at if j < len(acks) else float("inf"))
        latencies.sort()
        finite = [x for x in latencies if x != float("inf")]

        def pct(p):
            return latencies[min(len(latencies) - 1, int(p * len(latencies)))] if latencies else float("inf")

        return {"sent": len(latencies), "acked_per_s": len(finite) / (ended - began), "p50_s": pct(0.5),
                "p99_s": pct(0.99), "max_s": latencies[-1] if latencies else float("inf"),
                "unacked": len(latencies) - len(finite)}


# ---------------------------------------------------------------------------- /live and devices, synchronously


def now_us() -> int:
    return time.time_ns() // 1000


class Live:
    """A /live dashboard on the `websockets` sync client: ``send(obj)``, ``recv(want)``."""

    def __init__(self, hub: HostileHub, token: Optional[str] = None, timeout: float = 10.0) -> None:
        from websockets.sync.client import connect
        options: Dict[str, Any] = {"additional_headers": {"Authorization": f"Bearer {token or hub.api_token}"},
                                   "max_size": None, "open_timeout": timeout}
        if hub.client_ssl:
            options["ssl"] = hub.client_ssl
        try:
            self.ws = connect(hub.ws_url + "/live", legacy=True, **options)
        except TypeError:  # websockets before 15 has no `legacy` and behaves that way
            self.ws = connect(hub.ws_url + "/live", **options)
        self.hello = self.recv("hello", timeout)

    def send(self, message: Any) -> None:
        self.ws.send(message if isinstance(message, str) else json.dumps(message))

    def recv(self, want=None, timeout: float = 10.0) -> Dict[str, Any]:
        """The next message of type ``want`` (a str or a tuple of them), skipping others."""
        wanted = (want,) if isinstance(want, str) else want
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {want} within {timeout} s")
            message = json.loads(self.ws.recv(timeout=left))
            if wanted is None or message.get("type") in wanted:
                return message

    def answer(self, message: Any, timeout: float = 5.0) -> str:
        """Sends a request; its answer as a short word: the error code, "subscribed",
        "timeout" or "closed (…)"; then whether a ping still gets its pong."""
        try:
            self.send(message)
            reply = self.recv(("error", "subscribed", "command_status"), timeout)
            return reply.get("code") if reply["type"] == "error" else reply["type"]
        except TimeoutError:
            return "no answer"
        except Exception as error:  # the connection went away
            return f"closed ({type(error).__name__})"

    def pong(self, timeout: float = 5.0) -> bool:
        try:
            self.send({"type": "ping"})
            self.recv("pong", timeout)
            return True
        except Exception:
            return False

    def close(self) -> None:
        try:
            self.ws.close()
        except Exception:
            pass


class RawDevice:
    """A device on a raw socket: welcome, hand-encoded frames, acks read by hand; text
    messages that arrive meanwhile are kept in ``texts``."""

    def __init__(self, hub: HostileHub, device_id: str, token: str, rcvbuf: Optional[int] = None,
                 source: Optional[str] = None, timeout: float = 10.0) -> None:
        self.device_id = device_id
        self.ws = RawWebSocket(hub, f"/devices/{device_id}", headers={"Authorization": f"Bearer {token}"},
                               rcvbuf=rcvbuf, source=source, timeout=timeout)
        assert self.ws.status == 101, f"upgrade of {device_id}: {self.ws.status} {self.ws.body}"
        self.texts: List[Dict[str, Any]] = []
        self.welcome = self.ws.recv_json("welcome", timeout)
        self.seq = self.welcome["last_seq"]
        self.acked = self.seq

    def encode(self, readings, base_time: Optional[int] = None) -> bytes:
        from hub_device import encode_telemetry
        self.seq += 1
        return encode_telemetry(self.seq, now_us() if base_time is None else base_time, readings)

    def send_frame(self, readings, base_time: Optional[int] = None, wait: bool = True, timeout: float = 15.0) -> int:
        self.ws.send(BINARY, self.encode(readings, base_time))
        if wait:
            self.wait_ack(self.seq, timeout)
        return self.seq

    def send_text(self, message: Any) -> None:
        self.ws.send(TEXT, (message if isinstance(message, str) else json.dumps(message)).encode())

    def _pump(self, timeout: float) -> None:
        from hub_device import decode_ack
        opcode, payload = self.ws.recv_frame(timeout)
        if opcode == BINARY:
            self.acked = max(self.acked, decode_ack(payload))
        elif opcode == TEXT:
            self.texts.append(json.loads(payload))
        elif opcode == CLOSE:
            code = struct.unpack(">H", payload[:2])[0] if len(payload) >= 2 else None
            raise ConnectionError(f"{self.device_id} closed by the hub with {code} {payload[2:]!r}")

    def wait_ack(self, seq: int, timeout: float = 15.0) -> float:
        """Seconds until an ack covers ``seq``."""
        began = time.monotonic()
        deadline = began + timeout
        while self.acked < seq:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{self.device_id}: no ack for seq {seq} within {timeout} s (acked {self.acked})")
            self._pump(left)
        return time.monotonic() - began

    def recv_text(self, want, timeout: float = 10.0, where=None) -> Dict[str, Any]:
        """The first text message of type ``want`` (and matching ``where``), kept or new."""
        deadline = time.monotonic() + timeout
        while True:
            for i, message in enumerate(self.texts):
                if message.get("type") == want and (where is None or where(message)):
                    return self.texts.pop(i)
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{self.device_id}: no {want} within {timeout} s (got {self.texts[-5:]})")
            self._pump(left)

    def close(self) -> None:
        self.ws.close()


class Responder:
    """A DeviceClient with an ``echo`` handler, connected in a background thread while
    the ``with`` block runs."""

    def __init__(self, hub: HostileHub, device_id: str) -> None:
        self.hub = hub
        self.device_id = device_id
        self.token = hub.register(device_id)
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        async def main():
            client = DeviceClient(self.hub.url, self.device_id, self.token, backoff_max=0.5,
                                  connect_options=self.hub.connect_options)
            client.on_command("echo", lambda params: {"echo": params})
            await client.start()
            await client.wait_connected(30)
            self._ready.set()
            while not self._stop.is_set():
                await asyncio.sleep(0.05)
            await client.close(1)

        asyncio.run(main())

    def __enter__(self) -> "Responder":
        self._thread.start()
        assert self._ready.wait(30), f"{self.device_id} never connected"
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(20)


def nested(depth: int, leaf: Any = "x") -> Any:
    """An object nested ``depth`` levels: {"d": {"d": … leaf}}."""
    value = leaf
    for _ in range(depth):
        value = {"d": value}
    return value


class CloseWatch:
    """Watches the hub's end of one loopback connection (from /proc/net/tcp, every 50 ms)
    while this side never reads: when the hub's unsent bytes last grew, that is when the
    kernel last took its writes (its send buffer, up to 4 MiB here, fills first), and when
    the hub closed its end.

    ``stall_to_close``: seconds from the last growth to the close, the figure to hold
    against --write-timeout; ``total``: seconds from ``start()`` to the close."""

    def __init__(self, hub_port: int, client_port: int) -> None:
        self.hub_port, self.client_port = hub_port, client_port
        self.began = self.last_growth = time.monotonic()
        self.closed_at: Optional[float] = None
        self.peak_unsent = 0
        self.last_side = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> "CloseWatch":
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            side = hub_side(self.hub_port, self.client_port)
            now = time.monotonic()
            if side is None or side[0] != "ESTABLISHED" or side[2] == 0:
                self.closed_at = now
                self.last_side = side
                return
            self.last_side = side
            if side[1] > self.peak_unsent:
                self.peak_unsent = side[1]
                self.last_growth = now
            time.sleep(0.05)

    def wait(self, timeout: float) -> Optional[float]:
        """Waits up to ``timeout`` s for the close; returns ``stall_to_close`` or None."""
        self._thread.join(timeout)
        self._stop.set()
        return self.stall_to_close

    @property
    def stall_to_close(self) -> Optional[float]:
        return None if self.closed_at is None else self.closed_at - self.last_growth

    @property
    def total(self) -> Optional[float]:
        return None if self.closed_at is None else self.closed_at - self.began

    def describe(self) -> str:
        if self.closed_at is None:
            return (f"not closed (hub side {self.last_side}, unsent peaked at {self.peak_unsent} bytes "
                    f"{time.monotonic() - self.last_growth:.1f} s ago)")
        return (f"closed {self.stall_to_close:.1f} s after its unsent bytes stopped growing at {self.peak_unsent} "
                f"({self.total:.1f} s after it started)")
