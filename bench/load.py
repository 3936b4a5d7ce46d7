"""A small HTTP/1.1 load generator: asyncio streams, keep-alive, bounded in requests and time.

Each of `concurrency` connections sends a request, reads the whole response, and sends the
next one (a closed loop, as a pool of clients would). It only talks to 127.0.0.1 and stops
itself when the time or the request budget runs out. It is deliberately lean (no HTTP
library per request): on a 2-core machine the client shares the CPU with the server under
test, and a heavy client would hide the difference between two servers.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from bench.common import median, percentile


@dataclass
class LoadResult:
    concurrency: int
    seconds: float
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    first_error: str = ""

    @property
    def requests(self) -> int:
        return len(self.latencies_ms)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def p50(self) -> float:
        return percentile(self.latencies_ms, 50)

    @property
    def p99(self) -> float:
        return percentile(self.latencies_ms, 99)


def build_request(method: str, path: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    if body or method == "POST":
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    body = await reader.readexactly(length) if length else b""
    return status, body


async def _run(
    port: int,
    requests: Sequence[bytes],
    concurrency: int,
    seconds: float,
    max_requests: int,
    warmup_seconds: float,
) -> LoadResult:
    result = LoadResult(concurrency, 0.0)
    cycle = itertools.cycle(requests)
    budget = max_requests
    start = time.perf_counter()
    measure_from = start + warmup_seconds
    deadline = measure_from + seconds

    async def client() -> None:
        nonlocal budget
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while budget > 0:
                now = time.perf_counter()
                if now >= deadline:
                    return
                request = next(cycle)
                writer.write(request)
                status, body = await _read_response(reader)
                done = time.perf_counter()
                if now < measure_from:
                    continue
                budget -= 1
                if status == 200:
                    result.latencies_ms.append((done - now) * 1000)
                else:
                    result.errors += 1
                    result.first_error = result.first_error or f"{status} {body[:200]!r}"
        finally:
            writer.close()

    await asyncio.gather(*(client() for _ in range(concurrency)))
    # Requests in flight at the deadline finish and count, so the window ends after them.
    result.seconds = time.perf_counter() - measure_from
    return result


def run_load(
    port: int,
    requests: Sequence[bytes],
    *,
    concurrency: int,
    seconds: float,
    max_requests: int = 1_000_000,
    warmup_seconds: float = 1.0,
) -> LoadResult:
    """Closed-loop load on 127.0.0.1:`port`; requests are cycled through in order."""
    return asyncio.run(_run(port, requests, concurrency, seconds, max_requests, warmup_seconds))


def summarize(results: Sequence[LoadResult]) -> dict[str, float]:
    """Medians over repeats of one measurement."""
    return {
        "rps": median([r.rps for r in results]),
        "p50": median([r.p50 for r in results]),
        "p99": median([r.p99 for r in results]),
    }
