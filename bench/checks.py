"""Checks that a generated dataset is one the app could have written.

`check_invariants` runs aggregate SQL over the whole dataset (every rule the app relies on);
`check_api` asks the real app (in process) List Contact Sequences for the contacts whose
answer the generator wrote down, and compares.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from fastapi.testclient import TestClient

from bench.common import Dataset, log, raw_connect
from touchline.app import create_app
from touchline.config import Settings

# Each query counts the rows that break one rule; all must be 0.
INVARIANTS: dict[str, str] = {
    "two latest runs for one contact and sequence": """
        SELECT count(*) FROM (SELECT contact_id, sequence_id FROM sequence_runs
        GROUP BY contact_id, sequence_id
        HAVING sum(CASE WHEN is_latest THEN 1 ELSE 0 END) != 1) AS x""",
    "current_step_contact_id not the run's newest step contact": """
        SELECT count(*) FROM sequence_runs r
        LEFT JOIN step_contacts sc ON sc.id = r.current_step_contact_id
        WHERE sc.id IS NULL OR sc.sequence_run_id != r.id OR sc.created_at < (
          SELECT max(x.created_at) FROM step_contacts x WHERE x.sequence_run_id = r.id)""",
    "last_step_id not the current step": """
        SELECT count(*) FROM sequence_runs r
        JOIN step_contacts sc ON sc.id = r.current_step_contact_id
        WHERE r.last_step_id IS NULL OR r.last_step_id != sc.step_id""",
    "last_completed_step_contact_id not the newest finished one": """
        SELECT count(*) FROM sequence_runs r
        LEFT JOIN step_contacts sc ON sc.id = r.last_completed_step_contact_id
        WHERE (r.last_completed_step_contact_id IS NULL AND EXISTS (
                 SELECT 1 FROM step_contacts x WHERE x.sequence_run_id = r.id
                 AND x.status = 'finished'))
           OR (r.last_completed_step_contact_id IS NOT NULL AND (
                 sc.id IS NULL OR sc.status != 'finished' OR sc.sequence_run_id != r.id
                 OR sc.completed_at < (SELECT max(x.completed_at) FROM step_contacts x
                   WHERE x.sequence_run_id = r.id AND x.status = 'finished')))""",
    "run status disagrees with its current step contact": """
        SELECT count(*) FROM sequence_runs r
        JOIN step_contacts sc ON sc.id = r.current_step_contact_id
        WHERE (sc.status IN ('pending', 'active', 'inactive')) !=
              (r.status = 'active' AND r.finish_reason IS NULL AND r.finished_at IS NULL)""",
    "open step contacts other than the current one": """
        SELECT count(*) FROM step_contacts sc JOIN sequence_runs r ON r.id = sc.sequence_run_id
        WHERE sc.status IN ('pending', 'active', 'inactive')
        AND sc.id != r.current_step_contact_id""",
    "step contact status or finish_reason outside SPEC §2": """
        SELECT count(*) FROM step_contacts WHERE
          status NOT IN ('pending', 'active', 'inactive', 'moved', 'finished')
          OR (status = 'finished') != (finish_reason IS NOT NULL)
          OR (finish_reason IS NOT NULL AND finish_reason NOT IN
              ('completed', 'removed', 'responded', 'expired', 'failed'))""",
    "run finish_reason outside SPEC": """
        SELECT count(*) FROM sequence_runs WHERE status NOT IN ('active', 'finished')
        OR (finish_reason IS NOT NULL AND finish_reason NOT IN
            ('completed', 'removed', 'responded', 'expired', 'failed', 'moved'))""",
    "live step positions not 0..n-1": """
        SELECT count(*) FROM (SELECT sequence_id FROM steps WHERE deleted_at IS NULL
        GROUP BY sequence_id
        HAVING min(position) != 0 OR max(position) != count(*) - 1
            OR count(DISTINCT position) != count(*)) AS x""",
    "live step not followed by the live step one position on": """
        SELECT count(*) FROM steps s LEFT JOIN steps n ON n.sequence_id = s.sequence_id
        AND n.deleted_at IS NULL AND n.position = s.position + 1
        WHERE s.deleted_at IS NULL
        AND (s.next_step_id IS NULL AND n.id IS NOT NULL
            OR s.next_step_id IS NOT NULL AND (n.id IS NULL OR n.id != s.next_step_id))""",
    "deleted step with a position, or live step without one": """
        SELECT count(*) FROM steps WHERE (deleted_at IS NULL) != (position IS NOT NULL)""",
    "step contact of a deleted step still open": """
        SELECT count(*) FROM step_contacts sc JOIN steps s ON s.id = sc.step_id
        WHERE s.deleted_at IS NOT NULL AND sc.status IN ('pending', 'active', 'inactive')""",
    "sent_messages counter differs from the messages": """
        SELECT count(*) FROM steps s LEFT JOIN (
          SELECT step_id, count(*) AS n FROM messages WHERE delivery_status = 'sent'
          GROUP BY step_id) AS m ON m.step_id = s.id
        WHERE s.sent_messages != coalesce(m.n, 0)""",
    "open step contact held unless its sequence is draft or archived": """
        SELECT count(*) FROM step_contacts sc JOIN sequences s ON s.id = sc.sequence_id
        WHERE sc.status IN ('pending', 'active', 'inactive')
        AND (CASE WHEN sc.held THEN 1 ELSE 0 END)
            != (CASE WHEN s.status != 'active' THEN 1 ELSE 0 END)""",
    "run open past its expiry": """
        SELECT count(*) FROM sequence_runs WHERE status = 'active'
        AND expires_at IS NOT NULL AND expires_at <= CURRENT_TIMESTAMP""",
}

SQLITE_FORMATS: dict[str, str] = {
    "UUID not 32 lower-case hex": """
        SELECT count(*) FROM step_contacts WHERE length(id) != 32
        OR id GLOB '*[^0-9a-f]*' OR sequence_run_id GLOB '*[^0-9a-f]*'""",
    "timestamp not naive 'YYYY-MM-DD HH:MM:SS.ffffff'": """
        SELECT count(*) FROM step_contacts WHERE scheduled_at NOT GLOB
        '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9] '
        || '[0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9][0-9][0-9][0-9]'""",
}


def check_invariants(dataset: Dataset) -> None:
    conn = raw_connect(dataset.url)
    try:
        queries = dict(INVARIANTS)
        if dataset.engine == "sqlite":
            queries.update(SQLITE_FORMATS)
            # SQLite compares the naive UTC text with its own CURRENT_TIMESTAMP text.
            queries["run open past its expiry"] = queries["run open past its expiry"].replace(
                "CURRENT_TIMESTAMP", "strftime('%Y-%m-%d %H:%M:%f', 'now')"
            )
        broken = {}
        for rule, sql in queries.items():
            started = time.perf_counter()
            count = conn.execute(sql).fetchone()[0]
            log(f"  {rule}: {count} ({time.perf_counter() - started:.1f}s)")
            if count:
                broken[rule] = count
        newest: dict[tuple[Any, Any], Any] = {}
        latest: dict[tuple[Any, Any], Any] = {}
        # In Python: without statistics SQLite plans this self-join badly.
        for contact, sequence, is_latest, created in conn.execute(
            "SELECT contact_id, sequence_id, is_latest, created_at FROM sequence_runs"
        ):
            key = (contact, sequence)
            newest[key] = max(newest.get(key, created), created)
            if is_latest:
                latest[key] = created
        stale = sum(1 for key, created in latest.items() if created < newest[key])
        if stale:
            broken["latest run is not the newest"] = stale
        due = conn.execute(
            "SELECT count(*) FROM step_contacts sc JOIN sequences s ON s.id = sc.sequence_id "
            "WHERE sc.status = 'pending' AND s.status != 'active'"
        ).fetchone()[0]
    finally:
        conn.close()
    if broken:
        raise AssertionError(f"{dataset.name}: invariants broken: {broken}")
    log(
        f"{dataset.name}: {len(queries) + 1} invariants hold "
        f"({due:,} pending step contacts wait in draft or archived sequences)"
    )


def _observed(item: dict[str, Any]) -> dict[str, Any]:
    def position(key: str) -> int | None:
        step = item[key]
        return None if step is None else int(step["position"])

    return {
        "sequence_id": item["sequence"]["id"],
        "run_id": item["sequence_run"]["id"],
        "run_status": item["sequence_run"]["status"],
        "contact_status": item["contact_status"],
        "current_position": position("current_step"),
        "last_completed_position": position("last_completed_step"),
        "next_position": position("next_step"),
    }


def check_api(dataset: Dataset) -> None:
    """List Contact Sequences through the real app answers what the generator built."""
    app = create_app(Settings(database_url=dataset.url, allow_private_networks=True))
    headers = {"X-WHIPPY-KEY": dataset.api_key}
    with TestClient(app) as client:
        for contact_id, expected in dataset.expectations.items():
            response = client.post(f"/v1/contacts/{contact_id}/sequences", headers=headers)
            assert response.status_code == 200, response.text
            body = response.json()
            assert body["total"] == expected["total"], (contact_id, body, expected)
            observed = [_observed(item) for item in body["data"]]
            assert observed == expected["items"], (contact_id, observed, expected["items"])
            pending = [i for i in expected["items"] if i["contact_status"] == "pending"]
            response = client.get(
                f"/v1/contacts/{contact_id}/sequences",
                params={"contact_status": "pending"},
                headers=headers,
            )
            assert response.json()["total"] == len(pending), (contact_id, response.text)
        unknown = client.post(f"/v1/contacts/{uuid.uuid4()}/sequences", headers=headers)
        assert unknown.status_code == 404, unknown.text
    app.state.engine.dispose()
    log(f"{dataset.name}: List Contact Sequences matches for {len(dataset.expectations)} contacts")
