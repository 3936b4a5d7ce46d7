"""The `touchline` command (SPEC §6), run as the installed program in separate processes.

Each command runs against a database of its own (a temporary SQLite file, or a new database
on the session's PostgreSQL server) and its effects are checked through the API.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import inspect

from tests.fakes import silent_gateway
from tests.helpers import (
    Api,
    create_postgres_database,
    drop_postgres_database,
    engines_under_test,
    make_sequence,
)
from touchline.app import create_app
from touchline.auth.service import create_api_key, create_organization
from touchline.config import Settings
from touchline.db import make_engine, make_sessionmaker, unit_of_work
from touchline.demo import DEMO_KEY
from touchline.migrate import upgrade
from touchline.models import Base
from touchline.serving import connection_budget_warning

# The console script installed next to this interpreter: what users run.
TOUCHLINE = Path(sys.executable).with_name("touchline")
# The commands' environment: the fake providers and receivers listen on 127.0.0.1.
LOCAL = {"TOUCHLINE_ALLOW_PRIVATE_NETWORKS": "true"}


def touchline(
    database_url: str, *args: str, cwd: Path, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    # Wide enough that usage errors are not wrapped mid-message.
    env = {**os.environ, "TOUCHLINE_DATABASE_URL": database_url, "COLUMNS": "200", **LOCAL}
    return subprocess.run(
        [str(TOUCHLINE), *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def succeeded(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout


@contextmanager
def new_database(engine_name: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    if engine_name == "sqlite":
        yield f"sqlite:///{tmp_path}/touchline-{uuid.uuid4().hex[:8]}.db"
        return
    url = create_postgres_database(request.getfixturevalue("postgres_url"))
    try:
        yield url
    finally:
        drop_postgres_database(url)


@pytest.fixture(params=engines_under_test())
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database with no tables at all."""
    with new_database(request.param, tmp_path, request) as url:
        yield url


