"""What the metrics and request-id middlewares add to each request.

Each wraps a minimal ASGI app (the route already matched, a 200 sent), driven in-process so
that neither a server nor a database blurs a few microseconds; the best of many rounds is
kept, as the machine's other work only ever adds time.

    .venv/bin/python -m bench.middleware_overhead
"""

from __future__ import annotations

import asyncio
import gc
import time

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from touchline.metrics import HTTP_BUCKETS, HttpMetrics
from touchline.requestctx import RequestContext

ROUNDS = 40
REQUESTS = 5000
SCOPE: Scope = {
    "type": "http",
    "method": "POST",
    "path": "/v1/contacts/5b0c3f1d/sequences",
    "headers": [(b"host", b"bench"), (b"content-type", b"application/json")],
}


class _Route:
    path_format = "/v1/contacts/{contact_id}/sequences"


_ROUTE = _Route()


async def matched(scope: Scope, receive: Receive, send: Send) -> None:
    scope["route"] = _ROUTE
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


async def _receive() -> Message:
    return {"type": "http.request", "body": b""}


async def _send(_message: Message) -> None:
    pass


async def _per_request_us(app: ASGIApp) -> float:
    started = time.perf_counter()
    for _ in range(REQUESTS):
        await app(dict(SCOPE), _receive, _send)
    return (time.perf_counter() - started) / REQUESTS * 1e6


def _metrics(app: ASGIApp) -> HttpMetrics:
    registry = CollectorRegistry()
    return HttpMetrics(
        app,
        Counter("requests", "", ["route", "method", "status"], registry=registry),
        Histogram("latency", "", ["route", "method"], buckets=HTTP_BUCKETS, registry=registry),
        frozenset(),
    )


async def main() -> None:
    gc.freeze()
    apps: dict[str, ASGIApp] = {
        "none": matched,
        "metrics": _metrics(matched),
        "request id": RequestContext(matched),
        "both": RequestContext(_metrics(matched)),
    }
    best = dict.fromkeys(apps, float("inf"))
    for _ in range(ROUNDS):
        for name, app in apps.items():
            best[name] = min(best[name], await _per_request_us(app))
    for name, us in best.items():
        print(f"{name:11} {us:6.2f} us per request (+{us - best['none']:.2f})")


if __name__ == "__main__":
    asyncio.run(main())
