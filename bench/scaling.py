"""Scaling shape: List Contact Sequences and the worker from 10^4 to 10^6 step contacts.

    .venv/bin/python -m bench.scaling --engine both --sizes 10000 100000 1000000

For each size (a dataset of that many step contacts, the organization growing with it:
contacts, sequences and runs in proportion), a shorter version of the two benchmarks:
List Contact Sequences without filters (the statement's p50, the real server's p50 at
concurrency 1 and its throughput at concurrency 32), and two `touchline worker` processes
against the two-connection SQL floor (bench/worker_throughput.py; a round makes at most
`--due` step contacts due, fewer when the dataset has fewer pending). Medians of
`--repeats`.
"""

from __future__ import annotations

import argparse

from bench import list_contact_sequences as lcs
from bench import worker_throughput as wt
from bench.common import (
    bench_parser,
    ensure_dataset,
    log,
    median,
    percentile,
    servers,
    table,
)


def main() -> None:
    parser = bench_parser(__doc__, size=False, repeats=2)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--due", type=int, default=10_000)
    args = parser.parse_args()
    lcs_args = argparse.Namespace(
        contacts=500,
        repeats=args.repeats,
        seconds=4.0,
        latency_seconds=2.0,
        floor_seconds=1.5,
        minimal_inline=False,
        profile=False,
    )
    lcs.VARIANTS = {"no filter": {}}
    wt_args = argparse.Namespace(
        due=args.due,
        warm_up=args.due,
        repeats=args.repeats,
        batch_size=100,
        timeout=600.0,
        profile=False,
    )
    rows = []
    for engine, server in servers(args):
        for size in args.sizes:
            template = ensure_dataset(server, size, regenerate=args.regenerate)
            samples, _ = lcs.bench_engine(template, lcs_args)
            floor = median([percentile(f, 50) for f in samples.floor["no filter"]])

            def load(name: str, c: int, what: str, s: lcs.Samples = samples) -> float:
                results = s.load[("no filter", name, c)]
                return median([float(getattr(r, what)) for r in results])

            rounds, _ = wt.bench_engine(server, template, wt_args, (("floor", 2), ("worker", 2)))
            worker = median([r.rate for r in rounds[("worker", 2)]])
            sql = median([r.rate for r in rounds[("floor", 2)]])
            due = median([r.due for r in rounds[("worker", 2)]])
            log(f"{engine} {size:,}: done")
            rows.append(
                [
                    engine,
                    f"{size:,}",
                    f"{floor:.3f}",
                    f"{load('real', 1, 'p50'):.2f}",
                    f"{load('real', 32, 'rps'):.0f}",
                    f"{load('minimal', 32, 'rps'):.0f}",
                    f"{worker:.0f}",
                    f"{sql:.0f}",
                    f"{due:.0f}",
                ]
            )
    print(f"\nScaling, medians of {args.repeats} repeats\n")
    print(
        table(
            (
                "engine",
                "step contacts",
                "statement p50 ms",
                "real c=1 p50 ms",
                "real c=32 req/s",
                "minimal c=32 req/s",
                "worker x2 /s",
                "floor x2 /s",
                "due per round",
            ),
            rows,
        )
    )


if __name__ == "__main__":
    main()
