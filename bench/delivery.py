"""Delivery: how fast workers get due messages to a slow provider, and that each goes once.

    .venv/bin/python -m bench.delivery --engine both --due 10000 --latencies 0.05 0.15 0.5
    .venv/bin/python -m bench.delivery --engine sqlite --due 200 --latencies 0.05 --workers 1
    .venv/bin/python -m bench.delivery --engine postgresql --channel smtp
    .venv/bin/python -m bench.delivery --engine postgresql --all

Each run gets a fresh database (migrations, an organization, then through the real API
in-process: a Twilio channel and an SMTP channel pointed at bench/providers.py, started for the
run with `--latency` seconds per answer, and a one-step sequence per channel) and enrolls `--due`
contacts on one channel with their step an hour out, so nothing is sent yet. Then `--workers`
`touchline worker` processes start (poll interval 0.05 s; `--concurrency`, `--lease` and
`--batch-size` passed through as TOUCHLINE_WORKER_SEND_CONCURRENCY, _LEASE_SECONDS and
_BATCH_SIZE when given); once they sit idle, one UPDATE makes every step contact due. Its commit
is T0. The run ends when the provider has accepted a request for every message and the database
has no open claim left (or at a timeout: due x latency / 0.5 + 120 s, reported as such).
Measured per run, from what the provider saw:
- **sends/s**: due / (last first-accepted request - T0);
- **lag p50/p99**: first accepted request of each message - T0;
- **requests per step contact** and **duplicates** (requests beyond the first for an id; the
  Twilio server keys them by `I-Twilio-Idempotency-Token`, the SMTP server by Message-ID);
- **peak in flight** at the provider, and SMTP connections (`--channel smtp`);
- **exactly once**: the database's outbound message ids are exactly the ids the provider saw,
  one request each, one message per step contact.
Scenarios, each a row of its own (150 ms latency unless said):
- `--short-lease`: 2 workers, lease 2 s, latency 0.5 s, batch 20: a lease shorter than a send;
  duplicates must be 0.
- `--kill`: 2 workers; when 30% of the messages are accepted one is stopped, its sockets and
  the claims open read, then it is SIGKILLed and a replacement started. The provider knows each
  request's client port, so the expected re-sends are exactly the messages the killed worker
  sent and had not settled, each requested a second time by another worker, never a third.
  Its claims come back after their lease (60 s by default), which the run's sends/s includes.
- `--rate`: a Twilio channel with `max_per_second: 20`, 2 workers, `--rate-due` step contacts:
  the accepted rate over 30 s from T0 + 2 s.
Without scenario flags the latency x workers matrix runs; `--all` runs it and every scenario.
"""

from __future__ import annotations

import argparse
import os
import signal
import sqlite3
import subprocess
import time
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import psycopg

with warnings.catch_warnings():
    # Starlette's notice that its TestClient will move to httpx2: not ours to act on.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

from bench.common import (
    DatabaseServer,
    Engine,
    bench_parser,
    engine_of,
    log,
    mark,
    median,
    percentile,
    print_report,
    raw_connect,
    servers,
    spread,
    stored_time,
    worker_processes,
)
from bench.providers import ACCOUNT_SID, AUTH_TOKEN, SMTP_LOGIN, Providers, loopback_providers

Channel = Literal["twilio", "smtp"]
Scenario = Literal["matrix", "short-lease", "kill", "rate"]

ENROLL_BATCH = 4000
SCENARIO_LATENCY = 0.15
RATE_LIMIT = 20.0
RATE_WARM_UP, RATE_WINDOW = 2.0, 30.0
KILL_AT = 0.3
DEFAULT_LEASE = 60.0


class Skipped(Exception):
    """The engine under test lacks what a scenario needs."""


@dataclass(frozen=True)
class Config:
    """What one row of the report runs, `--repeats` times."""

    engine: Engine
    scenario: Scenario
    channel: Channel
    latency: float
    workers: int
    due: int
    env: tuple[tuple[str, str], ...] = ()

    @property
    def lease(self) -> float:
        return float(dict(self.env).get("TOUCHLINE_WORKER_LEASE_SECONDS", DEFAULT_LEASE))

    @property
    def timeout(self) -> float:
        extra = self.lease if self.scenario == "kill" else 0.0
        return self.due * self.latency / 0.5 + 120 + extra


