"""Sampling profiles of a running server or worker with py-spy, summarized as text.

py-spy is not a dependency of Touchline: install it into the virtualenv when a profile is
wanted (`.venv/bin/pip install py-spy`). The summary attributes each sample to the package
of the frame that was running (self time) and lists the functions with the most samples
beneath them (inclusive time), which is enough to see where a request or a batch goes.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")


def py_spy_path() -> str | None:
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


@contextmanager
def py_spy(
    pid: int, out: Path, seconds: float, rate: int = 200, *, idle: bool = False
) -> Iterator[None]:
    """Record `pid` for `seconds` while the body runs (the body should last as long).

    `idle` keeps the samples of threads blocked in system calls: for a single-threaded loop
    such as the worker, that turns the profile into wall time, database waits included.
    """
    exe = py_spy_path()
    if exe is None:
        raise RuntimeError("py-spy is not installed: .venv/bin/pip install py-spy")
    cmd = [exe, "record", "-p", str(pid), "-d", str(int(seconds)), "-r", str(rate)]
    cmd += ["-f", "raw", "-o", str(out)] + (["--idle"] if idle else [])
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        yield
    finally:
        _, err = proc.communicate(timeout=seconds + 60)
        if proc.returncode != 0:
            raise RuntimeError(f"py-spy failed: {err.decode()[-1000:]}")


def _package(path: str) -> str:
    """The top-level package or standard-library module a frame's file belongs to."""
    if "site-packages/" in path:
        path = path.split("site-packages/", 1)[1]
    elif path.startswith("/"):
        for own in ("touchline", "bench"):
            if f"/{own}/" in path:
                return own
        path = Path(path).name
    # py-spy names most files relative to their sys.path entry: "sqlalchemy/orm/session.py".
    return path.split("/", 1)[0].removesuffix(".py")


# Idle: the event loop waiting in select(), anyio's pool threads waiting for work, and the
# worker sleeping between polls. A wait inside SQLAlchemy (the pool) is not idle; a thread
# waiting for PostgreSQL's answer is counted apart (wall time, not CPU).
_SELECT = "EpollSelector.select (selectors:"
_CONDITION_WAIT = "Condition.wait (threading:"
_DB_WAIT = ("Connection.wait (psycopg:", "Connection.execute (sqlite3:")


def _function(frame: str) -> tuple[str, str]:
    match = _FRAME.match(frame)
    if not match:
        return frame, "?"
    path = match["file"]
    return f"{match['func']} ({_package(path)}:{Path(path).name})", _package(path)


def summarize(raw: Path, top: int = 18) -> str:
    """Self time by package and inclusive time by function, in % of the samples."""
    by_package: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    self_time: Counter[str] = Counter()
    total = idle = db_wait = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_function(f) for f in stack.split(";") if f and not f.startswith("process ")]
        frames = [f for f in frames if not f[0].startswith("<module>")]
        if not frames:
            continue
        leaf, package = frames[-1]
        if leaf.startswith(_SELECT) or (
            leaf.startswith(_CONDITION_WAIT) and "sqlalchemy" not in {f[1] for f in frames}
        ):
            idle += count
            continue
        if leaf.startswith(_DB_WAIT):
            db_wait += count
        total += count
        by_package[package] += count
        self_time[leaf] += count
        for name in {f[0] for f in frames}:
            inclusive[name] += count
    if not total:
        return "no samples"

    def pct(n: int) -> str:
        return f"{100 * n / total:5.1f}%"

    out = [
        f"{total} busy samples ({idle} idle ones left out); {pct(db_wait)} of them waiting "
        "for the database's answer",
        "",
        "self time by package:",
    ]
    out += [f"  {pct(n)}  {name}" for name, n in by_package.most_common(top)]
    out += ["", "self time by function:"]
    out += [f"  {pct(n)}  {name}" for name, n in self_time.most_common(top)]
    out += ["", "inclusive time by function (touchline, fastapi, starlette, sqlalchemy):"]
    wanted = ("(touchline:", "(fastapi:", "(starlette:", "(sqlalchemy:", "(pydantic:")
    chosen = [
        (name, n) for name, n in inclusive.most_common() if name.split(" ")[-1].startswith(wanted)
    ]
    out += [f"  {pct(n)}  {name}" for name, n in chosen[: top + 12]]
    return "\n".join(out)
