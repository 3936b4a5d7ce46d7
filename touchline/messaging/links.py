"""Tracked links: URLs in a message body become unguessable redirects through Touchline."""

from __future__ import annotations

import re
import secrets

# Bare http(s) URLs; a trailing period, comma or bracket belongs to the sentence.
URL_PATTERN = re.compile(r"https?://[^\s<>\"']*[^\s<>\"'.,;:!?)\]}]")


def new_token() -> str:
    # 128 bits from the OS's random source: a token cannot be guessed or enumerated.
    return secrets.token_urlsafe(16)


def rewrite_links(body: str, public_url: str) -> tuple[str, list[tuple[str, str]]]:
    """The body with each URL replaced by `{public_url}/l/{token}`, and the (url, token)
    pairs to record."""
    base = public_url.rstrip("/")
    links: list[tuple[str, str]] = []

    def replace(match: re.Match[str]) -> str:
        url = match.group(0)
        token = new_token()
        links.append((url, token))
        return f"{base}/l/{token}"

    return URL_PATTERN.sub(replace, body), links
