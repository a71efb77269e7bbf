"""The frame buffer and its on-disk spool."""

import os

import pytest

from hub_device.buffer import MAGIC, FrameBuffer, SpoolError, read_spool
from hub_device.frames import encode_telemetry


def frame(seq):
    return encode_telemetry(seq, 1763769600000000, {"temp": 20.0 + seq, "n": seq})


def fill(buffer, seqs):
    for seq in seqs:
        buffer.add(seq, frame(seq))


def test_buffer_keeps_order_and_drops_acked():
    buffer = FrameBuffer()
    fill(buffer, range(1, 11))
    assert len(buffer) == 10 and buffer.last_seq == 10
    assert buffer.ack(4) == 4
    assert [seq for seq, _ in buffer.frames] == list(range(5, 11))
    assert buffer.after(7) == [frame(8), frame(9), frame(10)]
    assert buffer.ack(3) == 0 and buffer.acked == 4  # an older ack changes nothing
    assert buffer.ack(100) == 6 and len(buffer) == 0
    assert buffer.last_seq == 100  # the next seq must come after what the hub has


def test_buffer_refuses_a_seq_that_does_not_increase():
    buffer = FrameBuffer()
    fill(buffer, [5])
    with pytest.raises(ValueError):
        buffer.add(5, frame(5))


def test_spool_reload_keeps_unacked_frames(tmp_path):
    path = str(tmp_path / "spool")
    buffer = FrameBuffer(path)
    fill(buffer, range(1, 21))
    buffer.ack(12)
    # no close(): a crash right here loses nothing
    reloaded = FrameBuffer(path)
    assert [seq for seq, _ in reloaded.frames] == list(range(13, 21))
    assert reloaded.frames[0][1] == frame(13)
    assert reloaded.acked == 12 and reloaded.last_seq == 20
    fill(reloaded, [21])
    reloaded.close()
    assert read_spool(path) == ([(seq, frame(seq)) for seq in range(13, 22)], 12)


def test_spool_remembers_the_sequence_when_everything_was_acked(tmp_path):
    path = str(tmp_path / "spool")
    buffer = FrameBuffer(path)
    fill(buffer, range(1, 6))
    buffer.ack(5)
    buffer.close()
    reloaded = FrameBuffer(path)
    assert len(reloaded) == 0 and reloaded.last_seq == 5


def test_spool_ignores_a_torn_tail(tmp_path):
    path = str(tmp_path / "spool")
    buffer = FrameBuffer(path)
    fill(buffer, range(1, 4))
    buffer.close()
    size = os.path.getsize(path)
    with open(path, "ab") as f:
        f.write(b"F\x00\x00\x00\x40partial")  # a record cut off by a power loss
    assert [seq for seq, _ in FrameBuffer(path).frames] == [1, 2, 3]
    assert os.path.getsize(path) == size  # rewritten without the torn record


def test_spool_stops_at_a_corrupt_record(tmp_path):
    path = str(tmp_path / "spool")
    buffer = FrameBuffer(path)
    fill(buffer, range(1, 4))
    buffer.close()
    data = bytearray(open(path, "rb").read())
    data[-10] ^= 0xFF  # inside the last frame: its crc no longer matches
    open(path, "wb").write(bytes(data))
    assert [seq for seq, _ in FrameBuffer(path).frames] == [1, 2]


def test_spool_compacts_when_mostly_acked(tmp_path):
    path = str(tmp_path / "spool")
    buffer = FrameBuffer(path, compact_bytes=4096, fsync=False)
    for seq in range(1, 1001):
        buffer.add(seq, frame(seq))
        if seq % 10 == 0:
            buffer.ack(seq - 2)
        assert os.path.getsize(path) < 2 * 4096
    assert [seq for seq, _ in FrameBuffer(path).frames] == [999, 1000]


def test_spool_does_not_compact_away_a_backlog(tmp_path):
    path = str(tmp_path / "spool")
    buffer = FrameBuffer(path, compact_bytes=1024, fsync=False)
    fill(buffer, range(1, 301))
    buffer.ack(1)
    assert len(FrameBuffer(path)) == 299


def test_spool_refuses_a_foreign_file(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    with pytest.raises(SpoolError):
        FrameBuffer(str(path))
    assert path.read_text() == "hello"


def test_new_spool_file_has_the_header(tmp_path):
    path = tmp_path / "spool"
    FrameBuffer(str(path)).close()
    assert path.read_bytes().startswith(MAGIC)
