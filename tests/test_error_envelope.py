"""Unexpected failures answer in the envelope: a held lock is a 409 (or SQLite's busy
503) with Retry-After after a bounded wait, and a bug is a 500 whose details are only in
the log, under the request id the answer carries."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import text

from tests.helpers import Api, make_org
from touchline.app import create_app
from touchline.config import Settings
from touchline.db import is_sqlite

LOCK_TIMEOUT = 1.0


@pytest.fixture
def impatient(settings: Settings) -> Iterator[FastAPI]:
    """The suite's database, served by an app that waits at most LOCK_TIMEOUT for locks."""
    app = create_app(settings.model_copy(update={"lock_timeout_seconds": LOCK_TIMEOUT}))

    @app.get("/boom", include_in_schema=False)
    def boom() -> None:
        raise RuntimeError("secret detail of a bug")

    yield app
    app.state.engine.dispose()


def test_a_bug_is_a_500_envelope_with_the_request_id(
    impatient: FastAPI, caplog: pytest.LogCaptureFixture
) -> None:
    with TestClient(impatient) as client, caplog.at_level(logging.ERROR, "touchline"):
        response = client.get("/boom")
    assert response.status_code == 500
    body = response.json()
    request_id = response.headers["x-request-id"]
    assert body == {"errors": [{"description": "Internal error", "id": request_id}], "status": 500}
    assert "secret" not in response.text
    assert any("secret detail of a bug" in r.exc_text for r in caplog.records if r.exc_text)


def test_a_held_lock_is_answered_after_the_lock_timeout(impatient: FastAPI, app: FastAPI) -> None:
    with TestClient(impatient) as client:
        api: Api = make_org(impatient, client)
        contact = api.post("/v1/contacts", json={"phone": "+14155550601"}).json()["data"]
        engine = app.state.engine
        with engine.connect() as holder:
            # Another transaction holds the contact's row (PostgreSQL) or the database's
            # write lock (SQLite) and does not let go.
            holder.execute(
                text("UPDATE contacts SET name = 'Holder' WHERE id = :id"),
                {"id": contact["id"].replace("-", "") if is_sqlite(engine) else contact["id"]},
            )
            started = time.monotonic()
            response = api.put(f"/v1/contacts/{contact['id']}", json={"name": "Blocked"})
            took = time.monotonic() - started
            holder.rollback()
        assert took < LOCK_TIMEOUT + 2, took
        expected = 503 if is_sqlite(engine) else 409
        assert response.status_code == expected, response.text
        assert response.json()["status"] == expected
        assert response.headers["retry-after"]
        # Nothing was written, and the next attempt goes through.
        assert api.get(f"/v1/contacts/{contact['id']}").json()["data"]["name"] is None
        retried = api.put(f"/v1/contacts/{contact['id']}", json={"name": "Done"})
        assert retried.status_code == 200, retried.text
