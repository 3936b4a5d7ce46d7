"""The short-lived cache of API keys that just authenticated."""

from __future__ import annotations

import time

from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.helpers import make_org
from touchline.app import create_app
from touchline.auth.service import revoke_api_key
from touchline.config import Settings
from touchline.db import unit_of_work


def test_a_revoked_key_is_refused_once_its_cache_entry_expires(app: FastAPI) -> None:
    settings = app.state.settings.model_copy(update={"auth_cache_seconds": 0.5})
    cached_app = create_app(Settings.model_validate(settings.model_dump()))
    with TestClient(cached_app) as client:
        api = make_org(cached_app, client)
        assert api.get("/v1/contacts").status_code == 200
        with unit_of_work(cached_app.state.sessions) as session:
            assert revoke_api_key(session, api.key) == 1
        # Just seen: trusted for a moment without asking the database.
        assert api.get("/v1/contacts").status_code == 200
        time.sleep(0.6)
        assert api.get("/v1/contacts").status_code == 401
    cached_app.state.engine.dispose()


def test_the_cache_off_refuses_a_revoked_key_at_once(app: FastAPI, client: TestClient) -> None:
    assert app.state.settings.auth_cache_seconds == 0
    api = make_org(app, client)
    assert api.get("/v1/contacts").status_code == 200
    with unit_of_work(app.state.sessions) as session:
        revoke_api_key(session, api.key)
    assert api.get("/v1/contacts").status_code == 401
