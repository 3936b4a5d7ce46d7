"""How much of a worker one channel may take, and when the rest of its backlog comes back.

Claims take the oldest due step contacts whoever they belong to. Without a bound, one
organization's backlog on a slow or silent provider would fill every send slot of the
worker for as long as its sends take (a gateway that never answers: the whole timeout),
and every other organization's messages would wait behind it. So a channel may have at
most half of a worker's sends in flight (fewer when its provider says so: an SMTP channel's
pool of connections); what a claim takes beyond that goes back to the queue, due again at
the pace the channel is seen to send at, so it is not claimed again and again meanwhile.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from touchline.channels.providers import sends_at_once
from touchline.models import Channel

# Until a channel's sends have been timed: a guess that errs on the side of coming back.
_UNTIMED_SECONDS = 1.0
# Channels whose pace is remembered; past ones are forgotten beyond this many.
_REMEMBERED = 1024


class Pacing:
    def __init__(self, concurrency: int) -> None:
        self._half = max(1, concurrency // 2)
        # By channel: when the next step contact put back for it is due, and how long its
        # sends take (a moving average the send stage keeps up to date).
        self._next: dict[uuid.UUID, datetime] = {}
        self._seconds: dict[uuid.UUID, float] = {}

    def share(self, channel: Channel) -> int:
        """The most sends of `channel` this worker may have in flight."""
        own = sends_at_once(channel.provider, channel.provider_config)
        return self._half if own is None else min(own, self._half)

    def timed(self, channel_id: uuid.UUID, seconds: float) -> None:
        """A send on the channel took `seconds` (called from the send stage's thread)."""
        before = self._seconds.get(channel_id)
        self._seconds[channel_id] = seconds if before is None else 0.8 * before + 0.2 * seconds
        if len(self._seconds) > _REMEMBERED:
            self._seconds.pop(next(iter(self._seconds)), None)

    def later(self, channel: Channel, now: datetime) -> datetime:
        """When a step contact that found the channel's share taken is due again: the next
        turn of the channel at its pace, one after the other."""
        spacing = timedelta(
            seconds=self._seconds.get(channel.id, _UNTIMED_SECONDS) / self.share(channel)
        )
        due = max(self._next.get(channel.id, now), now) + spacing
        self._next[channel.id] = due
        if len(self._next) > _REMEMBERED:
            self._next = {cid: at for cid, at in self._next.items() if at > now}
        return due
