"""What this process's worker did, counted in the process-wide Prometheus registry.

Counters live in the process that does the work: the API's /metrics shows its embedded
worker's, and a separate `touchline worker --metrics-port` serves its own (serve_worker_metrics).
"""

from __future__ import annotations

import hmac
import json
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import REGISTRY, Counter, disable_created_metrics, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

from touchline.errors import Unauthorized

# A `_created` series beside every counter and histogram doubles what is scraped, for a
# start time that `process_start_time_seconds` already gives.
disable_created_metrics()  # type: ignore[no-untyped-call]

SENDS = Counter(
    "touchline_sends_total",
    "Step contacts the worker settled, by the type of their channel (sms, email; none when "
    "the step has no channel) and outcome (sent, failed, retrying, inactive, expired, "
    "responded, lost).",
    ["channel_type", "outcome"],
)
WEBHOOK_DELIVERIES = Counter(
    "touchline_webhook_deliveries_total",
    "Webhook delivery attempts recorded, by outcome (delivered, retrying, failed, held: not "
    "sent after an earlier request to the same webhook timed out).",
    ["outcome"],
)


METRICS_TOKEN_REFUSED = "Missing or invalid metrics token"


def count_sends(by_channel_and_outcome: Mapping[tuple[str, str], int]) -> None:
    for (channel_type, outcome), n in by_channel_and_outcome.items():
        if n:
            SENDS.labels(channel_type, outcome).inc(n)


def count_webhook_deliveries(by_outcome: Mapping[str, int]) -> None:
    for outcome, n in by_outcome.items():
        if n:
            WEBHOOK_DELIVERIES.labels(outcome).inc(n)


def bearer_token_matches(authorization: str | None, token: str) -> bool:
    """Whether an `Authorization` header carries `Bearer <token>`, compared in constant
    time."""
    scheme, _, given = (authorization or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), token.encode()
    )


_WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def _guarded(app: _WSGIApp, token: str | None) -> _WSGIApp:
    def guarded(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if token and not bearer_token_matches(environ.get("HTTP_AUTHORIZATION"), token):
            body = json.dumps(Unauthorized(METRICS_TOKEN_REFUSED).body()).encode()
            start_response(
                "401 Unauthorized",
                [("Content-Type", "application/json"), ("WWW-Authenticate", "Bearer")],
            )
            return [body]
        return app(environ, start_response)

    return guarded


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass  # a scrape every few seconds is not news


def serve_worker_metrics(host: str, port: int, token: str | None) -> WSGIServer:
    """Serve this process's registry at http://host:port/metrics (any path, as
    prometheus_client does) from a daemon thread; the same token rule as the API's."""
    server = make_server(
        host,
        port,
        _guarded(make_wsgi_app(REGISTRY), token),
        ThreadingWSGIServer,
        handler_class=_QuietHandler,
    )
    threading.Thread(target=server.serve_forever, name="touchline-metrics", daemon=True).start()
    return server
