"""What every benchmark shares: database servers, cached datasets, processes and statistics.

Datasets are generated once per (engine, size) and kept as templates: a SQLite file under
`TOUCHLINE_BENCH_DIR` (default /tmp/touchline-bench), or a `bench_tpl_*` database on a
PostgreSQL server given with `--postgres-url`. A benchmark works on a copy of the template
(a file copy, or `CREATE DATABASE ... TEMPLATE`), so that what one run writes never leaks
into the next. Without `--postgres-url` a throwaway PostgreSQL server is started for the
run (tests/postgres.py) and the dataset is generated on it from scratch.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import httpx
import psycopg
from sqlalchemy.engine import make_url

from tests.postgres import throwaway_postgres
from touchline.db import SQLITE_PRAGMAS
from touchline.migrate import upgrade

Engine = Literal["sqlite", "postgresql"]
ENGINES: tuple[Engine, ...] = ("sqlite", "postgresql")

BENCH_DIR = Path(os.environ.get("TOUCHLINE_BENCH_DIR", "/tmp/touchline-bench"))
# Bumped whenever the generator changes what it builds, so stale templates are not reused.
GENERATOR_VERSION = 3
TOUCHLINE = str(Path(sys.executable).parent / "touchline")
# Processes run from the repository root, where `python -m bench.minimal_app` resolves.
ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------- database servers


@dataclass(frozen=True)
class DatabaseServer:
    """Where benchmark databases live: a folder of SQLite files, or a PostgreSQL server."""

    engine: Engine
    postgres_url: str | None = None
    # A throwaway server's databases disappear with it: nothing is cached there.
    persistent: bool = True

    def database_url(self, name: str) -> str:
        if self.engine == "sqlite":
            return f"sqlite:///{BENCH_DIR / (name + '.db')}"
        return self._libpq_url(name)

    def admin_url(self) -> str:
        return self._libpq_url("postgres")

    def _libpq_url(self, database: str) -> str:
        # A plain `postgresql://` URL, which psycopg connects to and Touchline accepts, even
        # when --postgres-url names SQLAlchemy's driver (`postgresql+psycopg://`).
        assert self.postgres_url is not None
        url = make_url(self.postgres_url).set(drivername="postgresql", database=database)
        return url.render_as_string(False)

    def exists(self, name: str) -> bool:
        if self.engine == "sqlite":
            return (BENCH_DIR / (name + ".db")).exists()
        with psycopg.connect(self.admin_url(), autocommit=True) as conn:
            row = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        return row is not None

    def drop(self, name: str) -> None:
        if self.engine == "sqlite":
            for suffix in ("", "-wal", "-shm", "-journal"):
                (BENCH_DIR / (name + ".db" + suffix)).unlink(missing_ok=True)
            return
        with psycopg.connect(self.admin_url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def create_empty(self, name: str) -> str:
        self.drop(name)
        if self.engine == "sqlite":
            BENCH_DIR.mkdir(parents=True, exist_ok=True)
        else:
            with psycopg.connect(self.admin_url(), autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{name}"')
        return self.database_url(name)

    def copy(self, source: str, target: str) -> str:
        self.drop(target)
        if self.engine == "sqlite":
            shutil.copyfile(BENCH_DIR / (source + ".db"), BENCH_DIR / (target + ".db"))
        else:
            with psycopg.connect(self.admin_url(), autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{target}" TEMPLATE "{source}" STRATEGY file_copy')
        return self.database_url(target)

    def bench_databases(self) -> list[str]:
        if self.engine == "sqlite":
            return sorted(p.stem for p in BENCH_DIR.glob("bench_*.db"))
        with psycopg.connect(self.admin_url(), autocommit=True) as conn:
            rows = conn.execute(
                "SELECT datname FROM pg_database WHERE datname LIKE 'bench\\_%' ORDER BY 1"
            ).fetchall()
        return [r[0] for r in rows]


@contextmanager
def database_server(engine: Engine, postgres_url: str | None) -> Iterator[DatabaseServer]:
    if engine == "sqlite":
        BENCH_DIR.mkdir(parents=True, exist_ok=True)
        yield DatabaseServer("sqlite")
    elif postgres_url:
        yield DatabaseServer("postgresql", postgres_url)
    else:
        with throwaway_postgres() as url:
            yield DatabaseServer("postgresql", url, persistent=False)


# ---------------------------------------------------------------------- datasets


@dataclass
class Dataset:
    """A generated organization: where it is and what a benchmark needs to call it."""

    engine: Engine
    name: str
    url: str
    step_contacts: int
    organization_id: str
    api_key: str
    channel_ids: dict[str, str]
    counts: dict[str, int]
    # Contacts in several sequences (4 or more latest runs): the ones a benchmark asks about.
    busy_contacts: list[str]
    # What List Contact Sequences must answer for a few contacts (see generate.check_api).
    expectations: dict[str, dict[str, Any]] = field(default_factory=dict)
    generated_seconds: float = 0.0
    generated_at: str = ""

    def save(self, server: DatabaseServer) -> None:
        metadata_path(server, self.name).write_text(json.dumps(asdict(self)))

    @classmethod
    def load(cls, server: DatabaseServer, name: str) -> Dataset | None:
        path = metadata_path(server, name)
        if not path.exists() or not server.exists(name):
            return None
        return cls(**json.loads(path.read_text()))


def template_name(step_contacts: int) -> str:
    return f"bench_tpl_v{GENERATOR_VERSION}_{step_contacts}"


def metadata_path(server: DatabaseServer, name: str) -> Path:
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    where = "sqlite"
    if server.engine == "postgresql":
        url = make_url(server.postgres_url or "")
        where = f"pg-{url.host}-{url.port}"
    return BENCH_DIR / f"{where}-{name}.json"


def ensure_dataset(
    server: DatabaseServer, step_contacts: int, *, regenerate: bool = False
) -> Dataset:
    """The template dataset of that size, generated now unless a cached one exists."""
    from bench.generate import generate

    name = template_name(step_contacts)
    if not regenerate and server.persistent:
        cached = Dataset.load(server, name)
        if cached is not None:
            log(f"using cached dataset {name} ({cached.counts})")
            # Made by an older Touchline, a cached dataset lacks later migrations: the
            # servers would fail on it or measure an old schema.
            upgrade(server.database_url(name))
            return cached
    dataset = generate(server, name, step_contacts)
    if server.persistent:
        dataset.save(server)
    return dataset


@contextmanager
def working_copy(server: DatabaseServer, dataset: Dataset) -> Iterator[Dataset]:
    """A private copy of the dataset, dropped afterwards."""
    name = f"bench_run_{os.getpid()}_{dataset.step_contacts}"
    started = time.perf_counter()
    url = server.copy(dataset.name, name)
    log(f"copied {dataset.name} to {name} in {time.perf_counter() - started:.1f}s")
    copy = Dataset(**{**asdict(dataset), "name": name, "url": url})
    try:
        yield copy
    finally:
        server.drop(name)


def raw_connect(url: str) -> Any:
    """A plain DB-API connection (sqlite3 or psycopg), autocommit, no SQLAlchemy. A SQLite
    one has Touchline's settings (a floor with SQLite's default `synchronous=FULL` pays an
    fsync per commit that Touchline does not)."""
    if url.startswith("sqlite"):
        path = make_url(url).database
        conn = sqlite3.connect(path or "", timeout=30, isolation_level=None)
        for pragma in (*SQLITE_PRAGMAS, "busy_timeout=30000"):
            conn.execute(f"PRAGMA {pragma}")
        return conn
    return psycopg.connect(url, autocommit=True)


def engine_of(url: str) -> Engine:
    return "sqlite" if url.startswith("sqlite") else "postgresql"


def mark(engine: Engine) -> str:
    """The raw driver's placeholder: sqlite3's `?`, psycopg's `%s`."""
    return "?" if engine == "sqlite" else "%s"


