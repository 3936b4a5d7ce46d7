"""The data generator: a realistic organization, written with bulk SQL (not the API).

    .venv/bin/python -m bench.generate --engine sqlite --step-contacts 1000000 --check
    .venv/bin/python -m bench.generate --engine postgresql --postgres-url URL --step-contacts 100000
    .venv/bin/python -m bench.generate --drop-cached --postgres-url URL   # remove bench_* databases

For N step contacts (default 1,000,000): N/5 contacts, N/500 sequences (85% active, 10% back
in draft, 5% archived) of 5-10 steps, one SMS and one email channel plus a second SMS number.
Each run is simulated forward in time from its start, step by step, until now: a step is
sent when its delay has passed (message written, step contact finished `completed`), a
contact blocked or opted out becomes `inactive`, a paused sequence leaves its contact
`pending` (often past due), and some runs are removed, answered, expired, failed, moved to
another sequence or to another step. Some contacts were in a sequence before (an older run,
`is_latest` false). The result keeps every invariant the app relies on: `is_latest` only on
a contact's newest run per sequence; `current_step_contact_id` on the run's newest step
contact, `last_completed_step_contact_id` on its newest finished one, `last_step_id` on the
current step; live steps at positions 0..n-1; statuses and finish reasons of SPEC §2; UUIDs
and timestamps in the form SQLAlchemy stores them on each engine.

The schema comes from `touchline.migrate.upgrade`, the organization and its API key from
`touchline.auth.service`. Secondary indexes are dropped during the load and rebuilt from
their own definitions afterwards; rows go in with executemany in one transaction on SQLite
and with COPY on PostgreSQL (foreign-key triggers off for the load session: the data is
consistent by construction, and `--check` verifies it).
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import accumulate
from typing import Any

from bench.bulk import BIG_TABLES, COLUMNS, Stored, Writer
from bench.common import (
    DatabaseServer,
    Dataset,
    Engine,
    bench_parser,
    ensure_dataset,
    log,
    servers,
    table,
)
from touchline.auth.service import create_api_key, create_organization
from touchline.core.settings import SequenceSettings
from touchline.db import make_engine, make_sessionmaker, unit_of_work
from touchline.migrate import upgrade
from touchline.models import OPEN_STEP_CONTACT_STATUSES

DAY = 86400.0
HOUR = 3600.0
# Contacts are written (with their runs) in chunks of this many, to bound memory.
CHUNK = 5000
FIRST_NAMES = ("Ann", "Ben", "Chloe", "Dev", "Emma", "Farid", "Grace", "Hiro", "Ines", "Jon")
LAST_NAMES = ("Lee", "Garcia", "Okafor", "Smith", "Nguyen", "Rossi", "Kowalski", "Dubois")
# Area codes whose numbers phonenumbers accepts, so the API takes these phones as input too.
AREAS = (212, 310, 415, 503, 617, 650, 718, 805, 917, 206)
ZONES = ("America/New_York", "America/Los_Angeles", "Europe/Paris", "Asia/Tokyo", "UTC")

# ---------------------------------------------------------------------- the organization


@dataclass
class Channel:
    id: str
    type: str
    address: str


@dataclass
class SequencePlan:
    id: str
    title: str
    status: str
    channel: Channel
    step_ids: list[str]
    step_titles: list[str]
    delays: list[float]
    max_time: float | None
    re_add: bool
    # Draft and archived sequences stopped sending at this instant.
    paused_since: float | None
    sent: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    responses: list[int] = field(default_factory=list)


@dataclass
class Person:
    id: str
    first_name: str
    phone: str
    email: str | None
    blocked: bool
    opted_out_of: str | None


@dataclass
class Record:
    """One step contact, as the simulation produced it."""

    position: int
    status: str
    reason: str | None
    created: float
    scheduled: float
    completed: float | None
    updated: float
    attempts: int
    responded: bool = False
    id: str = ""
    sent_at: float | None = None


@dataclass
class Run:
    plan: SequencePlan
    start: float
    records: list[Record]
    status: str
    reason: str | None
    finished: float | None
    updated: float
    is_latest: bool = True
    moved_at: float | None = None
    id: str = ""


class Generator:
    def __init__(self, engine: Engine, step_contacts: int, org_id: str, seed: int = 7) -> None:
        self.rng = random.Random(seed)
        self.stored = Stored(engine)
        self.target = step_contacts
        self.contacts = max(100, step_contacts // 5)
        self.sequence_count = max(10, step_contacts // 500)
        self.org = org_id
        self.now = time.time()
        self.counts: dict[str, int] = dict.fromkeys(COLUMNS, 0)
        self.busy: list[str] = []
        self.expectations: dict[str, dict[str, Any]] = {}
        self.channels = {
            "sms": Channel(self.new_id(), "sms", "+14155550100"),
            "sms2": Channel(self.new_id(), "sms", "+14155550199"),
            "email": Channel(self.new_id(), "email", "hello@example.com"),
        }
        self.plans = [self._plan(i) for i in range(self.sequence_count)]
        self.active_plans = [p for p in self.plans if p.status == "active"]
        # A few sequences are much bigger than the rest, as in a real account.
        self.cum_weights = list(accumulate(1 / (i + 1) ** 0.7 for i in range(len(self.plans))))

    def new_id(self) -> str:
        # A version-4 UUID from the seeded generator, so a size always yields the same data.
        value = self.rng.getrandbits(128)
        value = (value & ~(0xC000 << 48)) | (0x8000 << 48)
        value = (value & ~(0xF000 << 64)) | (4 << 76)
        return f"{value:032x}"

    def _plan(self, index: int) -> SequencePlan:
        rng = self.rng
        roll = rng.random()
        status = "active" if roll < 0.85 else "draft" if roll < 0.95 else "archived"
        n = rng.randint(5, 10)
        delays = [0.0] + [rng.randint(1, 3) * DAY + rng.randint(0, 12) * HOUR for _ in range(n - 1)]
        kind = rng.random()
        channel = self.channels["sms" if kind < 0.45 else "sms2" if kind < 0.8 else "email"]
        return SequencePlan(
            id=self.new_id(),
            title=f"Sequence {index}: "
            + rng.choice(("Onboarding", "Renewal", "Hiring", "Win-back")),
            status=status,
            channel=channel,
            step_ids=[self.new_id() for _ in range(n)],
            step_titles=[f"Step {k + 1}" for k in range(n)],
            delays=delays,
            max_time=rng.choice((30, 45, 60)) * DAY if rng.random() < 0.1 else None,
            re_add=rng.random() < 0.3,
            paused_since=None if status == "active" else self.now - rng.uniform(1, 20) * DAY,
            sent=[0] * n,
            failed=[0] * n,
            responses=[0] * n,
        )

    # ------------------------------------------------------------------ simulation

    def _walk(
        self,
        plan: SequencePlan,
        person: Person,
        start: float,
        horizon: float,
        events: list[tuple[float, str]],
        position: int = 0,
    ) -> Run:
        """The run's step contacts from `start` (entering `position`) until `horizon`."""
        rng = self.rng
        if plan.max_time is not None:
            events = sorted([*events, (start + plan.max_time, "expired")])
        records: list[Record] = []
        entered = start
        n = len(plan.step_ids)
        while True:
            delay = plan.delays[position]
            scheduled = entered + (delay if delay else rng.uniform(1, 30))
            lag = rng.uniform(0.2, 20)
            paused = plan.paused_since is not None and scheduled >= plan.paused_since
            ineligible = person.blocked or person.opted_out_of == plan.channel.id
            # The contact stays in this step until its send, or until now when the step is
            # not sent (paused sequence, not due yet, contact inactive).
            waits_until = horizon if paused or ineligible else min(scheduled, horizon)
            # Removal, reply, expiry or move while the contact waits here; a delivery failure
            # happens at a send instead (below).
            event = next((e for e in events if e[1] != "failed"), None)
            # An event due while the previous step was being sent lands just after it.
            if event is not None and max(event[0], entered + 1) < waits_until:
                at, kind = max(event[0], entered + 1), event[1]
                events = [e for e in events if e is not event]
                tried = 1 if ineligible and not paused and at > scheduled else 0
                if kind == "move_within":
                    records.append(
                        Record(position, "moved", None, entered, scheduled, at, at, tried)
                    )
                    others = [p for p in range(n) if p != position]
                    position, entered = rng.choice(others), at
                    continue
                status = "moved" if kind == "move_out" else "finished"
                reason = None if kind == "move_out" else kind
                records.append(
                    Record(
                        position,
                        status,
                        reason,
                        entered,
                        scheduled,
                        at,
                        at,
                        tried,
                        responded=kind == "responded",
                    )
                )
                run = Run(plan, start, records, "finished", reason or "moved", at, at)
                if kind == "move_out":
                    run.moved_at = at
                return run
            if scheduled > horizon or paused:
                records.append(
                    Record(position, "pending", None, entered, scheduled, None, entered, 0)
                )
                return Run(plan, start, records, "active", None, None, entered)
            if ineligible:
                records.append(
                    Record(position, "inactive", None, entered, scheduled, None, scheduled + lag, 1)
                )
                return Run(plan, start, records, "active", None, None, scheduled + lag)
            done = scheduled + lag
            failed = any(kind == "failed" and at <= scheduled for at, kind in events)
            records.append(
                Record(
                    position,
                    "finished",
                    "failed" if failed else "completed",
                    entered,
                    scheduled,
                    done,
                    done,
                    1,
                    sent_at=scheduled + lag / 2,
                )
            )
            if failed:
                return Run(plan, start, records, "finished", "failed", done, done)
            position += 1
            entered = done
            if position == n:
                return Run(plan, start, records, "finished", "completed", done, done)

    def _events(self, start: float, plan: SequencePlan) -> list[tuple[float, str]]:
        roll = self.rng.random()
        span = sum(plan.delays) * 1.2 + HOUR
        at = start + self.rng.uniform(0, span)
        for kind, upto in (
            ("removed", 0.07),
            ("responded", 0.12),
            ("failed", 0.13),
            ("move_out", 0.16),
            ("move_within", 0.18),
        ):
            if roll < upto:
                return [(at, kind)]
        return []

    def _runs_for(self, person: Person, count: int) -> list[Run]:
        rng = self.rng
        chosen: dict[str, SequencePlan] = {}
        for _ in range(count * 4):
            if len(chosen) == count:
                break
            plan = rng.choices(self.plans, cum_weights=self.cum_weights)[0]
            if plan.channel.type == "email" and person.email is None:
                continue  # enrollment skips contacts with no address for the channel
            chosen.setdefault(plan.id, plan)
        runs: list[Run] = []
        taken = set(chosen)
        for plan in list(chosen.values()):
            if plan.paused_since is None:
                start = self.now - rng.uniform(0, 30) * DAY
            else:
                start = plan.paused_since - rng.uniform(0, 30) * DAY
            latest = self._walk(plan, person, start, self.now, self._events(start, plan))
            if plan.re_add and rng.random() < 0.15:
                old_start = start - rng.uniform(20, 60) * DAY
                old = self._walk(
                    plan, person, old_start, start, [(start - rng.uniform(60, 3600), "removed")]
                )
                old.is_latest = False
                runs.append(old)
            runs.append(latest)
            if latest.moved_at is not None:
                runs.extend(self._moved_into(person, latest.moved_at, taken))
        return runs

    def _moved_into(self, person: Person, at: float, taken: set[str]) -> list[Run]:
        """The run a contact moved out of a sequence starts in another one, at any step."""
        candidates = [
            p
            for p in self.active_plans
            if p.id not in taken and (p.channel.type != "email" or person.email)
        ]
        if not candidates:
            return []
        plan = self.rng.choice(candidates)
        taken.add(plan.id)
        position = self.rng.randrange(len(plan.step_ids))
        return [self._walk(plan, person, at, self.now, [], position)]

    # ------------------------------------------------------------------ rows

    def organization_rows(self) -> dict[str, list[tuple[Any, ...]]]:
        s, t0 = self.stored, self.now - 400 * DAY
        channels = [
            (
                c.id,
                self.org,
                name,
                c.type,
                c.address,
                "outbox",
                "{}",
                None,
                None,
                s.ts(t0),
                s.ts(t0),
            )
            for name, c in self.channels.items()
        ]
        sequences = []
        for plan in self.plans:
            settings = SequenceSettings().model_dump()
            settings["on_re_add"] = "re_add" if plan.re_add else "exclude"
            settings["max_time"] = int(plan.max_time) if plan.max_time else None
            created = s.ts(t0 + self.rng.uniform(0, 100) * DAY)
            updated = s.ts(plan.paused_since or self.now - 90 * DAY)
            sequences.append(
                (
                    plan.id,
                    self.org,
                    plan.title,
                    "Generated for benchmarks",
                    "sequential",
                    plan.status,
                    "organization",
                    plan.channel.id,
                    json.dumps(settings),
                    created,
                    updated,
                )
            )
        return {"channels": channels, "sequences": sequences}

    def step_rows(self) -> list[tuple[Any, ...]]:
        s, t0 = self.stored, self.now - 300 * DAY
        rows: list[tuple[Any, ...]] = []
        for plan in self.plans:
            for k, step_id in enumerate(plan.step_ids):
                delay = plan.delays[k]
                options = {
                    "days": int(delay // DAY),
                    "hours": int(delay % DAY // HOUR),
                    "minutes": 0,
                }
                subject = f"{plan.title}: step {k + 1}" if plan.channel.type == "email" else None
                rows.append(
                    (
                        step_id,
                        self.org,
                        plan.id,
                        plan.step_titles[k],
                        f"Hi {{{{first_name}}}}, this is {plan.step_titles[k]} of {plan.title}.",
                        subject,
                        None,
                        k,
                        None,
                        json.dumps(options),
                        "[]",
                        plan.sent[k],
                        plan.failed[k],
                        plan.responses[k],
                        0,
                        0,
                        s.ts(t0),
                        s.ts(t0),
                        # Contacts advance along next_step_id (the worker, the API's
                        # next_step): the live step one position on, none after the last.
                        plan.step_ids[k + 1] if k + 1 < len(plan.step_ids) else None,
                    )
                )
            if self.rng.random() < 0.1:
                # A deleted step keeps its row (no position) for history; nothing points at it.
                rows.append(
                    (
                        self.new_id(),
                        self.org,
                        plan.id,
                        "Old step",
                        "Retired",
                        None,
                        None,
                        None,
                        s.ts(t0 + DAY),
                        "{}",
                        "[]",
                        0,
                        0,
                        0,
                        0,
                        0,
                        s.ts(t0),
                        s.ts(t0 + DAY),
                        None,
                    )
                )
        return rows

    def people(self) -> Iterable[list[tuple[Person, tuple[Any, ...]]]]:
        """Contacts in chunks, each with its contacts-table row."""
        rng, s = self.rng, self.stored
        chunk: list[tuple[Person, tuple[Any, ...]]] = []
        for i in range(self.contacts):
            first = rng.choice(FIRST_NAMES)
            roll = rng.random()
            blocked = roll < 0.01
            person = Person(
                id=self.new_id(),
                first_name=first,
                phone=f"+1{AREAS[i // 8_000_000 % 10]}{200 + i // 10_000 % 800}{i % 10_000:04d}",
                email=f"contact{i}@example.com" if rng.random() < 0.8 else None,
                blocked=blocked,
                opted_out_of=rng.choice((self.channels["sms"].id, self.channels["sms2"].id))
                if 0.01 <= roll < 0.03
                else None,
            )
            created = self.now - rng.uniform(120, 500) * DAY
            row = (
                person.id,
                self.org,
                f"{first} {rng.choice(LAST_NAMES)}",
                person.phone,
                person.email,
                f"crm-{i}" if rng.random() < 0.3 else None,
                None,
                rng.choice(ZONES) if rng.random() < 0.5 else None,
                "blocked" if blocked else ("archived" if roll > 0.98 else "open"),
                s.boolean(blocked),
                json.dumps({"plan": rng.choice(("free", "pro"))}),
                s.ts(created),
                s.ts(created + rng.uniform(0, 100) * DAY),
            )
            chunk.append((person, row))
            if len(chunk) == CHUNK:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    def sequences_per_contact(self) -> int:
        roll = self.rng.random()
        for count, upto in ((0, 0.42), (1, 0.72), (2, 0.85), (3, 0.92), (4, 0.96)):
            if roll < upto:
                return count
        return self.rng.randint(5, 6) if roll < 0.99 else self.rng.randint(7, 12)

    def chunk_rows(self, chunk: list[tuple[Person, tuple[Any, ...]]]) -> dict[str, list[Any]]:
        s, rng = self.stored, self.rng
        out: dict[str, list[Any]] = {name: [] for name in BIG_TABLES}
        for person, contact_row in chunk:
            out["contacts"].append(contact_row)
            if person.opted_out_of:
                out["contact_preferences"].append(
                    (
                        person.id,
                        person.opted_out_of,
                        s.boolean(False),
                        None,
                        s.ts(self.now - 200 * DAY),
                    )
                )
            wanted = (
                self.sequences_per_contact() if self.counts["step_contacts"] < self.target else 0
            )
            runs = self._runs_for(person, wanted)
            latest = [r for r in runs if r.is_latest]
            if len(latest) >= 4:
                self.busy.append(person.id)
            for run in runs:
                self._run_rows(person, run, out)
                self.counts["step_contacts"] += len(run.records)
            if latest and (
                len(self.expectations) < 40 and (len(latest) >= 3 or rng.random() < 0.001)
            ):
                self.expectations[person.id] = self._expected(latest)
            elif not runs and "none" not in {e.get("kind") for e in self.expectations.values()}:
                self.expectations[person.id] = {"kind": "none", "total": 0, "items": []}
        return out

    def _run_rows(self, person: Person, run: Run, out: dict[str, list[Any]]) -> None:
        s, plan = self.stored, run.plan
        run.id = self.new_id()
        channel = plan.channel
        for rec in run.records:
            rec.id = self.new_id()
            step_id = plan.step_ids[rec.position]
            out["step_contacts"].append(
                (
                    rec.id,
                    self.org,
                    plan.id,
                    step_id,
                    run.id,
                    person.id,
                    channel.id,
                    rec.status,
                    rec.reason,
                    s.ts(rec.scheduled),
                    s.ts(rec.completed),
                    None,
                    rec.attempts,
                    s.boolean(rec.responded),
                    s.boolean(False),
                    s.boolean(False),
                    s.boolean(plan.status != "active" and rec.status in OPEN_STEP_CONTACT_STATUSES),
                    s.ts(rec.created),
                    s.ts(rec.updated),
                )
            )
            if rec.responded:
                plan.responses[rec.position] += 1
            if rec.sent_at is not None:
                failed = rec.reason == "failed"
                message_id = self.new_id()
                to = person.phone if channel.type == "sms" else person.email
                out["messages"].append(
                    (
                        message_id,
                        self.org,
                        "OUTBOUND",
                        channel.id,
                        person.id,
                        plan.id,
                        step_id,
                        rec.id,
                        to,
                        channel.address,
                        f"Hi {person.first_name}, this is {plan.step_titles[rec.position]} of "
                        f"{plan.title}.",
                        f"{plan.title}: step {rec.position + 1}"
                        if channel.type == "email"
                        else None,
                        "failed" if failed else "sent",
                        None if failed else f"outbox-{message_id}",
                        "provider refused the message" if failed else None,
                        1,
                        None,
                        s.ts(rec.sent_at),
                        s.ts(rec.completed),
                    )
                )
                if failed:
                    plan.failed[rec.position] += 1
                else:
                    plan.sent[rec.position] += 1
        finished = [r for r in run.records if r.status == "finished"]
        current = run.records[-1]
        expires = run.start + plan.max_time if plan.max_time else None
        out["sequence_runs"].append(
            (
                run.id,
                self.org,
                plan.id,
                person.id,
                None,
                run.status,
                run.reason,
                s.boolean(run.is_latest),
                plan.step_ids[current.position],
                current.id,
                finished[-1].id if finished else None,
                s.ts(run.finished),
                s.ts(expires),
                s.ts(run.start),
                s.ts(run.updated),
            )
        )

    def _expected(self, latest: list[Run]) -> dict[str, Any]:
        """What List Contact Sequences must answer for this contact (default page)."""
        items = []
        for run in sorted(latest, key=lambda r: (-r.updated, r.plan.id)):
            current = run.records[-1]
            finished = [r for r in run.records if r.status == "finished"]
            n = len(run.plan.step_ids)
            items.append(
                {
                    "sequence_id": str(uuid.UUID(run.plan.id)),
                    "run_id": str(uuid.UUID(run.id)),
                    "run_status": run.status,
                    "contact_status": current.status,
                    "current_position": current.position,
                    "last_completed_position": finished[-1].position if finished else None,
                    "next_position": current.position + 1
                    if run.status == "active" and current.position + 1 < n
                    else None,
                }
            )
        return {"kind": "runs", "total": len(items), "items": items[:50]}


# ---------------------------------------------------------------------- entry points


def generate(server: DatabaseServer, name: str, step_contacts: int) -> Dataset:
    """Build the dataset into a new database `name` and return its description."""
    started = time.perf_counter()
    url = server.create_empty(name)
    upgrade(url)
    engine = make_engine(url)
    with unit_of_work(make_sessionmaker(engine)) as session:
        org = create_organization(session, "Benchmark Org")
        api_key = create_api_key(session, org.id)
    engine.dispose()
    gen = Generator(server.engine, step_contacts, org.id.hex)
    writer = Writer(url, server.engine)
    writer.begin()
    for table_name, rows in gen.organization_rows().items():
        writer.write(table_name, rows)
        gen.counts[table_name] = len(rows)
    gen.counts["step_contacts"] = 0
    for chunk in gen.people():
        rows_by_table = gen.chunk_rows(chunk)
        for table_name, rows in rows_by_table.items():
            writer.write(table_name, rows)
            if table_name != "step_contacts":
                gen.counts[table_name] += len(rows)
    steps = gen.step_rows()
    writer.write("steps", steps)
    gen.counts["steps"] = len(steps)
    log(f"wrote {writer.rows_written:,} rows in {time.perf_counter() - started:.1f}s")
    writer.finish()
    seconds = time.perf_counter() - started
    log(f"generated {name} in {seconds:.1f}s: {gen.counts}")
    busy = gen.busy[:]
    random.Random(11).shuffle(busy)
    return Dataset(
        engine=server.engine,
        name=name,
        url=url,
        step_contacts=step_contacts,
        organization_id=str(org.id),
        api_key=api_key,
        channel_ids={k: str(uuid.UUID(c.id)) for k, c in gen.channels.items()},
        counts=gen.counts,
        busy_contacts=[str(uuid.UUID(c)) for c in busy[:2000]],
        expectations={str(uuid.UUID(k)): v for k, v in gen.expectations.items()},
        generated_seconds=round(seconds, 1),
        generated_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )


def main() -> None:
    parser = bench_parser(__doc__, size=False, repeats=None)
    parser.add_argument("--step-contacts", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--check", action="store_true", help="verify invariants and the API")
    parser.add_argument(
        "--drop-cached", action="store_true", help="drop every bench_* database and exit"
    )
    args = parser.parse_args()
    from bench.checks import check_api, check_invariants

    results = []
    for engine, server in servers(args):
        if args.drop_cached:
            for name in server.bench_databases():
                server.drop(name)
                log(f"dropped {name}")
            continue
        for size in args.step_contacts:
            dataset = ensure_dataset(server, size, regenerate=args.regenerate)
            if args.check:
                check_invariants(dataset)
                check_api(dataset)
            results.append(
                (
                    engine,
                    f"{size:,}",
                    f"{dataset.counts['step_contacts']:,}",
                    f"{dataset.counts['contacts']:,}",
                    f"{dataset.counts['sequence_runs']:,}",
                    f"{dataset.counts['messages']:,}",
                    f"{dataset.generated_seconds:.0f}",
                )
            )
    if results:
        print(
            table(
                ("engine", "size", "step contacts", "contacts", "runs", "messages", "generation s"),
                results,
            )
        )


if __name__ == "__main__":
    main()
