"""The applier (touchline/applier.py) on both engines: a guarded change applies only while its
guard holds, what follows it only then, each change that applies is one queued webhook
event, and a batch of equal changes is one statement."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from fastapi import FastAPI
from sqlalchemy import event, select
from sqlalchemy.engine import Connection

from tests.helpers import Api
from touchline.applier import apply
from touchline.core.changes import Changeset, combine, insert, update
from touchline.db import unit_of_work
from touchline.models import Contact, WebhookDelivery


def _subscribe(api: Api) -> None:
    response = api.post("/v1/webhooks", json={"url": "https://hooks.example/a"})
    assert response.status_code == 201, response.text


def _contacts(api: Api, n: int) -> list[uuid.UUID]:
    ids = []
    for i in range(n):
        response = api.post("/v1/contacts", json={"phone": f"+1415555{i:04d}", "name": "Ann"})
        assert response.status_code == 201, response.text
        ids.append(uuid.UUID(response.json()["data"]["id"]))
    return ids


def _events(app: FastAPI) -> list[tuple[str, str]]:
    with unit_of_work(app.state.sessions) as session:
        rows = session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)).all()
        return [(d.event, d.payload) for d in rows]


def _names(app: FastAPI) -> dict[str, str]:
    with unit_of_work(app.state.sessions) as session:
        return {str(c.id): c.name or "" for c in session.scalars(select(Contact))}


@contextmanager
def _statements(app: FastAPI) -> Iterator[list[str]]:
    seen: list[str] = []

    def record(_conn: Connection, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    event.listen(app.state.engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(app.state.engine, "before_cursor_execute", record)


def test_a_guarded_change_applies_only_while_its_guard_holds(app: FastAPI, api: Api) -> None:
    _subscribe(api)
    held, lost = _contacts(api, 2)
    before = len(_events(app))
    followed: list[Mapping[str, Any]] = []

    def then(row: Mapping[str, Any]) -> Changeset:
        followed.append(row)
        return Changeset()

    with unit_of_work(app.state.sessions) as session:
        org_id = session.get_one(Contact, held).organization_id
        applied = apply(
            session,
            update(Contact, held, org_id, {"name": "Bea"}, {"name": "Ann"}, then=then)
            + update(Contact, lost, org_id, {"name": "Cy"}, {"name": "somebody else"}, then=then),
        )

    assert applied.updated == {held}
    assert [row["id"] for row in followed] == [held]
    assert followed[0]["name"] == "Bea"
    names = _names(app)
    assert (names[str(held)], names[str(lost)]) == ("Bea", "Ann")
    new_events = _events(app)[before:]
    assert [name for name, _ in new_events] == ["contact.updated"]
    body = json.loads(new_events[0][1])
    assert (body["data"]["id"], body["data"]["name"]) == (str(held), "Bea")


def test_a_row_created_and_changed_in_one_apply_is_one_created_event(
    app: FastAPI, api: Api
) -> None:
    _subscribe(api)
    [existing] = _contacts(api, 1)
    before = len(_events(app))
    with unit_of_work(app.state.sessions) as session:
        org_id = session.get_one(Contact, existing).organization_id
        new_id = uuid.uuid4()
        row = {"id": new_id, "organization_id": org_id, "name": "Dee", "properties": {}}
        # The insert is written after the updates, so the update finds no row yet; the
        # event says what the subscriber needs: a new contact.
        apply(session, insert(Contact, row) + update(Contact, new_id, org_id, {"name": "Eve"}))
    assert [name for name, _ in _events(app)[before:]] == ["contact.created"]
    assert _names(app)[str(new_id)] == "Dee"


def test_equal_changes_to_many_rows_are_one_statement(app: FastAPI, api: Api) -> None:
    ids = _contacts(api, 12)
    with unit_of_work(app.state.sessions) as session:
        org_id = session.get_one(Contact, ids[0]).organization_id
        changes = combine(
            update(Contact, contact_id, org_id, {"name": "Fay"}, {"name": "Ann"})
            for contact_id in ids
        )
        with _statements(app) as seen:
            applied = apply(session, changes)
    assert applied.updated == set(ids)
    updates = [s for s in seen if s.lstrip().upper().startswith("UPDATE CONTACTS")]
    assert len(updates) == 1, updates
    assert set(_names(app).values()) == {"Fay"}
