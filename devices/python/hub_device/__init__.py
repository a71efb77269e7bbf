"""Python device kit for the telemetry hub: a sans-I/O codec (:mod:`hub_device.frames`),
a frame buffer with an optional on-disk spool (:mod:`hub_device.buffer`) and an asyncio
client on top of ``websockets`` (:mod:`hub_device.client`)."""

from .buffer import FrameBuffer, SpoolError
from .client import (
    BACKOFF_INITIAL, BACKOFF_MAX, DEFAULT_MAX_BUFFER, ClientClosed, DeviceClient, backoff_delay,
)
from .frames import (
    BOOL, F64, I64, STRING, Command, CommandAck, CommandResult, Error, Frame, FrameError,
    ProtocolError, Reading, Rejected, Welcome, decode_ack, decode_frame, encode_ack,
    encode_frame, encode_message, encode_telemetry, parse_message,
)

__version__ = "0.1.0"

__all__ = [
    "BACKOFF_INITIAL", "BACKOFF_MAX", "BOOL", "DEFAULT_MAX_BUFFER", "F64", "I64", "STRING",
    "ClientClosed", "Command", "CommandAck", "CommandResult", "DeviceClient", "Error", "Frame",
    "FrameBuffer", "FrameError", "ProtocolError", "Reading", "Rejected", "SpoolError", "Welcome",
    "backoff_delay", "decode_ack", "decode_frame", "encode_ack", "encode_frame",
    "encode_message", "encode_telemetry", "parse_message",
]
