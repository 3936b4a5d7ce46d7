"""Contact rules: dedupe by phone, then external_id, then email; opt-in and opt-out."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from collections.abc import Sequence as Seq
from typing import Any

from sqlalchemy import ColumnElement, func, inspect, select
from sqlalchemy.orm import Session

from touchline.applier import apply, assign
from touchline.channels.service import sending_channel
from touchline.contacts.schemas import (
    MAX_TAGS,
    CommunicationPreference,
    ContactFields,
    ContactInput,
    ContactOut,
    ContactSearch,
)
from touchline.core import progress
from touchline.core.changes import Changeset, combine, create
from touchline.core.relative import relative_key
from touchline.core.views import ContactLike
from touchline.db import is_sqlite, utc_now
from touchline.errors import Conflict, NotFound, ValidationFailed
from touchline.models import (
    Channel,
    Contact,
    ContactPreference,
    ContactTag,
    Sequence,
    SequenceRun,
    Step,
    StepContact,
)
from touchline.models.ids import new_id
from touchline.pagination import contains, equal_to, paginate
from touchline.schemas import Page, from_orm
from touchline.validation import email_for_lookup, phone_for_lookup


def get_contact(session: Session, org_id: uuid.UUID, contact_id: uuid.UUID) -> Contact:
    contact = session.get(Contact, contact_id)
    if contact is None or contact.organization_id != org_id:
        raise NotFound("Contact not found")
    return contact


def find_existing(session: Session, org_id: uuid.UUID, data: ContactFields) -> Contact | None:
    """The contact a new input refers to: same phone, else same external_id, else email."""
    for column, value in (
        (Contact.phone, data.phone),
        (Contact.external_id, data.external_id),
        (Contact.email, data.email),
    ):
        if value:
            found = oldest_contact(session, org_id, column == value)
            if found is not None:
                return found
    return None


def oldest_contact(
    session: Session, org_id: uuid.UUID, condition: ColumnElement[bool]
) -> Contact | None:
    """The organization's first contact that matches: where older data holds duplicates
    (same email, say), the one that came first is the one lookups find."""
    return session.scalars(
        select(Contact)
        .where(Contact.organization_id == org_id, condition)
        .order_by(Contact.created_at)
        .limit(1)
    ).first()


def _apply(session: Session, contact: Contact, data: ContactFields) -> Changeset:
    if data.phone and data.phone != contact.phone:
        taken = session.scalar(
            select(Contact.id).where(
                Contact.organization_id == contact.organization_id,
                Contact.phone == data.phone,
                Contact.id != contact.id,
            )
        )
        if taken is not None:
            raise Conflict("Another contact has this phone", field="phone")
    before = dict(contact.properties or {})
    changes = assign(contact, contact_changes(contact, data))
    return changes + _dates_moved(session, contact, before)


def _dates_moved(session: Session, contact: Contact, before: dict[str, Any]) -> Changeset:
    """The contact's waiting step contacts whose date-relative step reads a property that
    changed are rescheduled (or made inactive when the date went away)."""
    after = contact.properties or {}
    changed = {key for key in before.keys() | after.keys() if before.get(key) != after.get(key)}
    if not changed or inspect(contact).transient:
        return Changeset()  # nothing changed, or a new contact: in no step yet
    rows = session.execute(
        select(StepContact, SequenceRun, Step, Sequence)
        .join(SequenceRun, SequenceRun.id == StepContact.sequence_run_id)
        .join(Step, Step.id == StepContact.step_id)
        .join(Sequence, Sequence.id == StepContact.sequence_id)
        .where(
            StepContact.contact_id == contact.id,
            StepContact.status.in_(("pending", "inactive")),
            StepContact.claim.is_(None),
        )
    ).all()
    now = utc_now()
    return combine(
        progress.reschedule(
            sc,
            run,
            progress.Place(sequence, step, contact, sending_channel(session, sc.channel_id)),
            sc.created_at,
            now,
        )
        for sc, run, step, sequence in rows
        if relative_key(step.schedule_options) in changed
    )


def contact_changes(contact: ContactLike, data: ContactFields) -> dict[str, Any]:
    """The columns the fields a client set change on the contact (no uniqueness check:
    see `_apply`)."""
    # Tags are rows of their own (`retag`), not a column.
    changes = data.model_dump(exclude_unset=True, exclude_none=True, exclude={"tags"})
    if "state" in changes:
        changes.setdefault("blocked", changes["state"] == "blocked")
    elif changes.get("blocked") is True:
        changes["state"] = "blocked"
    elif changes.get("blocked") is False and contact.state == "blocked":
        # Unblocking reopens a blocked contact; an archived one stays archived.
        changes["state"] = "open"
    return changes


def _lock_identities(session: Session, org_id: uuid.UUID, data: ContactFields) -> None:
    """Make concurrent upserts of the same phone, external_id or email run one at a time,
    so that the second finds the first's contact instead of inserting a duplicate.

    PostgreSQL only: SQLite's writers already run one at a time. Transaction-scoped
    advisory locks, taken in a fixed order so that two inputs sharing two keys cannot
    deadlock; they end with the request's transaction.
    """
    if is_sqlite(session.get_bind()):
        return
    keys = sorted(
        f"{org_id}:{name}:{value}"
        for name, value in (
            ("phone", data.phone),
            ("external_id", data.external_id),
            ("email", data.email),
        )
        if value
    )
    for key in keys:
        session.execute(select(func.pg_advisory_xact_lock(func.hashtextextended(key, 0))))


def upsert_contact(
    session: Session, org_id: uuid.UUID, data: ContactInput, tags: list[str] | None = None
) -> tuple[Contact, bool]:
    """Create a contact, or update the one it duplicates; returns (contact, created)."""
    _lock_identities(session, org_id, data)
    contact = find_existing(session, org_id, data)
    created = contact is None
    changes = Changeset()
    if contact is None:
        contact = Contact(id=new_id(), organization_id=org_id, properties={})
        changes = create(contact)
    apply(session, changes + _apply(session, contact, data) + _replace_tags(session, contact, tags))
    return contact, created


def update_contact(
    session: Session,
    org_id: uuid.UUID,
    contact_id: uuid.UUID,
    data: ContactFields,
    tags: list[str] | None = None,
) -> Contact:
    contact = get_contact(session, org_id, contact_id)
    apply(session, _apply(session, contact, data) + _replace_tags(session, contact, tags))
    return contact


def delete_contact(session: Session, org_id: uuid.UUID, contact_id: uuid.UUID) -> Contact:
    contact = get_contact(session, org_id, contact_id)
    session.delete(contact)
    session.flush()
    return contact


def search_contacts(
    session: Session, org_id: uuid.UUID, query: ContactSearch, *, count_up_to: int | None = None
) -> Page[ContactOut]:
    conditions = [
        Contact.organization_id == org_id,
        *equal_to(query, external_id=Contact.external_id),
    ]
    if query.name:
        conditions.append(contains(Contact.name, query.name))
    if query.email:
        conditions.append(Contact.email == email_for_lookup(query.email))
    if query.phone:
        conditions.append(Contact.phone == phone_for_lookup(query.phone))
    if query.tag:
        tagged = select(ContactTag.contact_id).where(
            ContactTag.organization_id == org_id, ContactTag.tag == query.tag
        )
        conditions.append(Contact.id.in_(tagged))
    statement = select(Contact).where(*conditions).order_by(Contact.created_at.desc(), Contact.id)
    rows, total = paginate(
        session, statement, limit=query.limit, offset=query.offset, count_up_to=count_up_to
    )
    return Page(data=contacts_out(session, rows), total=total)


def set_opt_in(
    session: Session,
    org_id: uuid.UUID,
    contact_id: uuid.UUID,
    channel_id: uuid.UUID | None,
    opt_in: bool,
) -> Contact:
    contact = get_contact(session, org_id, contact_id)
    channel_ids: Seq[uuid.UUID]
    if channel_id is None:
        channel_ids = session.scalars(
            select(Channel.id).where(Channel.organization_id == org_id)
        ).all()
    else:
        channel = session.get(Channel, channel_id)
        if channel is None or channel.organization_id != org_id:
            raise NotFound("Channel not found", field="channel_id")
        channel_ids = [channel_id]
    now = utc_now()
    for cid in channel_ids:
        pref = session.get(ContactPreference, (contact.id, cid))
        if pref is None:
            pref = ContactPreference(contact_id=contact.id, channel_id=cid, opt_in=opt_in)
            session.add(pref)
        pref.opt_in = opt_in
        if opt_in:
            pref.opt_in_date = now
        else:
            pref.opt_out_date = now
    apply(session, assign(contact, {"updated_at": now}))
    return contact


def retag(session: Session, contact: Contact, new: Callable[[set[str]], set[str]]) -> Changeset:
    """Give the contact the tags `new` makes of its current ones (added to the session,
    written with the changeset). The contact is updated, and its webhook event sent, only
    when its set of tags changes."""
    if not is_sqlite(session.get_bind()):
        # Tag writes to one contact run one at a time (SQLite's writers already do), so
        # that two requests adding the same tag cannot both insert it.
        session.execute(select(Contact.id).where(Contact.id == contact.id).with_for_update())
    rows = {
        t.tag: t
        for t in session.scalars(select(ContactTag).where(ContactTag.contact_id == contact.id))
    }
    wanted = new(set(rows))
    if len(wanted) > MAX_TAGS:
        raise ValidationFailed(f"A contact has at most {MAX_TAGS} tags", field="tags")
    now = utc_now()
    for tag in set(rows) - wanted:
        session.delete(rows[tag])
    for tag in wanted - set(rows):
        session.add(
            ContactTag(
                contact_id=contact.id,
                tag=tag,
                organization_id=contact.organization_id,
                created_at=now,
            )
        )
    return assign(contact, {"updated_at": now}) if wanted != set(rows) else Changeset()


def _replace_tags(session: Session, contact: Contact, tags: list[str] | None) -> Changeset:
    """Make the contact's tags exactly these (None: leave them)."""
    if tags is None:
        return Changeset()
    return retag(session, contact, lambda _current: set(tags))


