"""List Contact Sequences: the real server against an async floor and a thread-pool handler.

    .venv/bin/python -m bench.list_contact_sequences --engine postgresql --size 1000000
    .venv/bin/python -m bench.list_contact_sequences --engine sqlite --size 1000000 --profile

What answers `POST /v1/contacts/{id}/sequences` for contacts in four or more sequences, in
the same run, on the same data, each one process pinned to the core `--server-cpus` (0):
- **real**: `touchline serve --no-worker` (API key checked), on whatever event loop and
  HTTP parser uvicorn finds installed (uvloop and httptools once the `bench` extras are;
  `--real-plain` adds a run with them hidden: asyncio and h11, as Touchline's own
  dependencies give);
- **minimal**: bench/minimal_app.py, a bare ASGI callable on uvicorn running the same SQL
  with the sync raw driver in anyio's thread pool;
- **async-uvicorn**, **async-granian**: bench/floor_async.py, the same SQL awaited on the
  event loop (asyncpg pool on PostgreSQL, sqlite3 inline on SQLite), on uvicorn with
  uvloop and httptools, and on granian: the floor an async Python server can reach;
- **SQL only**: the statement through the raw sync driver in this process, no HTTP.
Every baseline's JSON is checked byte for byte against the real server's before measuring.
The load is wrk (bench/load.py) on the core `--load-cpus` (1): one connection for latency
(concurrency 1, p50 from wrk's distribution), 32 for throughput; with and without filters
(`contact_status=pending`, `sequence_status=active`); `--repeats` times in turn. The tables
give the medians, then the real server against the best baseline: its throughput at
concurrency 32 as a share of the best, its p50 at concurrency 1 as a difference. Targets:
at least 60% of the best throughput, and a p50 within 1 ms of the best. `--profile` adds a
py-spy profile of the real server under the concurrency-32 load.

The async floor and granian need the `bench` extras: `scripts/setup test,bench`.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager as ContextManager
from contextlib import ExitStack, contextmanager
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
from bench.floor_async import DRIVERS, SERVERS
from bench.load import LoadResult, Request, run_load
from bench.minimal_app import RawQuery, to_json
from bench.profiling import py_spy, summarize

VARIANTS: dict[str, dict[str, Any]] = {
    "no filter": {},
    "pending+active": {"contact_status": "pending", "sequence_status": "active"},
}
REAL_TARGET_SHARE = 0.60
REAL_TARGET_EXTRA_MS = 1.0
# Defaults of the options added with the async floor, for callers that build their own
# arguments (bench.scaling): they measure the real server and the minimal handler only.
DEFAULTS: dict[str, Any] = {
    "floors": [],
    "real_plain": False,
    "driver": "asyncpg",
    "pool_size": 8,
    "server_cpus": "0",
    "load_cpus": "1",
}


@dataclass
class Samples:
    """Repeats of one measurement: (variant, server, concurrency) -> results."""

    load: dict[tuple[str, str, int], list[LoadResult]] = field(default_factory=dict)
    floor: dict[str, list[list[float]]] = field(default_factory=dict)
    # Server name -> what the report calls it.
    labels: dict[str, str] = field(default_factory=dict)


def option(args: argparse.Namespace, name: str) -> Any:
    return getattr(args, name, DEFAULTS[name])


def stack() -> str:
    """The event loop and HTTP parser uvicorn's "auto" picks in this environment."""
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    return f"{loop}+{http}"


def check_extras(engine: Engine, floors: list[str]) -> None:
    """Fail before starting anything when the async floor's packages are missing."""
    wanted = {"uvicorn": ["uvloop", "httptools"], "granian": ["uvloop", "granian"]}
    needed = {name for floor in floors for name in wanted[floor]}
    if floors and engine == "postgresql":
        needed.add("asyncpg")
    missing = sorted(n for n in needed if importlib.util.find_spec(n) is None)
    if missing:
        raise SystemExit(
            f"the async floor needs {', '.join(missing)}: scripts/setup test,bench "
            "(or --floors with nothing after it to leave it out)"
        )


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


def _pinned(cmd: list[str], cpus: str) -> list[str]:
    return ["taskset", "-c", cpus, *cmd] if cpus else cmd


@contextmanager
def baseline_server(
    dataset: Dataset, module: str, options: list[str], cpus: str = ""
) -> Iterator[int]:
    """`python -m module` serving the dataset's organization on a free port."""
    port = free_port()
    cmd = [sys.executable, "-m", module, "--database-url", dataset.url]
    cmd += ["--organization-id", dataset.organization_id, "--port", str(port), *options]
    env = touchline_env(dataset.url)
    with http_process(_pinned(cmd, cpus), env, port, module.rsplit(".", 1)[-1]):
        yield port


