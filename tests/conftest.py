"""Fixtures: every API test runs once on SQLite and once on a real PostgreSQL server.

The schema is built by running the migrations once per engine; after each test every
table is emptied, so tests commit for real (workers and several processes can see their
data) and still start from nothing.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import text

from tests.helpers import Api, make_org
from tests.postgres import throwaway_postgres
from touchline.app import create_app
from touchline.config import Settings
from touchline.db import is_sqlite
from touchline.migrate import upgrade
from touchline.models import Base
from touchline.worker.loop import Worker

ENGINES = [e for e in os.environ.get("TOUCHLINE_TEST_ENGINES", "sqlite,postgresql").split(",") if e]


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    given = os.environ.get("TOUCHLINE_TEST_POSTGRES_URL")
    if given:
        yield given
        return
    with throwaway_postgres() as url:
        yield url


@pytest.fixture(scope="session", params=ENGINES)
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('sqlite')}/touchline.db"
    else:
        url = request.getfixturevalue("postgres_url")
    upgrade(url)
    return url


@pytest.fixture(scope="session")
def settings(database_url: str) -> Settings:
    return Settings(
        database_url=database_url,
        public_url="http://touchline.test",
        worker_batch_size=50,
        max_body_bytes=4 * 1024 * 1024,
        # Tests revoke keys and expect the next request refused (see test_auth_cache.py).
        auth_cache_seconds=0,
        # Fake providers and receivers listen on 127.0.0.1; test_outbound_policy.py
        # tests with the policy on.
        allow_private_networks=True,
    )


@pytest.fixture(scope="session")
def app(settings: Settings) -> Iterator[FastAPI]:
    application = create_app(settings)
    yield application
    application.state.engine.dispose()


@pytest.fixture(autouse=True)
def _empty_tables(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "app" not in request.fixturenames:
        return
    application: FastAPI = request.getfixturevalue("app")
    engine = application.state.engine
    tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
    with engine.begin() as conn:
        if is_sqlite(engine):
            for name in tables:
                conn.execute(text(f"DELETE FROM {name}"))
        else:
            conn.execute(text(f"TRUNCATE {', '.join(tables)} CASCADE"))


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


@pytest.fixture
def api(app: FastAPI, client: TestClient) -> Api:
    return make_org(app, client)


@pytest.fixture
def other_api(app: FastAPI, client: TestClient) -> Api:
    """A second organization, for isolation tests."""
    return make_org(app, client, "Other")


@pytest.fixture
def worker(app: FastAPI, settings: Settings) -> Iterator[Worker]:
    w = Worker(app.state.sessions, settings)
    yield w
    w.close()
