"""Bulk enrollment: 4,000 contacts per request, through the real API and a real worker.

    .venv/bin/python -m bench.enrollment --engine postgresql --size 1000000

On a private copy of the dataset, `touchline serve --no-worker` and one `touchline worker`
(`--workers N`: N of them) run side by side. Each round creates a three-step sequence
through the API (first step a day out, so enrolling sends nothing), then sends `--requests`
(default 25) `POST /v1/sequences/{id}/contacts` of 4,000 inputs each, one after the other,
and waits for every job to be done. Contacts per second = all inputs / (from the first POST
to the last job's `done`, polled in the database every 50 ms). The dataset's step contacts
that are due (thousands in a dataset made hours before, more as the day goes on) are put off
a day first, so that the workers do the enrollment alone. Two kinds of input, `--repeats`
times each: **new** contacts (phones nobody has: each is created) and **existing** ones (the
same phones again, into another sequence: each is found by the dedupe rules). Every input
must come out `added`.
"""

from __future__ import annotations

import argparse
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from bench.common import (
    Dataset,
    bench_parser,
    ensure_dataset,
    log,
    mark,
    median,
    raw_connect,
    real_server,
    servers,
    spread,
    stored_time,
    table,
    worker_processes,
    working_copy,
)

BATCH = 4000


def _sequence(client: httpx.Client, dataset: Dataset, title: str) -> str:
    response = client.post(
        "/v1/sequences",
        json={"title": title, "default_channel_id": dataset.channel_ids["sms"]},
    )
    response.raise_for_status()
    sequence_id = str(response.json()["data"]["id"])
    for days in (1, 2, 3):
        step = {
            "title": f"Day {days}",
            "body": "Hi {{first_name}}",
            "schedule_options": {"days": days},
        }
        client.post(f"/v1/sequences/{sequence_id}/steps", json=step).raise_for_status()
    client.put(f"/v1/sequences/{sequence_id}", json={"status": "active"}).raise_for_status()
    return sequence_id


def _wait_job(dataset: Dataset, job_id: str, timeout: float = 600) -> str:
    conn = raw_connect(dataset.url)
    key: Any = uuid.UUID(job_id).hex if dataset.engine == "sqlite" else uuid.UUID(job_id)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            status = conn.execute(
                f"SELECT status FROM jobs WHERE id = {mark(dataset.engine)}", (key,)
            ).fetchone()
            if status and status[0] in ("done", "failed"):
                return str(status[0])
            time.sleep(0.05)
    finally:
        conn.close()
    raise RuntimeError(f"job {job_id} not done after {timeout}s")


def _phones(repeat: int, requests: int) -> list[str]:
    first = 5_000_000 + repeat * requests * BATCH
    return [f"+1424{first + i:07d}" for i in range(requests * BATCH)]


def one_round(
    client: httpx.Client, dataset: Dataset, kind: str, repeat: int, requests: int
) -> float:
    """Contacts per second for `requests` requests of new (or, after them, the same
    existing) contacts."""
    sequence_id = _sequence(client, dataset, f"Enrollment {kind} {repeat}")
    phones = _phones(repeat, requests)
    started = time.perf_counter()
    job_ids = []
    for i in range(requests):
        to = [{"phone": p, "name": f"New {i}"} for p in phones[i * BATCH : (i + 1) * BATCH]]
        response = client.post(f"/v1/sequences/{sequence_id}/contacts", json={"to": to})
        assert response.status_code == 202, response.text
        job_ids.append(response.json()["data"]["job_id"])
    statuses = [_wait_job(dataset, job_id) for job_id in job_ids]
    seconds = time.perf_counter() - started
    for job_id, status in zip(job_ids, statuses, strict=True):
        job = client.get(f"/v1/jobs/{job_id}").json()["data"]
        assert status == "done", job.get("error")
        outcomes = {r["outcome"] for r in job["results"]}
        assert outcomes == {"added"}, outcomes
    return len(phones) / seconds


def put_off_due(dataset: Dataset) -> int:
    """Put the dataset's due step contacts off a day; returns how many there were."""
    now = datetime.now(UTC)
    at = mark(dataset.engine)
    conn = raw_connect(dataset.url)
    try:
        return int(
            conn.execute(
                f"UPDATE step_contacts SET scheduled_at = {at} "
                f"WHERE status = 'pending' AND scheduled_at <= {at}",
                (
                    stored_time(dataset.engine, now + timedelta(days=1)),
                    stored_time(dataset.engine, now + timedelta(hours=1)),
                ),
            ).rowcount
        )
    finally:
        conn.close()


def bench_engine(dataset: Dataset, args: argparse.Namespace) -> list[list[str]]:
    rates: dict[str, list[float]] = {"new": [], "existing": []}
    log(f"{dataset.engine}: {put_off_due(dataset)} due step contacts of the dataset put off")
    with (
        real_server(dataset.url) as (port, _),
        worker_processes(dataset.url, args.workers),
        httpx.Client(
            base_url=f"http://127.0.0.1:{port}",
            headers={"X-WHIPPY-KEY": dataset.api_key},
            timeout=120,
        ) as client,
    ):
        for repeat in range(args.repeats):
            for kind in rates:
                rate = one_round(client, dataset, kind, repeat, args.requests)
                rates[kind].append(rate)
                log(f"{dataset.engine} #{repeat + 1} {kind:8}: {rate:6.0f} contacts/s")
    return [
        [
            dataset.engine,
            kind,
            f"{median(values):.0f}",
            spread(values),
            f"{args.requests * BATCH / median(values):.1f}",
        ]
        for kind, values in rates.items()
    ]


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--requests", type=int, default=25, help="requests of 4,000 per round")
    parser.add_argument("--workers", type=int, default=1, help="`touchline worker` processes")
    args = parser.parse_args()
    rows: list[list[str]] = []
    for _, server in servers(args):
        template = ensure_dataset(server, args.size, regenerate=args.regenerate)
        with working_copy(server, template) as dataset:
            rows += bench_engine(dataset, args)
    print(
        f"\nBulk enrollment, {args.requests} requests of {BATCH:,} contacts per round, "
        f"{args.size:,} step contacts in the database, medians of {args.repeats} repeats\n"
    )
    print(table(("engine", "contacts", "contacts/s", "runs", "seconds per round"), rows))


if __name__ == "__main__":
    main()