@dataclass
class KillReport:
    """The crash of the kill scenario, as seen while the worker was stopped just before."""

    accepted_at_kill: int
    # The local ports of the killed worker's TCP connections: its requests at the provider.
    ports: set[int]
    # Message ids of the step contacts claimed (`active`) at the kill, by either worker.
    open_claims: set[str]


@dataclass
class Run:
    """What one run saw: the provider's stats, the database's message ids, the clock."""

    due: int
    t0: float
    stats: dict[str, Any]
    message_ids: set[str]
    timed_out: bool
    unsettled: int = 0
    kill: KillReport | None = None

    @property
    def first_accepted(self) -> dict[str, float]:
        return {_id(k): float(v) for k, v in self.stats["accepted_at"].items()}

    @property
    def requests(self) -> dict[str, int]:
        return {_id(k): int(v) for k, v in self.stats["requests"].items()}

    @property
    def sends_per_second(self) -> float:
        times = self.first_accepted.values()
        return len(times) / (max(times) - self.t0) if times else 0.0

    def lags(self) -> list[float]:
        return [t - self.t0 for t in self.first_accepted.values()]

    def client_ports(self) -> dict[str, list[int]]:
        return {_id(k): v for k, v in self.stats["client_ports"].items()}

    def in_flight_at_kill(self) -> set[str]:
        """Messages the killed worker had sent (or was sending) but not settled."""
        if self.kill is None:
            return set()
        ports, claims = self.kill.ports, self.kill.open_claims
        return {i for i, p in self.client_ports().items() if p[0] in ports and i in claims}

    def resent_after_crash(self) -> set[str]:
        """The expected duplicates: a second request, by another worker, for a message the
        killed worker had sent and not settled."""
        if self.kill is None:
            return set()
        in_flight, ports = self.in_flight_at_kill(), self.kill.ports
        return {
            i
            for i, p in self.client_ports().items()
            if len(p) == 2 and i in in_flight and p[1] not in ports
        }

    @property
    def duplicates(self) -> int:
        """Requests beyond the first for an id, apart from the re-sends after a crash."""
        return sum(n - 1 for n in self.requests.values()) - len(self.resent_after_crash())

    def problems(self) -> list[str]:
        """Why this run was not exactly one request per step contact (empty: it was)."""
        seen = self.requests
        found = []
        if self.timed_out:
            found.append(f"timed out with {len(seen)}/{self.due} accepted")
        if len(self.message_ids) != self.due:
            found.append(f"{len(self.message_ids)} messages for {self.due} step contacts")
        if missing := len(self.message_ids - seen.keys()):
            found.append(f"{missing} never requested")
        if unknown := len(seen.keys() - self.message_ids):
            found.append(f"{unknown} unknown ids")
        excused = self.resent_after_crash()
        if twice := sum(1 for i, n in seen.items() if n > 1 and i not in excused):
            found.append(f"{twice} requested more than once")
        if self.unsettled:
            found.append(f"{self.unsettled} step contacts left open")
        return found

    def accepted_rate(self) -> tuple[float, float]:
        """Accepted requests per second over the rate window, and the window's length."""
        start = self.t0 + RATE_WARM_UP
        times = [t for t in self.stats["accepted"] if t >= start]
        end = min(start + RATE_WINDOW, max(times, default=start))
        inside = sum(1 for t in times if t < end) if end > start else 0
        return (inside / (end - start) if end > start else 0.0), end - start


def _id(value: str) -> str:
    """A message id as 32 hex digits, however it was written; anything else as it is."""
    try:
        return uuid.UUID(str(value)).hex
    except ValueError:
        return str(value)


# ---------------------------------------------------------------------- the data


@contextmanager
def fresh_database(server: DatabaseServer) -> Iterator[str]:
    from touchline.migrate import upgrade

    name = f"bench_delivery_{os.getpid()}"
    url = server.create_empty(name)
    try:
        upgrade(url)
        yield url
    finally:
        server.drop(name)


