"""Who can receive a message on which channel."""

from __future__ import annotations

from touchline.core.views import ContactLike


def recipient_address(channel_type: str, contact: ContactLike) -> str | None:
    """Where a message on a channel of `channel_type` goes to this contact: its phone for
    SMS, its email otherwise; None (or empty) when it has none."""
    return contact.phone if channel_type == "sms" else contact.email
