"""Link tracking turns into redirects only the URLs whose scheme and host the step wrote:
a contact's data may fill in a path or a query, never choose where a redirect goes."""

from __future__ import annotations

import re
from typing import Any

import pytest

from touchline.messaging.links import rewrite_links
from touchline.messaging.marks import END, START
from touchline.messaging.templates import MAX_EMAIL_CHARS, render_marked

BASE = "https://t.example"
EVIL = "https://evil.example/x"


def tracked(source: str, **variables: Any) -> tuple[str, list[str]]:
    """The body as sent, with each tracked link shown as `<L:url>`, and the tracked URLs."""
    marked = render_marked(source, variables, max_chars=MAX_EMAIL_CHARS)
    body, links = rewrite_links(marked, BASE)
    for url, token in links:
        assert re.fullmatch(r"[A-Za-z0-9_-]{22}", token)
        body = body.replace(f"{BASE}/l/{token}", f"<L:{url}>", 1)
    assert f"{BASE}/l/" not in body
    return body, [url for url, _ in links]


def test_a_url_from_the_contact_stays_text_and_the_step_s_own_is_tracked() -> None:
    body, urls = tracked("Hi {{ name }} see https://clinic.example/a", name=EVIL)
    assert body == f"Hi {EVIL} see <L:https://clinic.example/a>"
    assert urls == ["https://clinic.example/a"]


@pytest.mark.parametrize(
    ("source", "value", "sent"),
    [
        ("https://{{ v }}/x", "evil.example", "https://evil.example/x"),
        ("https://{{ v }}", "/evil.example", "https:///evil.example"),
        ("https:/{{ v }}", "/evil.example", "https://evil.example"),
        ("https://\\{{ v }}", "evil.example", "https://\\evil.example"),
        (
            "https://clinic.example\\{{ v }}",
            "@evil.example",
            "https://clinic.example\\@evil.example",
        ),
        ("https://clinic.example{{ v }}", ".evil.example/", "https://clinic.example.evil.example/"),
        ("https://clinic.example{{ v }}", "@evil.example", "https://clinic.example@evil.example"),
        ("https://clinic.example{{ v }}", ":8443/", "https://clinic.example:8443/"),
        ("http{{ v }}://clinic.example/", "s", "https://clinic.example/"),
        ("{{ v }}https://clinic.example/a", EVIL, EVIL + "https://clinic.example/a"),
        ("Book: {{ v|trim }}.", f" {EVIL} ", f"Book: {EVIL}."),
        ("{{ 'https://' ~ v }}", "evil.example", "https://evil.example"),
    ],
)
def test_a_url_whose_origin_a_value_wrote_stays_text(source: str, value: str, sent: str) -> None:
    assert tracked(source, v=value) == (sent, [])


@pytest.mark.parametrize(
    ("source", "value", "url"),
    [
        ("https://clinic.example/book?c={{ v }}", "c-17", "https://clinic.example/book?c=c-17"),
        ("https://clinic.example/{{ v }}", "a/b", "https://clinic.example/a/b"),
        ("https://clinic.example{{ v }}", "/a", "https://clinic.example/a"),
        ("https://clinic.example{{ v }}", "?a=1", "https://clinic.example?a=1"),
        ("https://clinic.example/#{{ v }}", "top", "https://clinic.example/#top"),
        ("{{ v }}https://clinic.example/a", "Ann:", "https://clinic.example/a"),
        ("{{ 'https://clinic.example/a' }}", "", "https://clinic.example/a"),
    ],
)
def test_a_url_the_step_wrote_is_tracked_with_its_values(source: str, value: str, url: str) -> None:
    body, urls = tracked(source, v=value)
    assert urls == [url]
    assert body.endswith(f"<L:{url}>")


def test_a_url_ends_where_it_did_before_values_were_marked() -> None:
    # The sentence's period, and text after a value's space, stay outside the link.
    body, urls = tracked("See https://clinic.example/{{ v }}. Thanks", v="a b")
    assert (body, urls) == (
        "See <L:https://clinic.example/a> b. Thanks",
        ["https://clinic.example/a"],
    )
    body, urls = tracked("See https://clinic.example/{{ v }} now", v="p.")
    assert (body, urls) == ("See <L:https://clinic.example/p>. now", ["https://clinic.example/p"])


def test_two_urls_and_two_values() -> None:
    source = "{{ a }} https://one.example/{{ b }} and {{ b }} https://two.example/?x={{ a }}, bye"
    body, urls = tracked(source, a=EVIL, b="https://evil.example/y")
    assert body == (
        f"{EVIL} <L:https://one.example/https://evil.example/y> and https://evil.example/y "
        f"<L:https://two.example/?x={EVIL}>, bye"
    )
    assert urls == ["https://one.example/https://evil.example/y", f"https://two.example/?x={EVIL}"]


def test_html_hrefs() -> None:
    source = (
        '<a href="https://clinic.example/book?c={{ c }}">Book</a> '
        "<a href='{{ site }}'>Yours</a> <a href=\"https://{{ host }}/\">Theirs</a>"
    )
    body, urls = tracked(source, c="7", site=EVIL, host="evil.example")
    assert body == (
        '<a href="<L:https://clinic.example/book?c=7>">Book</a> '
        f"<a href='{EVIL}'>Yours</a> <a href=\"https://evil.example/\">Theirs</a>"
    )
    assert urls == ["https://clinic.example/book?c=7"]


def test_templates_rendered_in_the_child() -> None:
    source = (
        "{% for t in tags %}https://clinic.example/t/{{ t|lower }} {% endfor %}"
        "{% if name is string %}{{ name|trim }}{% else %}https://clinic.example/anon{% endif %}"
        "{% macro link(p) %}https://clinic.example/{{ p }}{% endmacro %} {{ link('m') }}"
    )
    body, urls = tracked(source, tags=["A", "B"], name=EVIL)
    # A URL a macro wrote is the macro's value: it is not tracked.
    assert body == (
        f"<L:https://clinic.example/t/a> <L:https://clinic.example/t/b> {EVIL} "
        "https://clinic.example/m"
    )
    assert urls == ["https://clinic.example/t/a", "https://clinic.example/t/b"]


def test_a_value_with_marks_in_it_is_still_a_value() -> None:
    name = f"{END} {EVIL} {START}"
    assert tracked("Hi {{ name }}, https://clinic.example/", name=name) == (
        f"Hi  {EVIL} , <L:https://clinic.example/>",
        ["https://clinic.example/"],
    )


def test_text_without_values_is_rewritten_as_before() -> None:
    body, links = rewrite_links("Book: https://example.com/book?x=1. Thanks", BASE)
    [(url, token)] = links
    assert (url, body) == ("https://example.com/book?x=1", f"Book: {BASE}/l/{token}. Thanks")
