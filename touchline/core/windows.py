"""From a sequence's settings, a channel and a contact to the time rules that apply."""

from __future__ import annotations

from datetime import datetime, time

from touchline.core.relative import moment, parse_offset, relative_key
from touchline.core.schedule import (
    BusinessHours,
    Delay,
    QuietHours,
    Rule,
    WeekendRule,
    earliest_allowed,
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


def wanted_at(
    start: datetime, step: StepLike, settings: SequenceSettings, contact: ContactLike
) -> datetime:
    """When the step's message is meant to go out, before the send windows: `start` plus
    the step's delay, or the contact's date plus the offset for a date-relative step
    (NoDateError when the contact has no usable date)."""
    key = relative_key(step.schedule_options)
    if key is None:
        return start + Delay.parse(step.schedule_options).as_timedelta()
    zone = pick_zone(True, contact.timezone, settings.timezone)
    return moment(contact.properties, key, zone) + parse_offset(step.schedule_options.get("offset"))


def due_at(
    start: datetime,
    step: StepLike,
    settings: SequenceSettings,
    channel: Channel | None,
    contact: ContactLike,
) -> datetime:
    """When the contact's message for `step` may go out, entering the step at `start`: a
    date-relative moment already past is due at once (the worker then skips the step).

    Raises NoSendWindowError when the windows never open, NoDateError when a date-relative
    step has no date to go by.
    """
    wanted = max(wanted_at(start, step, settings, contact), start)
    return earliest_allowed(wanted, rules_for(settings, channel, contact))
