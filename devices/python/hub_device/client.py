"""The asyncio device client: a thin layer over :mod:`hub_device.frames` and
:mod:`hub_device.buffer`, speaking to the hub with the ``websockets`` library."""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import random
import time
from collections import OrderedDict, deque
from typing import Any, Callable, Deque, Dict, Optional, Set, Union
from urllib.parse import urlsplit, urlunsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus, WebSocketException

from .buffer import DEFAULT_COMPACT_BYTES, FrameBuffer
from .frames import (
    DEFAULT_MAX_FRAME_BYTES, MAX_SEQ, Command, CommandAck, CommandResult, Error, Frame,
    FrameError, Message, ProtocolError, ReadingsLike, Rejected, Welcome, as_readings,
    decode_ack, encode_frame, encode_message, is_valid_device_id, parse_message,
)

log = logging.getLogger("hub_device")

DEFAULT_MAX_BUFFER = 10_000  # unacked frames held in memory (and in the spool)
BACKOFF_INITIAL = 0.5  # seconds; the first reconnect waits up to this long
BACKOFF_MAX = 30.0  # seconds; no reconnect waits longer
WELCOME_TIMEOUT = 30.0  # seconds from the upgrade to the welcome
COMMAND_CACHE = 256  # results of recent commands, to answer a re-sent command id

Handler = Callable[[Dict[str, Any]], Any]


class ClientClosed(Exception):
    """``send`` after ``close``."""


def backoff_delay(attempt: int, initial: float = BACKOFF_INITIAL, cap: float = BACKOFF_MAX,
                  rand: Callable[[], float] = random.random) -> float:
    """Capped exponential backoff with full jitter: uniform in
    ``[0, min(cap, initial * 2**attempt)]`` for the ``attempt``-th retry (from 0)."""
    return rand() * min(cap, initial * 2.0 ** min(attempt, 60))


