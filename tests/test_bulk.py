"""Rows written many at a time (touchline/bulk.py) read back exactly as given, and rows looked
up by lists of values are exactly the ones listed, on both engines."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI
from sqlalchemy import delete, select

from touchline.bulk import (
    RowChange,
    add_to_rows,
    among,
    chunks,
    insert_rows,
    update_rows,
)
from touchline.db import unit_of_work
from touchline.models import ApiKey, Organization, Sequence, Step

T0 = datetime(2026, 3, 2, 15, 0, 0, 123456, tzinfo=UTC)
T1 = datetime(2026, 3, 3, 9, 30, tzinfo=UTC)


def _keys(org_id: uuid.UUID, n: int) -> list[dict[str, Any]]:
    return [
        {
            "id": uuid.uuid4(),
            "organization_id": org_id,
            "prefix": f"tl_{i:04d}",
            "key_hash": f"{i:064d}",
            "created_at": T0,
        }
        for i in range(n)
    ]


def _stored_keys(app: FastAPI, name: str, n: int) -> tuple[uuid.UUID, list[dict[str, Any]]]:
    """A new organization with `n` API keys, written; its id and the keys' rows."""
    org_id = uuid.uuid4()
    keys = _keys(org_id, n)
    with unit_of_work(app.state.sessions) as session:
        insert_rows(session, Organization, [{"id": org_id, "name": name}])
        insert_rows(session, ApiKey, keys)
    return org_id, keys


def test_inserted_and_updated_rows_read_back_as_given(app: FastAPI) -> None:
    org_id = uuid.uuid4()
    keys = _keys(org_id, 4)
    with unit_of_work(app.state.sessions) as session:
        # `created_at` left out: the model's default fills it in.
        insert_rows(session, Organization, [{"id": org_id, "name": "Bulk Ünïcode"}])
        insert_rows(session, ApiKey, keys)
        insert_rows(session, ApiKey, [])
    with unit_of_work(app.state.sessions) as session:
        # Two sets of columns, one of them NULL in every row.
        changed = update_rows(
            session,
            ApiKey,
            [
                RowChange(keys[0]["id"], {"revoked_at": T1}),
                RowChange(keys[1]["id"], {"prefix": "tl_x", "revoked_at": None}),
                RowChange(keys[2]["id"], {"prefix": "tl_y", "revoked_at": None}),
            ],
        )
        assert update_rows(session, ApiKey, []) == []
    assert sorted((r["id"], r["prefix"]) for r in changed if "prefix" in r) == sorted(
        [(keys[1]["id"], "tl_x"), (keys[2]["id"], "tl_y")]
    )
    with unit_of_work(app.state.sessions) as session:
        # Guards: only rows whose guard columns still hold their values change, and only
        # those come back; a guard may expect NULL.
        guarded = update_rows(
            session,
            ApiKey,
            [
                RowChange(keys[1]["id"], {"key_hash": "x" * 64}, {"prefix": "tl_other"}),
                RowChange(keys[2]["id"], {"key_hash": f"{2:064d}"}, {"revoked_at": None}),
                RowChange(keys[3]["id"], {"key_hash": f"{3:064d}"}, {"revoked_at": T1}),
            ],
        )
    assert [r["id"] for r in guarded] == [keys[2]["id"]]

    with unit_of_work(app.state.sessions) as session:
        org = session.get_one(Organization, org_id)
        assert org.name == "Bulk Ünïcode"
        assert org.created_at is not None
        stored = {
            k.id: (k.prefix, k.key_hash, k.created_at, k.revoked_at)
            for k in session.scalars(select(ApiKey).where(ApiKey.organization_id == org_id))
        }
    assert stored == {
        keys[0]["id"]: ("tl_0000", f"{0:064d}", T0, T1),
        keys[1]["id"]: ("tl_x", f"{1:064d}", T0, None),
        keys[2]["id"]: ("tl_y", f"{2:064d}", T0, None),
        keys[3]["id"]: ("tl_0003", f"{3:064d}", T0, None),
    }


