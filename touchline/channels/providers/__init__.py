"""The provider registry: the one place that knows every provider by name.

A channel stores its provider as a name plus a JSON config; everything that needs to
check, show or use such a config goes through here.
"""

from __future__ import annotations

from collections.abc import Mapping

import aiohttp

from touchline.channels.providers.base import (
    POLICY_CONTEXT,
    TIMEOUT_MAX_CONTEXT,
    Provider,
    ProviderConfig,
)
from touchline.channels.providers.outbox import OutboxProvider
from touchline.channels.providers.smtp import SmtpConfig, SmtpProvider
from touchline.channels.providers.twilio import TwilioConfig, TwilioProvider
from touchline.channels.providers.webhook import WebhookConfig, WebhookProvider
from touchline.netpolicy import OutboundPolicy

__all__ = [
    "PROVIDER_NAMES",
    "SECRET_FIELDS",
    "UnknownProviderError",
    "build_provider",
    "public_config",
    "sends_at_once",
    "validate_provider_config",
]

PROVIDER_NAMES: tuple[str, ...] = ("outbox", "smtp", "twilio", "webhook")

# Config keys the API accepts but never returns.
SECRET_FIELDS: dict[str, frozenset[str]] = {
    "outbox": frozenset(),
    "smtp": frozenset({"password"}),
    "twilio": frozenset({"auth_token"}),
    "webhook": frozenset({"secret"}),
}

_CONFIG_MODELS: dict[str, type[ProviderConfig]] = {
    "smtp": SmtpConfig,
    "twilio": TwilioConfig,
    "webhook": WebhookConfig,
}


class UnknownProviderError(ValueError):
    def __init__(self, provider: str) -> None:
        super().__init__(
            f"unknown provider {provider!r}; expected one of {', '.join(PROVIDER_NAMES)}"
        )
        self.provider = provider


def _check_name(provider: str) -> None:
    if provider not in PROVIDER_NAMES:
        raise UnknownProviderError(provider)


def validate_provider_config(
    provider: str, config: Mapping[str, object], *, timeout_max: float, policy: OutboundPolicy
) -> dict[str, object]:
    """Validate a config and return it normalized, defaults filled in, as plain JSON
    values ready to store. A `timeout` above `timeout_max` (the operator's cap) is
    refused here; configs stored earlier are capped at use instead. So is a server
    (`url`, `base_url`, `host`) that `policy` does not allow, as far as can be told
    before connecting.

    Raises pydantic.ValidationError for a bad config and UnknownProviderError (a
    ValueError) for an unknown provider name.
    """
    _check_name(provider)
    model = _CONFIG_MODELS.get(provider)
    if model is None:
        # The outbox has no settings.
        return {}
    context = {TIMEOUT_MAX_CONTEXT: timeout_max, POLICY_CONTEXT: policy}
    validated = model.model_validate(dict(config), context=context)
    return validated.model_dump(mode="json")


def public_config(provider: str, config: Mapping[str, object]) -> dict[str, object]:
    """The config without its secret fields, for API responses."""
    _check_name(provider)
    secrets = SECRET_FIELDS[provider]
    return {key: value for key, value in config.items() if key not in secrets}


def sends_at_once(provider: str, config: Mapping[str, object]) -> int | None:
    """How many of a channel's sends one worker can have under way at once: an SMTP
    channel's pool of connections; None when the provider sets no bound of its own (the
    HTTP ones share the worker's pool)."""
    _check_name(provider)
    if provider == "smtp":
        return SmtpConfig.model_validate(dict(config)).pool_size
    return None


def build_provider(
    provider: str,
    config: Mapping[str, object],
    *,
    http: aiohttp.ClientSession | None,
    policy: OutboundPolicy,
    timeout_max: float,
) -> Provider:
    """A ready provider for a stored config; call it inside the running event loop and
    `aclose()` the provider when done with it.

    `http` is the caller's shared session (kept open; the HTTP-based providers never
    close it), whose connector must apply `policy` (see `guarded_connector`); with None
    they make one of their own that does. Every connection goes only where `policy`
    allows, and every send takes at most the config's timeout, capped at `timeout_max`,
    whatever the stored config says.
    """
    _check_name(provider)
    if provider == "smtp":
        return SmtpProvider(
            SmtpConfig.model_validate(dict(config)), policy=policy, timeout_max=timeout_max
        )
    if provider == "twilio":
        return TwilioProvider(
            TwilioConfig.model_validate(dict(config)), http, policy=policy, timeout_max=timeout_max
        )
    if provider == "webhook":
        return WebhookProvider(
            WebhookConfig.model_validate(dict(config)),
            http,
            policy=policy,
            timeout_max=timeout_max,
        )
    return OutboxProvider()
