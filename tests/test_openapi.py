"""The published OpenAPI schema: complete, documented, and true to what the API answers.

The fuzz test lets schemathesis generate requests from `/openapi.json`, valid ones and
deliberately invalid ones, sends them with a real key and checks every answer: never a 5xx
(SPEC §3: a 5xx is a bug, never an answer to bad input), only documented status codes, and
bodies that match the documented schema. Path ids point at real rows of the caller's
organization in part of the valid requests, so those reach past the 404s.

`TOUCHLINE_TEST_FUZZ_EXAMPLES=200` runs a much deeper fuzz than the default.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import (
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.generation import GenerationMode

from tests.helpers import Api, enroll, make_sequence
from touchline.app import create_app
from touchline.config import Settings
from touchline.worker.loop import Worker

T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
HTTP_METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE"}
# FastAPI's own documentation pages, which are not part of the API.
DOC_PATHS = {"/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"}
# The operator console's HTML pages (docs/console.md): for browsers, not API clients.
CONSOLE = "/app"
# Examples per operation and generation mode: a fast pass over every operation by default.
MAX_EXAMPLES = int(os.environ.get("TOUCHLINE_TEST_FUZZ_EXAMPLES", "6"))
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]


def _served_routes(routes: list[Any], prefix: str = "") -> set[tuple[str, str]]:
    """(method, path) of every route the application serves, included routers unfolded."""
    found: set[tuple[str, str]] = set()
    for route in routes:
        # FastAPI keeps an included router as one entry pointing at it, with its prefix,
        # rather than copying its routes into the app.
        included = getattr(route, "original_router", None)
        if included is not None:
            context_prefix = getattr(getattr(route, "include_context", None), "prefix", "")
            found |= _served_routes(list(included.routes), prefix + context_prefix)
            continue
        path = prefix + str(getattr(route, "path", ""))
        for method in getattr(route, "methods", None) or ():
            console = path == CONSOLE or path.startswith(CONSOLE + "/")
            if method in HTTP_METHODS and path not in DOC_PATHS and not console:
                found.add((method, path))
    return found


def _documented(app: FastAPI) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (method.upper(), path): operation
        for path, operations in app.openapi()["paths"].items()
        for method, operation in operations.items()
    }


def test_every_route_is_documented(app: FastAPI) -> None:
    served = _served_routes(list(app.routes))
    assert ("POST", "/v1/contacts/{contact_id}/sequences") in served
    assert ("GET", "/healthz") in served
    assert sorted(served - set(_documented(app))) == []
    assert sorted(set(_documented(app)) - served) == []


def test_every_operation_has_a_summary_and_a_success_schema(app: FastAPI) -> None:
    problems = []
    for (method, path), operation in sorted(_documented(app).items()):
        label = f"{method} {path}"
        if not str(operation.get("summary", "")).strip():
            problems.append(f"{label}: no summary")
        responses: dict[str, Any] = operation["responses"]
        if not any(code[0] in "23" for code in responses):
            problems.append(f"{label}: no success response")
        for code, response in responses.items():
            # 204 and redirects carry no body; every other success says what its body is.
            if code[0] != "2" or code == "204":
                continue
            content = response.get("content", {})
            if not content:
                problems.append(f"{label}: {code} documents no body")
            for media_type, media in content.items():
                if "schema" not in media:
                    problems.append(f"{label}: {code} {media_type} has no schema")
    assert problems == []


def test_every_operation_has_a_summary_and_a_description(app: FastAPI) -> None:
    # The summary names the operation; the description says what a client needs beyond it
    # (order, filters, what a 404/409/422 means here): a new route must have both.
    missing = [
        f"{method} {path}: no {field}"
        for (method, path), operation in sorted(_documented(app).items())
        for field in ("summary", "description")
        if not str(operation.get(field) or "").strip()
    ]
    assert missing == []


def test_docs_page_and_schema_are_served(client: TestClient) -> None:
    docs = client.get("/docs")
    assert docs.status_code == 200
    assert docs.headers["content-type"].startswith("text/html")
    assert "/openapi.json" in docs.text
    schema = client.get("/openapi.json")
    assert schema.status_code == 200
    assert schema.json()["info"]["title"] == "Touchline"
    assert "/v1/contacts/{contact_id}/sequences" in schema.json()["paths"]


# One fuzz test per operation, named after it; the operations are the code's, read once here.
OPERATIONS = sorted(_documented(create_app(Settings(database_url="sqlite://"))))


@pytest.fixture(scope="module", autouse=True)
def _hypothesis_files_in_tmp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    # Even with database=None, Hypothesis caches character tables and source constants in
    # ./.hypothesis; keep the fuzz from leaving anything in the working tree.
    set_hypothesis_home_dir(tmp_path_factory.mktemp("hypothesis"))
    yield
    set_hypothesis_home_dir(None)


@pytest.fixture(scope="module")
def fuzz_schema(app: FastAPI) -> Any:
    return schemathesis.openapi.from_asgi("/openapi.json", app)


SEEDED_IDS = {
    "sequence_id",
    "step_id",
    "channel_id",
    "contact_id",
    "job_id",
    "run_id",
    "webhook_id",
}


def _seed(api: Api, worker: Worker, names: set[str]) -> dict[str, str]:
    """Real ids of the caller's organization for the path parameters named `names`."""
    if not names & SEEDED_IDS:
        return {}
    sequence = make_sequence(api)
    job = enroll(api, worker, sequence["id"], [{"phone": "+14155550111", "name": "Ann Lee"}], T0)
    contact_id = job["results"][0]["contact_id"]
    runs = api.get(f"/v1/sequences/{sequence['id']}/sequence_runs").json()["data"]
    # Subscribed after the worker's pass, so nothing is sent anywhere; the contact change
    # leaves a queued delivery to list.
    webhook = api.post("/v1/webhooks", json={"url": "https://hooks.example.com/touchline"})
    assert webhook.status_code == 201, webhook.text
    renamed = api.put(f"/v1/contacts/{contact_id}", json={"name": "Ann Lee-Smith"})
    assert renamed.status_code == 200, renamed.text
    ids = {
        "sequence_id": sequence["id"],
        "step_id": sequence["steps"][1]["id"],
        "channel_id": sequence["default_channel_id"],
        "contact_id": contact_id,
        "job_id": job["id"],
        "run_id": runs[0]["id"],
        "webhook_id": webhook.json()["data"]["id"],
    }
    return {name: value for name, value in ids.items() if name in names}


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_fuzz(fuzz_schema: Any, api: Api, worker: Worker, method: str, path: str) -> None:
    operation = fuzz_schema[path][method]
    real_ids = _seed(api, worker, {p.name for p in operation.path_parameters})
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        strategy = operation.as_strategy(mode)
        if real_ids and mode is GenerationMode.POSITIVE:
            strategy = st.one_of(strategy, operation.as_strategy(mode, path_parameters=real_ids))

        @settings(
            max_examples=MAX_EXAMPLES,
            derandomize=True,
            database=None,
            deadline=None,
            phases=[Phase.explicit, Phase.generate, Phase.shrink],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=strategy)
        def exchange(case: Any) -> None:
            response = case.call(headers=api.headers)
            case.validate_response(response, checks=CHECKS)

        try:
            exchange()
        except Unsatisfiable:
            # Every input of this operation is valid (no parameters, or free-form strings
            # only): there is no invalid request to send.
            if mode is GenerationMode.POSITIVE:
                raise
