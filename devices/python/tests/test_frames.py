"""The sans-I/O codec against the golden vectors and every rule of contract section 2."""

import json
import math
import struct
from pathlib import Path

import pytest

from hub_device.frames import (
    END_OF_TIME_US, MAX_SEQ, Command, CommandAck, CommandResult, Error, Frame, FrameError,
    ProtocolError, Reading, Rejected, Welcome, decode_ack, decode_frame, encode_ack, encode_frame,
    encode_message, encode_telemetry, parse_message,
)

# devices/python/../../Tests/Fixtures/protocol-vectors.json
VECTORS_PATH = Path(__file__).resolve().parent.parent / "../../Tests/Fixtures/protocol-vectors.json"
VECTORS = json.loads(VECTORS_PATH.read_text())

EXPECTED_CODES = {
    "empty": "empty",
    "truncated header": "truncated_header",
    "unsupported version": "unsupported_version",
    "unknown kind": "unknown_kind",
    "zero seq": "seq_out_of_range",
    "zero readings": "no_readings",
    "count larger than readings": "truncated_reading",
    "trailing bytes": "trailing_bytes",
    "truncated value": "truncated_reading",
    "empty metric name": "bad_metric_name",
    "metric name with space": "bad_metric_name",
    "metric name 65 bytes": "bad_metric_name",
    "unknown value type": "unknown_value_type",
    "bool not 0 or 1": "bad_bool",
    "NaN": "non_finite_float",
    "infinity": "non_finite_float",
    "string 1025 bytes": "string_too_long",
    "string not UTF-8": "bad_string",
    "seq above 2^63-1": "seq_out_of_range",
    "string containing U+0000": "bad_string",
    "negative base time": "negative_base_time",
    "reading time after year 9999": "time_out_of_range",
    "reading time before the epoch through its offset": "time_out_of_range",
}

BASE = 1763769600000000


def test_vector_counts():
    assert len(VECTORS["valid"]) == 6
    assert len(VECTORS["invalid"]) == 23


@pytest.mark.parametrize("vector", VECTORS["valid"], ids=lambda v: v["hex"][:24])
def test_valid_vector_decodes_and_reencodes(vector):
    data = bytes.fromhex(vector["hex"])
    frame = decode_frame(data)
    expected = vector["frame"]
    assert frame.seq == expected["seq"]
    assert frame.base_time == expected["base_time"]
    assert [(r.name, r.offset_us, r.type, r.value) for r in frame.readings] == [
        (r["name"], r["offset_us"], r["type"], r["value"]) for r in expected["readings"]]
    for reading, raw in zip(frame.readings, expected["readings"]):
        assert type(reading.value) is type(raw["value"])  # bool stays bool, 21.5 stays float
    assert encode_frame(frame) == data
    # and from the JSON form, with the types given explicitly
    readings = [Reading(r["name"], r["value"], r["type"], r["offset_us"]) for r in expected["readings"]]
    assert encode_frame(Frame(expected["seq"], expected["base_time"], tuple(readings))) == data


@pytest.mark.parametrize("vector", VECTORS["invalid"], ids=lambda v: v["why"])
def test_invalid_vector_is_refused_with_a_reason(vector):
    with pytest.raises(FrameError) as info:
        decode_frame(bytes.fromhex(vector["hex"]))
    assert info.value.code == EXPECTED_CODES[vector["why"]]
    assert info.value.reason.startswith(info.value.code + ": ") and len(info.value.reason) > len(info.value.code) + 2


def test_contract_examples():
    assert encode_telemetry(1, BASE, {"temp": 21.5}).hex() == VECTORS["valid"][0]["hex"]
    readings = [Reading("temp", 21.5), Reading("rpm", 1200, offset_us=1000),
                Reading("door.open", True, offset_us=2000), Reading("fw", "1.4.2")]
    assert encode_telemetry(42, BASE, readings).hex() == VECTORS["valid"][1]["hex"]


