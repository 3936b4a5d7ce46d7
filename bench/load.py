"""HTTP load from wrk (the Debian package), pinned to a core of its own.

Each of `concurrency` keep-alive connections sends a request, reads the whole response and
sends the next one (a closed loop, as a pool of clients would), cycling through the given
requests in order. wrk is written in C and runs under `taskset` on another core than the
server (`--server-cpus`/`--load-cpus` of the benchmarks), so the client neither shares the
server's core nor costs what a Python client would; the previous Python client took a
large share of a 2-core machine from the servers it measured. wrk reads no script from
the command line here: the requests are written to a Lua script in $TOUCHLINE_BENCH_DIR at
run time, and the script's `done()` prints the counts and latency percentiles as one JSON
line, which is what is parsed (wrk's human summary rounds them).

One wrk thread per run, at every concurrency: the load has one core, and a second thread
on it would only take turns with the first. One thread drives tens of thousands of small
requests a second, far above what a one-process Python server answers.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

from bench.common import BENCH_DIR

WRK = shutil.which("wrk") or "/usr/bin/wrk"
_MARKER = "WRK_RESULT "


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes = b""


@dataclass
class LoadResult:
    """One wrk run; latencies in ms (wrk measures them in µs)."""

    concurrency: int
    seconds: float
    requests: int
    p50: float
    p90: float
    p99: float
    max: float
    errors: int = 0
    first_error: str = ""

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def _lua(text: bytes) -> str:
    """A Lua string literal for any bytes."""
    safe = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_/.:,{} "
    return '"' + "".join(chr(b) if b in safe else f"\\{b:03d}" for b in text) + '"'


_DONE = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '%s{"requests":%d,"duration_us":%d,"status":%d,"connect":%d,"read":%d,'
    .. '"write":%d,"timeout":%d,"p50":%d,"p90":%d,"p99":%d,"max":%d}\\n',
    marker, summary.requests, summary.duration, e.status, e.connect, e.read, e.write,
    e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max))
end
"""


def write_script(requests: Sequence[Request]) -> str:
    """The Lua script cycling through `requests`; one file per distinct list."""
    entries = []
    for r in requests:
        headers = {**r.headers}
        if r.body or r.method == "POST":
            headers.setdefault("Content-Type", "application/json")
        fields = ", ".join(f"[{_lua(k.encode())}] = {_lua(v.encode())}" for k, v in headers.items())
        entries.append(
            f"  {{{_lua(r.method.encode())}, {_lua(r.path.encode())}, {{{fields}}}, "
            f"{_lua(r.body)}}},"
        )
    script = "\n".join(
        [
            f"local marker = {_lua(_MARKER.encode())}",
            "local specs = {",
            *entries,
            "}",
            "local formatted = {}",
            "local i = 0",
            # In init, where wrk has set its Host header, which wrk.format adds.
            "init = function(args)",
            "  for k, s in ipairs(specs) do formatted[k] = wrk.format(s[1], s[2], s[3], s[4]) end",
            "end",
            "request = function()",
            "  i = i % #formatted + 1",
            "  return formatted[i]",
            "end",
            _DONE,
        ]
    )
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    path = BENCH_DIR / f"wrk-{hashlib.sha256(script.encode()).hexdigest()[:16]}.lua"
    if not path.exists():
        path.write_text(script)
    return str(path)


def run_load(
    port: int,
    requests: Sequence[Request],
    *,
    concurrency: int,
    seconds: float,
    cpus: str | None = "1",
) -> LoadResult:
    """Closed-loop load on 127.0.0.1:`port` for `seconds` (whole seconds, at least one: wrk
    takes no fractions), wrk on the `cpus` given to taskset (None: anywhere)."""
    duration = max(1, math.ceil(seconds))
    cmd = [
        WRK,
        "--threads",
        "1",
        "--connections",
        str(concurrency),
        "--duration",
        f"{duration}s",
        "--timeout",
        "10s",
        "--script",
        write_script(requests),
        f"http://127.0.0.1:{port}/",
    ]
    if cpus is not None:
        cmd = ["taskset", "-c", cpus, *cmd]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith(_MARKER)]
    if not lines:
        raise RuntimeError(f"wrk printed no result: {done.stdout[-2000:]} {done.stderr[-2000:]}")
    out = json.loads(lines[-1][len(_MARKER) :])
    socket_errors = {k: out[k] for k in ("connect", "read", "write", "timeout") if out[k]}
    errors = out["status"] + sum(socket_errors.values())
    first_error = ""
    if out["status"]:
        first_error = f"{out['status']} responses other than 2xx/3xx"
    elif socket_errors:
        first_error = f"socket errors {socket_errors}"
    return LoadResult(
        concurrency=concurrency,
        seconds=out["duration_us"] / 1e6,
        requests=out["requests"],
        p50=out["p50"] / 1000,
        p90=out["p90"] / 1000,
        p99=out["p99"] / 1000,
        max=out["max"] / 1000,
        errors=errors,
        first_error=first_error,
    )
