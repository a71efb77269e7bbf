"""Sans-I/O codec for the hub's device protocol (wire contract version 1).

Nothing in this module does I/O: it turns values into the bytes and JSON text of the
contract and back, and checks every rule on the way.

* Telemetry frames (contract section 2): :func:`encode_frame`, :func:`decode_frame`.
* Acks (``01 81 <u64 seq>``): :func:`encode_ack`, :func:`decode_ack`.
* JSON text messages (sections 1-3): :func:`parse_message`, :func:`encode_message` with
  :class:`Welcome`, :class:`Rejected`, :class:`Error`, :class:`Command`,
  :class:`CommandAck`, :class:`CommandResult`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import re
import struct
from dataclasses import dataclass, field
from typing import Any, ClassVar, Dict, Iterable, Mapping, Optional, Tuple, Union

VERSION = 1
KIND_TELEMETRY = 0x01
KIND_ACK = 0x81
MAX_SEQ = 2**63 - 1
MAX_READINGS = 65535
MAX_NAME_BYTES = 64
MAX_STRING_BYTES = 1024
END_OF_TIME_US = 253_402_300_800_000_000  # 10000-01-01T00:00:00Z, exclusive
DEFAULT_MAX_FRAME_BYTES = 65536
HEADER_SIZE = 20
ACK_SIZE = 10

F64, I64, BOOL, STRING = "f64", "i64", "bool", "string"
_TYPE_CODES = {F64: 1, I64: 2, BOOL: 3, STRING: 4}
_TYPE_NAMES = {code: name for name, code in _TYPE_CODES.items()}

_NAME = re.compile(rb"[A-Za-z0-9._/:\-]{1,64}")
_DEVICE_ID = re.compile(r"[A-Za-z0-9._\-]{1,64}")
_HEADER = struct.Struct(">BBQqH")
_ACK = struct.Struct(">BBQ")
_NAME_TAIL = struct.Struct(">iB")
_I64 = struct.Struct(">q")
_F64 = struct.Struct(">d")
_U16 = struct.Struct(">H")

Value = Union[float, int, bool, str]


class FrameError(ValueError):
    """A frame, reading or ack breaks the wire contract.

    ``code`` is a short machine-readable rule name (the same names the hub uses, e.g.
    ``bad_metric_name``) and ``reason`` a readable ``"code: detail"`` sentence.
    """

    def __init__(self, code: str, detail: str) -> None:
        self.code = code
        self.reason = f"{code}: {detail}"
        super().__init__(self.reason)


class ProtocolError(ValueError):
    """A JSON text message that is not one of the contract's messages."""


@dataclass(frozen=True)
class Reading:
    """One reading. ``type`` is ``"f64"``, ``"i64"``, ``"bool"`` or ``"string"``; left
    ``None`` it follows the Python type of ``value`` (bool, int, float, str)."""

    name: str
    value: Value
    type: Optional[str] = None
    offset_us: int = 0


@dataclass(frozen=True)
class Frame:
    """A telemetry frame. ``base_time`` is microseconds since the epoch; 0 asks the hub to
    use its receive time."""

    seq: int
    base_time: int
    readings: Tuple[Reading, ...]


ReadingsLike = Union[Mapping[str, Value], Iterable[Union[Reading, Tuple[Any, ...]]]]


def as_readings(readings: ReadingsLike) -> Tuple[Reading, ...]:
    """Accepts ``{"temp": 21.5, ...}``, or an iterable of :class:`Reading` or tuples
    ``(name, value[, type[, offset_us]])``."""
    if isinstance(readings, Mapping):
        return tuple(Reading(name, value) for name, value in readings.items())
    return tuple(r if isinstance(r, Reading) else Reading(*r) for r in readings)


# ---------------------------------------------------------------------------- encoding