def test_python_types_pick_wire_types():
    frame = decode_frame(encode_telemetry(1, BASE, {"b": True, "i": 7, "f": 7.0, "s": "x", "z": False}))
    assert [(r.type, r.value) for r in frame.readings] == [
        ("bool", True), ("i64", 7), ("f64", 7.0), ("string", "x"), ("bool", False)]
    assert encode_telemetry(1, BASE, {"b": True})[-2:] == b"\x03\x01"  # type 3, not i64


def test_explicit_type_override():
    readings = [("a", 5, "f64"), ("b", 5.0, "i64"), ("c", 1, "bool"), ("d", 0, "bool"), ("e", True, "i64")]
    frame = decode_frame(encode_telemetry(1, BASE, readings))
    assert [(r.type, r.value) for r in frame.readings] == [
        ("f64", 5.0), ("i64", 5), ("bool", True), ("bool", False), ("i64", 1)]
    for bad in [("x", 5.5, "i64"), ("x", "5", "f64"), ("x", 2, "bool"), ("x", 1, "string"), ("x", 1, "u8")]:
        with pytest.raises(FrameError):
            encode_telemetry(1, BASE, [bad])


def test_readings_as_tuples_with_offsets():
    frame = decode_frame(encode_telemetry(7, 0, [("x", -0.25, None, -500)]))
    assert frame == decode_frame(bytes.fromhex(VECTORS["valid"][2]["hex"]))


@pytest.mark.parametrize("seq, base_time, readings, code", [
    (0, BASE, {"t": 1.0}, "seq_out_of_range"),
    (MAX_SEQ + 1, BASE, {"t": 1.0}, "seq_out_of_range"),
    (1, -1, {"t": 1.0}, "negative_base_time"),
    (1, BASE, {}, "no_readings"),
    (1, BASE, {f"m{i}": i for i in range(65536)}, "too_many_readings"),
    (1, BASE, {"": 1}, "bad_metric_name"),
    (1, BASE, {"m" * 65: 1}, "bad_metric_name"),
    (1, BASE, {"bad name": 1}, "bad_metric_name"),
    (1, BASE, {"tempé": 1}, "bad_metric_name"),
    (1, BASE, {"a+b": 1}, "bad_metric_name"),
    (1, BASE, {"s": "é" * 513}, "string_too_long"),  # 1026 UTF-8 bytes
    (1, BASE, {"s": "a\x00b"}, "bad_string"),
    (1, BASE, {"s": "\ud800"}, "bad_string"),
    (1, BASE, {"f": math.nan}, "non_finite_float"),
    (1, BASE, {"f": -math.inf}, "non_finite_float"),
    (1, BASE, {"i": 2**63}, "i64_out_of_range"),
    (1, BASE, {"i": -(2**63) - 1}, "i64_out_of_range"),
    (1, BASE, {"n": None}, "unknown_value_type"),
    (1, BASE, [("t", 1, None, 2**31)], "time_out_of_range"),
    (1, END_OF_TIME_US, {"t": 1}, "time_out_of_range"),
    (1, END_OF_TIME_US - 10, [("t", 1, None, 10)], "time_out_of_range"),
    (1, 1000, [("t", 1, None, -1001)], "time_out_of_range"),
])
def test_encoder_refuses_what_the_hub_would(seq, base_time, readings, code):
    with pytest.raises(FrameError) as info:
        encode_telemetry(seq, base_time, readings)
    assert info.value.code == code


def test_encoder_limits_that_are_allowed():
    encode_telemetry(MAX_SEQ, BASE, {"s": "é" * 512, "m" * 64: 1, "a.b_c/d:e-F9": 2})
    encode_telemetry(1, END_OF_TIME_US - 1, {"t": 1})
    encode_telemetry(1, 0, [("t", 1, None, -(2**31))])  # base_time 0: the hub's clock decides
    encode_telemetry(1, 1000, [("t", 1, None, -1000)])
    encode_telemetry(1, BASE, {"i": -(2**63), "j": 2**63 - 1, "f": -0.0, "tiny": 5e-324})
    frame = decode_frame(encode_telemetry(1, BASE, {f"m{i}": i for i in range(65535)}))
    assert len(frame.readings) == 65535


