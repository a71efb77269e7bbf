"""An in-process stand-in for the hub, built on websockets.serve, speaking the contract:
welcome with the device's mark, duplicate check, ack per frame, commands on connect."""

from __future__ import annotations

import asyncio
import json
from typing import Any, Dict, List, Optional

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from hub_device.frames import decode_frame, encode_ack


class FakeHub:
    def __init__(self, last_seq: int = 0, ack: bool = True, port: int = 0) -> None:
        self.port = port
        self.mark = last_seq  # highest committed seq
        self.ack = ack  # commit and ack each frame as it arrives
        self.stored: Dict[int, Any] = {}  # seq -> decoded frame, committed ones only
        self.connections: List[List[int]] = []  # seqs received, per connection
        self.replies: List[Dict[str, Any]] = []  # JSON messages from the device
        self.auth: List[Optional[str]] = []
        self.close_codes: List[Optional[int]] = []
        self.on_connect: List[Dict[str, Any]] = []  # messages sent right after the welcome
        self.ws: Optional[ServerConnection] = None

    async def __aenter__(self) -> "FakeHub":
        self._server = await serve(self._handler, "127.0.0.1", self.port)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"ws://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self._server.close()
        await self._server.wait_closed()

    @property
    def received(self) -> List[int]:
        return [seq for conn in self.connections for seq in conn]

    async def _handler(self, ws: ServerConnection) -> None:
        self.ws = ws
        self.auth.append(ws.request.headers.get("Authorization"))
        self.connections.append([])
        welcome = {"type": "welcome", "device": ws.request.path.rsplit("/", 1)[-1], "connection": "c",
                   "session": len(self.connections), "last_seq": self.mark,
                   "server_time_us": 1763769600000000, "max_frame_bytes": 65536, "heartbeat_s": 30}
        await ws.send(json.dumps(welcome))
        for message in self.on_connect:
            await ws.send(json.dumps(message))
        try:
            async for message in ws:
                if isinstance(message, bytes):
                    frame = decode_frame(message)
                    self.connections[-1].append(frame.seq)
                    if self.ack:
                        self.commit(frame.seq, frame)
                        await ws.send(encode_ack(self.mark))
                else:
                    self.replies.append(json.loads(message))
        except ConnectionClosed:
            pass
        finally:
            self.close_codes.append(ws.protocol.close_code)

    def commit(self, seq: int, frame: Any = None) -> None:
        if seq > self.mark:  # the duplicate check: at or below the mark is not stored again
            assert seq not in self.stored
            self.stored[seq] = frame
            self.mark = seq

    async def send_ack(self, seq: int) -> None:
        assert self.ws is not None
        await self.ws.send(encode_ack(seq))

    async def send_json(self, message: Dict[str, Any]) -> None:
        assert self.ws is not None
        await self.ws.send(json.dumps(message))

    async def kick(self) -> None:
        """Drops the current connection (as a crashing hub would)."""
        assert self.ws is not None
        self.ws.transport.abort()

    async def wait_for(self, predicate, timeout: float = 10.0) -> None:
        async def poll() -> None:
            while not predicate():
                await asyncio.sleep(0.01)

        await asyncio.wait_for(poll(), timeout)
