"""Messages: sent and received, newest first, narrowed by status, channel and sequence."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query
from fastapi.responses import Response

from touchline.channels.schemas import ChannelListQuery
from touchline.channels.service import list_channels
from touchline.console.render import Listing, count_up_to
from touchline.console.visit import Viewing
from touchline.messaging.schemas import MessageFilter
from touchline.messaging.service import list_messages
from touchline.routing import api_router
from touchline.sequences.service import sequence_choices

router = api_router()

# The filters' choices: an organization's channels and sequences are few, but not bounded.
CHOICES = 200


@router.get("/messages")
def messages(visit: Viewing, query: Annotated[MessageFilter, Query()]) -> Response:
    session, org = visit.session, visit.org
    capped = count_up_to(query)
    found = list_messages(session, org, query, count_up_to=capped)
    channels = list_channels(session, org, ChannelListQuery(limit=CHOICES)).data
    sequences, _ = sequence_choices(session, org, CHOICES)
    return visit.page(
        "messages.html",
        listing=Listing.of(found, query, capped),
        channels=channels,
        channel_names={c.id: c.name for c in channels},
        sequences=sequences,
    )
