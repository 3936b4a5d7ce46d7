"""SMS delivery through Twilio's Programmable Messaging REST API, plus the
verification of the X-Twilio-Signature header on requests Twilio sends us."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from functools import cached_property
from typing import Any
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

from pydantic import Field, ValidationInfo, field_validator

from touchline.channels.providers.base import (
    OutboundMessage,
    ProviderConfig,
    SendResult,
    check_http_url,
    shorten,
)
from touchline.channels.providers.http import HttpProvider, basic_auth, raise_for_status

IDEMPOTENCY_HEADER = "I-Twilio-Idempotency-Token"
SIGNATURE_HEADER = "X-Twilio-Signature"


class TwilioConfig(ProviderConfig):
    account_sid: str = Field(min_length=1)
    auth_token: str = Field(min_length=1)
    base_url: str = "https://api.twilio.com"
    status_callback: bool = False

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str, info: ValidationInfo) -> str:
        # The API path is appended to it.
        return check_http_url(value, info).rstrip("/")


class TwilioProvider(HttpProvider[TwilioConfig]):
    what = "Twilio"

    @cached_property
    def _authorization(self) -> str:
        return basic_auth(self.config.account_sid, self.config.auth_token)

    @property
    def messages_url(self) -> str:
        sid = quote(self.config.account_sid, safe="")
        return f"{self.config.base_url}/2010-04-01/Accounts/{sid}/Messages.json"

    async def send(self, message: OutboundMessage) -> SendResult:
        form = {"To": message.to, "From": message.from_address, "Body": message.body}
        if self.config.status_callback and message.status_callback_url:
            form["StatusCallback"] = message.status_callback_url
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "Accept": "application/json",
            "Authorization": self._authorization,
            # The message id, so that a retry after a lost response can be recognized.
            # Twilio documents this header on the webhooks it sends; it makes no
            # documented promise to deduplicate API requests on it.
            IDEMPOTENCY_HEADER: str(message.id),
        }
        answer = await self._http.post(
            self.messages_url, content=urlencode(form).encode("ascii"), headers=headers
        )
        payload = answer.json_object()
        raise_for_status(answer, "Twilio", _twilio_error(payload))
        sid = payload.get("sid")
        # Twilio accepted the message; should the body be odd, failing here would only
        # make the caller retry a message that is already on its way.
        return SendResult(
            provider_message_id=sid if isinstance(sid, str) and sid else None,
            delivery_status="delivered" if payload.get("status") == "delivered" else "sent",
        )


def _twilio_error(payload: Mapping[str, Any]) -> str:
    # Twilio error bodies: {"code": 21211, "message": "...", "more_info": "...",
    # "status": 400}, sometimes with a "detail" (e.g. on 20003, bad credentials). Only
    # these parsed fields are kept, shortened, never the raw body: `base_url` may point at
    # a server that is not Twilio.
    parts: list[str] = []
    for key in ("message", "detail"):
        value = payload.get(key)
        if isinstance(value, str) and value:
            parts.append(value)
    text = shorten(" ".join(parts))
    code = payload.get("code")
    if isinstance(code, int | str) and code != "":
        text += f" (code {shorten(str(code), 20)})"
    return text.strip()


def compute_twilio_signature(url: str, params: Mapping[str, str], auth_token: str) -> str:
    """The X-Twilio-Signature Twilio would send for a form POST of `params` to `url`.

    Base64 of HMAC-SHA1, keyed with the auth token, over the full URL (query string
    included) followed by each POST parameter's name and value, in name order,
    without separators. For GET requests pass no params: they are in the URL.
    """
    data = url + "".join(name + params[name] for name in sorted(params))
    digest = hmac.new(auth_token.encode("utf-8"), data.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def validate_twilio_signature(
    url: str, params: Mapping[str, str], signature: str, auth_token: str
) -> bool:
    """Whether `signature` (the X-Twilio-Signature header) is Twilio's for this request.

    `url` must be the URL Twilio requested, as configured in Twilio, not as seen behind
    a proxy. Like Twilio's own libraries, this also accepts the signature computed
    with the URL's port removed or with the scheme's default port added, because
    Twilio is not consistent about which form it signs.
    """
    expected = signature.encode("utf-8")
    matched = False
    for candidate in _url_variants(url):
        computed = compute_twilio_signature(candidate, params, auth_token).encode("ascii")
        if hmac.compare_digest(computed, expected):
            matched = True
    return matched


def _url_variants(url: str) -> list[str]:
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        return [url]
    if parts.hostname is None:
        return [url]
    # Rebuild the netloc from its pieces, keeping any userinfo Twilio was given.
    userinfo, _, hostport = parts.netloc.rpartition("@")
    prefix = f"{userinfo}@" if userinfo else ""
    host = hostport.rsplit(":", 1)[0] if port is not None else hostport
    default_port = 443 if parts.scheme == "https" else 80
    without_port = urlunsplit(parts._replace(netloc=f"{prefix}{host}"))
    with_port = urlunsplit(parts._replace(netloc=f"{prefix}{host}:{port or default_port}"))
    variants = [url]
    for variant in (without_port, with_port):
        if variant not in variants:
            variants.append(variant)
    return variants
