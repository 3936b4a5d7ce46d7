"""Row ids: UUIDs laid out as version 7 (RFC 9562), so that rows made later sort higher.

Every index on an id (each table's primary key, and the foreign keys to it) then takes new
rows at one edge of its B-tree instead of on pages spread at random over it: a bulk insert
touches a few pages where random ids touched one per row. Webhook deliveries also rely on
the order (see touchline.outbox).
"""

from __future__ import annotations

import secrets
import threading
import time
import uuid

_last_stamp = 0
_stamp_lock = threading.Lock()


def new_id() -> uuid.UUID:
    """A version 7 UUID: milliseconds since the epoch, then microseconds where RFC 9562
    allows a finer clock, then random bits. Within this process the ids strictly increase,
    even when the clock stands still or steps back."""
    global _last_stamp
    with _stamp_lock:
        stamp = max(time.time_ns() // 1000, _last_stamp + 1)  # microseconds
        _last_stamp = stamp
    millis, micros = divmod(stamp, 1000)
    value = (
        (millis & (2**48 - 1)) << 80 | 0x7 << 76 | micros << 64 | 0b10 << 62 | secrets.randbits(62)
    )
    return uuid.UUID(int=value)
