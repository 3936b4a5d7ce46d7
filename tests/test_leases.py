"""A worker sends only what it still holds: a step contact taken over while its send waited
is not sent by the worker that lost it (SPEC §5.3)."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

from fastapi import FastAPI
from sqlalchemy import select, update

from tests.fakes import ACCOUNT_SID, AUTH_TOKEN, running_twilio
from tests.helpers import Api, make_channel, make_sequence
from touchline.config import Settings
from touchline.db import frozen_clock, unit_of_work
from touchline.models import Contact, StepContact
from touchline.worker.loop import Worker

T0 = datetime.now(UTC).replace(microsecond=0)


def test_a_send_waiting_for_its_turn_does_not_start_once_its_row_was_taken_over(
    api: Api, app: FastAPI, settings: Settings
) -> None:
    with running_twilio() as (twilio, base_url):
        config = {"account_sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN, "base_url": base_url}
        # One message a second: the second send of the claim waits a second for its slot.
        channel = make_channel(api, provider="twilio", provider_config=config, max_per_second=1)
        sequence = make_sequence(api, [{"title": "Only", "body": "Hi"}], channel_id=channel["id"])
        response = api.post(
            f"/v1/sequences/{sequence['id']}/contacts",
            json={"to": [{"phone": "+14155550111"}, {"phone": "+14155550112"}]},
        )
        assert response.status_code == 202, response.text
        worker = Worker(app.state.sessions, settings.model_copy(update={"worker_lease_seconds": 1}))
        with frozen_clock(T0):
            assert worker.run_job()

        def take_over_the_waiting_one() -> None:
            # As another worker would once this one's lease had lapsed.
            deadline = time.monotonic() + 5
            while not twilio.requests and time.monotonic() < deadline:
                time.sleep(0.01)
            sent_to = twilio.requests[0].form["To"][0]
            with unit_of_work(app.state.sessions) as session:
                session.execute(
                    update(StepContact)
                    .where(
                        StepContact.status == "active",
                        StepContact.contact_id.in_(
                            select(Contact.id).where(Contact.phone != sent_to)
                        ),
                    )
                    .values(claim=uuid.uuid4())
                    .execution_options(synchronize_session=False)
                )

        thief = threading.Thread(target=take_over_the_waiting_one)
        thief.start()
        try:
            summary = worker.run_once(T0 + timedelta(seconds=1))
        finally:
            thief.join()
            worker.close()

    # The first went out at once; the second's lease was gone before its slot came.
    assert len(twilio.requests) == 1
    assert (summary.sent, summary.lost) == (1, 1)
