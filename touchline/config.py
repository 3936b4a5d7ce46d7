"""All configuration, read once from `TOUCHLINE_*` environment variables."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TOUCHLINE_", extra="ignore")

    database_url: str = "sqlite:///touchline.db"
    host: str = "127.0.0.1"
    port: int = 8000
    public_url: str = "http://127.0.0.1:8000"
    log_level: str = "info"
    # Largest request body accepted; 4000 contact inputs fit comfortably.
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    # Requests per API key per interval; 0 turns rate limiting off.
    rate_limit_requests: int = Field(default=0, ge=0)
    rate_limit_interval_ms: int = Field(default=1000, ge=1)
    # Seconds an API key that just authenticated is trusted without a query; a key
    # revoked from another process keeps working that long at most. 0 turns it off.
    auth_cache_seconds: float = Field(default=5.0, ge=0)
    worker_batch_size: int = Field(default=100, ge=1, le=5000)
    worker_lease_seconds: int = Field(default=60, ge=1)
    worker_poll_seconds: float = Field(default=1.0, gt=0)
    # Sends a worker keeps in flight at once (each waits on its provider, not on the CPU);
    # one channel may take half of them. See docs/benchmarks.md for how it was chosen.
    worker_send_concurrency: int = Field(default=256, ge=1, le=2000)
    # The longest a provider may take to answer one send; a channel's own `timeout` is
    # refused above it and capped at it.
    provider_timeout_max_seconds: float = Field(default=30.0, gt=0, le=600)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
