"""From a sequence's settings, a channel and a contact to the time rules that apply."""

from __future__ import annotations

from datetime import datetime, time

from touchline.core.schedule import (
    BusinessHours,
    Delay,
    QuietHours,
    Rule,
    WeekendRule,
    next_send_time,
    pick_zone,
)
from touchline.core.settings import SequenceSettings
from touchline.core.views import ContactLike, StepLike
from touchline.models import Channel


def _hhmm(value: str) -> time:
    hours, minutes = value.split(":")
    return time(int(hours), int(minutes))


def rules_for(
    settings: SequenceSettings, channel: Channel | None, contact: ContactLike
) -> list[Rule]:
    rules: list[Rule] = []

    weekend = settings.skip_sending_on_weekend
    if weekend.enabled:
        rules.append(
            WeekendRule(
                pick_zone(weekend.use_contact_timezone, contact.timezone, settings.timezone)
            )
        )
    hours = settings.only_send_during_business_hours
    if hours.enabled and channel is not None:
        rules.append(
            BusinessHours(
                # Opening hours are the channel's: read them in the channel's zone.
                pick_zone(
                    hours.use_contact_timezone,
                    contact.timezone,
                    channel.timezone or settings.timezone,
                ),
                channel.opening_hours,
            )
        )
    quiet = settings.support_sms_quiet_hours
    if quiet.enabled and channel is not None and channel.type == "sms":
        rules.append(
            QuietHours(
                pick_zone(quiet.use_contact_timezone, contact.timezone, settings.timezone),
                _hhmm(quiet.start),
                _hhmm(quiet.end),
            )
        )
    return rules


def due_at(
    start: datetime,
    step: StepLike,
    settings: SequenceSettings,
    channel: Channel | None,
    contact: ContactLike,
) -> datetime:
    """When the contact's message for `step` may go out, entering the step at `start`.

    Raises NoSendWindowError when the windows never open.
    """
    return next_send_time(
        start, Delay.parse(step.schedule_options), rules_for(settings, channel, contact)
    )
