"""A SQLite database that cannot grow, or cannot be written at all: writes and /readyz
answer 503 envelopes, reads still answer, and writes work again afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event

from tests.helpers import engines_under_test, make_org
from tests.reliability.server import assert_envelope
from touchline.app import create_app
from touchline.config import Settings
from touchline.migrate import upgrade

pytestmark = pytest.mark.skipif(
    "sqlite" not in engines_under_test(), reason="fills a SQLite database"
)


class Quota:
    """SQLite's own limits, set on every connection as it leaves the pool. Past
    `max_page_count` a write that needs a new page fails with SQLITE_FULL, the error of a
    full disk; with `query_only` every write fails with SQLITE_READONLY."""

    def __init__(self) -> None:
        self.pages: int | None = None
        self.read_only = False

    def apply(self, dbapi_connection: Any, _record: Any = None) -> None:
        # SQLite caps the value at its own maximum: "no limit".
        dbapi_connection.execute(f"PRAGMA max_page_count={self.pages or 2**32}")
        dbapi_connection.execute(f"PRAGMA query_only={int(self.read_only)}")


@pytest.fixture
def full(tmp_path: Path) -> Iterator[tuple[TestClient, Quota]]:
    url = f"sqlite:///{tmp_path}/touchline.db"
    upgrade(url)
    app = create_app(Settings(database_url=url, auth_cache_seconds=0))
    quota = Quota()
    event.listen(app.state.engine, "checkout", lambda conn, _rec, _proxy: quota.apply(conn))
    with TestClient(app) as client:
        yield client, quota
    app.state.engine.dispose()


def test_a_full_database_answers_503_and_recovers(full: tuple[TestClient, Quota]) -> None:
    client, quota = full
    api = make_org(client.app, client)  # type: ignore[arg-type]
    created = api.post("/v1/contacts", json={"phone": "+14155550401", "name": "Before"})
    assert created.status_code == 201, created.text

    quota.pages = 1  # below the file's size: no page may be added
    big = {"phone": "+14155550402", "name": "Big", "properties": {"p": "y" * 50_000}}
    refused = api.post("/v1/contacts", json=big)
    assert refused.status_code == 503, refused.text
    assert_envelope(refused.json(), 503)
    assert refused.headers["retry-after"]
    # Reads need no room.
    assert api.get(f"/v1/contacts/{created.json()['data']['id']}").status_code == 200
    assert api.get("/v1/contacts", params={"phone": "+14155550402"}).json()["total"] == 0

    quota.pages = None
    assert api.post("/v1/contacts", json=big).status_code == 201


def test_readyz_is_503_while_the_database_refuses_writes(full: tuple[TestClient, Quota]) -> None:
    client, quota = full
    api = make_org(client.app, client)  # type: ignore[arg-type]
    assert client.get("/readyz").status_code == 200

    quota.read_only = True
    ready = client.get("/readyz")
    assert ready.status_code == 503, ready.text
    assert_envelope(ready.json(), 503)
    assert ready.headers["retry-after"]
    refused = api.post("/v1/contacts", json={"phone": "+14155550403"})
    assert refused.status_code == 503, refused.text
    assert_envelope(refused.json(), 503)

    quota.read_only = False
    assert client.get("/readyz").status_code == 200
    assert api.post("/v1/contacts", json={"phone": "+14155550403"}).status_code == 201
