"""The asyncio client against an in-process fake hub (tests/fakehub.py)."""

import asyncio
import random

import pytest

from fakehub import FakeHub
from hub_device import ClientClosed, DeviceClient, FrameError, Reading, Rejected, backoff_delay
from hub_device.client import device_url

FAST = {"backoff_initial": 0.01, "backoff_max": 0.05}


def run(coro, timeout=30):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def test_backoff_bounds():
    top = [backoff_delay(n, rand=lambda: 1.0) for n in range(10)]
    assert top == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0, 30.0]
    assert backoff_delay(10_000, rand=lambda: 1.0) == 30.0
    assert backoff_delay(3, rand=lambda: 0.0) == 0.0
    rng = random.Random(1)
    for n in range(50):
        assert 0.0 <= backoff_delay(n, 0.5, 30.0, rng.random) <= min(30.0, 0.5 * 2**n)
    assert backoff_delay(2, initial=1.0, cap=3.0, rand=lambda: 1.0) == 3.0


def test_device_url():
    assert device_url("http://127.0.0.1:8080", "s-1") == "ws://127.0.0.1:8080/devices/s-1"
    assert device_url("https://hub.example/", "s-1") == "wss://hub.example/devices/s-1"
    assert device_url("ws://h/base", "s-1") == "ws://h/base/devices/s-1"
    assert device_url("ws://h/devices/s-1", "s-1") == "ws://h/devices/s-1"


def test_bad_device_id():
    for bad in ["", ".", "..", "a/b", "a b", "x" * 65]:
        with pytest.raises(ValueError):
            DeviceClient("ws://h", bad, "t")


def test_streams_from_last_seq_and_sends_the_token():
    async def main():
        async with FakeHub(last_seq=41) as hub:
            async with DeviceClient(hub.url, "sensor-1", "tok", **FAST) as client:
                seqs = [await client.send({"temp": 20.5 + i, "n": i, "door": i % 2 == 0}) for i in range(100)]
                assert await client.wait_acked(10)
                assert client.pending == 0 and client.acked_seq == 141
                assert client.welcome.session == 1
            assert seqs == list(range(42, 142))
            assert sorted(hub.stored) == seqs and hub.received == seqs
            assert hub.auth == ["Bearer tok"]
            assert hub.close_codes == [1000]
            frame = hub.stored[42]
            assert [(r.name, r.type, r.value) for r in frame.readings] == [
                ("temp", "f64", 20.5), ("n", "i64", 0), ("door", "bool", True)]

    run(main())


def test_resends_unacked_frames_after_a_reconnect_in_order():
    async def main():
        async with FakeHub(ack=False) as hub:
            async with DeviceClient(hub.url, "d", "t", **FAST) as client:
                for i in range(50):
                    await client.send([Reading("x", i)], base_time=0)
                await hub.wait_for(lambda: len(hub.received) == 50)
                assert client.pending == 50
                hub.commit(20)  # the hub committed 1..20, then crashed before acking
                hub.ack = True
                await hub.kick()
                assert await client.wait_acked(10)
                assert [await client.send({"x": 1}) for _ in range(3)] == [51, 52, 53]
                assert await client.wait_acked(10)
            assert hub.connections[0] == list(range(1, 51))
            assert hub.connections[1] == list(range(21, 54))  # nothing at or below last_seq
            assert sorted(hub.stored) == list(range(20, 54))  # 20 stands for the commit of 1..20
            assert [r.value for r in hub.stored[21].readings] == [20]

    run(main())


