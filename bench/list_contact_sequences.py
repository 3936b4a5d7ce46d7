"""List Contact Sequences: the real server against its floor and a minimal handler.

    .venv/bin/python -m bench.list_contact_sequences --engine postgresql --size 1000000
    .venv/bin/python -m bench.list_contact_sequences --engine sqlite --size 1000000 --profile

Three things answer `POST /v1/contacts/{id}/sequences` for contacts in four or more
sequences, in the same run, on the same data:
- **real**: `touchline serve --no-worker` (one uvicorn process, API key checked);
- **minimal**: bench/minimal_app.py, a bare ASGI callable in one uvicorn process that runs
  the same SQL with the raw driver and answers the same JSON (checked byte for byte);
- **floor**: that SQL through the raw driver in this process, no HTTP.
Each is measured with and without filters (`contact_status=pending`,
`sequence_status=active`), at concurrency 1 (latency) and 32 (throughput), `--repeats` times
in turn; the tables give the medians. Targets: the real server's throughput at concurrency 32
is at least 50% of the minimal handler's, and its p50 at concurrency 1 is within 3x the
statement's own p50 plus 1 ms. `--profile` adds a py-spy profile of the real server under
the concurrency-32 load.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from bench.common import (
    BENCH_DIR,
    Dataset,
    Engine,
    bench_parser,
    ensure_dataset,
    free_port,
    http_process,
    log,
    median,
    percentile,
    print_report,
    raw_connect,
    real_server,
    servers,
    spread,
    touchline_env,
)
from bench.load import LoadResult, build_request, run_load
from bench.minimal_app import RawQuery, to_json
from bench.profiling import py_spy, summarize

VARIANTS: dict[str, dict[str, Any]] = {
    "no filter": {},
    "pending+active": {"contact_status": "pending", "sequence_status": "active"},
}


@dataclass
class Samples:
    """Repeats of one measurement: (variant, server, concurrency) -> results."""

    load: dict[tuple[str, str, int], list[LoadResult]] = field(default_factory=dict)
    floor: dict[str, list[list[float]]] = field(default_factory=dict)


def measure_floor(
    conn: Any, query: RawQuery, contacts: list[uuid.UUID], seconds: float
) -> list[float]:
    """The statement's own time, in ms: execute and fetch through the raw driver."""
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    i = 0
    while time.perf_counter() < deadline:
        contact = contacts[i % len(contacts)]
        started = time.perf_counter()
        _, rows = query.run(conn, contact)
        latencies.append((time.perf_counter() - started) * 1000)
        assert rows, "every benchmark contact exists"
        i += 1
    return latencies


@contextmanager
def minimal_server(dataset: Dataset, inline: bool) -> Iterator[int]:
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "bench.minimal_app",
        "--database-url",
        dataset.url,
        "--organization-id",
        dataset.organization_id,
        "--port",
        str(port),
    ] + (["--inline"] if inline else [])
    with http_process(cmd, touchline_env(dataset.url), port, "minimal-app"):
        yield port


def check_same_answers(dataset: Dataset, real: int, minimal: int, contacts: list[str]) -> None:
    """The minimal handler does the real one's work: same JSON for the same question."""
    headers = {"X-WHIPPY-KEY": dataset.api_key}
    for contact in contacts[:20]:
        for filters in VARIANTS.values():
            path = f"/v1/contacts/{contact}/sequences"
            a = httpx.post(f"http://127.0.0.1:{real}{path}", json=filters, headers=headers)
            b = httpx.post(f"http://127.0.0.1:{minimal}{path}", json=filters)
            assert a.status_code == b.status_code == 200, (a.text, b.text)
            assert a.json() == b.json(), (contact, a.text, b.text)
    log("the minimal handler answers exactly what the real server answers")


def requests_for(dataset: Dataset, contacts: list[str], filters: dict[str, Any]) -> list[bytes]:
    body = orjson.dumps(filters)
    headers = {"X-WHIPPY-KEY": dataset.api_key}
    return [build_request("POST", f"/v1/contacts/{c}/sequences", headers, body) for c in contacts]