def stored_time(engine: Engine, value: datetime) -> datetime | str:
    """`value` as a raw connection passes it: on SQLite naive UTC text, as Touchline stores
    times there."""
    if engine == "sqlite":
        return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")
    return value


# ---------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def touchline_env(url: str, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "TOUCHLINE_DATABASE_URL": url,
        # Off so that the access log of the load does not fill the disk; both servers of a
        # comparison run with the same level.
        "TOUCHLINE_LOG_LEVEL": "warning",
        # The benchmarks' fake providers listen on 127.0.0.1.
        "TOUCHLINE_ALLOW_PRIVATE_NETWORKS": "true",
        **extra,
    }


@contextmanager
def http_process(
    cmd: Sequence[str], env: dict[str, str], port: int, name: str
) -> Iterator[subprocess.Popen[bytes]]:
    """Start a server process, wait until it answers /healthz, stop it afterwards."""
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    log_path = BENCH_DIR / f"{name}-{port}.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            list(cmd), env=env, stdout=subprocess.DEVNULL, stderr=log_file, cwd=ROOT
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited: {log_path.read_text()[-2000:]}")
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).is_success:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{name} did not start: {log_path.read_text()[-2000:]}")
                time.sleep(0.1)
            yield proc
        finally:
            stop_process(proc)
    log_path.unlink(missing_ok=True)


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@contextmanager
def real_server(
    url: str, cpus: str | None = None, **env: str
) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """`touchline serve --no-worker` on 127.0.0.1 and a free port; with `cpus` (taskset's
    list, such as "0"), it and its processes run on those cores only."""
    port = free_port()
    cmd = [TOUCHLINE, "serve", "--no-worker", "--host", "127.0.0.1", "--port", str(port)]
    if cpus is not None:
        cmd = ["taskset", "-c", cpus, *cmd]
    with http_process(cmd, touchline_env(url, **env), port, "touchline-serve") as proc:
        yield port, proc