def _typed(index: int, reading: Reading) -> Tuple[str, Value]:
    """The reading's wire type and its value converted to it."""

    def fail(code: str, detail: str) -> FrameError:
        return FrameError(code, f"reading {index} ({reading.name!r}): {detail}")

    kind, value = reading.type, reading.value
    if kind is None:
        if isinstance(value, bool):
            kind = BOOL
        elif isinstance(value, numbers.Integral):
            kind = I64
        elif isinstance(value, numbers.Real):
            kind = F64
        elif isinstance(value, str):
            kind = STRING
        else:
            raise fail("unknown_value_type", f"no wire type for {type(value).__name__}")
    if kind == F64:
        if not isinstance(value, numbers.Real):
            raise fail("unknown_value_type", f"f64 needs a number, not {type(value).__name__}")
        value = float(value)
        if not math.isfinite(value):
            raise fail("non_finite_float", f"{value}")
    elif kind == I64:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, numbers.Integral):
            raise fail("unknown_value_type", f"i64 needs an integer, not {value!r}")
        value = int(value)
        if not -(2**63) <= value < 2**63:
            raise fail("i64_out_of_range", f"{value}")
    elif kind == BOOL:
        if isinstance(value, str) or value not in (0, 1):
            raise fail("bad_bool", f"{value!r}")
        value = bool(value)
    elif kind == STRING:
        if not isinstance(value, str):
            raise fail("unknown_value_type", f"string needs a str, not {type(value).__name__}")
    else:
        raise fail("unknown_value_type", f"type {kind!r}")
    return kind, value


def _encode_reading(out: bytearray, index: int, reading: Reading, base_time: int) -> None:
    try:
        name = reading.name.encode("ascii")
    except (UnicodeEncodeError, AttributeError):
        name = b""
    if not _NAME.fullmatch(name):
        raise FrameError("bad_metric_name", f"reading {index}: {reading.name!r}")
    offset = reading.offset_us
    if not -(2**31) <= offset < 2**31:
        raise FrameError("time_out_of_range", f"reading {index}: offset_us {offset} is not an i32")
    if base_time != 0 and not 0 <= base_time + offset < END_OF_TIME_US:
        raise FrameError("time_out_of_range", f"reading {index}: time outside 1970 ... 9999")
    kind, value = _typed(index, reading)
    out.append(len(name))
    out += name
    out += _NAME_TAIL.pack(offset, _TYPE_CODES[kind])
    if kind == F64:
        out += _F64.pack(value)
    elif kind == I64:
        out += _I64.pack(value)
    elif kind == BOOL:
        out.append(1 if value else 0)
    else:
        text = _check_string(index, value)
        out += _U16.pack(len(text))
        out += text


def _check_string(index: int, value: str) -> bytes:
    try:
        text = value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise FrameError("bad_string", f"reading {index}: not encodable as UTF-8 ({e.reason})") from None
    if len(text) > MAX_STRING_BYTES:
        raise FrameError("string_too_long", f"reading {index}: {len(text)} bytes")
    if b"\x00" in text:
        raise FrameError("bad_string", f"reading {index}: contains U+0000")
    return text


def encode_frame(frame: Frame) -> bytes:
    """The frame's bytes; raises :class:`FrameError` for anything the hub would refuse."""
    seq, base_time, readings = frame.seq, frame.base_time, frame.readings
    if not isinstance(seq, int) or not 1 <= seq <= MAX_SEQ:
        raise FrameError("seq_out_of_range", f"seq {seq}")
    if not isinstance(base_time, int) or not 0 <= base_time < 2**63:
        raise FrameError("negative_base_time", f"base_time {base_time}")
    if not 1 <= len(readings) <= MAX_READINGS:
        raise FrameError("no_readings" if not readings else "too_many_readings", f"count {len(readings)}")
    out = bytearray(_HEADER.pack(VERSION, KIND_TELEMETRY, seq, base_time, len(readings)))
    for index, reading in enumerate(readings, 1):
        _encode_reading(out, index, reading, base_time)
    return bytes(out)


