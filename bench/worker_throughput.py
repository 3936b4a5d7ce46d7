"""Engine throughput: step contacts claimed, sent (outbox provider) and advanced per second.

    .venv/bin/python -m bench.worker_throughput --engine postgresql --size 1000000
    .venv/bin/python -m bench.worker_throughput --engine both --due 20000 --profile

On a private copy of the dataset, each round makes `--due` pending step contacts of active
sequences due (scheduled a minute ago, in one transaction) and times how long it takes until
every one is settled: finished with its message sent, or `inactive` (blocked or opted-out
contacts). The clock starts at that commit and stops at the last settled row's `updated_at`,
so process start-up is not counted (the workers are started and warmed up before). Measured
in turn, `--repeats` times:
- **worker x1, x2**: real `touchline worker` processes (outbox provider, batch size
  `--batch-size`, poll interval 0.05 s);
- **floor x1, x2**: bench/floor_sql.py, the same claim-and-advance done by SQL alone on one
  or two connections of this process.
The rows a round makes due are processed with everything else the data holds: pending step
contacts of draft and archived sequences that are past due (the claim skips them), runs
with an expiry, opted-out contacts. Targets: on PostgreSQL two workers settle at least 2,000
step contacts/s and at least 30% of the floor's rate.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.common import (
    BENCH_DIR,
    DatabaseServer,
    Dataset,
    Engine,
    bench_parser,
    ensure_dataset,
    log,
    mark,
    median,
    print_report,
    raw_connect,
    servers,
    spread,
    stored_time,
    worker_processes,
    working_copy,
)
from bench.floor_sql import run_floor
from bench.profiling import py_spy, summarize

CONFIGS: tuple[tuple[str, int], ...] = (("floor", 1), ("worker", 1), ("worker", 2), ("floor", 2))


@dataclass
class Round:
    due: int
    finished: int
    inactive: int
    seconds: float

    @property
    def rate(self) -> float:
        return (self.finished + self.inactive) / self.seconds if self.seconds > 0 else 0.0


def _epoch(value: Any) -> float:
    if isinstance(value, str):  # SQLite: naive UTC text
        return datetime.fromisoformat(value).replace(tzinfo=UTC).timestamp()
    assert isinstance(value, datetime)
    return value.timestamp()


def prepare(dataset: Dataset) -> None:
    conn = raw_connect(dataset.url)
    kind = "TEXT" if dataset.engine == "sqlite" else "uuid"
    conn.execute(f"CREATE TABLE IF NOT EXISTS bench_due (id {kind} PRIMARY KEY)")
    conn.close()


def make_due(dataset: Dataset, count: int) -> tuple[float, int]:
    """Make `count` pending step contacts of active sequences due; returns (commit time, n)."""
    engine = dataset.engine
    conn = raw_connect(dataset.url)
    at = mark(engine)
    conn.execute("BEGIN IMMEDIATE" if engine == "sqlite" else "BEGIN")
    conn.execute("DELETE FROM bench_due")
    conn.execute(
        "INSERT INTO bench_due (id) SELECT sc.id FROM step_contacts sc "
        "JOIN sequences s ON s.id = sc.sequence_id "
        f"WHERE sc.status = 'pending' AND s.status = 'active' ORDER BY sc.id LIMIT {at}",
        (count,),
    )
    due_at = stored_time(engine, datetime.now(UTC) - timedelta(minutes=1))
    # Running workers may be settling some of these rows (a next step that just fell
    # due): lock them in id order, the order the settle writes them in, so that the two
    # never deadlock.
    locked = "" if engine == "sqlite" else " FOR UPDATE OF sc"
    conn.execute(
        f"UPDATE step_contacts SET scheduled_at = {at} WHERE id IN (SELECT sc.id FROM "
        "step_contacts sc JOIN bench_due d ON d.id = sc.id ORDER BY sc.id"
        f"{locked})",
        (due_at,),
    )
    made = conn.execute("SELECT count(*) FROM bench_due").fetchone()[0]
    conn.execute("COMMIT")
    started = time.time()
    conn.close()
    return started, int(made)


def wait_settled(dataset: Dataset, timeout: float) -> None:
    """Until no step contact is due or being sent.

    Asked through the queue's two partial indexes, so that polling costs the database
    next to nothing: counting the round's rows by a join cost PostgreSQL 0.14 s a poll,
    a third of a core taken from the workers being measured.
    """
    conn = raw_connect(dataset.url)
    not_held = "held = 0" if dataset.engine == "sqlite" else "NOT held"
    now = "strftime('%Y-%m-%d %H:%M:%f', 'now')" if dataset.engine == "sqlite" else "now()"
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            busy = conn.execute(
                "SELECT EXISTS (SELECT 1 FROM step_contacts WHERE status = 'pending' AND "
                f"{not_held} AND scheduled_at <= {now}) OR EXISTS (SELECT 1 FROM "
                "step_contacts WHERE status = 'active')"
            ).fetchone()[0]
            if not busy:
                return
            time.sleep(0.25)
        raise RuntimeError(f"step contacts still due or active after {timeout}s")
    finally:
        conn.close()


def outcome(dataset: Dataset, started: float, due: int) -> Round:
    conn = raw_connect(dataset.url)
    finished, inactive, last, messages = conn.execute(
        "SELECT sum(CASE WHEN sc.status = 'finished' THEN 1 ELSE 0 END), "
        "sum(CASE WHEN sc.status = 'inactive' THEN 1 ELSE 0 END), max(sc.updated_at), "
        "(SELECT count(*) FROM messages m JOIN bench_due d ON d.id = m.step_contact_id) "
        "FROM step_contacts sc JOIN bench_due d ON d.id = sc.id"
    ).fetchone()
    conn.close()
    # Exactly one message per step contact that went out, whoever settled it.
    assert messages == finished, (messages, finished)
    return Round(due, int(finished or 0), int(inactive or 0), _epoch(last) - started)


def one_round(dataset: Dataset, kind: str, count: int, args: argparse.Namespace) -> Round:
    started, due = make_due(dataset, args.due)
    if kind == "floor":
        run_floor(dataset.url, dataset.engine, args.batch_size, count)
    else:
        wait_settled(dataset, timeout=args.timeout)
    return outcome(dataset, started, due)


def bench_engine(
    server: DatabaseServer,
    template: Dataset,
    args: argparse.Namespace,
    configs: tuple[tuple[str, int], ...] = CONFIGS,
) -> tuple[dict[tuple[str, int], list[Round]], str]:
    rounds: dict[tuple[str, int], list[Round]] = {c: [] for c in configs}
    env = {"TOUCHLINE_WORKER_BATCH_SIZE": str(args.batch_size)}
    for repeat in range(args.repeats):
        # A fresh copy for each repeat: every round uses up pending step contacts (each run
        # that reaches its last step leaves none behind), and a dataset shared by all the
        # repeats' warm-ups and rounds ran short of them by the third.
        with working_copy(server, template) as dataset:
            prepare(dataset)
            _settle_in(dataset, args)
            for kind, count in configs:
                if kind == "worker":
                    with worker_processes(dataset.url, count, **env):
                        _warm_up(dataset, args)
                        result = one_round(dataset, kind, count, args)
                else:
                    result = one_round(dataset, kind, count, args)
                rounds[(kind, count)].append(result)
                log(
                    f"{dataset.engine} #{repeat + 1} {kind} x{count}: {result.rate:7.0f} step "
                    f"contacts/s ({result.finished} finished, {result.inactive} inactive in "
                    f"{result.seconds:.2f}s)"
                )
    profile = ""
    if args.profile:
        with working_copy(server, template) as dataset:
            prepare(dataset)
            rate = median([r.rate for r in rounds[("worker", 2)]])
            profile = _profile(dataset, args, rate)
    return rounds, profile


def report_rows(engine: Engine, rounds: dict[tuple[str, int], list[Round]]) -> list[list[str]]:
    rates = {c: median([r.rate for r in rounds[c]]) for c in CONFIGS}
    rows = []
    for kind, count in CONFIGS:
        floor = rates[("floor", count)]
        rate = rates[(kind, count)]
        rows.append(
            [
                engine,
                f"{kind} x{count}",
                f"{rate:.0f}",
                spread([r.rate for r in rounds[(kind, count)]]),
                "-" if kind == "floor" else f"{rate / floor:.0%}",
            ]
        )
    two = rates[("worker", 2)]
    ratio = two / rates[("floor", 2)]
    if engine == "postgresql":
        rows.append(
            [
                engine,
                "**targets** (worker x2)",
                f"{two:.0f} >= 2000: {'MET' if two >= 2000 else 'MISSED'}",
                "",
                f"{ratio:.0%} >= 30%: {'MET' if ratio >= 0.3 else 'MISSED'}",
            ]
        )
    return rows


def _settle_in(dataset: Dataset, args: argparse.Namespace) -> None:
    """An unmeasured floor round on a fresh copy: the first round on a copy ran 30-40%
    slower on both engines (PostgreSQL: 2,100 against 2,850-3,070/s for one connection;
    SQLite: 720-810 against about 1,250/s), which would bias whichever config came first."""
    result = one_round(dataset, "floor", 2, args)
    log(f"{dataset.engine} settling-in round: {result.rate:7.0f} step contacts/s (unmeasured)")


def _warm_up(dataset: Dataset, args: argparse.Namespace) -> None:
    """An unmeasured round first (`--warm-up` step contacts), so that the measured round
    starts with the workers polling and their caches as warm as a long-running worker's:
    each worker compiles a step's template the first time it sends the step, and a round
    reaches most of the dataset's 15,000 steps."""
    make_due(dataset, args.warm_up)
    wait_settled(dataset, timeout=args.timeout)


