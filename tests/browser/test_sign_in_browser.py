from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.browser.conftest import shoot, sign_in
from tests.reliability.server import Served


def test_a_wrong_key_shows_a_clear_error(page: Page) -> None:
    page.goto("/app/sequences")
    expect(page).to_have_url("/app/sign-in")
    shoot(page, "sign-in")
    page.get_by_label("API key").fill("tl_this-is-not-a-key")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("Unknown or revoked API key")


def test_a_post_without_the_csrf_token_is_refused(page: Page, served: Served) -> None:
    sign_in(page, served.key)
    # The browser's own cookies go with it: only the token is missing.
    answer = page.request.post("/app/sequences", form={"title": "Forged"})
    assert answer.status == 403
    page.reload()
    expect(page.get_by_text("Forged")).to_have_count(0)
