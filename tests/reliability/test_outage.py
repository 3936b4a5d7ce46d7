"""PostgreSQL stopped and started again under load: 503 envelopes meanwhile, recovery
without a restart, and nothing half-written."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import engines_under_test
from tests.postgres import PostgresServer, postgres_server
from tests.reliability.server import Served, assert_envelope, serving
from touchline.migrate import upgrade

pytestmark = pytest.mark.skipif(
    "postgresql" not in engines_under_test(), reason="stops and starts a PostgreSQL server"
)

CLIENTS = 8


@pytest.fixture
def database() -> Iterator[PostgresServer]:
    with postgres_server() as server:
        upgrade(server.url)
        yield server


class Load:
    """Clients creating contacts in a loop, each with its own external_id, recording
    what every request was told."""

    def __init__(self, served: Served) -> None:
        self.served = served
        self.stop = threading.Event()
        self.answers: list[tuple[float, int, str, dict[str, object] | str, str | None]] = []
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(n,)) for n in range(CLIENTS)]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    def _run(self, client: int) -> None:
        with self.served.client() as http:
            n = 0
            while not self.stop.is_set():
                n += 1
                external_id = f"c{client}-{n}"
                started = time.monotonic()
                try:
                    response = http.post(
                        "/v1/contacts",
                        json={
                            "external_id": external_id,
                            "name": "Load",
                            "email": f"{external_id}@example.com",
                        },
                    )
                except httpx.TransportError as exc:
                    raise AssertionError(f"no answer: {exc!r}") from exc
                try:
                    body = response.json()
                except ValueError:
                    body = response.text
                with self._lock:
                    self.answers.append(
                        (
                            time.monotonic() - started,
                            response.status_code,
                            external_id,
                            body,
                            response.headers.get("retry-after"),
                        )
                    )
                time.sleep(0.02)

    def since(
        self, count: int
    ) -> list[tuple[float, int, str, dict[str, object] | str, str | None]]:
        with self._lock:
            return self.answers[count:]


def _wait_for(condition: object, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.1)
    return False


def test_a_stopped_database_gives_503s_and_recovers_without_restart(
    database: PostgresServer, tmp_path: Path
) -> None:
    with serving(database.url, tmp_path, "--no-worker") as served:
        with Load(served) as load:
            assert _wait_for(lambda: sum(1 for a in load.answers if a[1] == 201) >= 20, 20)
            database.stop("fast")
            stopped_at = len(load.answers)
            time.sleep(3)
            with httpx.Client(base_url=served.base, timeout=30) as http:
                ready = http.get("/readyz")
                assert http.get("/healthz").status_code == 200
            during = load.since(stopped_at)
            database.start()
            restarted_at = len(load.answers)
            assert _wait_for(lambda: any(a[1] == 201 for a in load.since(restarted_at)), 30), (
                Counter(a[1] for a in load.since(restarted_at))
            )
            with httpx.Client(base_url=served.base, timeout=30) as http:
                ready_again = http.get("/readyz")
        with served.client() as http:
            listed = {c["external_id"]: c for c in _all_contacts(http)}

    statuses = Counter(a[1] for a in during)
    print(f"while stopped: {dict(statuses)}, slowest {max(a[0] for a in during):.2f} s")
    assert during, "no request was answered while the database was stopped"
    assert ready.status_code == 503, ready.text
    assert_envelope(ready.json(), 503)
    assert ready.headers["retry-after"]
    assert ready_again.status_code == 200, ready_again.text
    # The first request after the stop may have been mid-commit; every later one is a 503.
    assert statuses[503] >= len(during) - CLIENTS, statuses
    assert set(statuses) <= {201, 503}, statuses
    for seconds, status, _, body, retry_after in during:
        assert seconds < 30
        if status == 503:
            assert_envelope(body, 503)
            assert retry_after is not None

    # Nothing half-written: every contact a 201 announced exists with all its fields,
    # and none was made for a request told 4xx.
    for _, status, external_id, _, _ in load.answers:
        if status == 201:
            assert listed[external_id]["email"] == f"{external_id}@example.com"
        elif 400 <= status < 500:
            assert external_id not in listed
    assert all(c["name"] == "Load" and c["email"] for c in listed.values())


def _all_contacts(http: httpx.Client) -> list[dict[str, object]]:
    contacts: list[dict[str, object]] = []
    while True:
        page = http.get("/v1/contacts", params={"limit": 500, "offset": len(contacts)}).json()
        contacts.extend(page["data"])
        if len(contacts) >= page["total"]:
            return contacts


def test_list_contact_sequences_answers_503_while_stopped_and_recovers(
    database: PostgresServer, tmp_path: Path
) -> None:
    # The endpoint reads from its own async connections on the event loop, beside the
    # pool the other routes use: they must fail and come back the same way, and the
    # loop must stay free to answer everything else meanwhile.
    with serving(database.url, tmp_path, "--no-worker") as served, served.client() as http:
        contact_id = http.post("/v1/contacts", json={"name": "Ann", "email": "ann@example.com"})
        contact_id = contact_id.json()["data"]["id"]
        path = f"/v1/contacts/{contact_id}/sequences"
        for _ in range(3):
            assert http.post(path, json={}).json() == {"data": [], "total": 0}
        database.stop("fast")
        during: list[tuple[float, httpx.Response]] = []
        for _ in range(4):
            started = time.monotonic()
            response = http.post(path, json={})
            during.append((time.monotonic() - started, response))
        health_started = time.monotonic()
        assert http.get("/healthz").status_code == 200
        health_seconds = time.monotonic() - health_started
        database.start()
        recovered = _wait_for(lambda: http.post(path, json={}).status_code == 200, 30)

    for seconds, response in during:
        assert response.status_code == 503, response.text
        assert_envelope(response.json(), 503)
        assert response.headers["retry-after"]
        assert seconds < 30
    print(f"while stopped: {[round(s, 2) for s, _ in during]} s")
    assert health_seconds < 1
    assert recovered
