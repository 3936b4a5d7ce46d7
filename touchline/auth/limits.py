"""Per-key request limits: a fixed window of `interval_ms`, `requests` calls in each."""

from __future__ import annotations

import math
import threading
import time

from touchline.errors import RateLimited


class RateLimiter:
    """Counts requests per API key in this process (each server process limits alone)."""

    def __init__(self, requests: int, interval_ms: int) -> None:
        self.requests = requests
        self.interval = interval_ms / 1000
        self._windows: dict[str, tuple[float, int]] = {}
        self._lock = threading.Lock()

    def check(self, key: str) -> None:
        """Count one request for `key`; raise RateLimited (429) past the limit."""
        if self.requests <= 0:
            return
        now = time.monotonic()
        with self._lock:
            started, used = self._windows.get(key, (now, 0))
            if now - started >= self.interval:
                started, used = now, 0
            if used >= self.requests:
                wait = self.interval - (now - started)
                raise RateLimited(
                    f"More than {self.requests} requests in {self.interval * 1000:.0f} ms",
                    headers={
                        "Retry-After": str(max(1, math.ceil(wait))),
                        "X-RateLimit-Remaining-Interval-Milliseconds": str(math.ceil(wait * 1000)),
                    },
                )
            self._windows[key] = (started, used + 1)