def minimal_server(dataset: Dataset, inline: bool, cpus: str = "") -> ContextManager[int]:
    return baseline_server(dataset, "bench.minimal_app", ["--inline"] if inline else [], cpus)


def async_floor_server(
    dataset: Dataset, server: str, driver: str, pool_size: int, cpus: str = ""
) -> ContextManager[int]:
    options = ["--server", server, "--driver", driver, "--pool-size", str(pool_size)]
    return baseline_server(dataset, "bench.floor_async", options, cpus)


def plain_stack_env() -> dict[str, str]:
    """An environment in which uvicorn's "auto" finds neither uvloop nor httptools: a
    module of each name that fails to import shadows the installed one."""
    stubs = BENCH_DIR / "plain-stack"
    stubs.mkdir(parents=True, exist_ok=True)
    for name in ("uvloop", "httptools"):
        (stubs / f"{name}.py").write_text(f'raise ImportError("{name} hidden by the bench")\n')
    return {"PYTHONPATH": str(stubs)}


def check_same_answers(
    dataset: Dataset, real: int, baselines: dict[str, int], contacts: list[str]
) -> None:
    """Every baseline does the real server's work: the same bytes for the same question."""
    headers = {"X-WHIPPY-KEY": dataset.api_key}
    for contact in contacts[:20]:
        for filters in VARIANTS.values():
            path = f"/v1/contacts/{contact}/sequences"
            a = httpx.post(f"http://127.0.0.1:{real}{path}", json=filters, headers=headers)
            assert a.status_code == 200, a.text
            for name, port in baselines.items():
                b = httpx.post(f"http://127.0.0.1:{port}{path}", json=filters)
                assert b.status_code == 200, (name, b.text)
                assert a.content == b.content, (name, contact, a.text, b.text)
    log(f"{', '.join(baselines)}: byte for byte what the real server answers")


def requests_for(dataset: Dataset, contacts: list[str], filters: dict[str, Any]) -> list[Request]:
    body = orjson.dumps(filters)
    headers = {"X-WHIPPY-KEY": dataset.api_key}
    return [Request("POST", f"/v1/contacts/{c}/sequences", headers, body) for c in contacts]


def bench_engine(dataset: Dataset, args: argparse.Namespace) -> tuple[Samples, str]:
    contacts = dataset.busy_contacts[: args.contacts]
    contact_ids = [uuid.UUID(c) for c in contacts]
    org = uuid.UUID(dataset.organization_id)
    cpus, load_cpus = option(args, "server_cpus"), option(args, "load_cpus")
    check_extras(dataset.engine, option(args, "floors"))
    samples = Samples()
    profile = ""
    conn = raw_connect(dataset.url)
    queries = {name: RawQuery(dataset.engine, org, f) for name, f in VARIANTS.items()}
    # The floor's answer is the minimal handler's body: the floor does no less than it.
    assert to_json(*queries["no filter"].run(conn, contact_ids[0])) is not None
    installed = stack()
    with ExitStack() as stack_:
        real_port, real_proc = stack_.enter_context(real_server(dataset.url, cpus or None))
        ports = {"real": real_port}
        samples.labels["real"] = f"real ({installed})"
        if option(args, "real_plain") and installed != "asyncio+h11":
            plain = real_server(dataset.url, cpus or None, **plain_stack_env())
            ports["real-plain"] = stack_.enter_context(plain)[0]
            samples.labels["real-plain"] = "real (asyncio+h11)"
        baselines = {
            "minimal": stack_.enter_context(minimal_server(dataset, args.minimal_inline, cpus))
        }
        samples.labels["minimal"] = f"minimal, {'inline' if args.minimal_inline else 'threads'}"
        for server in option(args, "floors"):
            driver = option(args, "driver") if dataset.engine == "postgresql" else "sqlite3"
            served = async_floor_server(
                dataset, server, option(args, "driver"), option(args, "pool_size"), cpus
            )
            baselines[f"async-{server}"] = stack_.enter_context(served)
            samples.labels[f"async-{server}"] = f"async floor, {server}, {driver}"
        check_same_answers(dataset, real_port, baselines, contacts)
        ports.update(baselines)
        for variant in VARIANTS:  # warm the caches of the servers and of the database
            for port in ports.values():
                reqs = requests_for(dataset, contacts, VARIANTS[variant])
                run_load(port, reqs, concurrency=8, seconds=1, cpus=load_cpus)
        for repeat in range(args.repeats):
            for variant, filters in VARIANTS.items():
                reqs = requests_for(dataset, contacts, filters)
                floor = measure_floor(conn, queries[variant], contact_ids, args.floor_seconds)
                samples.floor.setdefault(variant, []).append(floor)
                for concurrency, seconds in ((1, args.latency_seconds), (32, args.seconds)):
                    for server, port in ports.items():
                        result = run_load(
                            port, reqs, concurrency=concurrency, seconds=seconds, cpus=load_cpus
                        )
                        if result.errors:
                            raise RuntimeError(
                                f"{server}: {result.errors} errors, e.g. {result.first_error}"
                            )
                        key = (variant, server, concurrency)
                        samples.load.setdefault(key, []).append(result)
                        log(
                            f"{dataset.engine} #{repeat + 1} {variant:14} {server:13} "
                            f"c={concurrency:<2} {result.rps:7.0f} req/s  "
                            f"p50 {result.p50:6.2f} ms  p99 {result.p99:6.2f} ms"
                        )
        if args.profile:
            out = BENCH_DIR / f"profile-lcs-{dataset.engine}.txt"
            reqs = requests_for(dataset, contacts, VARIANTS["no filter"])
            with py_spy(real_proc.pid, out, args.seconds + 2):
                run_load(real_port, reqs, concurrency=32, seconds=args.seconds + 1, cpus=load_cpus)
            profile = summarize(out)
    conn.close()
    return samples, profile


