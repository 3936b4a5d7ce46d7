"""Which of a step's triggers a reply or a click fires (stored as `steps.triggers`).

The first trigger in the step's list that matches fires, and only that one: a step with a
keyword trigger and a reply trigger fires the keyword one for "YES" and the reply one for
anything else, when the keyword trigger comes first.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from typing import Any


def _trimmed(text: str) -> str:
    """Without the white space, punctuation and symbols (emoji too) around it."""
    keep = [not (c.isspace() or unicodedata.category(c)[0] in "PS") for c in text]
    if True not in keep:
        return ""
    return text[keep.index(True) : len(keep) - keep[::-1].index(True)]


def keyword_form(text: str) -> str:
    """A keyword, or a whole reply, without case, runs of spaces or surrounding punctuation."""
    return _trimmed(" ".join(text.split()).casefold())


def _candidates(body: str) -> set[str]:
    # The whole message, and its first word: "Yes!", "yes please" and " YES " all say "yes".
    whole = keyword_form(body)
    return {whole, _trimmed(whole.split(" ", 1)[0])} - {""}


def fired_by_reply(triggers: Iterable[dict[str, Any]], body: str) -> dict[str, Any] | None:
    said = _candidates(body)
    for trigger in triggers:
        if trigger["type"] == "reply":
            return trigger
        if trigger["type"] == "keyword" and said & set(trigger.get("keywords") or ()):
            return trigger
    return None


def fired_by_click(triggers: Iterable[dict[str, Any]]) -> dict[str, Any] | None:
    return next((t for t in triggers if t["type"] == "link_click"), None)
