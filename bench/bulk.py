"""Rows in bulk, in the form SQLAlchemy stores them on each engine.

`Stored` formats values as Touchline's column types bind them (touchline/models/base.py):
32-digit hex UUIDs and naive UTC 'YYYY-MM-DD HH:MM:SS.ffffff' text on SQLite, native
uuid and timestamptz on PostgreSQL. `Writer` drops the big tables' secondary indexes, loads
rows (executemany in one transaction on SQLite, COPY on PostgreSQL) and rebuilds the
indexes from their own definitions.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from bench.common import Engine, log, raw_connect

EPOCH = datetime(1970, 1, 1)
BIG_TABLES = ("contacts", "contact_preferences", "sequence_runs", "step_contacts", "messages")

COLUMNS: dict[str, list[str]] = {
    "channels": (
        "id organization_id name type address provider provider_config timezone opening_hours "
        "created_at updated_at"
    ).split(),
    "sequences": (
        "id organization_id title description type status access_level default_channel_id "
        "settings created_at updated_at"
    ).split(),
    "steps": (
        "id organization_id sequence_id title body subject channel_id position deleted_at "
        "schedule_options attachments sent_messages failed_deliveries responses link_clicks "
        "unsubscribes created_at updated_at next_step_id"
    ).split(),
    "contacts": (
        "id organization_id name phone email external_id language timezone state blocked "
        "properties created_at updated_at"
    ).split(),
    "contact_preferences": "contact_id channel_id opt_in opt_in_date opt_out_date".split(),
    "sequence_runs": (
        "id organization_id sequence_id contact_id channel_id status finish_reason is_latest "
        "last_step_id current_step_contact_id last_completed_step_contact_id finished_at "
        "expires_at created_at updated_at"
    ).split(),
    "step_contacts": (
        "id organization_id sequence_id step_id sequence_run_id contact_id channel_id status "
        "finish_reason scheduled_at completed_at locked_until attempts responded clicked_link "
        "unsubscribed held created_at updated_at"
    ).split(),
    "messages": (
        "id organization_id direction channel_id contact_id sequence_id step_id step_contact_id "
        "to_address from_address body subject delivery_status provider_message_id error "
        "attempts next_attempt_at created_at updated_at"
    ).split(),
}


class Stored:
    """Values as SQLAlchemy stores them on one engine (see touchline/models/base.py)."""

    def __init__(self, engine: Engine) -> None:
        self.sqlite = engine == "sqlite"

    def ts(self, t: float | None) -> str | None:
        if t is None:
            return None
        text = (EPOCH + timedelta(seconds=t)).isoformat(" ", "microseconds")
        # Naive UTC text on SQLite (what UTCDateTime binds there); timestamptz otherwise.
        return text if self.sqlite else text + "+00"

    def boolean(self, value: bool) -> int | str:
        if self.sqlite:
            return 1 if value else 0
        return "t" if value else "f"


class Writer:
    """Bulk rows into one engine: executemany on SQLite, COPY on PostgreSQL."""

    def __init__(self, url: str, engine: Engine) -> None:
        self.engine = engine
        self.conn = raw_connect(url)
        self.rows_written = 0
        self.indexes: list[tuple[str, str]] = []

    def begin(self) -> None:
        if self.engine == "sqlite":
            # A throwaway build: no journal, no fsync, a big page cache. WAL comes back at the end.
            for pragma in (
                "journal_mode=OFF",
                "synchronous=OFF",
                "cache_size=-400000",
                "foreign_keys=OFF",
                "temp_store=MEMORY",
            ):
                self.conn.execute(f"PRAGMA {pragma}")
            self.indexes = [
                (name, sql)
                for name, sql in self.conn.execute(
                    "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
                    f" AND tbl_name IN ({','.join('?' * len(BIG_TABLES))})",
                    BIG_TABLES,
                )
            ]
            for name, _ in self.indexes:
                self.conn.execute(f"DROP INDEX {name}")
            self.conn.execute("BEGIN")
        else:
            self.indexes = [
                (name, sql)
                for name, sql in self.conn.execute(
                    "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = ANY(%s)"
                    " AND indexname NOT IN (SELECT conname FROM pg_constraint)",
                    (list(BIG_TABLES),),
                )
            ]
            for name, _ in self.indexes:
                self.conn.execute(f'DROP INDEX "{name}"')
            self.conn.execute("BEGIN")
            # The rows are consistent by construction: skip per-row foreign-key triggers.
            self.conn.execute("SET LOCAL session_replication_role = replica")

    def write(self, table_name: str, rows: Sequence[Sequence[Any]]) -> None:
        if not rows:
            return
        columns = COLUMNS[table_name]
        if self.engine == "sqlite":
            marks = ",".join("?" * len(columns))
            self.conn.executemany(
                f"INSERT INTO {table_name} ({','.join(columns)}) VALUES ({marks})", rows
            )
        else:
            text = "".join(
                "\t".join("\\N" if v is None else str(v) for v in row) + "\n" for row in rows
            )
            with self.conn.cursor() as cur:
                statement = f"COPY {table_name} ({','.join(columns)}) FROM STDIN"
                with cur.copy(statement) as copy:
                    copy.write(text)
        self.rows_written += len(rows)

    def finish(self) -> None:
        self.conn.execute("COMMIT")
        started = time.perf_counter()
        if self.engine == "postgresql":
            self.conn.execute("SET maintenance_work_mem = '256MB'")
        for _, sql in self.indexes:
            self.conn.execute(sql)
        log(f"rebuilt {len(self.indexes)} indexes in {time.perf_counter() - started:.1f}s")
        started = time.perf_counter()
        if self.engine == "sqlite":
            # No ANALYZE: Touchline never runs it, so a real SQLite file has no statistics.
            self.conn.execute("PRAGMA journal_mode=WAL")
        else:
            # What autovacuum would have done to tables this old.
            self.conn.execute("VACUUM (ANALYZE)")
            log(f"vacuum analyze in {time.perf_counter() - started:.1f}s")
        self.conn.close()
