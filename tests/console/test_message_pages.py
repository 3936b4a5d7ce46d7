"""The console's messages: newest first, narrowed by status, channel, sequence, direction."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime

from fastapi import FastAPI
from sqlalchemy import update

from tests.console.conftest import Console
from tests.helpers import Api, make_channel, make_sequence
from touchline.db import unit_of_work
from touchline.models import Message
from touchline.worker.loop import Worker

T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
AT_ONCE = [{"title": "Hello", "body": "Hello from {{first_name}}", "schedule_options": {}}]


def rows(html: str) -> list[str]:
    """The body cells of the table, one per message, in order."""
    body = html.split("<tbody>")[1].split("</tbody>")[0]
    return re.findall(r"<tr>(.*?)</tr>", body, flags=re.S)


def sent_world(api: Api, worker: Worker) -> dict[str, str]:
    """Two channels, a sequence on each, one message sent by each and one received."""
    first = make_channel(api, name="Main line", address="+14155550100")
    second = make_channel(api, name="Second line", address="+14155550111")
    made = {}
    for name, channel, phone in (("one", first, "+14155550121"), ("two", second, "+14155550122")):
        sequence = make_sequence(api, AT_ONCE, channel_id=channel["id"], title=f"Seq {name}")
        added = api.post(
            f"/v1/sequences/{sequence['id']}/contacts",
            json={"to": [{"phone": phone, "first_name": name.title()}]},
        )
        assert added.status_code == 202, added.text
        made[f"sequence_{name}"] = sequence["id"]
        made[f"channel_{name}"] = channel["id"]
    worker.run_once(T0)
    inbound = api.post(
        "/v1/messages/inbound", json={"from": "+14155550121", "to": "+14155550100", "body": "Hi!"}
    )
    assert inbound.status_code in (200, 201), inbound.text
    return made


def test_messages_newest_first_with_contact_links(
    console: Console, api: Api, worker: Worker
) -> None:
    sent_world(api, worker)
    page = console.get("/app/messages")
    assert page.status_code == 200
    shown = rows(page.text)
    assert len(shown) == 3
    assert "Hi!" in shown[0]  # received after the two were sent
    messages = api.get("/v1/messages").json()["data"]
    for message in messages:
        assert f'href="/app/contacts/{message["contact_id"]}"' in page.text
    assert "Hello from One" in page.text
    assert "Main line" in page.text


def test_filter_by_status_channel_and_sequence(
    app: FastAPI, console: Console, api: Api, worker: Worker
) -> None:
    made = sent_world(api, worker)
    with unit_of_work(app.state.sessions) as session:
        session.execute(
            update(Message)
            .where(Message.sequence_id == uuid.UUID(made["sequence_two"]))
            .values(delivery_status="failed", error="Carrier refused the number")
        )

    failed = rows(console.get("/app/messages?delivery_status=failed").text)
    assert len(failed) == 1
    assert "Hello from Two" in failed[0]
    assert "Carrier refused the number" in failed[0]
    assert '<span class="badge failed">failed</span>' in failed[0]

    on_main = rows(console.get(f"/app/messages?channel_id={made['channel_one']}").text)
    assert len(on_main) == 2
    assert all("Two" not in r for r in on_main)

    in_one = rows(console.get(f"/app/messages?sequence_id={made['sequence_one']}").text)
    assert len(in_one) == 1
    assert "Hello from One" in in_one[0]

    inbound = rows(console.get("/app/messages?direction=INBOUND").text)
    assert len(inbound) == 1
    assert "Hi!" in inbound[0]

    none = console.get(
        f"/app/messages?delivery_status=failed&sequence_id={made['sequence_one']}"
    ).text
    assert "No messages match these filters" in none
    page = console.get(f"/app/messages?channel_id={made['channel_one']}")
    assert f'<option value="{made["channel_one"]}" selected>' in page.text


def test_filters_are_kept_across_pages(console: Console, api: Api, worker: Worker) -> None:
    made = sent_world(api, worker)
    first = console.get(f"/app/messages?channel_id={made['channel_one']}&limit=1")
    assert len(rows(first.text)) == 1
    assert "1\N{EN DASH}1 of 2" in first.text
    older = re.search(r'href="([^"]+)">Older', first.text)
    assert older
    assert older.group(1).replace("&amp;", "&") == (
        f"/app/messages?offset=1&limit=1&channel_id={made['channel_one']}"
    )


def test_another_organizations_messages_are_not_shown(
    console: Console, api: Api, other_api: Api, worker: Worker
) -> None:
    sent_world(other_api, worker)
    page = console.get("/app/messages")
    assert "No messages" in page.text
    assert "Hello from" not in page.text
    assert "Main line" not in page.text  # nor their channels among the choices
