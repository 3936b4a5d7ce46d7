"""The coordinator's day in a real browser: build a sequence, enroll a CSV, find a contact."""

from __future__ import annotations

import json
import re
import subprocess

import httpx
from playwright.sync_api import Page, expect

from tests.browser.conftest import shoot, sign_in
from tests.reliability.server import TOUCHLINE, Served, environment

CSV = b"""phone,name,timezone,plan
+14155550131,Ann Lee,America/New_York,gold
+14155550132,Ben Ode,Europe/Paris,silver
+14155550133,Chloe Kim,,bronze
"""


def _channel(served: Served) -> str:
    with served.client() as api:
        made = api.post(
            "/v1/channels", json={"name": "Front desk", "type": "sms", "address": "+14155550100"}
        )
        assert made.status_code == 201, made.text
        return str(made.json()["data"]["id"])


def _add_step(page: Page, title: str, body: str, days: str) -> None:
    page.locator("#step-title").fill(title)
    page.locator("#step-body").fill(body)
    page.locator("#step-days").fill(days)
    page.get_by_role("button", name="Add step").click()
    expect(page.get_by_role("status").or_(page.locator(".notice.good"))).to_contain_text(
        "Step added"
    )


def test_build_a_sequence_enroll_a_csv_and_follow_a_contact(page: Page, served: Served) -> None:
    channel = _channel(served)
    sign_in(page, served.key)

    page.get_by_label("Title", exact=True).fill("Onboarding")
    page.get_by_role("button", name="Create sequence").click()
    expect(page).to_have_url(re.compile(r"/app/sequences/[0-9a-f-]{36}$"))
    sequence_id = page.url.rsplit("/", 1)[1]
    page.get_by_label("Default channel").select_option(channel)
    page.get_by_role("button", name="Save settings").click()
    # A day's wait before the first message: the contacts are still waiting in it when
    # the contact page is opened, with the second step next.
    _add_step(page, "Welcome", "Hi {{first_name}}, welcome aboard!", "1")
    _add_step(page, "Check in", "How is it going, {{first_name}}?", "2")
    page.get_by_role("button", name="Activate").click()
    expect(page.locator("h1 .badge").first).to_have_text("active")
    expect(page.get_by_role("cell", name="Welcome", exact=True)).to_be_visible()
    shoot(page, "sequence")

    page.get_by_role("link", name="Enroll").click()
    page.get_by_label("Sequence", exact=True).select_option(sequence_id)
    page.get_by_label("or upload a CSV file").set_input_files(
        {"name": "contacts.csv", "mimeType": "text/csv", "buffer": CSV}
    )
    shoot(page, "enroll")
    page.get_by_role("button", name="Add to sequence").click()
    expect(page).to_have_url(re.compile(r"/app/jobs/[0-9a-f-]{36}$"))
    # The worker thread takes the job; the progress section follows it without a reload.
    expect(page.locator("#progress .badge")).to_have_text("done")
    expect(page.locator("#progress")).to_contain_text("3 of 3 processed")
    expect(page.locator("#outcomes").get_by_text("added: 3")).to_be_visible()
    shoot(page, "job")
    page.get_by_role("link", name="Sequences").click()
    expect(page.get_by_role("link", name="Onboarding")).to_be_visible()
    shoot(page, "sequences")

    page.get_by_role("link", name="Contacts").click()
    page.get_by_label("Name, phone or email").fill("Ann")
    page.get_by_role("button", name="Search").click()
    shoot(page, "contacts")
    page.get_by_role("link", name="Ann Lee").click()
    card = page.locator("section.card", has_text="Onboarding")
    expect(card.locator("dd").filter(has_text="Welcome")).to_contain_text("scheduled")
    # Enrolled now, sent a day later at the earliest: the local time is New York's.
    expect(card).to_contain_text(re.compile(r"E[SD]T"))
    expect(card.locator("dd").filter(has_text="Check in")).to_have_count(1)
    shoot(page, "contact")
    page.set_viewport_size({"width": 375, "height": 800})
    expect(card).to_be_visible()
    shoot(page, "contact-375px")


def test_another_organizations_page_is_a_404(page: Page, served: Served, database_url: str) -> None:
    made = subprocess.run(
        [TOUCHLINE, "org", "create", "Elsewhere", "--json"],
        env=environment(database_url, 0),
        capture_output=True,
        text=True,
        check=True,
    )
    other_key = json.loads(made.stdout)["api_key"]
    theirs = httpx.post(
        f"{served.base}/v1/sequences",
        headers={"X-WHIPPY-KEY": other_key},
        json={"title": "Not yours"},
    )
    assert theirs.status_code == 201, theirs.text
    sign_in(page, served.key)
    answer = page.goto(f"/app/sequences/{theirs.json()['data']['id']}")
    assert answer is not None
    assert answer.status == 404
    expect(page.get_by_role("alert")).to_be_visible()
    expect(page.get_by_text("Not yours")).to_have_count(0)
