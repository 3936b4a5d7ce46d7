"""All configuration, read once from `TOUCHLINE_*` environment variables."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TOUCHLINE_", extra="ignore")

    database_url: str = "sqlite:///touchline.db"
    host: str = "127.0.0.1"
    port: int = 8000
    public_url: str = "http://127.0.0.1:8000"
    log_level: str = "info"
    # `json`: one JSON object per log line (touchline's and uvicorn's), for log shippers.
    log_format: Literal["text", "json"] = "text"
    # When set, GET /metrics (and a worker's --metrics-port) answer only requests carrying
    # `Authorization: Bearer <token>`; unset, they need no credentials at all.
    metrics_token: str | None = None
    # Largest request body accepted; 4000 contact inputs fit comfortably.
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    # Largest body of POST /v1/contacts/imports (a CSV of up to 100,000 rows), which alone
    # may exceed max_body_bytes.
    max_import_bytes: int = Field(default=32 * 1024 * 1024, ge=1024)
    # Requests per API key per interval; 0 turns rate limiting off.
    rate_limit_requests: int = Field(default=0, ge=0)
    rate_limit_interval_ms: int = Field(default=1000, ge=1)
    # Seconds an API key that just authenticated is trusted without a query; a key
    # revoked from another process keeps working that long at most. 0 turns it off.
    auth_cache_seconds: float = Field(default=5.0, ge=0)
    # Threads serving the API's endpoints; the database pool holds this many connections
    # plus a reserve for the embedded worker, so that neither starves the other.
    api_threads: int = Field(default=40, ge=1, le=1000)
    # API processes `touchline serve` runs on its port (--workers); above 1, sending moves
    # to one `touchline worker` process beside them.
    web_concurrency: int = Field(default=1, ge=1, le=64)
    # The longest a request (or the worker) waits for a row lock or, on SQLite, the
    # database's write lock, before answering 409/503 with Retry-After.
    lock_timeout_seconds: float = Field(default=5.0, gt=0, le=600)
    # PostgreSQL's statement_timeout; a transaction left idle twice that long is ended.
    statement_timeout_seconds: float = Field(default=30.0, gt=0, le=3600)
    # The longest a request waits for a free database connection before a 503.
    pool_timeout_seconds: float = Field(default=10.0, gt=0, le=600)
    worker_batch_size: int = Field(default=100, ge=1, le=5000)
    worker_lease_seconds: int = Field(default=60, ge=1)
    worker_poll_seconds: float = Field(default=1.0, gt=0)
    # Sends a worker keeps in flight at once (each waits on its provider, not on the CPU);
    # one channel may take half of them. See docs/benchmarks.md for how it was chosen.
    worker_send_concurrency: int = Field(default=256, ge=1, le=2000)
    # How long one claim may spend rendering templates in the sandbox's child (the first
    # render always runs); the claim holds its rows' locks, and on SQLite the write lock.
    worker_claim_render_seconds: float = Field(default=1.0, gt=0, le=60)
    # The longest a provider may take to answer one send; a channel's own `timeout` is
    # refused above it and capped at it.
    provider_timeout_max_seconds: float = Field(default=30.0, gt=0, le=600)
    # Lets webhook URLs and provider hosts point at loopback, private, link-local and other
    # non-public addresses, for providers on the operator's own network. Off, they are
    # refused when saved and again when connecting (see touchline/netpolicy.py).
    allow_private_networks: bool = False
    # The operator console under /app (touchline/console); false serves the API alone.
    console: bool = True
    # Signs the console's session cookies. Unset, `serve` makes a random one at start (shared
    # by its --workers processes), so sessions end when the server restarts.
    console_secret: str | None = Field(default=None, min_length=32)
    # How long a console sign-in lasts.
    console_session_hours: float = Field(default=12.0, gt=0, le=24 * 30)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
