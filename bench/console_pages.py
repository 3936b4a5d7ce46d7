"""Console page timings on the benchmark dataset: each page next to the API call it shows.

    .venv/bin/python -m bench.console_pages --engine both --size 1000000

`touchline serve --no-worker` runs on the dataset; one client signs in through the form and
asks, one request at a time over loopback, for each page and for the JSON answer the page is
built from, alternating between them: the sequence page of the three sequences with the most
step contacts (beside `GET /v1/sequences/{id}`), the contact page of `--contacts` busy
contacts (beside List Contact Sequences), and the list pages (beside `GET /healthz`, the
server's fixed cost). A time is the whole round trip, so it bounds the server's time from
above. The target: every page under 50 ms.
"""

from __future__ import annotations

import argparse
import re
import time
import uuid
from collections.abc import Callable

import httpx

from bench.common import (
    Dataset,
    bench_parser,
    ensure_dataset,
    log,
    median,
    percentile,
    print_report,
    raw_connect,
    real_server,
    servers,
)
from touchline.migrate import upgrade

TARGET_MS = 50.0
_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')

Request = Callable[[httpx.Client], httpx.Response]


def signed_in(port: int, api_key: str) -> httpx.Client:
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30, follow_redirects=True)
    form = client.get("/app/sign-in")
    token = _TOKEN.search(form.text)
    assert token, "the sign-in page has no CSRF field"
    answer = client.post("/app/sign-in", data={"api_key": api_key, "csrf_token": token.group(1)})
    answer.raise_for_status()
    assert str(answer.url).endswith("/app/sequences"), answer.url
    return client


def biggest_sequences(dataset: Dataset, count: int) -> list[str]:
    conn = raw_connect(dataset.url)
    try:
        rows = conn.execute(
            "SELECT sequence_id, count(*) FROM step_contacts GROUP BY sequence_id "
            f"ORDER BY 2 DESC LIMIT {int(count)}"
        ).fetchall()
    finally:
        conn.close()
    # SQLite keeps UUIDs as 32 hex digits, psycopg gives UUIDs: the URL wants the usual form.
    return [str(uuid.UUID(str(r[0]))) for r in rows]


def timed(client: httpx.Client, request: Request) -> float:
    started = time.perf_counter()
    answer = request(client)
    elapsed = (time.perf_counter() - started) * 1000
    if answer.status_code != 200:
        raise RuntimeError(f"{answer.request.url}: {answer.status_code} {answer.text[:300]}")
    return elapsed


def pairs(dataset: Dataset, args: argparse.Namespace) -> dict[str, list[tuple[Request, Request]]]:
    """Per page: (page request, baseline request) for each id it is asked with."""
    api = {"X-WHIPPY-KEY": dataset.api_key}

    def health(c: httpx.Client) -> httpx.Response:
        return c.get("/healthz")

    def get(path: str, headers: dict[str, str] | None = None) -> Request:
        return lambda c: c.get(path, headers=headers)

    def contact_sequences(contact: str) -> Request:
        return lambda c: c.post(f"/v1/contacts/{contact}/sequences", headers=api, json={})

    sequences = biggest_sequences(dataset, 3)
    contacts = dataset.busy_contacts[: args.contacts]
    return {
        "sequence page": [
            (get(f"/app/sequences/{s}"), get(f"/v1/sequences/{s}", api)) for s in sequences
        ],
        "contact page": [(get(f"/app/contacts/{c}"), contact_sequences(c)) for c in contacts],
        "sequences": [(get("/app/sequences"), health)],
        "contacts": [(get("/app/contacts"), health)],
        "contact search": [(get("/app/contacts?q=Ann"), health)],
        "messages": [(get("/app/messages"), health)],
        "jobs": [(get("/app/jobs"), health)],
        "webhooks": [(get("/app/webhooks"), health)],
    }


def bench_engine(dataset: Dataset, args: argparse.Namespace) -> list[list[str]]:
    rows = []
    with real_server(dataset.url) as (port, _proc):
        client = signed_in(port, dataset.api_key)
        for name, asked in pairs(dataset, args).items():
            page_ms: list[float] = []
            base_ms: list[float] = []
            for page, baseline in asked:  # warm the caches of the server and the database
                timed(client, page)
                timed(client, baseline)
            for _ in range(args.repeats):
                for page, baseline in asked:
                    page_ms.append(timed(client, page))
                    base_ms.append(timed(client, baseline))
            p50, p95, b50 = median(page_ms), percentile(page_ms, 95), median(base_ms)
            log(f"{dataset.engine} {name:15} p50 {p50:6.2f} ms  p95 {p95:6.2f} ms  base {b50:.2f}")
            rows.append(
                [
                    dataset.engine,
                    name,
                    str(len(page_ms)),
                    f"{p50:.1f}",
                    f"{p95:.1f}",
                    f"{b50:.1f}",
                    f"{p50 / b50:.1f}x",
                    "yes" if p95 < TARGET_MS else "NO",
                ]
            )
        client.close()
    return rows


def main() -> None:
    parser = bench_parser(__doc__, repeats=10)
    parser.add_argument("--contacts", type=int, default=20, help="contact pages asked for")
    args = parser.parse_args()
    rows: list[list[str]] = []
    for _engine, server in servers(args):
        dataset = ensure_dataset(server, args.size, regenerate=args.regenerate)
        upgrade(dataset.url)  # a cached dataset may predate the newest tables
        rows += bench_engine(dataset, args)
    print_report(
        f"Console pages, {args.size:,} step contacts: round-trip ms, one request at a time",
        [
            "engine",
            "page",
            "requests",
            "p50",
            "p95",
            "baseline p50",
            "ratio",
            f"p95<{TARGET_MS:.0f}",
        ],
        rows,
        [],
    )


if __name__ == "__main__":
    main()
