"""Test data helpers: a few make_* functions that go through the public API."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import httpx
from fastapi import FastAPI
from fastapi.testclient import TestClient

from touchline.db import is_sqlite, unit_of_work
from touchline.worker.loop import Worker


@dataclass
class Api:
    """A client of one organization: every call carries its key."""

    client: TestClient
    key: str
    organization_id: uuid.UUID

    @property
    def headers(self) -> dict[str, str]:
        return {"X-WHIPPY-KEY": self.key}

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return cast(httpx.Response, self.client.get(path, headers=self.headers, **kw))

    def post(self, path: str, **kw: Any) -> httpx.Response:
        return cast(httpx.Response, self.client.post(path, headers=self.headers, **kw))

    def put(self, path: str, **kw: Any) -> httpx.Response:
        return cast(httpx.Response, self.client.put(path, headers=self.headers, **kw))

    def delete(self, path: str, **kw: Any) -> httpx.Response:
        return cast(httpx.Response, self.client.request("DELETE", path, headers=self.headers, **kw))


def make_org(app: FastAPI, client: TestClient, name: str = "Acme") -> Api:
    from touchline.auth.service import create_api_key, create_organization

    with unit_of_work(app.state.sessions) as session:
        org = create_organization(session, name)
        key = create_api_key(session, org.id)
    return Api(client, key, org.id)


def make_channel(api: Api, **fields: Any) -> dict[str, Any]:
    body = {"name": "SMS", "type": "sms", "address": "+14155550100", **fields}
    response = api.post("/v1/channels", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json()["data"])


def make_sequence(
    api: Api,
    steps: list[dict[str, Any]] | None = None,
    *,
    status: str = "active",
    channel_id: str | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """A sequence with steps (default: three steps 0, 2 and 3 days apart), active."""
    if channel_id is None:
        channel_id = make_channel(api)["id"]
    body: dict[str, Any] = {"title": "Onboarding", "default_channel_id": channel_id, **fields}
    # Quiet hours off by default here so delays are exact; tests of windows turn them on.
    body.setdefault("settings", {}).setdefault("support_sms_quiet_hours", {"enabled": False})
    response = api.post("/v1/sequences", json=body)
    assert response.status_code == 201, response.text
    sequence = response.json()["data"]
    for step in (
        steps
        if steps is not None
        else [
            {"title": "Welcome", "body": "Hi {{first_name}}", "schedule_options": {"days": 0}},
            {"title": "Day 2", "body": "Day 2", "schedule_options": {"days": 2}},
            {"title": "Day 5", "body": "Day 5", "schedule_options": {"days": 3}},
        ]
    ):
        r = api.post(f"/v1/sequences/{sequence['id']}/steps", json=step)
        assert r.status_code == 201, r.text
    if status != "draft":
        r = api.put(f"/v1/sequences/{sequence['id']}", json={"status": status})
        assert r.status_code == 200, r.text
    return dict(api.get(f"/v1/sequences/{sequence['id']}").json()["data"])


def enroll(
    api: Api,
    worker: Worker,
    sequence_id: str,
    to: list[dict[str, Any]],
    now: datetime,
    **fields: Any,
) -> dict[str, Any]:
    """Add contacts and let the worker process the job at `now`; returns the finished job."""
    response = api.post(f"/v1/sequences/{sequence_id}/contacts", json={"to": to, **fields})
    assert response.status_code == 202, response.text
    worker.run_once(now)
    job = api.get(f"/v1/jobs/{response.json()['data']['job_id']}").json()["data"]
    assert job["status"] == "done", job
    return dict(job)


def contact_sequences(api: Api, contact_id: str, **body: Any) -> dict[str, Any]:
    response = api.post(f"/v1/contacts/{contact_id}/sequences", json=body)
    assert response.status_code == 200, response.text
    return dict(response.json())


def step_contacts(api: Api, sequence_id: str, **params: str) -> list[dict[str, Any]]:
    """The sequence's step contacts as the API lists them (first page of 500)."""
    response = api.get(f"/v1/sequences/{sequence_id}/contacts", params={"limit": "500", **params})
    assert response.status_code == 200, response.text
    return list(response.json()["data"])


def assert_error(response: httpx.Response, status: int, *fields: str) -> list[dict[str, Any]]:
    """Check Whippy's error envelope; `fields` (if given) are exactly the fields at fault."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"errors", "status"}, body
    assert body["status"] == status, body
    errors: list[dict[str, Any]] = body["errors"]
    assert errors, body
    assert all(isinstance(e["description"], str) and e["description"] for e in errors), body
    if fields:
        assert sorted(str(e.get("field")) for e in errors) == sorted(fields), body
    return errors


def engines_under_test() -> list[str]:
    """The engines this session tests on, as conftest reads them (`TOUCHLINE_TEST_ENGINES`)."""
    import os

    names = os.environ.get("TOUCHLINE_TEST_ENGINES", "sqlite,postgresql").split(",")
    return [name for name in names if name]


def create_postgres_database(server_url: str) -> str:
    """A new, empty database on the server of `server_url`; returns its URL.

    For tests that need a schema of their own (migrations, separate processes) rather than
    the session's shared tables.
    """
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from touchline.db import normalize_url

    url = make_url(server_url)
    name = f"touchline_{uuid.uuid4().hex[:16]}"
    admin = create_engine(
        make_url(normalize_url(server_url)).set(database="postgres"), isolation_level="AUTOCOMMIT"
    )
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()
    # The URL as users write it (`postgresql://…`), not the driver-qualified one.
    return url.set(database=name).render_as_string(hide_password=False)


def drop_postgres_database(database_url: str) -> None:
    """Drop a database made by `create_postgres_database`, closing what still uses it."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from touchline.db import normalize_url

    url = make_url(normalize_url(database_url))
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)'))
    finally:
        admin.dispose()


def query_plan(app: FastAPI, statement: Any) -> str:
    """The plan the database chooses for `statement` (values written into it)."""
    engine = app.state.engine
    sql = str(statement.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True}))
    with engine.begin() as conn:
        if is_sqlite(engine):
            rows = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}").all()
            return "\n".join(str(row[-1]) for row in rows)
        # Small tables are cheaper to scan; forbid that to see the index the planner can use.
        conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
        rows = conn.exec_driver_sql(f"EXPLAIN {sql}").all()
        return "\n".join(str(row[0]) for row in rows)
