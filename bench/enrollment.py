"""Bulk enrollment: 4,000 contacts per request, through the real API and a real worker.

    .venv/bin/python -m bench.enrollment --engine postgresql --size 1000000

On a private copy of the dataset, `touchline serve --no-worker` and one `touchline worker`
run side by side. Each round creates a three-step sequence through the API (first step a day
out, so enrolling sends nothing), then `POST /v1/sequences/{id}/contacts` with 4,000 inputs
and waits for the job to be done. Contacts per second = 4,000 / (from the POST to the job's
`done`, polled in the database every 50 ms). Two kinds of input, `--repeats` times each:
**new** contacts (phones nobody has: each is created) and **existing** ones (phones of the
dataset's contacts: each is found by the dedupe rules). Every input must come out `added`.
"""

from __future__ import annotations

import argparse
import random
import time
import uuid
from typing import Any

import httpx

from bench.common import (
    Dataset,
    bench_parser,
    ensure_dataset,
    log,
    median,
    raw_connect,
    real_server,
    servers,
    spread,
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


def _existing_phones(dataset: Dataset, count: int, seed: int) -> list[str]:
    conn = raw_connect(dataset.url)
    phones = [r[0] for r in conn.execute("SELECT phone FROM contacts WHERE state = 'open'")]
    conn.close()
    return random.Random(seed).sample(phones, count)


def _wait_job(dataset: Dataset, job_id: str, timeout: float = 600) -> str:
    conn = raw_connect(dataset.url)
    key: Any = uuid.UUID(job_id).hex if dataset.engine == "sqlite" else uuid.UUID(job_id)
    mark = "?" if dataset.engine == "sqlite" else "%s"
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            status = conn.execute(f"SELECT status FROM jobs WHERE id = {mark}", (key,)).fetchone()
            if status and status[0] in ("done", "failed"):
                return str(status[0])
            time.sleep(0.05)
    finally:
        conn.close()
    raise RuntimeError(f"job {job_id} not done after {timeout}s")


def one_round(client: httpx.Client, dataset: Dataset, kind: str, index: int) -> float:
    sequence_id = _sequence(client, dataset, f"Enrollment {kind} {index}")
    if kind == "new":
        to = [
            {"phone": f"+1424{5_000_000 + index * BATCH + i:07d}", "name": f"New {i}"}
            for i in range(BATCH)
        ]
    else:
        to = [{"phone": p} for p in _existing_phones(dataset, BATCH, seed=index)]
    started = time.perf_counter()
    response = client.post(f"/v1/sequences/{sequence_id}/contacts", json={"to": to})
    assert response.status_code == 202, response.text
    job_id = response.json()["data"]["job_id"]
    status = _wait_job(dataset, job_id)
    seconds = time.perf_counter() - started
    job = client.get(f"/v1/jobs/{job_id}").json()["data"]
    outcomes = {r["outcome"] for r in job["results"]}
    assert status == "done", job.get("error")
    assert outcomes == {"added"}, outcomes
    return BATCH / seconds


def bench_engine(dataset: Dataset, args: argparse.Namespace) -> list[list[str]]:
    rates: dict[str, list[float]] = {"new": [], "existing": []}
    with (
        real_server(dataset.url) as (port, _),
        worker_processes(dataset.url, 1),
        httpx.Client(
            base_url=f"http://127.0.0.1:{port}",
            headers={"X-WHIPPY-KEY": dataset.api_key},
            timeout=120,
        ) as client,
    ):
        for repeat in range(args.repeats):
            for kind in rates:
                rate = one_round(client, dataset, kind, repeat)
                rates[kind].append(rate)
                log(f"{dataset.engine} #{repeat + 1} {kind:8}: {rate:6.0f} contacts/s")
    return [
        [
            dataset.engine,
            kind,
            f"{median(values):.0f}",
            spread(values),
            f"{BATCH / median(values):.2f}",
        ]
        for kind, values in rates.items()
    ]


def main() -> None:
    parser = bench_parser(__doc__)
    args = parser.parse_args()
    rows: list[list[str]] = []
    for _, server in servers(args):
        template = ensure_dataset(server, args.size, regenerate=args.regenerate)
        with working_copy(server, template) as dataset:
            rows += bench_engine(dataset, args)
    print(
        f"\nBulk enrollment, {BATCH:,} contacts per request, {args.size:,} step contacts in "
        f"the database, medians of {args.repeats} repeats\n"
    )
    print(table(("engine", "contacts", "contacts/s", "runs", "seconds per request"), rows))


if __name__ == "__main__":
    main()