def encode_telemetry(seq: int, base_time: int, readings: ReadingsLike) -> bytes:
    """Shorthand for ``encode_frame(Frame(seq, base_time, as_readings(readings)))``."""
    return encode_frame(Frame(seq, base_time, as_readings(readings)))


# ---------------------------------------------------------------------------- decoding


def decode_frame(data: bytes) -> Frame:
    """Decodes and checks one frame; raises :class:`FrameError` naming the first broken rule."""
    data = bytes(data)
    size = len(data)
    if size == 0:
        raise FrameError("empty", "no bytes")
    if data[0] != VERSION:
        raise FrameError("unsupported_version", f"version {data[0]}")
    if size >= 2 and data[1] != KIND_TELEMETRY:
        raise FrameError("unknown_kind", f"kind {data[1]}")
    if size >= 10:
        seq = int.from_bytes(data[2:10], "big")
        if not 1 <= seq <= MAX_SEQ:
            raise FrameError("seq_out_of_range", f"seq {seq}")
    if size < HEADER_SIZE:
        raise FrameError("truncated_header", f"{size} of {HEADER_SIZE} header bytes")
    _, _, seq, base_time, count = _HEADER.unpack_from(data)
    if base_time < 0:
        raise FrameError("negative_base_time", f"base_time {base_time}")
    if count == 0:
        raise FrameError("no_readings", "count 0")
    pos = HEADER_SIZE
    readings = []
    for index in range(1, count + 1):
        reading, pos = _decode_reading(data, pos, index, base_time)
        readings.append(reading)
    if pos != size:
        raise FrameError("trailing_bytes", f"{size - pos} bytes after reading {count}")
    return Frame(seq, base_time, tuple(readings))


def _decode_reading(data: bytes, pos: int, index: int, base_time: int) -> Tuple[Reading, int]:
    def fail(code: str, detail: str) -> FrameError:
        return FrameError(code, f"reading {index}: {detail}")

    def take(n: int) -> bytes:
        nonlocal pos
        if pos + n > len(data):
            raise fail("truncated_reading", "cut short")
        pos += n
        return data[pos - n : pos]

    name_len = take(1)[0]
    if not 1 <= name_len <= MAX_NAME_BYTES:
        raise fail("bad_metric_name", f"name length {name_len}")
    name = take(name_len)
    if not _NAME.fullmatch(name):
        raise fail("bad_metric_name", f"{name!r}")
    offset, code = _NAME_TAIL.unpack(take(5))
    if base_time != 0 and not 0 <= base_time + offset < END_OF_TIME_US:
        raise fail("time_out_of_range", "time outside 1970 ... 9999")
    kind = _TYPE_NAMES.get(code)
    value: Value
    if kind == F64:
        value = _F64.unpack(take(8))[0]
        if not math.isfinite(value):
            raise fail("non_finite_float", f"{value}")
    elif kind == I64:
        value = _I64.unpack(take(8))[0]
    elif kind == BOOL:
        byte = take(1)[0]
        if byte > 1:
            raise fail("bad_bool", f"byte {byte}")
        value = byte == 1
    elif kind == STRING:
        length = _U16.unpack(take(2))[0]
        if length > MAX_STRING_BYTES:
            raise fail("string_too_long", f"{length} bytes")
        try:
            value = take(length).decode("utf-8")
        except UnicodeDecodeError:
            raise fail("bad_string", "not UTF-8") from None
        if "\x00" in value:
            raise fail("bad_string", "contains U+0000")
    else:
        raise fail("unknown_value_type", f"type {code}")
    return Reading(name.decode("ascii"), value, kind, offset), pos


# ---------------------------------------------------------------------------- acks


def encode_ack(seq: int) -> bytes:
    return _ACK.pack(VERSION, KIND_ACK, seq)


