"""A throwaway PostgreSQL server for the test session, from the machine's binaries."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _bin(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not candidates:
        raise RuntimeError(
            f"PostgreSQL's {name} was not found; install it (apt-get install postgresql) "
            "or set TOUCHLINE_TEST_POSTGRES_URL"
        )
    return candidates[-1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_postgres_user(cmd: list[str]) -> list[str]:
    # initdb and postgres refuse to run as root.
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


class PostgresServer:
    """A server in a folder of its own, which a test may stop and start again."""

    def __init__(self, root: Path, port: int) -> None:
        self.root = root
        self.port = port
        self.url = f"postgresql://postgres@127.0.0.1:{port}/touchline_test"

    def _ctl(self, *args: str) -> None:
        subprocess.run(
            _as_postgres_user([_bin("pg_ctl"), "-D", str(self.root / "data"), *args]),
            check=True,
            capture_output=True,
        )

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.root / 'sock'} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
            "-c max_connections=200"
        )
        self._ctl("-o", options, "-w", "-l", str(self.root / "log"), "start")

    def stop(self, mode: str = "fast") -> None:
        self._ctl("-m", mode, "-w", "stop")


@contextmanager
def throwaway_postgres() -> Iterator[str]:
    """Start a server in a temporary folder on a free port; yield its URL; remove it all."""
    with postgres_server() as server:
        yield server.url


@contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """`throwaway_postgres`, as a server the caller can stop and start."""
    root = Path(tempfile.mkdtemp(prefix="touchline-pg-"))
    sockets = root / "sock"
    sockets.mkdir()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(sockets, "postgres")
        root.chmod(0o755)
    server = PostgresServer(root, _free_port())
    subprocess.run(
        _as_postgres_user(
            [
                _bin("initdb"),
                "-D",
                str(root / "data"),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
            ]
        ),
        check=True,
        capture_output=True,
    )
    server.start()
    try:
        subprocess.run(
            _as_postgres_user(
                [
                    _bin("createdb"),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(server.port),
                    "-U",
                    "postgres",
                    "touchline_test",
                ]
            ),
            check=True,
            capture_output=True,
        )
        yield server
    finally:
        subprocess.run(
            _as_postgres_user(
                [_bin("pg_ctl"), "-D", str(root / "data"), "-m", "immediate", "stop"]
            ),
            capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)
