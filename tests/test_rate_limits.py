"""Rate limiting per API key (SPEC 3): 429 with Retry-After once a key uses its window."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.helpers import Api, assert_error, make_org
from touchline.app import create_app
from touchline.config import Settings


@contextmanager
def _limited(app: FastAPI, requests: int, interval_ms: int) -> Iterator[tuple[FastAPI, TestClient]]:
    """An app like `app` whose keys may make `requests` requests every `interval_ms`."""
    settings = app.state.settings.model_dump() | {
        "rate_limit_requests": requests,
        "rate_limit_interval_ms": interval_ms,
    }
    limited = create_app(Settings.model_validate(settings))
    with TestClient(limited) as client:
        yield limited, client
    limited.state.engine.dispose()


def test_a_key_past_its_limit_gets_429_until_the_window_ends(app: FastAPI) -> None:
    with _limited(app, 3, 800) as (limited, client):
        api, other = make_org(limited, client), make_org(limited, client, "Other")
        assert [api.get("/v1/contacts").status_code for _ in range(3)] == [200, 200, 200]
        refused = api.get("/v1/contacts")
        assert_error(refused, 429)
        assert refused.headers["Retry-After"] == "1"  # whole seconds, rounded up
        remaining = int(refused.headers["X-RateLimit-Remaining-Interval-Milliseconds"])
        assert 0 < remaining <= 800
        # Limits are per key: another organization is not held back.
        assert other.get("/v1/contacts").status_code == 200
        time.sleep(remaining / 1000 + 0.05)
        assert api.get("/v1/contacts").status_code == 200


def test_list_contact_sequences_counts_each_request_once(app: FastAPI) -> None:
    # Its requests are answered on two paths (touchline.runs.lane): a key seen moments ago
    # in the common form, and everything else through the declared route.
    with _limited(app, 4, 60_000) as (limited, client):
        api = make_org(limited, client)
        contact_id = api.post("/v1/contacts", json={"email": "ann@example.com"}).json()["data"]
        path = f"/v1/contacts/{contact_id['id']}/sequences"
        answers = [
            api.post(path, json={}).status_code,  # the key is now cached
            api.post(path, json={"limit": 0}).status_code,  # refused by the declared route
            api.get(path).status_code,
        ]
        assert answers == [200, 422, 200]
        assert_error(api.post(path, json={}), 429)
        assert_error(api.get(path, params={"limit": 1}), 429)


def test_no_limit_by_default(api: Api) -> None:
    assert all(api.get("/v1/contacts").status_code == 200 for _ in range(30))