def _profile(dataset: Dataset, args: argparse.Namespace, rate: float) -> str:
    out = BENCH_DIR / f"profile-worker-{dataset.engine}.txt"
    env = {"TOUCHLINE_WORKER_BATCH_SIZE": str(args.batch_size)}
    due = max(args.due, int(rate * 12))
    with worker_processes(dataset.url, 2, **env) as procs:
        _warm_up(dataset, args)
        _, made = make_due(dataset, due)
        # Profile one of the two workers while both work through the backlog.
        with py_spy(procs[0].pid, out, max(2.0, made / rate * 0.8), idle=True):
            wait_settled(dataset, timeout=args.timeout)
    return summarize(out)


HEADERS = ("engine", "config", "step contacts/s", "runs", "of the floor (same concurrency)")


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--due", type=int, default=10_000, help="step contacts per round")
    parser.add_argument(
        "--warm-up",
        type=int,
        default=30_000,
        help="step contacts the workers settle before each measured round (50: cold workers)",
    )
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--profile", action="store_true", help="py-spy one of two workers")
    args = parser.parse_args()
    rows: list[list[str]] = []
    profiles = []
    for engine, server in servers(args):
        template = ensure_dataset(server, args.size, regenerate=args.regenerate)
        rounds, profile = bench_engine(server, template, args)
        rows += report_rows(engine, rounds)
        if profile:
            profiles.append(f"### {engine}: one of two workers\n\n{profile}")
    print_report(
        f"Worker throughput, {args.size:,} step contacts, {args.due:,} due per round, "
        f"batch size {args.batch_size}, medians of {args.repeats} repeats",
        HEADERS,
        rows,
        profiles,
    )


if __name__ == "__main__":
    main()