def _channel_bodies(providers: Providers) -> dict[Channel, dict[str, Any]]:
    twilio = {"account_sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN}
    twilio["base_url"] = f"http://127.0.0.1:{providers.http_port}"
    smtp = {"host": "127.0.0.1", "port": providers.smtp_port}
    smtp |= dict(zip(("username", "password"), SMTP_LOGIN, strict=True))
    sms = {"name": "SMS", "type": "sms", "address": "+14155550100"}
    email = {"name": "Email", "type": "email", "address": "bench@example.com"}
    return {
        "twilio": {**sms, "provider": "twilio", "provider_config": twilio},
        "smtp": {**email, "provider": "smtp", "provider_config": smtp},
    }


def _contact(channel: Channel, i: int) -> dict[str, str]:
    if channel == "smtp":
        return {"email": f"bench{i}@example.com", "name": f"Bench {i}"}
    return {"phone": f"+1415{200 + i // 10_000:03d}{i % 10_000:04d}", "name": f"Bench {i}"}


class _Api:
    def __init__(self, client: TestClient, key: str) -> None:
        self.client, self.headers = client, {"X-WHIPPY-KEY": key}

    def call(self, method: str, path: str, body: dict[str, Any], status: int) -> dict[str, Any]:
        response = self.client.request(method, path, json=body, headers=self.headers)
        if response.status_code != status:
            raise RuntimeError(f"{method} {path}: {response.status_code} {response.text[:500]}")
        return dict(response.json().get("data") or {})


def _sequence(api: _Api, channel_id: str, title: str) -> str:
    body = {
        "title": title,
        "default_channel_id": channel_id,
        "settings": {"support_sms_quiet_hours": {"enabled": False}},
    }
    sequence_id = str(api.call("POST", "/v1/sequences", body, 201)["id"])
    step = {"title": "Hi", "body": "Hi {{first_name}}", "schedule_options": {"days": 0}}
    api.call("POST", f"/v1/sequences/{sequence_id}/steps", step, 201)
    api.call("PUT", f"/v1/sequences/{sequence_id}", {"status": "active"}, 200)
    return sequence_id


def _limit_rate(api: _Api, url: str, channel_id: str) -> None:
    """`max_per_second` on the channel: through the API, else by SQL, else Skipped."""
    answer = api.call("PUT", f"/v1/channels/{channel_id}", {"max_per_second": RATE_LIMIT}, 200)
    if answer.get("max_per_second") == RATE_LIMIT:
        return
    engine = engine_of(url)
    at = mark(engine)
    conn = raw_connect(url)
    try:
        conn.execute(
            f"UPDATE channels SET max_per_second = {at} WHERE id = {at}",
            (
                RATE_LIMIT,
                uuid.UUID(channel_id).hex if engine == "sqlite" else uuid.UUID(channel_id),
            ),
        )
    except (sqlite3.OperationalError, psycopg.errors.UndefinedColumn) as exc:
        raise Skipped("neither the API nor the channels table has max_per_second") from exc
    finally:
        conn.close()
    log("max_per_second: the API ignored it, set by SQL")


def populate(url: str, config: Config, providers: Providers) -> None:
    """An organization, both channels, a sequence each, and `config.due` contacts enrolled
    on the config's channel with their step an hour out (enrollment jobs run here)."""
    from touchline.app import create_app
    from touchline.auth.service import create_api_key, create_organization
    from touchline.config import Settings
    from touchline.db import unit_of_work
    from touchline.worker.loop import Worker

    # The fake providers listen on 127.0.0.1.
    settings = Settings(database_url=url, allow_private_networks=True)
    app = create_app(settings)
    with TestClient(app) as client:
        with unit_of_work(app.state.sessions) as session:
            key = create_api_key(session, create_organization(session, "Bench").id)
        api = _Api(client, key)
        channels = {
            name: str(api.call("POST", "/v1/channels", body, 201)["id"])
            for name, body in _channel_bodies(providers).items()
        }
        if config.scenario == "rate":
            _limit_rate(api, url, channels["twilio"])
        sequences = {name: _sequence(api, cid, f"Bench {name}") for name, cid in channels.items()}
        start = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
        jobs = []
        for first in range(0, config.due, ENROLL_BATCH):
            to = [
                _contact(config.channel, i)
                for i in range(first, min(config.due, first + ENROLL_BATCH))
            ]
            path = f"/v1/sequences/{sequences[config.channel]}/contacts"
            jobs.append(api.call("POST", path, {"to": to, "schedule_at": start}, 202)["job_id"])
        worker = Worker(app.state.sessions, settings)
        try:
            while worker.run_job():
                pass
        finally:
            worker.close()
        for job_id in jobs:
            job = api.call("GET", f"/v1/jobs/{job_id}", {}, 200)
            if job["status"] != "done":
                raise RuntimeError(f"enrollment job {job_id}: {job['status']} {job['error']}")


# ---------------------------------------------------------------------- the run


def make_due(url: str) -> tuple[float, int]:
    """Every pending step contact due now, in one statement; returns (its commit, rows)."""
    engine = engine_of(url)
    value = stored_time(engine, datetime.now(UTC))
    conn = raw_connect(url)
    try:
        made = conn.execute(
            f"UPDATE step_contacts SET scheduled_at = {mark(engine)} WHERE status = 'pending'",
            (value,),
        ).rowcount
        return time.time(), int(made)
    finally:
        conn.close()


def _cpu_seconds(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_idle(procs: list[subprocess.Popen[bytes]], at_least: float = 1.0) -> None:
    """At least `at_least` s, then until every worker's CPU use is under 20% (done importing,
    polling an empty queue); 30 s at most. Without /proc, just the `at_least`."""
    time.sleep(at_least)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if dead := [p.pid for p in procs if p.poll() is not None]:
            raise RuntimeError(f"worker(s) {dead} exited before the run")
        before = [_cpu_seconds(p.pid) for p in procs]
        time.sleep(0.5)
        after = [_cpu_seconds(p.pid) for p in procs]
        if all(a is None or b is None or a - b < 0.1 for a, b in zip(after, before, strict=True)):
            return
    log("workers still busy after 30 s; measuring anyway")


def wait_accepted(providers: Providers, count: int, deadline: float) -> bool:
    """Until `count` message ids have an accepted request; False at the deadline."""
    while providers.progress()["ids"] < count:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def open_step_contacts(url: str) -> int:
    conn = raw_connect(url)
    try:
        row = conn.execute(
            "SELECT count(*) FROM step_contacts WHERE status IN ('pending', 'active')"
        ).fetchone()
        return int(row[0])
    finally:
        conn.close()


def wait_settled(url: str, deadline: float) -> int:
    """Until no step contact is pending or claimed (sends that would come late have come);
    returns how many were still open at the deadline."""
    while (left := open_step_contacts(url)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def outbound_message_ids(url: str, where: str = "") -> set[str]:
    conn = raw_connect(url)
    try:
        rows = conn.execute(
            "SELECT m.id FROM messages m JOIN step_contacts sc ON sc.id = m.step_contact_id" + where
        ).fetchall()
        return {_id(row[0]) for row in rows}
    finally:
        conn.close()


def tcp_ports(pid: int) -> set[int]:
    """The local ports of a process's TCP sockets (Linux: /proc)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):
            continue
        with open(table) as lines:
            for line in list(lines)[1:]:
                fields = line.split()
                if fields[9] in inodes:
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def kill_one(proc: subprocess.Popen[bytes], url: str, providers: Providers) -> KillReport:
    """SIGKILL the worker; stopped first, so that its connections and the claims open at
    that instant can be read."""
    proc.send_signal(signal.SIGSTOP)
    try:
        ports = tcp_ports(proc.pid)
        claims = outbound_message_ids(url, " WHERE sc.status = 'active'")
        accepted = int(providers.progress()["ids"])
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    log(f"killed worker {proc.pid} with {accepted} messages accepted, {len(claims)} claims open")
    return KillReport(accepted, ports, claims)


def worker_env(config: Config) -> dict[str, str]:
    return {"TOUCHLINE_LOG_LEVEL": "warning", **dict(config.env)}


def measure(url: str, config: Config, providers: Providers) -> Run:
    env = worker_env(config)
    with worker_processes(url, config.workers, **env) as procs:
        wait_idle(procs)
        if early := providers.progress()["ids"]:
            raise RuntimeError(f"{early} messages were sent before the step contacts fell due")
        t0, due = make_due(url)
        if due != config.due:
            raise RuntimeError(f"{due} step contacts made due, {config.due} enrolled")
        deadline = time.monotonic() + config.timeout
        kill = None
        if config.scenario == "kill":
            wait_accepted(providers, int(due * KILL_AT), deadline)
            kill = kill_one(procs[0], url, providers)
            with worker_processes(url, 1, **env):
                done = wait_accepted(providers, due, deadline)
                unsettled = wait_settled(url, time.monotonic() + config.lease + 30)
        else:
            done = wait_accepted(providers, due, deadline)
            unsettled = wait_settled(url, time.monotonic() + config.lease + 30)
    return Run(due, t0, providers.stats(), outbound_message_ids(url), not done, unsettled, kill)


def one_run(server: DatabaseServer, config: Config) -> Run:
    with loopback_providers(config.latency) as providers, fresh_database(server) as url:
        started = time.monotonic()
        populate(url, config, providers)
        log(f"{describe(config)}: {config.due} enrolled in {time.monotonic() - started:.1f}s")
        return measure(url, config, providers)


def describe(config: Config) -> str:
    return (
        f"{config.engine} {config.scenario} {config.channel} "
        f"{config.latency * 1000:.0f} ms x{config.workers}"
    )


# ---------------------------------------------------------------------- the report


HEADERS = (
    "engine",
    "scenario",
    "channel",
    "latency",
    "workers",
    "sends/s",
    "runs",
    "lag p50 / p99 (s)",
    "requests per step contact",
    "duplicates",
    "peak in flight",
    "SMTP connections",
    "exactly once",
    "notes",
)


def _kill_notes(runs: list[Run]) -> list[str]:
    notes = []
    for run in runs:
        assert run.kill is not None
        third = sum(1 for n in run.requests.values() if n > 2)
        notes.append(
            f"killed at {run.kill.accepted_at_kill} accepted, with "
            f"{len(run.in_flight_at_kill())} messages sent and not settled; re-sent after the "
            f"crash (same idempotency key): {len(run.resent_after_crash())}; a third request: "
            f"{third}"
        )
    return notes


def _rate_notes(runs: list[Run]) -> list[str]:
    notes = []
    for run in runs:
        rate, window = run.accepted_rate()
        short = "" if window >= RATE_WINDOW - 0.01 else f" (all sent within {window:.1f}s)"
        notes.append(
            f"observed {rate:.2f}/s over {window:.1f}s{short}, "
            f"{(rate - RATE_LIMIT) / RATE_LIMIT:+.1%} from {RATE_LIMIT:.0f}/s"
        )
    return notes


def report_row(config: Config, runs: list[Run]) -> list[object]:
    """The row of a config's runs (the first five cells alone when there are none)."""
    head = [
        config.engine,
        _scenario_label(config),
        config.channel,
        f"{config.latency * 1000:.0f} ms",
        config.workers,
    ]
    if not runs:
        return head
    rates = [r.sends_per_second for r in runs]
    lags = [(percentile(r.lags(), 50), percentile(r.lags(), 99)) for r in runs]
    timeouts = sum(r.timed_out for r in runs)
    problems = [p for r in runs for p in r.problems()]
    notes = {"kill": _kill_notes, "rate": _rate_notes}.get(config.scenario, lambda _: [])(runs)
    smtp = [r.stats["smtp_connections"] for r in runs] if config.channel == "smtp" else []
    return [
        *head,
        f"{median(rates):.1f}" + (f" ({timeouts} timed out)" if timeouts else ""),
        spread(rates),
        f"{median([p50 for p50, _ in lags]):.2f} / {median([p99 for _, p99 in lags]):.2f}",
        f"{median([sum(r.requests.values()) / max(1, len(r.requests)) for r in runs]):.3f}",
        max(r.duplicates for r in runs),
        max(int(r.stats["max_in_flight"]) for r in runs),
        f"{median(smtp):.0f} ({spread(smtp)})" if smtp else "-",
        _verdict(config, problems),
        "; ".join(problems + notes) or "",
    ]


def _verdict(config: Config, problems: list[str]) -> str:
    if problems:
        return "**no**"
    if config.scenario == "kill":
        return "yes, but for the crash's re-sends"
    return "yes"


def _scenario_label(config: Config) -> str:
    env = dict(config.env)
    if config.scenario == "short-lease":
        return f"short lease ({env['TOUCHLINE_WORKER_LEASE_SECONDS']} s, batch 20)"
    if config.scenario == "kill":
        return "kill 1 worker at 30%"
    if config.scenario == "rate":
        return f"max_per_second {RATE_LIMIT:.0f}"
    return "matrix"


# ---------------------------------------------------------------------- the command


def configs_for(engine: Engine, args: argparse.Namespace) -> list[Config]:
    env = _env_from_args(args)
    channels: list[Channel] = ["twilio", "smtp"] if args.channel == "both" else [args.channel]
    scenarios = args.all or args.short_lease or args.kill or args.rate
    found = []
    if args.all or not scenarios:
        found += [
            Config(engine, "matrix", channel, latency, workers, args.due, env)
            for channel in channels
            for latency in args.latencies
            for workers in args.workers
        ]
    if args.all or args.short_lease:
        short = {
            **dict(env),
            "TOUCHLINE_WORKER_LEASE_SECONDS": "2",
            "TOUCHLINE_WORKER_BATCH_SIZE": "20",
        }
        found.append(Config(engine, "short-lease", "twilio", 0.5, 2, args.due, _pairs(short)))
    if args.all or args.kill:
        found.append(Config(engine, "kill", "twilio", SCENARIO_LATENCY, 2, args.due, env))
    if args.all or args.rate:
        found.append(Config(engine, "rate", "twilio", SCENARIO_LATENCY, 2, args.rate_due, env))
    return found


def _pairs(env: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(env.items()))


def _env_from_args(args: argparse.Namespace) -> tuple[tuple[str, str], ...]:
    given = {
        "TOUCHLINE_WORKER_SEND_CONCURRENCY": args.concurrency,
        "TOUCHLINE_WORKER_LEASE_SECONDS": args.lease,
        "TOUCHLINE_WORKER_BATCH_SIZE": args.batch_size,
    }
    return _pairs({k: str(v) for k, v in given.items() if v is not None})


def run_config(server: DatabaseServer, config: Config, repeats: int) -> list[object]:
    runs: list[Run] = []
    for repeat in range(repeats):
        try:
            run = one_run(server, config)
        except Skipped as exc:
            log(f"{describe(config)}: skipped: {exc}")
            return [*report_row(config, []), *["-"] * 8, f"skipped: {exc}"]
        runs.append(run)
        log(
            f"{describe(config)} #{repeat + 1}: {run.sends_per_second:.1f} sends/s, "
            f"{run.duplicates} duplicates, {'; '.join(run.problems()) or 'exactly once'}"
        )
    return report_row(config, runs)


def parser() -> argparse.ArgumentParser:
    p = bench_parser(__doc__, size=False, repeats=1)
    p.add_argument("--due", type=int, default=10_000, help="step contacts made due per run")
    p.add_argument("--latencies", type=float, nargs="+", default=[0.05, 0.15, 0.5])
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--channel", choices=["twilio", "smtp", "both"], default="twilio")
    p.add_argument("--concurrency", type=int, help="TOUCHLINE_WORKER_SEND_CONCURRENCY")
    p.add_argument("--lease", type=int, help="TOUCHLINE_WORKER_LEASE_SECONDS")
    p.add_argument("--batch-size", type=int, help="TOUCHLINE_WORKER_BATCH_SIZE")
    p.add_argument("--short-lease", action="store_true", help="scenario: lease < a send")
    p.add_argument("--kill", action="store_true", help="scenario: SIGKILL a worker mid-run")
    p.add_argument("--rate", action="store_true", help="scenario: max_per_second 20")
    p.add_argument("--rate-due", type=int, default=1000, help="step contacts of --rate")
    p.add_argument("--all", action="store_true", help="the matrix and every scenario")
    return p


def main() -> None:
    args = parser().parse_args()
    rows: list[list[object]] = []
    for engine, server in servers(args):
        for config in configs_for(engine, args):
            rows.append(run_config(server, config, args.repeats))
    print_report(
        f"Delivery, {args.due:,} due per run, medians of {args.repeats} repeats "
        "(duplicates and peak in flight: the most of any repeat)",
        HEADERS,
        rows,
        [],
    )


if __name__ == "__main__":
    main()
