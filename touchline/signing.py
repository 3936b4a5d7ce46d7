"""HMAC signatures for the HTTP requests touchline sends to other people's servers.

The header value has the form ``t=<unix seconds>,v1=<hex HMAC-SHA256>``, where the
HMAC key is the shared secret and the signed string is ``"<t>.<raw body>"``. Putting
the timestamp inside the signed string lets a receiver reject replays of old
requests; naming the scheme (``v1``) leaves room to change it without ambiguity.
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "X-Touchline-Signature"
SCHEME = "v1"


def _digest(secret: str, body: bytes, timestamp: int) -> str:
    signed = str(timestamp).encode("ascii") + b"." + body
    return hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).hexdigest()


def sign_payload(secret: str, body: bytes, timestamp: int) -> str:
    """Return the full ``X-Touchline-Signature`` header value for ``body``."""
    return f"t={timestamp},{SCHEME}={_digest(secret, body, timestamp)}"


def verify_signature(
    secret: str,
    body: bytes,
    header: str,
    *,
    tolerance_seconds: int = 300,
    now: int | None = None,
) -> bool:
    """Check a header made by `sign_payload` against the raw request body.

    Accepts the header if any of its ``v1`` values matches, so that a sender may
    sign with both the old and the new secret while a secret is being rotated.
    Returns False, never raises, for a malformed header.
    """
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            continue
        if key == "t":
            # Digits only: int() would also accept "+5", " 5" or "5_0".
            if not value.isascii() or not value.isdigit():
                return False
            timestamp = int(value)
        elif key == SCHEME:
            candidates.append(value)
    if timestamp is None or not candidates:
        return False
    current = int(time.time()) if now is None else now
    if abs(current - timestamp) > tolerance_seconds:
        return False
    expected = _digest(secret, body, timestamp)
    # Compare every candidate so the time taken does not reveal which one matched.
    matched = False
    for candidate in candidates:
        if hmac.compare_digest(expected.encode("ascii"), candidate.encode("utf-8")):
            matched = True
    return matched
