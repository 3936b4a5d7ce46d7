"""SIGTERM while requests are pouring in: the server drains and exits within seconds."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from pathlib import Path

import httpx

from tests.reliability.server import serving
from touchline.cli import GRACEFUL_SHUTDOWN_SECONDS

CONCURRENT = 100


async def _pound(base: str, key: str, contact_id: str, stop: threading.Event) -> int:
    limits = httpx.Limits(max_connections=CONCURRENT)
    answered = 0
    async with httpx.AsyncClient(
        base_url=base, headers={"X-WHIPPY-KEY": key}, timeout=30, limits=limits
    ) as client:

        async def one(n: int) -> None:
            nonlocal answered
            while not stop.is_set():
                try:
                    await client.put(f"/v1/contacts/{contact_id}", json={"name": f"n{n}"})
                    answered += 1
                except httpx.TransportError:
                    return  # the server has stopped listening

        await asyncio.gather(*(one(n) for n in range(CONCURRENT)))
    return answered


def test_sigterm_under_load_exits_within_seconds(served_database: str, tmp_path: Path) -> None:
    with serving(served_database, tmp_path) as served:
        with served.client() as http:
            contact = http.post("/v1/contacts", json={"phone": "+14155550501"}).json()["data"]
        stop = threading.Event()
        answered: list[int] = []
        load = threading.Thread(
            target=lambda: answered.append(
                asyncio.run(_pound(served.base, served.key, contact["id"], stop))
            )
        )
        load.start()
        time.sleep(2)
        started = time.monotonic()
        served.process.send_signal(signal.SIGTERM)
        code = served.process.wait(timeout=30)
        took = time.monotonic() - started
        stop.set()
        load.join(timeout=30)
    print(f"answered {answered} requests before SIGTERM; exited in {took:.2f} s")
    assert code in (0, -signal.SIGTERM), served.log_text()
    assert took < GRACEFUL_SHUTDOWN_SECONDS + 5, served.log_text()
    assert answered[0] > 0