def decode_ack(data: bytes) -> int:
    """The ``seq`` of an ack message ``01 81 <u64 seq>``."""
    if len(data) != ACK_SIZE or data[0] != VERSION or data[1] != KIND_ACK:
        raise FrameError("bad_ack", f"not an ack: {bytes(data[:12]).hex()}")
    return _ACK.unpack(data)[2]


# ---------------------------------------------------------------------------- JSON


def is_valid_device_id(device_id: str) -> bool:
    """1 to 64 of ``[A-Za-z0-9._-]``, not only dots (contract section 1)."""
    return bool(_DEVICE_ID.fullmatch(device_id)) and device_id.strip(".") != ""


@dataclass
class Welcome:
    type: ClassVar[str] = "welcome"
    device: str
    connection: str
    session: int
    last_seq: int
    server_time_us: int
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES
    heartbeat_s: int = 30


@dataclass
class Rejected:
    type: ClassVar[str] = "rejected"
    seq: Optional[int]
    reason: str


@dataclass
class Error:
    type: ClassVar[str] = "error"
    code: str
    message: str


@dataclass
class Command:
    type: ClassVar[str] = "command"
    id: str
    name: str
    params: Dict[str, Any] = field(default_factory=dict)
    expires_at_us: Optional[int] = None


@dataclass
class CommandAck:
    type: ClassVar[str] = "command_ack"
    id: str


@dataclass
class CommandResult:
    type: ClassVar[str] = "command_result"
    id: str
    ok: bool
    result: Any = None
    error: Optional[str] = None


Message = Union[Welcome, Rejected, Error, Command, CommandAck, CommandResult]
MESSAGE_TYPES = {cls.type: cls for cls in (Welcome, Rejected, Error, Command, CommandAck, CommandResult)}
_CHECKS: Dict[str, Tuple[type, ...]] = {
    "device": (str,), "connection": (str,), "session": (int,), "last_seq": (int,),
    "server_time_us": (int,), "max_frame_bytes": (int,), "heartbeat_s": (int, float),
    "seq": (int, type(None)), "reason": (str,), "code": (str,), "message": (str,),
    "id": (str,), "name": (str,), "params": (dict,), "expires_at_us": (int, type(None)),
    "ok": (bool,), "error": (str, type(None)),
}


def parse_message(text: Union[str, bytes]) -> Message:
    """Parses a JSON text message into its dataclass. Unknown extra fields are ignored
    (newer hubs may add some); a missing required field, a field of the wrong JSON type, or
    an unknown ``type`` raises :class:`ProtocolError`."""
    try:
        obj = json.loads(text)
    except ValueError as e:
        raise ProtocolError(f"not JSON: {e}") from None
    if not isinstance(obj, dict):
        raise ProtocolError("not a JSON object")
    cls = MESSAGE_TYPES.get(obj.get("type"))  # type: ignore[arg-type]
    if cls is None:
        raise ProtocolError(f"unknown message type {obj.get('type')!r}")
    args = {}
    for f in dataclasses.fields(cls):
        if f.name not in obj:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ProtocolError(f"{cls.type}: missing {f.name!r}")
            continue
        value = obj[f.name]
        allowed = _CHECKS.get(f.name)
        if allowed and (not isinstance(value, allowed) or (bool not in allowed and isinstance(value, bool))):
            raise ProtocolError(f"{cls.type}: bad {f.name!r}: {value!r}")
        args[f.name] = value
    return cls(**args)


def encode_message(message: Message) -> str:
    """The JSON text of a message. ``command_result`` carries ``result`` when ``ok`` and
    ``error`` otherwise; ``expires_at_us`` is left out of a command when ``None``."""
    body: Dict[str, Any] = {"type": message.type}
    body.update((f.name, getattr(message, f.name)) for f in dataclasses.fields(message))
    if isinstance(message, CommandResult):
        del body["error" if message.ok else "result"]
    elif isinstance(message, Command) and message.expires_at_us is None:
        del body["expires_at_us"]
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False)
