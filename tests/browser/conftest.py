"""The console in a real browser: the system's Chromium driven by Playwright, against a
real `touchline serve` (API, console and worker thread) on SQLite.

Screenshots of the pages the tests pass through are written to the folder named by
TOUCHLINE_CONSOLE_SCREENSHOTS when it is set (docs/console/ holds the published ones).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.reliability.server import Served, serving
from touchline.migrate import upgrade

SCREENSHOTS = os.environ.get("TOUCHLINE_CONSOLE_SCREENSHOTS")
# A page that has not settled in this long has failed; the default 30 s hides stalls.
expect.set_options(timeout=10_000)


def chromium_path() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    assert found, "Chromium is missing: scripts/ensure-chromium installs it"
    return found


# Per module, not per session: Playwright's sync API keeps an event loop running in the
# main thread while it is open, and the tests after these call asyncio.run().
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        # Root (CI's containers) cannot use Chromium's sandbox.
        args = ["--no-sandbox"] if os.geteuid() == 0 else []
        launched = playwright.chromium.launch(executable_path=chromium_path(), args=args)
        yield launched
        launched.close()


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('console')}/touchline.db"
    upgrade(url)
    return url


@pytest.fixture(scope="session")
def served(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serving(database_url, tmp_path_factory.mktemp("served")) as running:
        yield running


@pytest.fixture
def page(browser: Browser, served: Served) -> Iterator[Page]:
    context = browser.new_context(base_url=served.base, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(10_000)
    opened = context.new_page()
    yield opened
    context.close()


def shoot(page: Page, name: str) -> None:
    """Keep a picture of the page for docs/console.md, when asked to."""
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SCREENSHOTS) / f"{name}.png"), full_page=True)


def sign_in(page: Page, key: str) -> None:
    page.goto("/app/sign-in")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url("/app/sequences")
