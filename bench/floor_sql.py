"""The engine's floor: claim and advance a batch with SQL alone, no Python per row.

Per batch, as the worker does it, in two transactions around the (here absent) send:
1. claim: one UPDATE taking the due step contacts of active sequences (the worker's claim,
   `FOR UPDATE SKIP LOCKED` on PostgreSQL), one INSERT ... SELECT writing their messages;
2. settle: one UPDATE marking the messages sent, one bumping the steps' `sent_messages`, one
   finishing the step contacts, one INSERT ... SELECT entering the next steps (scheduled
   from now by the step's delay), one UPDATE moving the runs' pointers (or finishing them).
What it leaves out is what needs Python per row: templates, send windows, eligibility
(blocked, opted out, no address), the provider call.
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.common import Engine, raw_connect, stored_time

# New rows get time-ordered ids, as Touchline makes them (version 7 UUIDs: a millisecond
# timestamp first), so that the floor's inserts land where the worker's do in each index.
_PG_NEW_ID = """encode(set_bit(set_bit(overlay(uuid_send(gen_random_uuid())
          placing substring(int8send((extract(epoch FROM clock_timestamp()) * 1000)::bigint)
          FROM 3) FROM 1 FOR 6), 52, 1), 53, 1), 'hex')::uuid"""
_SQLITE_NEW_ID = """printf('%012x', CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER))
          || '7' || substr(lower(hex(randomblob(10))), 1, 19)"""

_PG = {
    "claim": """
        UPDATE step_contacts SET status = 'active', locked_until = %(lease)s,
          attempts = attempts + 1, updated_at = %(now)s
        WHERE id IN (
          SELECT sc.id FROM step_contacts sc JOIN sequences s ON s.id = sc.sequence_id
          WHERE sc.status = 'pending' AND NOT sc.held AND sc.scheduled_at <= %(now)s
            AND s.status = 'active'
          ORDER BY sc.scheduled_at LIMIT %(n)s FOR UPDATE OF sc SKIP LOCKED)
        RETURNING id""",
    "messages": f"""
        INSERT INTO messages (id, organization_id, direction, channel_id, contact_id,
          sequence_id, step_id, step_contact_id, to_address, from_address, body, subject,
          delivery_status, attempts, created_at, updated_at)
        SELECT {_PG_NEW_ID}, sc.organization_id, 'OUTBOUND', ch.id, c.id, sc.sequence_id,
          sc.step_id, sc.id,
          CASE WHEN ch.type = 'sms' THEN coalesce(c.phone, '') ELSE coalesce(c.email, '') END,
          ch.address, st.body, st.subject, 'queued', 0, %(now)s, %(now)s
        FROM step_contacts sc JOIN steps st ON st.id = sc.step_id
        JOIN contacts c ON c.id = sc.contact_id JOIN channels ch ON ch.id = sc.channel_id
        WHERE sc.id = ANY(%(ids)s)""",
    "sent": """
        UPDATE messages SET delivery_status = 'sent', attempts = attempts + 1,
          provider_message_id = 'outbox-' || replace(id::text, '-', ''), updated_at = %(now)s
        WHERE step_contact_id = ANY(%(ids)s)""",
    "counters": """
        UPDATE steps SET sent_messages = sent_messages + x.n
        FROM (SELECT step_id, count(*) AS n FROM step_contacts WHERE id = ANY(%(ids)s)
              GROUP BY step_id) AS x
        WHERE steps.id = x.step_id""",
    "finish": """
        UPDATE step_contacts SET status = 'finished', finish_reason = 'completed',
          completed_at = %(now)s, locked_until = NULL, updated_at = %(now)s
        WHERE id = ANY(%(ids)s)""",
    "next": f"""
        INSERT INTO step_contacts (id, organization_id, sequence_id, step_id, sequence_run_id,
          contact_id, channel_id, status, scheduled_at, attempts, responded, clicked_link,
          unsubscribed, created_at, updated_at)
        SELECT {_PG_NEW_ID}, sc.organization_id, sc.sequence_id, nxt.id,
          sc.sequence_run_id, sc.contact_id,
          coalesce(nxt.channel_id, r.channel_id, s.default_channel_id), 'pending',
          %(now)s + make_interval(
            days => coalesce((nxt.schedule_options ->> 'days')::int, 0),
            hours => coalesce((nxt.schedule_options ->> 'hours')::int, 0),
            mins => coalesce((nxt.schedule_options ->> 'minutes')::int, 0)),
          0, false, false, false, %(now)s, %(now)s
        FROM step_contacts sc JOIN steps cur ON cur.id = sc.step_id
        JOIN steps nxt ON nxt.sequence_id = cur.sequence_id
          AND nxt.position = cur.position + 1 AND nxt.deleted_at IS NULL
        JOIN sequence_runs r ON r.id = sc.sequence_run_id
        JOIN sequences s ON s.id = sc.sequence_id
        WHERE sc.id = ANY(%(ids)s)""",
    "runs": """
        UPDATE sequence_runs AS r SET last_completed_step_contact_id = sc.id,
          current_step_contact_id = coalesce(n.id, sc.id),
          last_step_id = coalesce(n.step_id, sc.step_id),
          status = CASE WHEN n.id IS NULL THEN 'finished' ELSE r.status END,
          finish_reason = CASE WHEN n.id IS NULL THEN 'completed' ELSE r.finish_reason END,
          finished_at = CASE WHEN n.id IS NULL THEN %(now)s ELSE r.finished_at END,
          updated_at = %(now)s
        FROM step_contacts AS sc LEFT JOIN step_contacts AS n
          ON n.sequence_run_id = sc.sequence_run_id AND n.status = 'pending'
          AND n.created_at = %(now)s
        WHERE sc.id = ANY(%(ids)s) AND r.id = sc.sequence_run_id""",
}

# SQLite: ids travel as one JSON array parameter; new ids are 32 hex digits.
_IN = "IN (SELECT value FROM json_each(:ids))"
_SQLITE = {
    "claim": """
        UPDATE step_contacts SET status = 'active', locked_until = :lease,
          attempts = attempts + 1, updated_at = :now
        WHERE id IN (
          SELECT sc.id FROM step_contacts sc JOIN sequences s ON s.id = sc.sequence_id
          WHERE sc.status = 'pending' AND sc.held = 0 AND sc.scheduled_at <= :now
            AND s.status = 'active'
          ORDER BY sc.scheduled_at LIMIT :n)
        RETURNING id""",
    "messages": f"""
        INSERT INTO messages (id, organization_id, direction, channel_id, contact_id,
          sequence_id, step_id, step_contact_id, to_address, from_address, body, subject,
          delivery_status, attempts, created_at, updated_at)
        SELECT {_SQLITE_NEW_ID}, sc.organization_id, 'OUTBOUND', ch.id, c.id,
          sc.sequence_id, sc.step_id, sc.id,
          CASE WHEN ch.type = 'sms' THEN coalesce(c.phone, '') ELSE coalesce(c.email, '') END,
          ch.address, st.body, st.subject, 'queued', 0, :now, :now
        FROM step_contacts sc JOIN steps st ON st.id = sc.step_id
        JOIN contacts c ON c.id = sc.contact_id JOIN channels ch ON ch.id = sc.channel_id
        WHERE sc.id {_IN}""",
    "sent": f"""
        UPDATE messages SET delivery_status = 'sent', attempts = attempts + 1,
          provider_message_id = 'outbox-' || id, updated_at = :now
        WHERE step_contact_id {_IN}""",
    "counters": f"""
        UPDATE steps SET sent_messages = sent_messages + x.n
        FROM (SELECT step_id, count(*) AS n FROM step_contacts WHERE id {_IN}
              GROUP BY step_id) AS x
        WHERE steps.id = x.step_id""",
    "finish": f"""
        UPDATE step_contacts SET status = 'finished', finish_reason = 'completed',
          completed_at = :now, locked_until = NULL, updated_at = :now
        WHERE id {_IN}""",
    "next": f"""
        INSERT INTO step_contacts (id, organization_id, sequence_id, step_id, sequence_run_id,
          contact_id, channel_id, status, scheduled_at, attempts, responded, clicked_link,
          unsubscribed, created_at, updated_at)
        SELECT {_SQLITE_NEW_ID}, sc.organization_id, sc.sequence_id, nxt.id,
          sc.sequence_run_id, sc.contact_id,
          coalesce(nxt.channel_id, r.channel_id, s.default_channel_id), 'pending',
          strftime('%Y-%m-%d %H:%M:%S', :now,
            '+' || coalesce(json_extract(nxt.schedule_options, '$.days'), 0) || ' days',
            '+' || coalesce(json_extract(nxt.schedule_options, '$.hours'), 0) || ' hours',
            '+' || coalesce(json_extract(nxt.schedule_options, '$.minutes'), 0) || ' minutes')
            || substr(:now, 20),
          0, 0, 0, 0, :now, :now
        FROM step_contacts sc JOIN steps cur ON cur.id = sc.step_id
        JOIN steps nxt ON nxt.sequence_id = cur.sequence_id
          AND nxt.position = cur.position + 1 AND nxt.deleted_at IS NULL
        JOIN sequence_runs r ON r.id = sc.sequence_run_id
        JOIN sequences s ON s.id = sc.sequence_id
        WHERE sc.id {_IN}""",
    "runs": f"""
        UPDATE sequence_runs AS r SET last_completed_step_contact_id = sc.id,
          current_step_contact_id = coalesce(n.id, sc.id),
          last_step_id = coalesce(n.step_id, sc.step_id),
          status = CASE WHEN n.id IS NULL THEN 'finished' ELSE r.status END,
          finish_reason = CASE WHEN n.id IS NULL THEN 'completed' ELSE r.finish_reason END,
          finished_at = CASE WHEN n.id IS NULL THEN :now ELSE r.finished_at END,
          updated_at = :now
        FROM step_contacts AS sc LEFT JOIN step_contacts AS n
          ON n.sequence_run_id = sc.sequence_run_id AND n.status = 'pending'
          AND n.created_at = :now
        WHERE sc.id {_IN} AND r.id = sc.sequence_run_id""",
}

SETTLE = ("sent", "counters", "finish", "next", "runs")


def _now(engine: Engine) -> datetime | str:
    return stored_time(engine, datetime.now(UTC))


def run_batch(conn: Any, engine: Engine, batch_size: int) -> int:
    """Claim and advance one batch; returns how many step contacts it took."""
    sql = _SQLITE if engine == "sqlite" else _PG
    now = _now(engine)
    if engine == "sqlite":
        lease = (datetime.now(UTC) + timedelta(seconds=60)).replace(tzinfo=None)
        conn.execute("BEGIN IMMEDIATE")
        ids = [
            r[0]
            for r in conn.execute(
                sql["claim"],
                {"now": now, "lease": lease.isoformat(" ", "microseconds"), "n": batch_size},
            )
        ]
        params: dict[str, Any] = {"now": now, "ids": json.dumps(ids)}
    else:
        assert isinstance(now, datetime)
        conn.execute("BEGIN")
        ids = [
            r[0]
            for r in conn.execute(
                sql["claim"], {"now": now, "lease": now + timedelta(seconds=60), "n": batch_size}
            )
        ]
        params = {"now": now, "ids": ids}
    if not ids:
        conn.execute("COMMIT")
        return 0
    conn.execute(sql["messages"], params)
    conn.execute("COMMIT")
    params["now"] = _now(engine)
    conn.execute("BEGIN IMMEDIATE" if engine == "sqlite" else "BEGIN")
    for name in SETTLE:
        conn.execute(sql[name], params)
    conn.execute("COMMIT")
    return len(ids)


def run_floor(url: str, engine: Engine, batch_size: int, threads: int) -> int:
    """Loop batches on `threads` connections until nothing is due; returns the total."""
    totals = [0] * threads
    errors: list[BaseException] = []

    def loop(index: int) -> None:
        conn = raw_connect(url)
        try:
            while True:
                taken = run_batch(conn, engine, batch_size)
                if taken == 0:
                    return
                totals[index] += taken
        except BaseException as exc:
            errors.append(exc)
        finally:
            conn.close()

    workers = [threading.Thread(target=loop, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    if errors:
        raise errors[0]
    return sum(totals)