def change_tags(
    session: Session, org_id: uuid.UUID, contact_id: uuid.UUID, tags: list[str], *, add: bool
) -> Contact:
    """POST (add=True) and DELETE /v1/contacts/{id}/tags."""
    contact = get_contact(session, org_id, contact_id)
    named = set(tags)
    apply(
        session,
        retag(session, contact, (lambda cur: cur | named) if add else (lambda cur: cur - named)),
    )
    return contact


def is_opted_out(session: Session, contact_id: uuid.UUID, channel_id: uuid.UUID) -> bool:
    pref = session.get(ContactPreference, (contact_id, channel_id))
    return pref is not None and not pref.opt_in


def contact_out(session: Session, contact: Contact) -> ContactOut:
    return contacts_out(session, [contact])[0]


def contacts_out(session: Session, contacts: Seq[Contact]) -> list[ContactOut]:
    """Serialize contacts with their preferences and tags, each read in one query for the
    whole page."""
    prefs: dict[uuid.UUID, list[CommunicationPreference]] = {c.id: [] for c in contacts}
    tags: dict[uuid.UUID, list[str]] = {c.id: [] for c in contacts}
    if contacts:
        rows = session.scalars(
            select(ContactPreference)
            .where(ContactPreference.contact_id.in_(list(prefs)))
            .order_by(ContactPreference.channel_id)
        ).all()
        for p in rows:
            prefs[p.contact_id].append(CommunicationPreference.model_validate(p))
        for contact_id, tag in session.execute(
            select(ContactTag.contact_id, ContactTag.tag)
            .where(ContactTag.contact_id.in_(list(tags)))
            .order_by(ContactTag.tag)
        ):
            tags[contact_id].append(tag)
    return [
        from_orm(ContactOut, c, communication_preferences=prefs[c.id], tags=tags[c.id])
        for c in contacts
    ]