@pytest.fixture(scope="module", params=engines_under_test())
def database(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A migrated database the tests of this module share; each makes its own organization."""
    with new_database(request.param, tmp_path_factory.mktemp("cli"), request) as url:
        upgrade(url)
        yield url


@pytest.fixture(scope="module")
def sqlite_database(tmp_path_factory: pytest.TempPathFactory) -> str:
    """For what does not depend on the engine: output formats, refused arguments."""
    url = f"sqlite:///{tmp_path_factory.mktemp('cli-sqlite')}/touchline.db"
    upgrade(url)
    return url


@contextmanager
def api_client(database_url: str) -> Iterator[TestClient]:
    """The API over the same database the commands wrote to."""
    with TestClient(
        create_app(
            Settings(database_url=database_url, auth_cache_seconds=0, allow_private_networks=True)
        )
    ) as client:
        yield client


def answers(client: TestClient, key: str) -> int:
    response: httpx.Response = client.get("/v1/sequences", headers={"X-WHIPPY-KEY": key})
    return response.status_code


def new_org(database_url: str) -> dict[str, str]:
    """An organization and key made in-process, for tests whose subject is another command."""
    engine = make_engine(database_url)
    try:
        with unit_of_work(make_sessionmaker(engine)) as session:
            org = create_organization(session, "Acme")
            key = create_api_key(session, org.id)
    finally:
        engine.dispose()
    return {"organization_id": str(org.id), "api_key": key}


# --- db upgrade ---------------------------------------------------------------------------


def test_db_upgrade_builds_the_schema(empty_database: str, tmp_path: Path) -> None:
    assert "latest schema" in succeeded(touchline(empty_database, "db", "upgrade", cwd=tmp_path))
    engine = make_engine(empty_database)
    try:
        assert set(inspect(engine).get_table_names()) >= set(Base.metadata.tables)
    finally:
        engine.dispose()


# --- org and key --------------------------------------------------------------------------


def test_org_create_json_prints_one_object_with_a_working_key(
    database: str, tmp_path: Path
) -> None:
    out = succeeded(touchline(database, "org", "create", "Acme", "--json", cwd=tmp_path))
    created = json.loads(out)
    assert set(created) == {"organization_id", "api_key"}
    uuid.UUID(created["organization_id"])
    assert out.strip().count("\n") == 0
    with api_client(database) as client:
        assert answers(client, created["api_key"]) == 200
        assert answers(client, created["api_key"] + "x") == 401


def test_org_create_without_json_prints_id_and_key(sqlite_database: str, tmp_path: Path) -> None:
    out = succeeded(touchline(sqlite_database, "org", "create", "Beta Co", cwd=tmp_path))
    fields = dict(re.findall(r"^(organization_id|api_key): (\S+)$", out, re.MULTILINE))
    uuid.UUID(fields["organization_id"])
    with api_client(sqlite_database) as client:
        assert answers(client, fields["api_key"]) == 200


def test_key_create_adds_a_key_and_key_revoke_refuses_it(database: str, tmp_path: Path) -> None:
    org = new_org(database)
    out = succeeded(
        touchline(
            database, "key", "create", "--org", org["organization_id"], "--json", cwd=tmp_path
        )
    )
    added = json.loads(out)
    assert set(added) == {"organization_id", "api_key"}
    assert added["organization_id"] == org["organization_id"]
    assert added["api_key"] != org["api_key"]
    first, second = ({"X-WHIPPY-KEY": k} for k in (org["api_key"], added["api_key"]))
    with api_client(database) as client:
        # Both keys act for the same organization: what one creates, the other sees.
        made = client.post(
            "/v1/channels",
            headers=first,
            json={"name": "SMS", "type": "sms", "address": "+14155550100"},
        )
        assert made.status_code == 201, made.text
        seen = client.get(f"/v1/channels/{made.json()['data']['id']}", headers=second)
        assert seen.status_code == 200, seen.text

        prefix = added["api_key"][:12]
        revoked = succeeded(touchline(database, "key", "revoke", prefix, cwd=tmp_path))
        assert "revoked 1" in revoked
        assert answers(client, added["api_key"]) == 401
        assert answers(client, org["api_key"]) == 200
    again = touchline(database, "key", "revoke", prefix, cwd=tmp_path)
    assert again.returncode != 0
    assert "no live key" in again.stderr


def test_key_create_refuses_an_unknown_organization(database: str, tmp_path: Path) -> None:
    unknown = touchline(database, "key", "create", "--org", str(uuid.uuid4()), cwd=tmp_path)
    assert unknown.returncode != 0
    assert "no organization" in unknown.stderr
    assert unknown.stdout == ""


def test_malformed_arguments_are_refused(sqlite_database: str, tmp_path: Path) -> None:
    for args, message in [
        (["key", "create", "--org", "acme"], "not a UUID"),
        (["key", "revoke", "tl_ab"], "at least the first 12 characters"),
        (["worker", "--now", "2026-03-02T15:00:00Z"], "--now only goes with --once"),
        (["worker", "--once", "--now", "soon"], "ISO 8601"),
    ]:
        result = touchline(sqlite_database, *args, cwd=tmp_path)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert message in result.stderr, (args, result.stderr)
        assert result.stdout == ""


# --- worker -------------------------------------------------------------------------------


def test_worker_once_processes_jobs_and_due_steps_as_of_now(database: str, tmp_path: Path) -> None:
    org = new_org(database)
    with api_client(database) as client:
        api = Api(client, org["api_key"], uuid.UUID(org["organization_id"]))
        sequence = make_sequence(api)
        accepted = api.post(
            f"/v1/sequences/{sequence['id']}/contacts",
            json={"to": [{"phone": "+14155550111", "name": "Ann Lee"}]},
        )
        assert accepted.status_code == 202, accepted.text
        job_id = accepted.json()["data"]["job_id"]
        assert api.get(f"/v1/jobs/{job_id}").json()["data"]["status"] == "queued"

        out = succeeded(
            touchline(database, "worker", "--once", "--now", "2026-03-02T15:00:00Z", cwd=tmp_path)
        )
        summary = dict(re.findall(r"(\w+): (\d+)", out))
        assert summary["jobs"] == "1", out
        assert summary["sent"] == "1", out
        assert summary["failed"] == "0", out

        job = api.get(f"/v1/jobs/{job_id}").json()["data"]
        assert job["status"] == "done"
        assert [r["outcome"] for r in job["results"]] == ["added"]
        contact_id = job["results"][0]["contact_id"]
        item = api.post(f"/v1/contacts/{contact_id}/sequences").json()["data"][0]
        # --now is the engine's clock: the first step went out then, the next is due 2 days on.
        assert item["last_completed_step"]["id"] == sequence["steps"][0]["id"]
        assert item["last_completed_step"]["completed_at"] == "2026-03-02T15:00:00Z"
        assert item["current_step"]["id"] == sequence["steps"][1]["id"]
        assert item["current_step"]["scheduled_at"] == "2026-03-04T15:00:00Z"


# --- demo ---------------------------------------------------------------------------------


def _demo(database_url: str, cwd: Path) -> tuple[str, str, str]:
    """Run `touchline demo`; returns its first line, the key and the contact it points at."""
    out = succeeded(touchline(database_url, "demo", cwd=cwd))
    key = re.search(r"^API key: (\S+)$", out, re.MULTILINE)
    curl = re.search(
        r"curl .*-X POST .*-H 'X-WHIPPY-KEY: (\S+)' \S+/v1/contacts/([0-9a-f-]{36})/sequences",
        out,
    )
    assert key is not None, out
    assert curl is not None, out
    assert curl.group(1) == key.group(1)
    return out.splitlines()[0], key.group(1), curl.group(2)


def _demo_state(client: TestClient, key: str) -> dict[str, Any]:
    headers = {"X-WHIPPY-KEY": key}
    contacts = client.get("/v1/contacts", params={"limit": 500}, headers=headers).json()
    sequences = client.get("/v1/sequences", params={"limit": 500}, headers=headers).json()
    channels = client.get("/v1/channels", headers=headers).json()
    memberships = {}
    for contact in contacts["data"]:
        listed = client.post(f"/v1/contacts/{contact['id']}/sequences", headers=headers)
        assert listed.status_code == 200, listed.text
        memberships[contact["id"]] = listed.json()
    return {
        "contacts": contacts["total"],
        "channels": channels["total"],
        "sequences": sequences["data"],
        "memberships": memberships,
    }


def test_demo_creates_contacts_in_every_state_once(empty_database: str, tmp_path: Path) -> None:
    first_line, key, featured = _demo(empty_database, tmp_path)
    assert "created" in first_line
    # Known in advance, so docs and scripts can use it.
    assert key == DEMO_KEY
    with api_client(empty_database) as client:
        state = _demo_state(client, key)
    assert state["channels"] >= 1
    by_status: dict[str, list[dict[str, Any]]] = {}
    for sequence in state["sequences"]:
        by_status.setdefault(sequence["status"], []).append(sequence)
    assert any(len(s["steps"]) == 3 for s in by_status.get("active", [])), state["sequences"]
    assert by_status.get("draft"), state["sequences"]
    three_step = next(s for s in by_status["active"] if len(s["steps"]) == 3)

    items = [
        item
        for listed in state["memberships"].values()
        for item in listed["data"]
        if item["sequence"]["id"] == three_step["id"]
    ]

    def position(step: dict[str, Any] | None) -> int | None:
        return None if step is None else int(step["position"])

    finished = [i for i in items if i["sequence_run"]["status"] == "finished"]
    active = [i for i in items if i["sequence_run"]["status"] == "active"]
    assert any(i["contact_status"] == "finished" for i in finished), items
    never_started = [
        i
        for i in active
        if i["contact_status"] == "pending"
        and position(i["current_step"]) == 0
        and i["last_completed_step"] is None
    ]
    midway = [
        i
        for i in active
        if position(i["last_completed_step"]) == 0
        and position(i["current_step"]) == 1
        and position(i["next_step"]) == 2
    ]
    at_last_step = [
        i
        for i in active
        if position(i["last_completed_step"]) == 1
        and position(i["current_step"]) == 2
        and i["next_step"] is None
    ]
    assert never_started, items
    assert midway, items
    assert at_last_step, items
    in_two = [cid for cid, listed in state["memberships"].items() if listed["total"] >= 2]
    assert in_two, state["memberships"]
    # The contact the printed curl line asks about is the one in two sequences.
    assert featured in in_two

    first_line, again_key, again_featured = _demo(empty_database, tmp_path)
    assert "already there" in first_line
    assert (again_key, again_featured) == (key, featured)
    with api_client(empty_database) as client:
        assert _demo_state(client, key) == state

    # The URLs shown follow the address `serve` is given.
    shown = succeeded(touchline(empty_database, "demo", "--port", "9123", cwd=tmp_path))
    assert f"http://127.0.0.1:9123/v1/contacts/{featured}/sequences" in shown
    assert "http://127.0.0.1:9123/docs" in shown


# --- serve --------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running(args: list[str], database_url: str, cwd: Path) -> Iterator[subprocess.Popen[str]]:
    """A long-running command; stopped with SIGTERM (as a service manager would) at the end."""
    log = (cwd / f"{args[0]}.log").open("w")
    env = {**os.environ, "TOUCHLINE_DATABASE_URL": database_url, **LOCAL}
    process = subprocess.Popen(
        [str(TOUCHLINE), *args], env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, text=True
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log.close()


def _wait_until_healthy(base: str, process: subprocess.Popen[str], log: Path) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        assert process.poll() is None, f"serve exited early:\n{log.read_text()}"
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    pytest.fail(f"serve did not answer /healthz within 15 s:\n{log.read_text()}")


def test_serve_answers_over_http_and_stops_on_sigterm(tmp_path: Path) -> None:
    # A fresh SQLite file: serve applies the migrations itself.
    url = f"sqlite:///{tmp_path}/touchline.db"
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    args = ["serve", "--host", "127.0.0.1", "--port", str(port), "--no-worker"]
    with running(args, url, tmp_path) as server:
        _wait_until_healthy(base, server, tmp_path / "serve.log")
        # Another process on the same file while the server runs.
        org = json.loads(succeeded(touchline(url, "org", "create", "Acme", "--json", cwd=tmp_path)))
        headers = {"X-WHIPPY-KEY": org["api_key"]}
        with httpx.Client(base_url=base, headers=headers, timeout=10) as http:
            contact = http.post("/v1/contacts", json={"phone": "+14155550123", "name": "Ann Lee"})
            assert contact.status_code == 201, contact.text
            contact_id = contact.json()["data"]["id"]
            listed = http.post(f"/v1/contacts/{contact_id}/sequences")
            assert listed.status_code == 200, listed.text
            assert listed.json() == {"data": [], "total": 0}
            refused = httpx.post(f"{base}/v1/contacts/{contact_id}/sequences", timeout=10)
            assert refused.status_code == 401
            assert httpx.get(f"{base}/readyz", timeout=10).status_code == 200
        server.send_signal(signal.SIGTERM)
        # Uvicorn shuts down cleanly, then re-raises the signal so a service manager sees
        # how it ended.
        assert server.wait(timeout=15) in (0, -signal.SIGTERM)
        assert "Application shutdown complete" in (tmp_path / "serve.log").read_text()


def test_serve_with_two_processes_answers_sends_and_stops(
    sqlite_database: str, tmp_path: Path
) -> None:
    # SQLite: three processes writing one file is the harder case for the database.
    database = sqlite_database
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    org = new_org(database)
    with api_client(database) as client:
        api = Api(client, org["api_key"], uuid.UUID(org["organization_id"]))
        sequence = make_sequence(api)
        args = ["serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "2"]
        with running(args, database, tmp_path) as server:
            log = tmp_path / "serve.log"
            _wait_until_healthy(base, server, log)
            headers = {"X-WHIPPY-KEY": org["api_key"]}
            with httpx.Client(base_url=base, headers=headers, timeout=30) as http:
                accepted = http.post(
                    f"/v1/sequences/{sequence['id']}/contacts",
                    json={"to": [{"phone": "+14155550111"}]},
                )
                assert accepted.status_code == 202, accepted.text
                with ThreadPoolExecutor(16) as pool:
                    statuses = list(
                        pool.map(lambda _: http.get("/v1/sequences").status_code, range(64))
                    )
                # Whichever process answers a scrape counts the requests of both.
                for _ in range(4):
                    assert _sequence_lists_counted(http.get("/metrics").text) == 64
            assert statuses == [200] * 64
            # The job runs in the worker process the server started beside its two.
            job_url = f"/v1/jobs/{accepted.json()['data']['job_id']}"
            deadline = time.monotonic() + 30
            while api.get(job_url).json()["data"]["status"] != "done":
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
            children = _children(server.pid)
            commands = list(children.values())
            assert sum("spawn_main" in c for c in commands) == 2, commands
            assert sum("touchline.cli worker" in c for c in commands) == 1, commands
            # Each API process starts on its own: on a busy machine the first can have
            # answered everything above while the second is still starting.
            deadline = time.monotonic() + 30
            while len(set(re.findall(r"Started server process \[(\d+)\]", log.read_text()))) < 2:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)

            started = time.monotonic()
            server.send_signal(signal.SIGTERM)
            assert server.wait(timeout=30) in (0, -signal.SIGTERM), log.read_text()
            assert time.monotonic() - started < 15
        # Neither the API processes nor the worker outlived the server.
        ours = [pid for pid, args in children.items() if "resource_tracker" not in args]
        assert [pid for pid in ours if Path(f"/proc/{pid}").exists()] == []
        assert "finishing the current batch, then stopping" in log.read_text()


def _sequence_lists_counted(metrics: str) -> float:
    """`GET /v1/sequences` requests in `touchline_http_requests_total`, all statuses."""
    counted = 0.0
    for labels, value in re.findall(
        r"^touchline_http_requests_total\{(.*)\} (\S+)$", metrics, re.M
    ):
        if 'route="/v1/sequences"' in labels and 'method="GET"' in labels:
            counted += float(value)
    return counted


def _children(pid: int) -> dict[int, str]:
    """The processes whose parent is `pid`: their command lines by process id."""
    listed = subprocess.run(
        ["ps", "-ww", "-o", "pid=,args=", "--ppid", str(pid)],
        capture_output=True,
        text=True,
        check=False,
    )
    rows = (line.split(None, 1) for line in listed.stdout.splitlines())
    return {int(child): args for child, args in rows}


def test_serve_warns_when_its_processes_may_open_more_connections_than_allowed(
    postgres_url: str,
) -> None:
    many = Settings(database_url=postgres_url, api_threads=1000)
    warning = connection_budget_warning(many, 2, with_worker=True)
    assert warning is not None
    assert "may open up to 2040 connections" in warning  # 2 x (1000 + 10 + 8) + 4
    assert "PostgreSQL allows" in warning
    few = Settings(database_url=postgres_url, api_threads=4)
    assert connection_budget_warning(few, 2, with_worker=True) is None


def test_serve_starts_without_the_warning_when_postgresql_does_not_answer() -> None:
    with silent_gateway() as url:
        port = urlsplit(url).port
        silent = Settings(
            database_url=f"postgresql+psycopg://touchline@127.0.0.1:{port}/touchline",
            pool_timeout_seconds=1,
        )
        started = time.monotonic()
        assert connection_budget_warning(silent, 2, with_worker=True) is None
        # Bounded by the connect timeout, not by the server's silence.
        assert time.monotonic() - started < 10


def test_worker_runs_until_sigterm(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/touchline.db"
    upgrade(url)
    org = new_org(url)
    with api_client(url) as client:
        api = Api(client, org["api_key"], uuid.UUID(org["organization_id"]))
        sequence = make_sequence(api)
        accepted = api.post(
            f"/v1/sequences/{sequence['id']}/contacts", json={"to": [{"phone": "+14155550111"}]}
        )
        job_url = f"/v1/jobs/{accepted.json()['data']['job_id']}"
        with running(["worker"], url, tmp_path) as worker:
            deadline = time.monotonic() + 15
            while api.get(job_url).json()["data"]["status"] != "done":
                assert worker.poll() is None, (tmp_path / "worker.log").read_text()
                assert time.monotonic() < deadline, "the worker did not run the queued job"
                time.sleep(0.1)
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(timeout=15) == 0, (tmp_path / "worker.log").read_text()
