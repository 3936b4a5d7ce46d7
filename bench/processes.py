"""`touchline serve --workers N`: List Contact Sequences with one API process against two.

    .venv/bin/python -m bench.processes --engine both --size 100000

The real server (`--no-worker`) with 1 and then 2 processes, each measured with `wrk`
(Debian's package) at concurrency 32 (throughput) and 1 (p50), in two placements:
- **pinned**: the server's processes on core 0, `wrk` on core 1, so that the load generator
  never takes the server's CPU; two processes then share one core;
- **shared**: the server on every core, `wrk` on core 1 beside it, as a two-core machine
  serving for real would be.
Medians of `--repeats`, 1 and 2 processes alternating so that drift on a shared machine
falls on both.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.common import (
    Dataset,
    bench_parser,
    ensure_dataset,
    log,
    median,
    print_report,
    real_server,
    servers,
)

PLACEMENTS = {"pinned": "0", "shared": None}
LOAD_CORE = "1"
HEADERS = ["engine", "placement", "processes", "req/s c=32", "p50 c=1 (ms)", "vs 1 process"]

_SCRIPT = """
local ids = {%(ids)s}
local i = 0
request = function()
  i = i %% #ids + 1
  return wrk.format("POST", "/v1/contacts/" .. ids[i] .. "/sequences",
    {["X-WHIPPY-KEY"] = "%(key)s", ["Content-Length"] = "0"})
end
"""


@contextmanager
def wrk_script(dataset: Dataset, contacts: int) -> Iterator[Path]:
    ids = ", ".join(f'"{c}"' for c in dataset.busy_contacts[:contacts])
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "lcs.lua"
        path.write_text(_SCRIPT % {"ids": ids, "key": dataset.api_key})
        yield path


def run_wrk(port: int, script: Path, concurrency: int, seconds: float) -> tuple[float, float]:
    """(requests/s, p50 ms) of one wrk run; non-2xx answers fail the benchmark."""
    # wrk takes whole seconds.
    duration = f"-d{max(1, round(seconds))}s"
    command = ["taskset", "-c", LOAD_CORE, "wrk", "-t1", f"-c{concurrency}", duration]
    command += ["--latency", "-s", str(script), f"http://127.0.0.1:{port}"]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    out = done.stdout
    if "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"wrk saw errors:\n{out}")
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    value, unit = re.search(r"50%\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
    return rate, float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def main() -> None:
    parser = bench_parser(__doc__, repeats=3)
    parser.set_defaults(size=100_000)
    parser.add_argument("--seconds", type=float, default=5, help="per concurrency-32 run")
    parser.add_argument("--latency-seconds", type=float, default=3, help="per c=1 run")
    parser.add_argument("--contacts", type=int, default=500, help="distinct contacts asked")
    args = parser.parse_args()
    if shutil.which("wrk") is None or shutil.which("taskset") is None:
        raise SystemExit("needs wrk and taskset: apt-get install wrk util-linux")
    if (os.cpu_count() or 1) < 2:
        raise SystemExit("needs two cores: one for the server, one for wrk")
    rows: list[list[object]] = []
    for engine, server in servers(args):
        dataset = ensure_dataset(server, args.size, regenerate=args.regenerate)
        with wrk_script(dataset, args.contacts) as script:
            for placement, cores in PLACEMENTS.items():
                rates: dict[int, list[float]] = {1: [], 2: []}
                p50s: dict[int, list[float]] = {1: [], 2: []}
                for repeat in range(args.repeats):
                    for processes in (1, 2):
                        log(f"{engine} {placement} {processes} process(es), round {repeat + 1}")
                        with real_server(
                            dataset.url, cpus=cores, TOUCHLINE_WEB_CONCURRENCY=str(processes)
                        ) as (port, _):
                            run_wrk(port, script, 32, 1)  # warm every process
                            rate, _p50 = run_wrk(port, script, 32, args.seconds)
                            _rate, p50 = run_wrk(port, script, 1, args.latency_seconds)
                        rates[processes].append(rate)
                        p50s[processes].append(p50)
                one = median(rates[1])
                for processes in (1, 2):
                    rate = median(rates[processes])
                    rows.append(
                        [
                            engine,
                            placement,
                            processes,
                            f"{rate:,.0f}",
                            f"{median(p50s[processes]):.2f}",
                            f"{rate / one:.2f}x",
                        ]
                    )
    print_report(
        f"List Contact Sequences, 1 vs 2 API processes, {args.size:,} step contacts, "
        f"medians of {args.repeats} (wrk on core {LOAD_CORE})",
        HEADERS,
        rows,
        [],
    )


if __name__ == "__main__":
    main()