def test_rows_looked_up_by_lists_are_exactly_the_listed_ones(app: FastAPI) -> None:
    _, keys = _stored_keys(app, "Lookups", 5)

    def prefixes(where: Any) -> set[str]:
        with unit_of_work(app.state.sessions) as session:
            return set(session.scalars(select(ApiKey.prefix).where(where(session))))

    wanted = [keys[1]["id"], keys[3]["id"], uuid.uuid4()]
    assert prefixes(lambda s: among(s, ApiKey.id, wanted)) == {"tl_0001", "tl_0003"}
    assert prefixes(lambda s: among(s, ApiKey.id, iter(wanted[:1]))) == {"tl_0001"}
    assert prefixes(lambda s: among(s, ApiKey.id, [])) == set()
    assert prefixes(lambda s: among(s, ApiKey.prefix, ["tl_0004", "tl_9999"])) == {"tl_0004"}


def test_amounts_add_up_on_the_listed_rows_only(app: FastAPI) -> None:
    org_id, sequence_id = uuid.uuid4(), uuid.uuid4()
    steps = [uuid.uuid4() for _ in range(3)]
    with unit_of_work(app.state.sessions) as session:
        insert_rows(session, Organization, [{"id": org_id, "name": "Counters"}])
        insert_rows(
            session, Sequence, [{"id": sequence_id, "organization_id": org_id, "title": "S"}]
        )
        insert_rows(
            session,
            Step,
            [
                {"id": step_id, "organization_id": org_id, "sequence_id": sequence_id, "title": "T"}
                for step_id in steps
            ],
        )
    for _ in range(2):
        with unit_of_work(app.state.sessions) as session:
            add_to_rows(session, Step, "sent_messages", {steps[0]: 3, steps[1]: 1})
            add_to_rows(session, Step, "responses", {steps[1]: 5})
            add_to_rows(session, Step, "responses", {})
    with unit_of_work(app.state.sessions) as session:
        counters = {
            step.id: (step.sent_messages, step.responses)
            for step in session.scalars(select(Step).where(Step.sequence_id == sequence_id))
        }
    assert counters == {steps[0]: (6, 0), steps[1]: (2, 10), steps[2]: (0, 0)}


def test_chunks_cover_every_value_once_in_order() -> None:
    assert list(chunks([1, 2, 3, 4, 5], 2)) == [[1, 2], [3, 4], [5]]
    assert list(chunks([1, 2], 2)) == [[1, 2]]
    assert list(chunks([], 3)) == []


def test_rows_given_the_same_change_come_back_only_where_their_guard_held(app: FastAPI) -> None:
    org_id, keys = _stored_keys(app, "Same change", 5)
    with unit_of_work(app.state.sessions) as session:
        update_rows(session, ApiKey, [RowChange(keys[2]["id"], {"revoked_at": T0})])
    revoke = {"revoked_at": T1, "created_at": T1}
    with unit_of_work(app.state.sessions) as session:
        # Four rows get one change under one guard (keys[2] no longer passes it), one row
        # another change: both kinds in one call.
        changed = update_rows(
            session,
            ApiKey,
            [
                *(RowChange(k["id"], revoke, {"revoked_at": None}) for k in keys[:4]),
                RowChange(keys[4]["id"], {"prefix": "tl_last"}, {"revoked_at": None}),
            ],
        )
    assert sorted(changed, key=lambda r: str(r["id"])) == sorted(
        [{"id": k["id"], **revoke} for k in (keys[0], keys[1], keys[3])]
        + [{"id": keys[4]["id"], "prefix": "tl_last"}],
        key=lambda r: str(r["id"]),
    )
    with unit_of_work(app.state.sessions) as session:
        stored = {
            k.id: (k.created_at, k.revoked_at)
            for k in session.scalars(select(ApiKey).where(ApiKey.organization_id == org_id))
        }
    assert stored == {
        keys[0]["id"]: (T1, T1),
        keys[1]["id"]: (T1, T1),
        keys[2]["id"]: (T0, T0),
        keys[3]["id"]: (T1, T1),
        keys[4]["id"]: (T0, None),
    }


def test_unguarded_rows_that_are_gone_do_not_come_back_as_changed(app: FastAPI) -> None:
    _, keys = _stored_keys(app, "Gone", 3)
    with unit_of_work(app.state.sessions) as session:
        session.execute(delete(ApiKey).where(ApiKey.id == keys[1]["id"]))
        changed = update_rows(
            session,
            ApiKey,
            [RowChange(k["id"], {"prefix": f"tl_new{i}"}) for i, k in enumerate(keys)],
        )
    assert sorted((r["id"], r["prefix"]) for r in changed) == sorted(
        [(keys[0]["id"], "tl_new0"), (keys[2]["id"], "tl_new2")]
    )
