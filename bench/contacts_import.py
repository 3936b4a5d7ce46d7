"""Contact imports: `touchline contacts import` of a 100,000-row CSV, as users run it.

    .venv/bin/python -m bench.contacts_import --engine both --repeats 3

Each repeat works in an empty database of its own with one organization. Four imports, one
after the other: **new** contacts (phones nobody has), then the same file **again** (every
row an existing contact), each without a sequence, then the same two with one (new phones
into a sequence; the existing contacts into a second sequence, so that every row is
`added`). Rows per second = rows / the command's wall time (start of the process to its
exit: reading the CSV, the job's chunks, the summary). Every row must get the outcome the
case expects.
"""

from __future__ import annotations

import csv
import os
import subprocess
import time
import uuid
from pathlib import Path

from fastapi.testclient import TestClient

from bench.common import (
    BENCH_DIR,
    TOUCHLINE,
    DatabaseServer,
    bench_parser,
    log,
    median,
    servers,
    spread,
    table,
    touchline_env,
)
from touchline.app import create_app
from touchline.auth.service import create_api_key, create_organization
from touchline.config import Settings
from touchline.db import unit_of_work
from touchline.migrate import upgrade

CASES = (
    ("none", "new", "created"),
    ("none", "again", "updated"),
    ("sequence", "new", "added"),
    ("sequence", "again", "added"),
)


def _write_csv(path: Path, first_phone: int, rows: int) -> None:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["phone", "email", "first_name", "last_name", "plan", "city"])
        for i in range(rows):
            n = first_phone + i
            writer.writerow([f"+1424{n:07d}", f"u{n}@example.com", "Ann", f"Lee {n}", "gold", ""])


def _organization(url: str) -> tuple[str, list[str]]:
    """An API key, and two active sequences of one step a day out (nothing is sent)."""
    app = create_app(Settings(database_url=url))
    with unit_of_work(app.state.sessions) as session:
        key = create_api_key(session, create_organization(session, "Bench").id)
    headers = {"X-WHIPPY-KEY": key}
    sequences = []
    with TestClient(app, headers=headers) as client:
        channel = client.post(
            "/v1/channels", json={"name": "SMS", "type": "sms", "address": "+14155550100"}
        ).json()["data"]
        for title in ("Imported", "Imported again"):
            sequence = client.post(
                "/v1/sequences", json={"title": title, "default_channel_id": channel["id"]}
            ).json()["data"]
            step = {"title": "Hi", "body": "Hi {{first_name}}", "schedule_options": {"days": 1}}
            client.post(f"/v1/sequences/{sequence['id']}/steps", json=step).raise_for_status()
            client.put(
                f"/v1/sequences/{sequence['id']}", json={"status": "active"}
            ).raise_for_status()
            sequences.append(str(sequence["id"]))
    app.state.engine.dispose()
    return key, sequences


def _import(url: str, key: str, path: Path, expected: str, *args: str) -> float:
    outcomes = path.with_suffix(".outcomes.csv")
    started = time.perf_counter()
    result = subprocess.run(
        [TOUCHLINE, "contacts", "import", str(path), "--outcomes", str(outcomes), *args],
        env=touchline_env(url, TOUCHLINE_API_KEY=key),
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - started
    assert result.returncode == 0, result.stderr
    with outcomes.open(newline="") as f:
        seen = {row["outcome"] for row in csv.DictReader(f)}
    assert seen == {expected}, (seen, result.stdout)
    outcomes.unlink()
    return seconds


def one_repeat(
    server: DatabaseServer, rows: int, rates: dict[tuple[str, str], list[float]]
) -> None:
    name = f"bench_import_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    url = server.create_empty(name)
    try:
        upgrade(url)
        key, (sequence, second) = _organization(url)
        plain, enrolled = BENCH_DIR / f"{name}-a.csv", BENCH_DIR / f"{name}-b.csv"
        _write_csv(plain, 5_000_000, rows)
        _write_csv(enrolled, 6_000_000, rows)
        for kind, when, expected in CASES:
            path = plain if kind == "none" else enrolled
            args = [] if kind == "none" else ["--sequence", sequence if when == "new" else second]
            rate = rows / _import(url, key, path, expected, *args)
            rates[(kind, when)].append(rate)
            log(f"{server.engine} sequence={kind:8} {when:5}: {rate:6.0f} rows/s")
        plain.unlink()
        enrolled.unlink()
    finally:
        server.drop(name)


def main() -> None:
    parser = bench_parser(__doc__, size=False)
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    table_rows: list[list[str]] = []
    for engine, server in servers(args):
        rates: dict[tuple[str, str], list[float]] = {(k, w): [] for k, w, _ in CASES}
        for _ in range(args.repeats):
            one_repeat(server, args.rows, rates)
        for (kind, when), values in rates.items():
            table_rows.append(
                [
                    engine,
                    kind,
                    when,
                    f"{median(values):.0f}",
                    spread(values),
                    f"{args.rows / median(values):.1f}",
                ]
            )
    print(f"\nContact imports, {args.rows:,} rows per import, medians of {args.repeats}\n")
    headers = ("engine", "sequence", "contacts", "rows/s", "runs", "seconds")
    print(table(headers, table_rows))


if __name__ == "__main__":
    main()
