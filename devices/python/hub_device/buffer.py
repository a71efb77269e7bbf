"""The buffer of unacked frames, optionally mirrored to an on-disk spool (no asyncio here).

Spool file format (integers big-endian)::

    header   b"HUBSPOOL" u8 version=1                         9 bytes
    record   u8 kind | u32 length | payload | u32 crc32       crc32 over kind, length, payload
      kind b"F"  payload = one encoded telemetry frame (its seq is frame bytes 2..9)
      kind b"A"  payload = u64 seq: every frame up to this seq is acked (the watermark)

Frames are appended before they are sent, and fsynced when ``fsync`` is on, so a crash or
a power cut loses nothing that ``send`` returned for. Ack records are only flushed: losing
one merely makes the kit resend frames the hub already has, which it acks as duplicates.
Reading stops at the first torn or corrupt record (a cut-off write). On open, and whenever
the file is larger than ``compact_bytes`` and at least half of it is acked frames, the
file is rewritten as header + one ``A`` record + the unacked frames (temp file, fsync,
rename).
"""

from __future__ import annotations

import os
import struct
import zlib
from collections import deque
from typing import BinaryIO, Deque, List, Optional, Tuple

MAGIC = b"HUBSPOOL\x01"
FRAME, ACK = b"F", b"A"
_RECORD = struct.Struct(">cI")
_CRC = struct.Struct(">I")
_U64 = struct.Struct(">Q")
DEFAULT_COMPACT_BYTES = 1 << 20


class SpoolError(Exception):
    """The spool file exists but is not a spool."""


def _record(kind: bytes, payload: bytes) -> bytes:
    head = _RECORD.pack(kind, len(payload))
    return head + payload + _CRC.pack(zlib.crc32(payload, zlib.crc32(head)))


def _frame_seq(frame: bytes) -> int:
    return int.from_bytes(frame[2:10], "big")


def read_spool(path: str) -> Tuple[List[Tuple[int, bytes]], int]:
    """The unacked ``(seq, frame)`` pairs of a spool file, in order, and its watermark."""
    with open(path, "rb") as f:
        data = f.read()
    if not data.startswith(MAGIC):
        raise SpoolError(f"{path} is not a hub_device spool file")
    frames: List[Tuple[int, bytes]] = []
    acked, pos = 0, len(MAGIC)
    while pos + _RECORD.size + _CRC.size <= len(data):
        kind, length = _RECORD.unpack_from(data, pos)
        end = pos + _RECORD.size + length
        if end + _CRC.size > len(data):
            break
        (crc,) = _CRC.unpack_from(data, end)
        if crc != zlib.crc32(data[pos:end]):
            break
        payload = data[pos + _RECORD.size : end]
        if kind == FRAME and length >= 10:
            frames.append((_frame_seq(payload), payload))
        elif kind == ACK and length == 8:
            acked = max(acked, _U64.unpack(payload)[0])
        pos = end + _CRC.size
    return [(seq, frame) for seq, frame in frames if seq > acked], acked


class FrameBuffer:
    """Unacked frames in ``seq`` order: ``add`` when sent, ``ack`` when the hub acks.

    ``last_seq`` is the highest seq this buffer has seen (added or acked), including what a
    spool file remembered; 0 if nothing is known.
    """

    def __init__(self, spool_path: Optional[str] = None, *, fsync: bool = True,
                 compact_bytes: int = DEFAULT_COMPACT_BYTES) -> None:
        self._frames: Deque[Tuple[int, bytes]] = deque()
        self.acked = 0
        self.last_seq = 0
        self._path = spool_path
        self._fsync = fsync
        self._compact_bytes = compact_bytes
        self._file: Optional[BinaryIO] = None
        self._file_bytes = 0
        self._live_bytes = 0
        if spool_path is not None:
            if os.path.exists(spool_path):
                frames, self.acked = read_spool(spool_path)
                self._frames.extend(frames)
                self.last_seq = max([self.acked] + [seq for seq, _ in frames])
            self._compact()

    def __len__(self) -> int:
        return len(self._frames)

    @property
    def frames(self) -> List[Tuple[int, bytes]]:
        return list(self._frames)

    def after(self, seq: int) -> List[bytes]:
        """The frames with a larger seq than ``seq``, in order."""
        return [frame for s, frame in self._frames if s > seq]

    def add(self, seq: int, frame: bytes) -> None:
        if seq <= self.last_seq:
            raise ValueError(f"seq {seq} is not above {self.last_seq}")
        if self._file is not None:
            self._write(_record(FRAME, frame), sync=self._fsync)
            self._live_bytes += _RECORD.size + len(frame) + _CRC.size
        self._frames.append((seq, frame))
        self.last_seq = seq

    def ack(self, seq: int) -> int:
        """Drops every frame up to ``seq``; returns how many."""
        if seq <= self.acked:
            return 0
        self.acked = seq
        self.last_seq = max(self.last_seq, seq)
        removed = 0
        while self._frames and self._frames[0][0] <= seq:
            _, frame = self._frames.popleft()
            self._live_bytes -= _RECORD.size + len(frame) + _CRC.size
            removed += 1
        if self._file is not None:
            if self._file_bytes >= self._compact_bytes and self._live_bytes * 2 <= self._file_bytes:
                self._compact()
            else:
                self._write(_record(ACK, _U64.pack(seq)), sync=False)
        return removed

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _write(self, data: bytes, sync: bool) -> None:
        assert self._file is not None
        self._file.write(data)
        self._file.flush()
        if sync:
            os.fsync(self._file.fileno())
        self._file_bytes += len(data)

    def _compact(self) -> None:
        assert self._path is not None
        self.close()
        records = [_record(ACK, _U64.pack(self.acked))] + [_record(FRAME, f) for _, f in self._frames]
        tmp = self._path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(MAGIC)
            f.writelines(records)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self._path)
        _fsync_dir(os.path.dirname(os.path.abspath(self._path)))
        self._file = open(self._path, "ab")
        self._file_bytes = len(MAGIC) + sum(map(len, records))
        self._live_bytes = self._file_bytes - len(MAGIC) - len(records[0])


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
