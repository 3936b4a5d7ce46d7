from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import update

from tests.console.conftest import Console, csrf_of, sign_in
from tests.helpers import Api
from touchline.db import unit_of_work
from touchline.models import ApiKey


def test_pages_need_a_session(client: TestClient) -> None:
    answer = client.get("/app/sequences", follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/app/sign-in"
    partial = client.get("/app/sequences", headers={"HX-Request": "true"})
    assert partial.status_code == 401
    assert partial.headers["HX-Redirect"] == "/app/sign-in"


def test_a_wrong_key_is_refused_with_a_clear_error(app: FastAPI, api: Api) -> None:
    with TestClient(app) as client:
        answer = sign_in(client, "tl_not-a-key")
        assert answer.status_code == 401
        assert "Unknown or revoked API key" in answer.text
        assert "touchline_console" not in answer.cookies


def test_the_session_cookie_is_http_only_strict_and_holds_no_key(app: FastAPI, api: Api) -> None:
    with TestClient(app) as client:
        answer = sign_in(client, api.key)
        cookie = answer.headers["set-cookie"]
        assert "HttpOnly" in cookie
        assert "SameSite=strict" in cookie or "SameSite=Strict" in cookie
        assert api.key not in cookie
        page = client.get("/app/sequences")
        assert page.status_code == 200
        assert api.key not in page.text


def test_sign_in_without_the_form_token_is_refused(app: FastAPI, api: Api) -> None:
    with TestClient(app) as client:
        answer = client.post("/app/sign-in", data={"api_key": api.key}, follow_redirects=False)
        assert answer.status_code == 403
        assert "touchline_console=" not in answer.headers.get("set-cookie", "")


def test_a_post_without_the_csrf_token_is_403(console: Console) -> None:
    answer = console.client.post("/app/sequences", data={"title": "Sneaky"})
    assert answer.status_code == 403
    assert "CSRF" in answer.text
    stale = console.client.post("/app/sequences", data={"title": "Sneaky", "csrf_token": "x"})
    assert stale.status_code == 403
    assert "Sneaky" not in console.get("/app/sequences").text


def test_a_revoked_key_ends_its_sessions(app: FastAPI, console: Console, api: Api) -> None:
    assert console.get("/app/sequences").status_code == 200
    with unit_of_work(app.state.sessions) as session:
        session.execute(update(ApiKey).values(revoked_at=ApiKey.created_at))
    answer = console.get("/app/sequences", follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/app/sign-in"


def test_a_forged_or_foreign_cookie_is_not_a_session(app: FastAPI, api: Api) -> None:
    with TestClient(app) as client:
        client.cookies.set("touchline_console", "eyJrIjoi.forged.value", path="/app")
        answer = client.get("/app/sequences", follow_redirects=False)
        assert answer.status_code == 303


def test_sign_out_ends_the_session(console: Console) -> None:
    answer = console.post("/app/sign-out", follow_redirects=False)
    assert answer.status_code == 303
    assert console.get("/app/sequences", follow_redirects=False).status_code == 303


def test_create_a_sequence_and_see_field_errors(console: Console, api: Api) -> None:
    refused = console.post("/app/sequences", {"title": "x" * 301})
    assert refused.status_code == 422
    assert 'id="title-error"' in refused.text
    assert api.get("/v1/sequences").json()["total"] == 0
    made = console.post("/app/sequences", {"title": "Welcome"}, follow_redirects=False)
    assert made.status_code == 303
    listed = console.get("/app/sequences")
    assert "Welcome" in listed.text
    assert csrf_of(listed.text) == console.csrf


def test_another_organizations_sequence_is_a_404(console: Console, other_api: Api) -> None:
    theirs = other_api.post("/v1/sequences", json={"title": "Theirs"}).json()["data"]
    answer = console.get(f"/app/sequences/{theirs['id']}")
    assert answer.status_code == 404
    assert "text/html" in answer.headers["content-type"]


def test_the_console_can_be_turned_off(settings: object) -> None:
    from touchline.app import create_app
    from touchline.config import Settings

    assert isinstance(settings, Settings)
    app = create_app(settings.model_copy(update={"console": False}))
    with TestClient(app) as client:
        assert client.get("/app/sign-in").status_code == 404
        assert client.get("/app/static/console.css").status_code == 404
    app.state.engine.dispose()
