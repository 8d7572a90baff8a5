"""High-availability test helpers: steady MQTT load (who posted what: `devtools.postlog`)."""

from __future__ import annotations

import asyncio
import contextlib
import time

import aiomqtt
import orjson

__all__ = ["ati", "load"]

TOPIC = "ati_fm/sherpa/status"


def ati(vendor_id: str, x: float, y: float) -> bytes:
    """An ATI Sherpa status with a pose (receive time is used as its timestamp)."""
    return orjson.dumps(
        {"sherpa_name": vendor_id, "mode": "fleet", "pose": [x, y, 0.0], "battery_status": 80.0}
    )


async def load(port: int, vendor_ids: list[str], rate: float, stop: asyncio.Event) -> int:
    """Publish positions of `vendor_ids` round-robin at `rate` msg/s until `stop`; the count."""
    sent = 0
    started = time.monotonic()
    async with aiomqtt.Client("127.0.0.1", port) as client:
        while not stop.is_set():
            due = int((time.monotonic() - started) * rate)
            while sent < due:
                vendor_id = vendor_ids[sent % len(vendor_ids)]
                await client.publish(TOPIC, ati(vendor_id, 1000.0 + sent % 500, 2000.0), qos=0)
                sent += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.01)
    return sent
