"""API keys that authenticated moments ago, so a busy client's requests skip the database."""

from __future__ import annotations

import time
import uuid

from touchline.auth.service import hash_key


class KeyCache:
    """Key hash -> organization for `ttl` seconds after a successful lookup.

    One per app (never shared between databases). A revoked key keeps working for at most
    `ttl` seconds in a process that had just seen it; `ttl` 0 turns the cache off.
    """

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._entries: dict[str, tuple[uuid.UUID, float]] = {}

    def get(self, api_key: str) -> uuid.UUID | None:
        entry = self._entries.get(hash_key(api_key))
        if entry is None or entry[1] < time.monotonic():
            return None
        return entry[0]

    def put(self, api_key: str, organization_id: uuid.UUID) -> None:
        if self.ttl > 0:
            self._entries[hash_key(api_key)] = (organization_id, time.monotonic() + self.ttl)