def device_url(url: str, device_id: str) -> str:
    """``ws://host:port/devices/<id>`` from a hub address (``http``/``https`` become
    ``ws``/``wss``); a URL that already ends in ``/devices/<id>`` is kept."""
    parts = urlsplit(url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    path = parts.path.rstrip("/")
    if not path.endswith(f"/devices/{device_id}"):
        path += f"/devices/{device_id}"
    return urlunsplit((scheme, parts.netloc, path, parts.query, ""))


class DeviceClient:
    """Streams telemetry to the hub and answers its commands.

    ``send`` assigns the next ``seq`` (from the first welcome's ``last_seq + 1``, or from the
    spool), buffers the frame until the hub acks it, and resends unacked frames after every
    reconnect. Use it as ``async with DeviceClient(...) as client:`` or call ``start()`` and
    ``close()``.
    """

    def __init__(
        self,
        url: str,
        device_id: str,
        token: Optional[str] = None,
        *,
        max_buffer: int = DEFAULT_MAX_BUFFER,
        spool_path: Optional[str] = None,
        spool_fsync: bool = True,
        spool_compact_bytes: int = DEFAULT_COMPACT_BYTES,
        backoff_initial: float = BACKOFF_INITIAL,
        backoff_max: float = BACKOFF_MAX,
        welcome_timeout: float = WELCOME_TIMEOUT,
        on_rejected: Optional[Callable[[Rejected], Any]] = None,
        command_cache: int = COMMAND_CACHE,
        connect_options: Optional[Dict[str, Any]] = None,
    ) -> None:
        if not is_valid_device_id(device_id):
            raise ValueError(f"bad device id {device_id!r}: 1-64 of A-Z a-z 0-9 . _ - (not only dots)")
        if max_buffer < 1:
            raise ValueError("max_buffer must be at least 1")
        self.url = device_url(url, device_id)
        self.device_id = device_id
        self.max_buffer = max_buffer
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.welcome_timeout = welcome_timeout
        self.on_rejected = on_rejected
        self.max_frame_bytes = DEFAULT_MAX_FRAME_BYTES
        self.welcome: Optional[Welcome] = None
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._connect_options = connect_options or {}
        self._buffer = FrameBuffer(spool_path, fsync=spool_fsync, compact_bytes=spool_compact_bytes)
        self._handlers: Dict[str, Handler] = {}
        self._results: "OrderedDict[str, CommandResult]" = OrderedDict()
        self._running: Dict[str, "asyncio.Task[None]"] = {}
        self._callbacks: Set["asyncio.Future[Any]"] = set()
        self._command_cache = command_cache
        self._outbox: Optional[Deque[Union[bytes, str]]] = None
        self._ws: Optional[ClientConnection] = None
        self._task: Optional["asyncio.Task[None]"] = None
        self._closing = False
        # asyncio primitives are made in start(), inside the running loop.
        self._seq_known: asyncio.Event
        self._wake: asyncio.Event
        self._stop: asyncio.Event
        self._changed: asyncio.Event

    # ------------------------------------------------------------------ public API

    @property
    def pending(self) -> int:
        """Frames sent (or queued) but not yet acked."""
        return len(self._buffer)

    @property
    def acked_seq(self) -> int:
        return self._buffer.acked

    @property
    def connected(self) -> bool:
        return self._ws is not None

    async def __aenter__(self) -> "DeviceClient":
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def start(self) -> None:
        """Starts connecting in the background; returns at once."""
        if self._task is not None:
            return
        self._seq_known, self._wake = asyncio.Event(), asyncio.Event()
        self._stop, self._changed = asyncio.Event(), asyncio.Event()
        if self._buffer.last_seq > 0:
            self._seq_known.set()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def send(self, readings: ReadingsLike, base_time: Optional[int] = None) -> int:
        """Queues one frame and returns its ``seq``.

        ``readings``: ``{"temp": 21.5, "door": True}`` or a list of
        :class:`~hub_device.frames.Reading` (for an explicit type or an offset).
        ``base_time``: microseconds since the epoch; ``None`` = now by this machine's clock,
        ``0`` = the hub's receive time. Raises :class:`FrameError` for invalid readings.
        Waits while the buffer is full, and before the very first welcome if no spool
        remembers the sequence; never drops a frame.
        """
        self._check_started()
        if self._closing:
            raise ClientClosed("the client is closed")
        if base_time is None:
            base_time = time.time_ns() // 1000
        frame = encode_frame(Frame(1, base_time, as_readings(readings)))  # checks every rule
        if len(frame) > self.max_frame_bytes:
            raise FrameError("frame_too_large", f"{len(frame)} bytes, the hub takes {self.max_frame_bytes}")
        await self._seq_known.wait()
        while len(self._buffer) >= self.max_buffer and not self._closing:
            await self._changed.wait()
        if self._closing:
            raise ClientClosed("the client is closed")
        seq = self._buffer.last_seq + 1
        if seq > MAX_SEQ:
            raise FrameError("seq_out_of_range", f"seq {seq}")
        frame = frame[:2] + seq.to_bytes(8, "big") + frame[10:]
        self._buffer.add(seq, frame)
        self._push(frame)
        return seq

    async def wait_acked(self, timeout: Optional[float] = None) -> bool:
        """Waits until the hub has acked every frame sent so far; False on timeout."""
        self._check_started()

        async def drained() -> None:
            while len(self._buffer):
                await self._changed.wait()

        try:
            await asyncio.wait_for(drained(), timeout)
            return True
        except asyncio.TimeoutError:
            return False

    async def wait_connected(self, timeout: Optional[float] = None) -> bool:
        """Waits for a welcome; False on timeout."""
        self._check_started()

        async def welcomed() -> None:
            while self._ws is None:
                await self._changed.wait()

        try:
            await asyncio.wait_for(welcomed(), timeout)
            return True
        except asyncio.TimeoutError:
            return False

    async def close(self, timeout: float = 10.0) -> None:
        """Waits up to ``timeout`` seconds for outstanding acks, then closes with 1000.
        Frames still unacked stay in the spool, if there is one."""
        if self._task is None or self._closing:
            self._closing = True
            self._buffer.close()
            return
        self._closing = True
        self._seq_known.set()  # lets waiting senders see the close
        self._notify()
        if not await self.wait_acked(timeout):
            log.warning("closing with %d unacked frames", len(self._buffer))
        self._stop.set()
        for task in list(self._running.values()):
            task.cancel()
        if self._ws is not None:
            try:
                await self._ws.close(1000)
            except Exception:  # pragma: no cover - the socket is going away anyway
                pass
        self._task.cancel()
        await asyncio.gather(self._task, *self._running.values(), return_exceptions=True)
        self._buffer.close()
        self._notify()

    def command(self, name: str) -> Callable[[Handler], Handler]:
        """Decorator: ``@client.command("set_interval")`` over ``def f(params)`` (sync or async)."""

        def register(fn: Handler) -> Handler:
            self.on_command(name, fn)
            return fn

        return register

    def on_command(self, name: str, fn: Handler) -> None:
        """Registers a handler; it gets the command's ``params`` dict and returns a
        JSON-serialisable result (or raises: the exception text becomes the error)."""
        self._handlers[name] = fn

    # ------------------------------------------------------------------ connection

    def _check_started(self) -> None:
        if self._task is None:
            raise RuntimeError("start() the client first (or use `async with`)")

    def _notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def _push(self, message: Union[bytes, str]) -> None:
        if self._outbox is not None:
            self._outbox.append(message)
            self._wake.set()

    async def _run(self) -> None:
        attempt = 0
        while not self._closing:
            try:
                async with connect(self.url, additional_headers=self._headers, **self._connect_options) as ws:
                    welcome = parse_message(await asyncio.wait_for(ws.recv(), self.welcome_timeout))
                    if not isinstance(welcome, Welcome):
                        raise ProtocolError(f"expected a welcome, got {welcome.type}")
                    attempt = 0
                    await self._serve(ws, welcome)
                    log.info("connection closed: %s %s", ws.protocol.close_code, ws.protocol.close_reason)
            except InvalidStatus as e:
                log.error("hub refused the connection: HTTP %s", e.response.status_code)
            except (OSError, asyncio.TimeoutError, WebSocketException, ProtocolError) as e:
                log.warning("connection lost: %s", str(e) or type(e).__name__)
            except Exception:
                log.exception("connection failed")
            if self._closing:
                break
            delay = backoff_delay(attempt, self.backoff_initial, self.backoff_max)
            attempt += 1
            log.info("reconnecting in %.2f s", delay)
            try:
                await asyncio.wait_for(self._stop.wait(), delay)
            except asyncio.TimeoutError:
                pass

    async def _serve(self, ws: ClientConnection, welcome: Welcome) -> None:
        """One connection, from its welcome on: resend, then stream, read acks and commands."""
        self.welcome = welcome
        self.max_frame_bytes = welcome.max_frame_bytes
        self._acked(welcome.last_seq)
        resend = self._buffer.after(welcome.last_seq)
        log.info("connected: session %s, last_seq %s, resending %d frames",
                 welcome.session, welcome.last_seq, len(resend))
        self._outbox = deque(resend)
        self._ws = ws
        self._seq_known.set()
        self._notify()
        tasks = [asyncio.ensure_future(self._reader(ws)), asyncio.ensure_future(self._writer(ws))]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
        finally:
            self._ws = self._outbox = None
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._notify()

    async def _writer(self, ws: ClientConnection) -> None:
        outbox = self._outbox
        assert outbox is not None
        while True:
            while outbox:
                await ws.send(outbox.popleft())
            self._wake.clear()
            await self._wake.wait()

    async def _reader(self, ws: ClientConnection) -> None:
        async for message in ws:
            if isinstance(message, bytes):
                try:
                    self._acked(decode_ack(message))
                except FrameError as e:
                    log.warning("ignoring binary message: %s", e)
                continue
            try:
                msg = parse_message(message)
            except ProtocolError as e:
                log.warning("ignoring text message: %s", e)
                continue
            self._on_message(msg)

    def _acked(self, seq: int) -> None:
        if self._buffer.ack(seq):
            self._notify()

    def _on_message(self, msg: Message) -> None:
        if isinstance(msg, Command):
            self._on_command(msg)
        elif isinstance(msg, Rejected):
            if self.on_rejected is None:
                log.warning("hub rejected frame %s: %s", msg.seq, msg.reason)
                return
            try:
                outcome = self.on_rejected(msg)
                if inspect.isawaitable(outcome):
                    task = asyncio.ensure_future(outcome)
                    self._callbacks.add(task)
                    task.add_done_callback(self._callbacks.discard)
            except Exception:
                log.exception("on_rejected callback failed")
        elif isinstance(msg, Error):
            log.warning("hub error %s: %s", msg.code, msg.message)
        else:
            log.warning("ignoring unexpected %s message", msg.type)

    # ------------------------------------------------------------------ commands

    def _on_command(self, cmd: Command) -> None:
        self._push(encode_message(CommandAck(cmd.id)))
        if cmd.id in self._results:  # a re-sent command: answer again, do not run it twice
            self._push(encode_message(self._results[cmd.id]))
        elif cmd.id not in self._running:
            self._running[cmd.id] = asyncio.ensure_future(self._run_command(cmd))

    async def _run_command(self, cmd: Command) -> None:
        handler = self._handlers.get(cmd.name)
        if handler is None:
            result = CommandResult(cmd.id, False, error="unsupported")
        else:
            try:
                value = handler(cmd.params)
                if inspect.isawaitable(value):
                    value = await value
                json.dumps(value)
                result = CommandResult(cmd.id, True, result=value)
            except Exception as e:
                log.warning("command %s (%s) failed: %r", cmd.name, cmd.id, e)
                result = CommandResult(cmd.id, False, error=str(e) or type(e).__name__)
        self._results[cmd.id] = result
        while len(self._results) > self._command_cache:
            self._results.popitem(last=False)
        del self._running[cmd.id]
        self._push(encode_message(result))