def bench_engine(dataset: Dataset, args: argparse.Namespace) -> tuple[Samples, str]:
    contacts = dataset.busy_contacts[: args.contacts]
    contact_ids = [uuid.UUID(c) for c in contacts]
    org = uuid.UUID(dataset.organization_id)
    samples = Samples()
    profile = ""
    conn = raw_connect(dataset.url)
    queries = {name: RawQuery(dataset.engine, org, f) for name, f in VARIANTS.items()}
    # The floor's answer is the minimal handler's body: the floor does no less than it.
    assert to_json(*queries["no filter"].run(conn, contact_ids[0])) is not None
    with (
        real_server(dataset.url) as (real_port, real_proc),
        minimal_server(dataset, args.minimal_inline) as minimal_port,
    ):
        check_same_answers(dataset, real_port, minimal_port, contacts)
        ports = {"real": real_port, "minimal": minimal_port}
        for variant in VARIANTS:  # warm the caches of both servers and of the database
            for port in ports.values():
                run_load(
                    port,
                    requests_for(dataset, contacts, VARIANTS[variant]),
                    concurrency=8,
                    seconds=1,
                    warmup_seconds=0,
                )
        for repeat in range(args.repeats):
            for variant, filters in VARIANTS.items():
                reqs = requests_for(dataset, contacts, filters)
                floor = measure_floor(conn, queries[variant], contact_ids, args.floor_seconds)
                samples.floor.setdefault(variant, []).append(floor)
                for concurrency, seconds in ((1, args.latency_seconds), (32, args.seconds)):
                    for server, port in ports.items():
                        result = run_load(port, reqs, concurrency=concurrency, seconds=seconds)
                        if result.errors:
                            raise RuntimeError(
                                f"{server}: {result.errors} errors, e.g. {result.first_error}"
                            )
                        key = (variant, server, concurrency)
                        samples.load.setdefault(key, []).append(result)
                        log(
                            f"{dataset.engine} #{repeat + 1} {variant:14} {server:7} "
                            f"c={concurrency:<2} {result.rps:7.0f} req/s  "
                            f"p50 {result.p50:6.2f} ms  p99 {result.p99:6.2f} ms"
                        )
        if args.profile:
            out = BENCH_DIR / f"profile-lcs-{dataset.engine}.txt"
            reqs = requests_for(dataset, contacts, VARIANTS["no filter"])
            with py_spy(real_proc.pid, out, args.seconds + 2):
                run_load(real_port, reqs, concurrency=32, seconds=args.seconds + 1)
            profile = summarize(out)
    conn.close()
    return samples, profile


def report_rows(engine: Engine, samples: Samples) -> list[list[str]]:
    rows = []
    for variant in VARIANTS:
        floor_p50 = median([percentile(f, 50) for f in samples.floor[variant]])
        floor_p99 = median([percentile(f, 99) for f in samples.floor[variant]])
        floor_rps = median([len(f) / (sum(f) / 1000) for f in samples.floor[variant]])

        def stat(server: str, c: int, what: str, v: str = variant) -> float:
            return median([getattr(r, what) for r in samples.load[(v, server, c)]])

        def runs(server: str, c: int, v: str = variant) -> str:
            return spread([r.rps for r in samples.load[(v, server, c)]])

        real_p50 = stat("real", 1, "p50")
        ratio_c32 = stat("real", 32, "rps") / stat("minimal", 32, "rps")
        latency_bound = 3 * floor_p50 + 1
        rows.append(
            [
                engine,
                variant,
                "floor (SQL only)",
                f"{floor_p50:.3f}",
                f"{floor_p99:.3f}",
                f"{floor_rps:.0f}",
                "-",
                "-",
                "-",
                "-",
            ]
        )
        for server in ("minimal", "real"):
            rows.append(
                [
                    engine,
                    variant,
                    server,
                    f"{stat(server, 1, 'p50'):.3f}",
                    f"{stat(server, 1, 'p99'):.3f}",
                    f"{stat(server, 1, 'rps'):.0f}",
                    f"{stat(server, 32, 'p50'):.2f}",
                    f"{stat(server, 32, 'p99'):.2f}",
                    f"{stat(server, 32, 'rps'):.0f}",
                    runs(server, 32),
                ]
            )
        rows.append(
            [
                engine,
                variant,
                "**real / baseline**",
                f"{real_p50 / floor_p50:.1f}x floor",
                "",
                "",
                "",
                "",
                f"{ratio_c32:.0%} of minimal",
                "",
            ]
        )
        rows.append(
            [
                engine,
                variant,
                "**targets**",
                f"p50 {real_p50:.2f} <= {latency_bound:.2f} ms: "
                f"{'MET' if real_p50 <= latency_bound else 'MISSED'}",
                "",
                "",
                "",
                "",
                f">= 50%: {'MET' if ratio_c32 >= 0.5 else 'MISSED'}",
                "",
            ]
        )
    return rows


HEADERS = (
    "engine",
    "filters",
    "server",
    "c=1 p50 ms",
    "c=1 p99 ms",
    "c=1 req/s",
    "c=32 p50 ms",
    "c=32 p99 ms",
    "c=32 req/s",
    "c=32 req/s runs",
)


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--seconds", type=float, default=5, help="per concurrency-32 run")
    parser.add_argument("--latency-seconds", type=float, default=3, help="per concurrency-1 run")
    parser.add_argument("--floor-seconds", type=float, default=2)
    parser.add_argument("--contacts", type=int, default=500, help="distinct contacts asked")
    parser.add_argument(
        "--minimal-inline",
        action="store_true",
        help="the minimal handler queries on the event loop, not in threads",
    )
    parser.add_argument("--profile", action="store_true", help="py-spy the real server")
    args = parser.parse_args()
    rows: list[list[str]] = []
    profiles = []
    for engine, server in servers(args):
        dataset = ensure_dataset(server, args.size, regenerate=args.regenerate)
        # Read-only: the template itself is served, no copy needed.
        samples, profile = bench_engine(dataset, args)
        rows += report_rows(engine, samples)
        if profile:
            profiles.append(f"### {engine}: real server, concurrency 32\n\n{profile}")
    print_report(
        f"List Contact Sequences, {args.size:,} step contacts, medians of "
        f"{args.repeats} repeats (latencies in ms)",
        HEADERS,
        rows,
        profiles,
    )


if __name__ == "__main__":
    main()