def test_send_waits_when_the_buffer_is_full_and_never_drops():
    async def main():
        async with FakeHub(ack=False) as hub:
            async with DeviceClient(hub.url, "d", "t", max_buffer=5, **FAST) as client:
                for i in range(5):
                    await client.send({"x": i})
                sixth = asyncio.ensure_future(client.send({"x": 5}))
                await asyncio.sleep(0.2)
                assert not sixth.done() and client.pending == 5
                await hub.wait_for(lambda: len(hub.received) == 5)
                await hub.send_ack(2)
                assert await sixth == 6
                assert client.pending == 4
                assert not await client.wait_acked(0.1)
                hub.ack = True
                await hub.send_ack(6)
                assert await client.wait_acked(5)
            assert hub.received == [1, 2, 3, 4, 5, 6]

    run(main())


def test_spool_survives_a_process_restart(tmp_path):
    spool = str(tmp_path / "spool.bin")

    async def main():
        async with FakeHub() as hub:
            first = DeviceClient(hub.url, "d", "t", spool_path=spool, **FAST)
            await first.start()
            for i in range(10):
                await first.send({"x": i})
            assert await first.wait_acked(5)
            hub.ack = False
            for i in range(10, 20):
                await first.send({"x": i})
            await hub.wait_for(lambda: len(hub.received) == 20)
            first._task.cancel()  # the process dies: no close(), frames 11..20 unacked

            hub.ack = True
            second = DeviceClient(hub.url, "d", "t", spool_path=spool, **FAST)
            assert second.pending == 10
            await second.start()
            assert await second.send({"x": 20}) == 21  # the spool knows the sequence
            assert await second.wait_acked(5)
            await second.close()
            assert sorted(hub.stored) == list(range(1, 11)) + list(range(11, 22))
            assert hub.connections[-1] == list(range(11, 22))
            assert DeviceClient(hub.url, "d", "t", spool_path=spool).pending == 0

    run(main())


def test_commands_run_once_and_repeats_are_answered_from_the_cache():
    calls = []

    async def main():
        async with FakeHub() as hub:
            hub.on_connect = [
                {"type": "command", "id": "c1", "name": "set_interval", "params": {"seconds": 5},
                 "expires_at_us": 1763769900000000},
                {"type": "command", "id": "c2", "name": "reboot", "params": {}},
                {"type": "command", "id": "c3", "name": "fail", "params": {}},
                {"type": "command", "id": "c4", "name": "slow", "params": {"n": 2}},
            ]
            client = DeviceClient(hub.url, "d", "t", **FAST)

            @client.command("set_interval")
            def set_interval(params):
                calls.append(params)
                return {"interval_s": params["seconds"]}

            def fail(params):
                raise ValueError("boom")

            async def slow(params):
                await asyncio.sleep(0.05)
                return params["n"] * 2

            client.on_command("fail", fail)
            client.on_command("slow", slow)
            async with client:
                await hub.wait_for(lambda: len(hub.replies) == 8)
                results = {r["id"]: r for r in hub.replies if r["type"] == "command_result"}
                assert {r["id"] for r in hub.replies if r["type"] == "command_ack"} == {"c1", "c2", "c3", "c4"}
                assert results == {
                    "c1": {"type": "command_result", "id": "c1", "ok": True, "result": {"interval_s": 5}},
                    "c2": {"type": "command_result", "id": "c2", "ok": False, "error": "unsupported"},
                    "c3": {"type": "command_result", "id": "c3", "ok": False, "error": "boom"},
                    "c4": {"type": "command_result", "id": "c4", "ok": True, "result": 4},
                }
                # the hub reconnects and re-sends c1 (at least once delivery)
                hub.on_connect = hub.on_connect[:1]
                hub.replies.clear()
                await hub.kick()
                await hub.wait_for(lambda: len(hub.replies) == 2)
                assert hub.replies == [{"type": "command_ack", "id": "c1"}, results["c1"]]
                # and the same id on the same connection
                await hub.send_json({"type": "command", "id": "c1", "name": "set_interval", "params": {"seconds": 9}})
                await hub.wait_for(lambda: len(hub.replies) == 4)
                assert hub.replies[3] == results["c1"]
            assert calls == [{"seconds": 5}]

    run(main())