def _row(engine: Engine, variant: str, server: str, *cells: str) -> list[str]:
    return [engine, variant, server, *cells, *[""] * (len(HEADERS) - 3 - len(cells))]


def report_rows(engine: Engine, samples: Samples) -> list[list[str]]:
    rows = []
    for variant in VARIANTS:
        floor = samples.floor[variant]
        rows.append(
            _row(
                engine,
                variant,
                "SQL only",
                f"{median([percentile(f, 50) for f in floor]):.3f}",
                f"{median([percentile(f, 99) for f in floor]):.3f}",
                f"{median([len(f) / (sum(f) / 1000) for f in floor]):.0f}",
                *["-"] * 4,
            )
        )

        def stat(server: str, c: int, what: str, v: str = variant) -> float:
            return median([getattr(r, what) for r in samples.load[(v, server, c)]])

        servers_ = [s for s in samples.labels if (variant, s, 1) in samples.load]
        for server in servers_:
            rows.append(
                _row(
                    engine,
                    variant,
                    samples.labels[server],
                    f"{stat(server, 1, 'p50'):.3f}",
                    f"{stat(server, 1, 'p99'):.3f}",
                    f"{stat(server, 1, 'rps'):.0f}",
                    f"{stat(server, 32, 'p50'):.2f}",
                    f"{stat(server, 32, 'p99'):.2f}",
                    f"{stat(server, 32, 'rps'):.0f}",
                    spread([r.rps for r in samples.load[(variant, server, 32)]]),
                )
            )
        baselines = [s for s in servers_ if not s.startswith("real")]
        fastest = max(baselines, key=lambda s: stat(s, 32, "rps"))
        quickest = min(baselines, key=lambda s: stat(s, 1, "p50"))
        best_rps, best_p50 = stat(fastest, 32, "rps"), stat(quickest, 1, "p50")
        for real in (s for s in servers_ if s.startswith("real")):
            share = stat(real, 32, "rps") / best_rps
            extra = stat(real, 1, "p50") - best_p50
            name = samples.labels[real]
            rows.append(
                _row(
                    engine,
                    variant,
                    f"**{name} / best**",
                    f"+{extra:.2f} ms vs {quickest}",
                    *[""] * 4,
                    f"{share:.0%} of {fastest}",
                )
            )
            rows.append(
                _row(
                    engine,
                    variant,
                    f"**{name}: targets**",
                    f"+{extra:.2f} <= {REAL_TARGET_EXTRA_MS:.0f} ms: "
                    f"{'MET' if extra <= REAL_TARGET_EXTRA_MS else 'MISSED'}",
                    *[""] * 4,
                    f">= {REAL_TARGET_SHARE:.0%}: "
                    f"{'MET' if share >= REAL_TARGET_SHARE else 'MISSED'}",
                )
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
    parser.add_argument(
        "--floors",
        nargs="*",
        choices=SERVERS,
        default=list(SERVERS),
        help="the ASGI servers the async floor runs on (none: skip it)",
    )
    parser.add_argument("--driver", choices=DRIVERS, default=DEFAULTS["driver"])
    parser.add_argument("--pool-size", type=int, default=DEFAULTS["pool_size"])
    parser.add_argument(
        "--real-plain",
        action="store_true",
        help="also measure the real server on asyncio and h11 (uvloop, httptools hidden)",
    )
    parser.add_argument(
        "--server-cpus", default=DEFAULTS["server_cpus"], help="taskset list ('': unpinned)"
    )
    parser.add_argument(
        "--load-cpus", default=DEFAULTS["load_cpus"], help="wrk's taskset list ('': unpinned)"
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
        f"{args.repeats} repeats (latencies in ms; load: wrk on cpus {args.load_cpus!r}, "
        f"servers on {args.server_cpus!r})",
        HEADERS,
        rows,
        profiles,
    )


if __name__ == "__main__":
    main()
