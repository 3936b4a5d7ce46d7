"""Per-channel send rates, honoured by every worker together through the database.

A channel's `max_per_second` is kept as a generic cell rate algorithm (GCRA, as rate
limiters from KumoMTA's `max_message_rate` to Redis' cell do): its row in
`channel_throttles` holds the theoretical arrival time `next_at`, the earliest instant the
next message may go out. A claim that wants to send n messages on the channel locks the row,
takes the slots `max(next_at, now) + i / rate` that fall within a short horizon and moves
`next_at` past them; the sends wait for their slots. The others are put back in the queue,
due at the slot they would have had: never dropped. A provider's 429 pushes `next_at`
forward for everyone, limited channel or not.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from touchline.bulk import among, upsert
from touchline.models import Channel, ChannelThrottle

# How far ahead a claim takes slots: long enough that a fast channel's sends flow without a
# gap between claims, short enough that sends waiting for their slot hold few of the
# worker's send slots.
HORIZON = timedelta(seconds=2)
# A 429 that says nothing of when to come back pauses the channel this long.
DEFAULT_BACK_OFF = timedelta(seconds=30)
MAX_BACK_OFF = timedelta(hours=1)


@dataclass(frozen=True)
class Slots:
    """When a channel's sends of one claim may start."""

    # One instant per send that may go, in order; the claim's other sends wait.
    starts: list[datetime]
    # When the first waiting send is due again, and the gap after it for the next ones.
    resume_at: datetime | None = None
    spacing: timedelta = timedelta(0)

    def waiting_due(self, index: int) -> datetime:
        """When the `index`-th send that could not go now is due again."""
        assert self.resume_at is not None
        return self.resume_at + index * self.spacing


def reserve(
    session: Session, wanted: Mapping[uuid.UUID, tuple[Channel, int]], now: datetime
) -> dict[uuid.UUID, Slots]:
    """Slots for `wanted[channel_id] = (channel, sends)`, for the channels that have a rate
    or are backed off; channels missing from the answer may send at once."""
    if not wanted:
        return {}
    limited = [cid for cid, (channel, _) in wanted.items() if channel.max_per_second]
    _ensure_rows(session, limited)
    rows = {
        row.channel_id: row
        for row in session.scalars(
            select(ChannelThrottle)
            .where(among(session, ChannelThrottle.channel_id, list(wanted)))
            .order_by(ChannelThrottle.channel_id)
            .with_for_update()
        )
    }
    answer: dict[uuid.UUID, Slots] = {}
    for channel_id, row in rows.items():
        channel, sends = wanted[channel_id]
        if channel.max_per_second:
            answer[channel_id] = _take(row, channel.max_per_second, sends, now)
        elif row.next_at > now:
            answer[channel_id] = Slots([], resume_at=row.next_at)
    return answer


def _take(row: ChannelThrottle, rate: float, sends: int, now: datetime) -> Slots:
    spacing = timedelta(seconds=1 / rate)
    start = max(row.next_at, now)
    starts: list[datetime] = []
    while len(starts) < sends and start + len(starts) * spacing < now + HORIZON:
        starts.append(start + len(starts) * spacing)
    row.next_at = start + len(starts) * spacing
    if len(starts) == sends:
        return Slots(starts)
    return Slots(starts, resume_at=row.next_at, spacing=spacing)


def back_off(session: Session, pauses: Mapping[uuid.UUID, datetime]) -> None:
    """Hold each channel's sends, every worker's, until its time (a provider's 429)."""
    _ensure_rows(session, sorted(pauses))
    for channel_id, until in sorted(pauses.items()):
        session.execute(
            update(ChannelThrottle)
            .where(ChannelThrottle.channel_id == channel_id, ChannelThrottle.next_at < until)
            .values(next_at=until)
            .execution_options(synchronize_session=False)
        )


def pause_until(now: datetime, retry_after: float | None) -> datetime:
    """Until when a 429 pauses its channel: the provider's Retry-After, within bounds."""
    wait = DEFAULT_BACK_OFF if retry_after is None else timedelta(seconds=retry_after)
    return now + min(max(wait, timedelta(seconds=1)), MAX_BACK_OFF)


def _ensure_rows(session: Session, channel_ids: Collection[uuid.UUID]) -> None:
    """A row per channel, made without a race: a second worker's insert does nothing."""
    if not channel_ids:
        return
    # The epoch: a new row lets the next send go at once.
    start = datetime(1970, 1, 1, tzinfo=UTC)
    session.execute(
        upsert(session, ChannelThrottle)
        .values([{"channel_id": cid, "next_at": start} for cid in sorted(channel_ids)])
        .on_conflict_do_nothing(index_elements=["channel_id"])
    )
