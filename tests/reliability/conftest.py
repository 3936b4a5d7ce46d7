"""A database per engine for each reliability module, and a real server on it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import engines_under_test
from tests.postgres import postgres_server
from tests.reliability.server import Served, serving
from touchline.migrate import upgrade


@pytest.fixture(scope="module", params=engines_under_test())
def served_database(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('reliability')}/touchline.db"
        upgrade(url)
        yield url
        return
    with postgres_server() as server:
        upgrade(server.url)
        yield server.url


@pytest.fixture(scope="module")
def served(served_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    folder: Path = tmp_path_factory.mktemp("served")
    with serving(served_database, folder) as running:
        yield running