def test_ack():
    example = VECTORS["ack_example"]
    assert decode_ack(bytes.fromhex(example["hex"])) == example["ack_seq"]
    assert encode_ack(42).hex() == example["hex"]
    assert decode_ack(encode_ack(2**64 - 1)) == 2**64 - 1
    for bad in ["", "0181", "0101000000000000002a", "0281000000000000002a", "0181000000000000002a00"]:
        with pytest.raises(FrameError):
            decode_ack(bytes.fromhex(bad))


def test_decode_refuses_a_second_frame_glued_on():
    data = bytes.fromhex(VECTORS["valid"][0]["hex"])
    with pytest.raises(FrameError, match="trailing_bytes"):
        decode_frame(data + data)
    assert decode_frame(bytearray(data)).seq == 1
    assert struct.unpack(">Q", data[2:10])[0] == 1


# ------------------------------------------------------------------------- JSON messages


def test_parse_welcome_from_the_contract():
    text = ('{"type":"welcome","device":"sensor-1","connection":"3f1c","session":12,'
            '"last_seq":1234,"server_time_us":1763769600000000,"max_frame_bytes":65536,"heartbeat_s":30,'
            '"future_field":true}')
    assert parse_message(text) == Welcome("sensor-1", "3f1c", 12, 1234, 1763769600000000, 65536, 30)


def test_parse_hub_messages():
    assert parse_message('{"type":"rejected","seq":null,"reason":"empty: no bytes"}') == Rejected(None, "empty: no bytes")
    assert parse_message('{"type":"rejected","seq":7,"reason":"x"}') == Rejected(7, "x")
    assert parse_message('{"type":"error","code":"bad_message","message":"m"}') == Error("bad_message", "m")
    command = parse_message('{"type":"command","id":"9b2e","name":"set_interval","params":{"seconds":5},'
                            '"expires_at_us":1763769900000000}')
    assert command == Command("9b2e", "set_interval", {"seconds": 5}, 1763769900000000)
    assert parse_message('{"type":"command","id":"a","name":"reboot"}') == Command("a", "reboot", {}, None)


@pytest.mark.parametrize("text", [
    "not json", "[1]", '{"no":"type"}', '{"type":"telemetry"}', '{"type":"welcome"}',
    '{"type":"welcome","device":"d","connection":"c","session":"1","last_seq":0,"server_time_us":0}',
    '{"type":"welcome","device":"d","connection":"c","session":1,"last_seq":true,"server_time_us":0}',
    '{"type":"command","id":1,"name":"x"}', '{"type":"command","id":"1","name":"x","params":[]}',
    '{"type":"rejected","seq":"1","reason":"x"}',
])
def test_parse_refuses_malformed_messages(text):
    with pytest.raises(ProtocolError):
        parse_message(text)


def test_encode_device_messages():
    assert json.loads(encode_message(CommandAck("9b2e"))) == {"type": "command_ack", "id": "9b2e"}
    assert json.loads(encode_message(CommandResult("9b2e", True, {"seconds": 5}))) == {
        "type": "command_result", "id": "9b2e", "ok": True, "result": {"seconds": 5}}
    assert json.loads(encode_message(CommandResult("9b2e", False, error="unsupported"))) == {
        "type": "command_result", "id": "9b2e", "ok": False, "error": "unsupported"}


@pytest.mark.parametrize("message", [
    Welcome("d", "c", 1, 0, 5), Rejected(None, "r"), Error("c", "m"), Command("i", "n", {"a": [1]}),
    Command("i", "n", {}, 99), CommandAck("i"), CommandResult("i", True, None), CommandResult("i", False, error="e"),
])
def test_messages_round_trip(message):
    assert parse_message(encode_message(message)) == message