@contextmanager
def worker_processes(url: str, count: int, **env: str) -> Iterator[list[subprocess.Popen[bytes]]]:
    """`touchline worker` processes, stopped with SIGTERM (they finish the batch in hand)."""
    environment = touchline_env(url, TOUCHLINE_WORKER_POLL_SECONDS="0.05", **env)
    procs = [
        subprocess.Popen([TOUCHLINE, "worker"], env=environment, stdout=subprocess.DEVNULL)
        for _ in range(count)
    ]
    try:
        yield procs
    finally:
        for proc in procs:
            stop_process(proc)


# ---------------------------------------------------------------------- numbers


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) by nearest rank; values need not be sorted."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def spread(values: Sequence[float]) -> str:
    """min..max of the repeats, to show how noisy the machine was."""
    if not values:
        return "-"
    return f"{_figure(min(values))}..{_figure(max(values))}"


def _figure(value: float) -> str:
    # Four significant digits, but never an exponent for a rate of 10,000/s or more.
    return f"{value:.0f}" if abs(value) >= 1000 else f"{value:.4g}"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table, so results paste straight into docs/benchmarks.md."""
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in cells
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def add_database_arguments(parser: argparse.ArgumentParser, *, engines: bool = True) -> None:
    if engines:
        parser.add_argument(
            "--engine",
            choices=[*ENGINES, "both"],
            default="both",
            help="which database (default: both, one after the other)",
        )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("TOUCHLINE_BENCH_POSTGRES_URL"),
        help="an existing PostgreSQL server to create bench_* databases in (datasets are "
        "cached there); default: a throwaway server started for this run",
    )
    parser.add_argument(
        "--regenerate", action="store_true", help="generate the dataset even if cached"
    )


def selected_engines(choice: str) -> list[Engine]:
    return list(ENGINES) if choice == "both" else [e for e in ENGINES if e == choice]


def bench_parser(
    doc: str | None, *, size: bool = True, repeats: int | None = 3
) -> argparse.ArgumentParser:
    """A command's options: the databases (see add_database_arguments) and, unless turned
    off, the dataset's size and the number of repeats."""
    parser = argparse.ArgumentParser(description=(doc or "").split("\n\n")[0])
    add_database_arguments(parser)
    if size:
        parser.add_argument("--size", type=int, default=1_000_000, help="step contacts")
    if repeats is not None:
        parser.add_argument("--repeats", type=int, default=repeats)
    return parser


def servers(args: argparse.Namespace) -> Iterator[tuple[Engine, DatabaseServer]]:
    """Each engine the command was asked for, one after the other, with its server up."""
    for engine in selected_engines(args.engine):
        with database_server(engine, args.postgres_url) as server:
            yield engine, server


def print_report(
    title: str, headers: Sequence[str], rows: Sequence[Sequence[object]], profiles: Sequence[str]
) -> None:
    """A benchmark's results: its title, the table, then any profiles."""
    print(f"\n{title}\n")
    print(table(headers, rows))
    for profile in profiles:
        print("\n" + profile)
