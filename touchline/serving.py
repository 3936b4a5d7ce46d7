"""`touchline serve --workers N`: N API processes on one port, and one worker process.

Uvicorn's supervisor binds the port once and hands it to N processes, each of which builds
the app (`create_app`) with its own database pool and thread pool. Sending stays with one
`touchline worker` process beside them, started and stopped with the server: a worker
thread in every API process would multiply claims and connections without sending faster
than one worker, which keeps `worker_send_concurrency` sends in flight on its own.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from touchline.config import Settings
from touchline.db import RESERVED_CONNECTIONS, make_engine
from touchline.metrics import MULTIPROCESS_DIR_VARIABLE
from touchline.runs.lane import ASYNC_READ_CONNECTIONS

log = logging.getLogger("touchline.serve")

# Connections a `touchline worker` process opens at most: its claims, settles, lease
# renewals and webhook deliveries, each one at a time.
WORKER_CONNECTIONS = 4


def connections_needed(settings: Settings, processes: int, with_worker: bool) -> int:
    """The most connections N API processes (and the worker) may open together."""
    per_process = settings.api_threads + RESERVED_CONNECTIONS + ASYNC_READ_CONNECTIONS
    return processes * per_process + (WORKER_CONNECTIONS if with_worker else 0)


def connection_budget_warning(settings: Settings, processes: int, with_worker: bool) -> str | None:
    """A warning when PostgreSQL's max_connections is below what the processes may open."""
    if settings.database_url.startswith("sqlite"):
        return None
    url = make_url(settings.database_url)
    if "connect_timeout" not in url.query:
        # A server that does not answer must not hold up the start: the API processes
        # answer 503 until it is back.
        timeout = max(1, round(settings.pool_timeout_seconds))
        url = url.update_query_dict({"connect_timeout": str(timeout)})
    engine = make_engine(url.render_as_string(hide_password=False), settings)
    try:
        with engine.connect() as conn:
            limit = int(conn.execute(text("SHOW max_connections")).scalar_one())
    except SQLAlchemyError as exc:
        log.warning("could not read PostgreSQL's max_connections: %s", exc.__class__.__name__)
        return None
    finally:
        engine.dispose()
    needed = connections_needed(settings, processes, with_worker)
    if needed <= limit:
        return None
    return (
        f"{processes} API processes may open up to {needed} connections "
        f"({settings.api_threads} threads + {RESERVED_CONNECTIONS + ASYNC_READ_CONNECTIONS} each"
        f"{f', and {WORKER_CONNECTIONS} for the worker' if with_worker else ''}); "
        f"PostgreSQL allows {limit}: lower TOUCHLINE_API_THREADS or raise max_connections"
    )


@contextmanager
def shared_metrics() -> Iterator[None]:
    """One /metrics for all the processes: each counts into files in a directory they share
    (prometheus-client's multiprocess mode), and any API process sums them when scraped."""
    directory = tempfile.mkdtemp(prefix="touchline-metrics-")
    os.environ[MULTIPROCESS_DIR_VARIABLE] = directory
    try:
        yield
    finally:
        del os.environ[MULTIPROCESS_DIR_VARIABLE]
        shutil.rmtree(directory, ignore_errors=True)


@contextmanager
def worker_process(settings: Settings) -> Iterator[subprocess.Popen[bytes]]:
    """A `touchline worker` process for the server's lifetime, stopped as SIGTERM stops one:
    it finishes and settles the sends it has started (each bounded by its provider's
    timeout) before it exits."""
    process = subprocess.Popen([sys.executable, "-m", "touchline.cli", "worker"])
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=settings.provider_timeout_max_seconds + 15)
        except subprocess.TimeoutExpired:
            log.warning("the worker did not stop in time; killing it")
            process.kill()
            process.wait()


def serve_processes(processes: int, **uvicorn_options: Any) -> None:
    """Run `processes` API processes (uvicorn's supervisor) until SIGTERM or SIGINT."""
    from uvicorn import Config
    from uvicorn.supervisors import Multiprocess

    config = Config("touchline.app:create_app", factory=True, workers=processes, **uvicorn_options)
    bound = config.bind_socket()
    # Uvicorn makes the socket without naming TCP (protocol 0); the processes' asyncio then
    # takes it for something else and leaves Nagle's algorithm on, and every answer waited
    # about 40 ms for the client's delayed ACK. The same socket, named for what it is.
    sock = socket.socket(bound.family, bound.type, socket.IPPROTO_TCP, fileno=bound.detach())
    sock.set_inheritable(True)
    try:
        Multiprocess(config, sockets=[sock]).run()
    finally:
        sock.close()
