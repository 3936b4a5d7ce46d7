"""Tracked links: URLs in a message body become unguessable redirects through Touchline."""

from __future__ import annotations

import re
import secrets

from touchline.messaging import marks

# Bare http(s) URLs; a trailing period, comma or bracket belongs to the sentence.
URL_PATTERN = re.compile(r"https?://[^\s<>\"']*[^\s<>\"'.,;:!?)\]}]")
# A URL's scheme and authority: where a client goes, whatever follows. Browsers skip any
# run of slashes and backslashes before the host, and end it at a backslash as at a slash;
# other clients read a backslash as part of the authority. Both readings are covered.
_ORIGIN = re.compile(r"https?:[/\\]*[^/?#]*")


def new_token() -> str:
    # 128 bits from the OS's random source: a token cannot be guessed or enumerated.
    return secrets.token_urlsafe(16)


def rewrite_links(body: str, public_url: str) -> tuple[str, list[tuple[str, str]]]:
    """The body, as `templates.render_marked` renders it, without its marks and with each
    URL whose origin the step wrote replaced by `{public_url}/l/{token}`; and the (url,
    token) pairs to record.

    A URL whose scheme or host came from a substituted value (a contact named
    `https://evil.example`, or `https://{{ host }}/`) stays as it is: tracking it would
    be an open redirect on the operator's domain, aimed by contact data. Values in the
    path, query or fragment are fine: the redirect still goes to the site the step named.
    """
    text, values = marks.split(body)
    base = public_url.rstrip("/")
    links: list[tuple[str, str]] = []

    def replace(match: re.Match[str]) -> str:
        url = match.group(0)
        origin = _ORIGIN.match(url)
        assert origin is not None  # every URL_PATTERN match starts so
        if marks.touches(values, match.start(), match.start() + origin.end()):
            return url
        token = new_token()
        links.append((url, token))
        return f"{base}/l/{token}"

    return URL_PATTERN.sub(replace, text), links