def test_a_command_repeated_while_running_runs_once():
    started = []

    async def main():
        async with FakeHub() as hub:
            client = DeviceClient(hub.url, "d", "t", **FAST)

            @client.command("update")
            async def update(params):
                started.append(1)
                await asyncio.sleep(0.2)
                return "done"

            async with client:
                await client.wait_connected(5)
                command = {"type": "command", "id": "u1", "name": "update", "params": {}}
                await hub.send_json(command)
                await hub.send_json(command)
                await hub.wait_for(lambda: any(r["type"] == "command_result" for r in hub.replies))
                await asyncio.sleep(0.1)
            assert started == [1]
            assert [r["type"] for r in hub.replies] == ["command_ack", "command_ack", "command_result"]

    run(main())


def test_rejected_reaches_the_callback_and_the_connection_stays():
    seen = []

    async def main():
        async with FakeHub() as hub:
            async with DeviceClient(hub.url, "d", "t", on_rejected=seen.append, **FAST) as client:
                await client.wait_connected(5)
                await hub.send_json({"type": "rejected", "seq": None, "reason": "empty: no bytes"})
                await hub.send_json({"type": "error", "code": "bad_message", "message": "m"})
                await hub.send_json({"type": "something_new"})
                await hub.wait_for(lambda: len(seen) == 1)
                assert await client.send({"x": 1}) == 1
                assert await client.wait_acked(5)
            assert seen == [Rejected(None, "empty: no bytes")]
            assert len(hub.connections) == 1

    run(main())


def test_invalid_readings_raise_before_using_a_seq():
    async def main():
        async with FakeHub() as hub:
            async with DeviceClient(hub.url, "d", "t", **FAST) as client:
                with pytest.raises(FrameError):
                    await client.send({"bad name": 1})
                with pytest.raises(FrameError):
                    await client.send({"s": "x" * 1025})
                with pytest.raises(FrameError, match="frame_too_large"):
                    await client.send({f"m{i}": "x" * 1000 for i in range(70)})
                assert await client.send({"ok": 1}) == 1
            assert hub.received == [1]

    run(main())


def test_close_waits_for_acks_then_refuses_sends():
    async def main():
        async with FakeHub(ack=False) as hub:
            client = DeviceClient(hub.url, "d", "t", **FAST)
            await client.start()
            for i in range(3):
                await client.send({"x": i})
            await hub.wait_for(lambda: len(hub.received) == 3)

            async def ack_later():
                await asyncio.sleep(0.2)
                await hub.send_ack(3)

            asyncio.ensure_future(ack_later())
            await client.close(timeout=5)
            assert client.pending == 0
            with pytest.raises(ClientClosed):
                await client.send({"x": 1})
            await hub.wait_for(lambda: hub.close_codes == [1000])

    run(main())


def test_close_gives_up_after_its_timeout_and_keeps_the_spool(tmp_path):
    spool = str(tmp_path / "spool")

    async def main():
        async with FakeHub(ack=False) as hub:
            client = DeviceClient(hub.url, "d", "t", spool_path=spool, **FAST)
            await client.start()
            await client.send({"x": 1})
            await client.close(timeout=0.2)
            assert client.pending == 1
        assert DeviceClient("ws://h", "d", "t", spool_path=spool).pending == 1

    run(main())


def test_reconnects_until_the_hub_is_there():
    async def main():
        async with FakeHub() as hub:
            url = hub.url
        # nothing listens on that port now; the client keeps trying
        client = DeviceClient(url, "d", "t", backoff_initial=0.05, backoff_max=0.2)
        await client.start()
        pending = asyncio.ensure_future(client.send({"x": 1}))  # waits for the first welcome
        await asyncio.sleep(0.5)
        assert not pending.done()
        async with FakeHub(last_seq=7, port=int(url.rsplit(":", 1)[1])) as hub:
            assert await pending == 8
            assert await client.wait_acked(5)
            await client.close()
        assert hub.received == [8]

    run(main())
