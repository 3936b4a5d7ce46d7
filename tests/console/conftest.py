"""A browser's view of the console without a browser: a client with its own cookie jar,
signed in through the sign-in form, that sends the page's CSRF token with every post."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, cast

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.helpers import Api

_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(html: str) -> str:
    found = _TOKEN.search(html)
    assert found, "the page has no CSRF field"
    return found.group(1)


@dataclass
class Console:
    client: TestClient
    csrf: str

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return cast(httpx.Response, self.client.get(path, **kw))

    def post(self, path: str, data: dict[str, Any] | None = None, **kw: Any) -> httpx.Response:
        """A form post as the page sends it: with the session's CSRF token."""
        form = {"csrf_token": self.csrf, **(data or {})}
        return cast(httpx.Response, self.client.post(path, data=form, **kw))


def sign_in(client: TestClient, key: str) -> httpx.Response:
    form = client.get("/app/sign-in")
    answer = client.post(
        "/app/sign-in",
        data={"api_key": key, "csrf_token": csrf_of(form.text)},
        follow_redirects=False,
    )
    return cast(httpx.Response, answer)


@pytest.fixture
def console(app: FastAPI, api: Api) -> Iterator[Console]:
    """`api`'s organization, signed in to the console."""
    with TestClient(app) as client:
        answer = sign_in(client, api.key)
        assert answer.status_code == 303, answer.text
        page = client.get("/app/sequences")
        yield Console(client, csrf_of(page.text))
