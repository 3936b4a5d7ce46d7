"""`touchline demo`: an organization with data in every state, made by the real engine.

Nothing here writes a status: contacts are enrolled through the enrollment service and
moved through their steps by the worker, with the clock set to points in the past.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from touchline.auth.service import create_api_key, create_organization, organization_for_key
from touchline.channels.schemas import ChannelCreate
from touchline.channels.service import create_channel
from touchline.config import Settings
from touchline.contacts.schemas import ContactInput
from touchline.contacts.service import upsert_contact
from touchline.db import unit_of_work, utc_now
from touchline.enrollment.schemas import EnrollRequest, RemoveRequest
from touchline.enrollment.service import accept_enrollment, accept_removal
from touchline.models import Contact
from touchline.netpolicy import OutboundPolicy
from touchline.sequences.schemas import SequenceCreate, SequenceUpdate, StepCreate
from touchline.sequences.service import create_sequence, create_step, update_sequence
from touchline.worker.loop import Worker

DEMO_KEY = "tl_demo_0123456789abcdefghijklmnopqrstuvwxyz"
DEMO_ORG = "Touchline demo"


@dataclass(frozen=True)
class DemoInfo:
    organization_id: uuid.UUID
    api_key: str
    contact_id: uuid.UUID
    created: bool


# (name, phone, when to enroll in Onboarding, relative to now). The steps wait 0, 2 and
# 3 days, so these land finished, at the last step, mid-way, not yet started and removed.
PEOPLE = (
    ("Ada Finished", "+14155550101", timedelta(days=-6)),
    ("Ben Laststep", "+14155550102", timedelta(days=-4)),
    ("Cara Midway", "+14155550103", timedelta(days=-1)),
    ("Dev Notstarted", "+14155550104", None),
    ("Eli Removed", "+14155550105", timedelta(days=-3)),
)
# Eli is taken out of Onboarding a day after joining it.
REMOVED = (PEOPLE[4][1], timedelta(days=-2))


def create_demo(sessions: sessionmaker[Session], settings: Settings) -> DemoInfo:
    with unit_of_work(sessions) as session:
        existing = organization_for_key(session, DEMO_KEY)
        if existing is not None:
            contact_id = session.scalars(
                select(Contact.id).where(
                    Contact.organization_id == existing, Contact.phone == PEOPLE[2][1]
                )
            ).one()
            return DemoInfo(existing, DEMO_KEY, contact_id, created=False)
        org = create_organization(session, DEMO_ORG)
        create_api_key(session, org.id, DEMO_KEY)
        channel = create_channel(
            session,
            org.id,
            ChannelCreate(name="Demo SMS", type="sms", address="+14155550100"),
            settings.provider_timeout_max_seconds,
            policy=OutboundPolicy(settings.allow_private_networks),
        )
        onboarding = create_sequence(
            session,
            org.id,
            SequenceCreate(
                title="Onboarding",
                description="Welcome new hires over their first week",
                default_channel_id=channel.id,
            ),
        )
        for title, body, days in (
            ("Welcome", "Hi {{first_name}}, welcome aboard!", 0),
            ("Day 2 check-in", "How is it going, {{first_name}}?", 2),
            ("Day 5 reminder", "{{first_name}}, your first shift is {{properties.shift_date}}.", 3),
        ):
            create_step(
                session,
                org.id,
                onboarding.id,
                StepCreate(title=title, body=body, schedule_options={"days": days}),
            )
        update_sequence(session, org.id, onboarding.id, SequenceUpdate(status="active"))
        reminders = create_sequence(
            session, org.id, SequenceCreate(title="Shift reminders", default_channel_id=channel.id)
        )
        create_step(
            session,
            org.id,
            reminders.id,
            StepCreate(
                title="Shift tomorrow",
                body="See you tomorrow, {{first_name}}!",
                schedule_options={"hours": 12},
            ),
        )
        update_sequence(session, org.id, reminders.id, SequenceUpdate(status="active"))
        draft = create_sequence(session, org.id, SequenceCreate(title="Re-engagement (draft)"))
        create_step(
            session, org.id, draft.id, StepCreate(title="Still interested?", body="Hi {{name}}")
        )
        org_id, onboarding_id, reminders_id = org.id, onboarding.id, reminders.id
        for name, phone, _ in PEOPLE:
            upsert_contact(
                session,
                org_id,
                ContactInput(name=name, phone=phone, properties={"shift_date": "Monday"}),
            )

    now = utc_now().replace(microsecond=0)
    # (when, phone, sequence, schedule_at): Cara is in a second sequence too.
    enrollments = [
        (
            now + offset if offset is not None else now,
            phone,
            onboarding_id,
            None if offset is not None else now + timedelta(days=1),
        )
        for _name, phone, offset in PEOPLE
    ]
    enrollments.append((now - timedelta(hours=1), PEOPLE[2][1], reminders_id, None))
    # Let time pass an hour at a time, enrolling each contact at its moment; the worker
    # sends whatever fell due, quiet hours and all.
    worker = Worker(sessions, settings)
    earliest = min(e[0] for e in enrollments)
    hours = int((now - earliest) / timedelta(hours=1))
    for tick in (earliest + timedelta(hours=h) for h in range(hours + 1)):
        for when, phone, sequence_id, schedule_at in enrollments:
            if when == tick:
                with unit_of_work(sessions) as session:
                    accept_enrollment(
                        session,
                        org_id,
                        sequence_id,
                        EnrollRequest.model_validate(
                            {"to": [{"phone": phone}], "schedule_at": schedule_at}
                        ),
                    )
        if tick == now + REMOVED[1]:
            with unit_of_work(sessions) as session:
                accept_removal(
                    session, org_id, onboarding_id, RemoveRequest(contacts=[{"phone": REMOVED[0]}])
                )
        worker.run_once(tick)
    worker.close()
    with unit_of_work(sessions) as session:
        contact_id = session.scalars(
            select(Contact.id).where(
                Contact.organization_id == org_id, Contact.phone == PEOPLE[2][1]
            )
        ).one()
    return DemoInfo(org_id, DEMO_KEY, contact_id, created=True)
