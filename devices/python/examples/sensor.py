"""An example sensor: temperature (a sine plus noise), a counter and a door contact.

    HUB_URL=http://127.0.0.1:8080 DEVICE_ID=sensor-1 DEVICE_TOKEN=... python examples/sensor.py

Optional: INTERVAL_S (default 1.0), SPOOL (a spool file path, so unacked readings survive
a restart). The hub can change the interval with the command ``set_interval`` and
``{"seconds": N}``.
"""

import asyncio
import logging
import math
import os
import random
import signal

from hub_device import DeviceClient


async def main() -> None:
    client = DeviceClient(
        os.environ.get("HUB_URL", "http://127.0.0.1:8080"),
        os.environ["DEVICE_ID"],
        os.environ.get("DEVICE_TOKEN"),
        spool_path=os.environ.get("SPOOL") or None,
    )
    interval = float(os.environ.get("INTERVAL_S", "1.0"))

    @client.command("set_interval")
    def set_interval(params):
        nonlocal interval
        seconds = float(params["seconds"])
        if not 0.05 <= seconds <= 3600:
            raise ValueError("seconds must be within 0.05 ... 3600")
        interval = seconds
        return {"interval_s": interval}

    async def sample() -> None:
        count, door_open = 0, False
        while True:
            count += 1
            temperature = 21.0 + 3.0 * math.sin(count / 60) + random.gauss(0, 0.1)
            door_open = door_open != (random.random() < 0.05)  # now and then the door opens or closes
            seq = await client.send({"temp": round(temperature, 2), "count": count, "door.open": door_open})
            logging.debug("sent frame %d", seq)
            await asyncio.sleep(interval)

    async with client:  # on exit: waits (10 s at most) for the last acks, then closes with 1000
        sampler = asyncio.ensure_future(sample())
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            asyncio.get_running_loop().add_signal_handler(sig, stop.set)
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait([sampler, stopping], return_when=asyncio.FIRST_COMPLETED)
        if sampler.done():
            sampler.result()  # it only ends by an error: raise it
        sampler.cancel()
        stopping.cancel()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(main())
