"""GET /metrics in Prometheus' text format: HTTP requests, the worker's counters, and the
backlogs and heartbeats read from the database at scrape time (backlog.py)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from time import perf_counter
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, Response
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from touchline.asgi import HttpMiddleware
from touchline.backlog import DatabaseCollector
from touchline.config import Settings
from touchline.counters import METRICS_TOKEN_REFUSED, bearer_token_matches
from touchline.errors import Unauthorized

# From the hot read (a few ms) to a request that waited out every database timeout.
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# The route label of requests no route matched: never the raw path, which a client chooses
# and which would make a new series of every URL tried.
UNMATCHED = "unmatched"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

_DESCRIPTION = """\
Prometheus text format (OpenMetrics when the scraper asks for it):

- `touchline_http_requests_total{route, method, status}` and
  `touchline_http_request_duration_seconds{route, method}`: by route template, e.g.
  `/v1/contacts/{contact_id}`; `unmatched` for requests no route matched.
- `touchline_sends_total{channel_type, outcome}`, `touchline_webhook_deliveries_total{outcome}`:
  what this process's worker did (a separate `touchline worker --metrics-port` serves its own).
- Read from the database at each scrape: `touchline_step_contacts_due{queue}` and
  `..._oldest_age_seconds`, `touchline_jobs_queued`, `touchline_webhook_deliveries_due` (each
  with its oldest age), `touchline_worker_heartbeat_age_seconds{worker_id, hostname, pid}`,
  `touchline_workers_alive`; `touchline_database_up` is 0 (and those are left out) when the
  database cannot be read.

Needs no API key. When `TOUCHLINE_METRICS_TOKEN` is set, send
`Authorization: Bearer <token>`; without it, or with another, the answer is 401."""


class HttpMetrics(HttpMiddleware):
    """Pure ASGI middleware counting requests and timing them, by route template.

    Starlette's router leaves the matched route in `scope["route"]`, which is read once the
    response is done. The labelled series are looked up once per (route, method, status)
    and kept, so a request costs a dict lookup, an increment and an observation.
    """

    def __init__(
        self,
        app: ASGIApp,
        requests: Counter,
        latency: Histogram,
        fixed_paths: frozenset[str],
    ) -> None:
        super().__init__(app)
        self._requests = requests
        self._latency = latency
        # Paths served outside the router's routes (the docs pages), labelled as they are.
        self._fixed_paths = fixed_paths
        self._series: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = perf_counter()
        # Stays 500 when an exception escapes before any response: the server answers 500.
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            self._observe(scope, status, perf_counter() - started)

    def _observe(self, scope: Scope, status: int, seconds: float) -> None:
        route = scope.get("route")
        template: str | None = getattr(route, "path_format", None)
        if template is None:
            template = scope["path"] if scope["path"] in self._fixed_paths else UNMATCHED
        method = scope["method"] if scope["method"] in _METHODS else "OTHER"
        key = (template, method, status)
        series = self._series.get(key)
        if series is None:
            series = (
                self._requests.labels(template, method, str(status)),
                self._latency.labels(template, method),
            )
            self._series[key] = series
        series[0].inc()
        series[1].observe(seconds)


# Where processes that share one /metrics keep their counters (prometheus-client's
# multiprocess mode); it must be set before prometheus_client is first imported.
MULTIPROCESS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


class _ProcessWide(Collector):
    """The process-wide registry (the worker's counters, process and runtime metrics)
    inside an app's own registry."""

    def collect(self) -> Iterable[Metric]:
        return REGISTRY.collect()


def install_metrics(app: FastAPI, settings: Settings) -> None:
    """Add GET /metrics and the middleware that counts requests to `app`."""
    # The app's own registry: several apps in one process (tests) keep their HTTP series
    # and database apart.
    registry = CollectorRegistry()
    requests = Counter(
        "touchline_http_requests_total",
        "HTTP requests answered, by route template, method and status code.",
        ["route", "method", "status"],
        registry=registry,
    )
    latency = Histogram(
        "touchline_http_request_duration_seconds",
        "Time to answer HTTP requests, by route template and method.",
        ["route", "method"],
        buckets=HTTP_BUCKETS,
        registry=registry,
    )
    scraped = registry
    if os.environ.get(MULTIPROCESS_DIR_VARIABLE):
        # Several processes (`serve --workers N`, and its worker): every counter is in the
        # shared directory, this process's included.
        scraped = CollectorRegistry()
        MultiProcessCollector(scraped)  # type: ignore[no-untyped-call]
    else:
        registry.register(_ProcessWide())
    # The gauges are read from the database by whichever process answers.
    scraped.register(DatabaseCollector(app.state.engine))
    fixed = (app.openapi_url, app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url)
    app.add_middleware(
        HttpMetrics,
        requests=requests,
        latency=latency,
        fixed_paths=frozenset(path for path in fixed if path),
    )
    token = settings.metrics_token

    @app.get(
        "/metrics",
        tags=["health"],
        summary="Metrics for Prometheus",
        description=_DESCRIPTION,
        response_class=PlainTextResponse,
        responses={200: {"description": "The metrics, one sample per line"}},
    )
    def metrics(request: Request) -> Response:
        if token and not bearer_token_matches(request.headers.get("authorization"), token):
            raise Unauthorized(METRICS_TOKEN_REFUSED, headers={"WWW-Authenticate": "Bearer"})
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        return Response(encoder(scraped), media_type=content_type)
