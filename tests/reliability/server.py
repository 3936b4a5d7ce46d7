"""A real `touchline serve` process, and bursts of concurrent requests against it."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

TOUCHLINE = str(Path(sys.executable).with_name("touchline"))
# Every answer of a burst must come within this (the promise to callers).
ANSWER_WITHIN_SECONDS = 30.0
# Statuses a contained request may end with: done, or told to come back.
RETRY_STATUSES = {409, 429, 503}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Served:
    base: str
    key: str
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def headers(self) -> dict[str, str]:
        return {"X-WHIPPY-KEY": self.key}

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.base, headers=self.headers, timeout=35, **kwargs)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def environment(database_url: str, port: int, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "TOUCHLINE_DATABASE_URL": database_url,
        "TOUCHLINE_HOST": "127.0.0.1",
        "TOUCHLINE_PORT": str(port),
        "TOUCHLINE_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "TOUCHLINE_LOG_LEVEL": "warning",
        "TOUCHLINE_WORKER_POLL_SECONDS": "0.2",
        **extra,
    }


@contextmanager
def serving(database_url: str, folder: Path, *args: str, **env: str) -> Iterator[Served]:
    """`touchline serve` on a free port, with a new organization's key; killed at the end
    if it is still running."""
    port = free_port()
    environ = environment(database_url, port, **env)
    created = subprocess.run(
        [TOUCHLINE, "org", "create", "Reliability", "--json"],
        env=environ,
        capture_output=True,
        text=True,
        check=True,
        cwd=folder,
    )
    key = json.loads(created.stdout)["api_key"]
    log = folder / f"serve-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [TOUCHLINE, "serve", *args], env=environ, stdout=out, stderr=out, cwd=folder
        )
    served = Served(f"http://127.0.0.1:{port}", key, process, log)
    try:
        _wait_until_healthy(served)
        yield served
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_until_healthy(served: Served) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if served.process.poll() is not None:
            raise AssertionError(f"serve exited early:\n{served.log_text()}")
        try:
            if httpx.get(f"{served.base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"serve did not answer /healthz within 20 s:\n{served.log_text()}")


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any
    headers: dict[str, str]
    seconds: float


@dataclass
class Burst:
    answers: list[Answer]
    health_seconds: list[float] = field(default_factory=list)

    @property
    def statuses(self) -> Counter[int]:
        return Counter(a.status for a in self.answers)

    @property
    def slowest(self) -> float:
        return max(a.seconds for a in self.answers)

    def describe(self) -> str:
        health = max(self.health_seconds, default=0.0)
        return (
            f"{len(self.answers)} requests: {dict(sorted(self.statuses.items()))}, "
            f"slowest {self.slowest:.2f} s; /healthz answered {len(self.health_seconds)} "
            f"times, slowest {health:.3f} s"
        )


Request = Callable[[httpx.AsyncClient], Awaitable[httpx.Response]]


async def _timed(client: httpx.AsyncClient, request: Request) -> Answer:
    started = time.monotonic()
    response = await request(client)
    try:
        body = response.json()
    except ValueError:
        body = response.text
    return Answer(response.status_code, body, dict(response.headers), time.monotonic() - started)


async def _watch_health(base: str, stop: asyncio.Event, seconds: list[float]) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=ANSWER_WITHIN_SECONDS) as client:
        while not stop.is_set():
            started = time.monotonic()
            response = await client.get("/healthz")
            assert response.status_code == 200, response.text
            seconds.append(time.monotonic() - started)
            await asyncio.sleep(0.05)


async def _burst(served: Served, requests: list[Request]) -> Burst:
    limits = httpx.Limits(max_connections=len(requests) + 1, max_keepalive_connections=0)
    async with httpx.AsyncClient(
        base_url=served.base, headers=served.headers, timeout=60, limits=limits
    ) as client:
        stop = asyncio.Event()
        health: list[float] = []
        watcher = asyncio.create_task(_watch_health(served.base, stop, health))
        try:
            answers = await asyncio.gather(*(_timed(client, r) for r in requests))
        finally:
            stop.set()
            await watcher
    return Burst(list(answers), health)


def burst(served: Served, requests: list[Request]) -> Burst:
    """Send every request at once, watching /healthz all along."""
    return asyncio.run(_burst(served, requests))


def assert_contained(result: Burst) -> None:
    """Every answer came in time, as a success or as an envelope telling when to retry,
    and /healthz kept answering."""
    for answer in result.answers:
        assert answer.seconds < ANSWER_WITHIN_SECONDS, result.describe()
        if answer.status < 300:
            continue
        assert answer.status in RETRY_STATUSES, (answer.status, answer.body)
        assert_envelope(answer.body, answer.status)
        assert "retry-after" in answer.headers, answer
    assert result.health_seconds, "the /healthz watcher never got an answer"
    assert max(result.health_seconds) < 5, result.describe()


def assert_envelope(body: Any, status: int) -> None:
    assert isinstance(body, dict), body
    assert body["status"] == status, body
    assert body["errors"], body
    assert all(isinstance(e["description"], str) for e in body["errors"]), body
