"""The worker: claim due step contacts, send their messages, advance the runs.

A step contact goes through three short transactions, with the send outside all of them:
1. claim: a batch is marked `active` under a token of its own with a lease; for each step
   contact the worker decides whether it may receive the step, renders its message and
   writes the outbound message row (unique per step contact);
2. send: the message goes to its provider on the send stage (sender.py), many at once,
   while a thread renews the leases of the rows still in flight (leases.py);
3. settle: the provider's answer is recorded and the step contact finished, the next step
   entered, guarded by the token (settlement.py). Settles gather whatever finished since
   the last one, from any batch.
The worker claims again as soon as it has free send slots, so sends flow at the provider's
pace rather than one batch after the other. A worker that dies after a claim leaves
`active` rows whose lease runs out; the next claim finds their message rows already written
and sends those same rows again, with the same id as the provider's idempotency key.
"""

from __future__ import annotations

import concurrent.futures
import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from touchline.applier import apply
from touchline.bulk import among
from touchline.channels.providers import sends_at_once
from touchline.channels.providers.base import (
    PermanentSendError,
    SendResult,
)
from touchline.channels.providers.outbox import OutboxProvider
from touchline.config import Settings
from touchline.core import progress
from touchline.core.changes import combine
from touchline.core.progress import EXPIRE, FAIL, INACTIVE, RESPOND, SKIP, Outcome
from touchline.core.recipients import recipient_address
from touchline.core.relative import relative_key
from touchline.core.settings import settings_of
from touchline.core.windows import wanted_at
from touchline.counters import count_sends
from touchline.db import frozen_clock, planned_for_values, unit_of_work, utc_now
from touchline.enrollment.service import run_enrollment, run_removal
from touchline.errors import TouchlineError
from touchline.faults import is_retryable
from touchline.imports.service import run_import
from touchline.messaging.actions import no_response
from touchline.messaging.templates import RenderError, renders_here
from touchline.models import (
    Channel,
    ContactPreference,
    Job,
    Message,
    SequenceRun,
    StepContact,
    TriggerTimer,
)
from touchline.netpolicy import OutboundPolicy
from touchline.sequences.live_edits import run_step_changed, run_step_deleted
from touchline.webhooks.delivery import deliver_due
from touchline.webhooks.transport import GuardedTransport
from touchline.worker import outbound, throttle
from touchline.worker.claimed import Claimed, Loaded, load
from touchline.worker.claims import claim_job, claim_step_contacts, put_back
from touchline.worker.leases import LeaseKeeper
from touchline.worker.sender import Result, Send, Sender
from touchline.worker.settlement import Done, settle
from touchline.worker.summary import PassSummary

log = logging.getLogger("touchline.worker")

# A handler does the job, or its next part: one that returns True has more to do, and the
# job is committed and claimed again for another turn (an import, chunk by chunk).
JobHandler = Callable[[Session, Job, datetime], bool | None]
JOB_HANDLERS: dict[str, JobHandler] = {
    "enroll": run_enrollment,
    "remove": run_removal,
    "step_changed": run_step_changed,
    "step_deleted": run_step_deleted,
    "import": run_import,
}

# How long a turn waits for sends to finish when it has nothing else to do, and how long
# it then lingers for more to finish, so that settles come in groups rather than one by one.
_WAIT_SECONDS = 0.1
_LINGER_SECONDS = 0.02
# How long a worker waits after a claim that ran out of render time before it claims again.
# A writer waiting for SQLite's lock sleeps up to 100 ms between tries, and a worker that
# claimed again at once would take the lock back before any woke up.
_AFTER_RENDER_BOUND_SECONDS = 0.2
_OUTBOX = OutboxProvider()


@dataclass
class _Plan:
    """What a claim decided for its step contacts."""

    settled: list[Done] = field(default_factory=list)
    sends: list[tuple[Claimed, Send, float | None]] = field(default_factory=list)
    deferred: dict[uuid.UUID, datetime] = field(default_factory=dict)
    messages: list[dict[str, Any]] = field(default_factory=list)
    links: list[dict[str, Any]] = field(default_factory=list)
    # Whether step contacts were put back because the claim's render time ran out.
    render_bound: bool = False


class Worker:
    def __init__(self, sessions: sessionmaker[Session], settings: Settings) -> None:
        self.sessions = sessions
        self.settings = settings
        # Where providers and webhook receivers may be reached (touchline/netpolicy.py).
        self._policy = OutboundPolicy(settings.allow_private_networks)
        self._leases = LeaseKeeper(sessions, settings.worker_lease_seconds)

        self._sender: Sender | None = None
        self._in_flight: dict[concurrent.futures.Future[Result], tuple[Claimed, Send]] = {}
        # Outcomes waiting for the next settle, and since when the oldest has waited.
        self._ready: list[Done] = []
        self._ready_since: float | None = None
        # Webhook deliveries are still sent one by one with httpx (webhooks/delivery.py).
        self._http = httpx.Client(transport=GuardedTransport(self._policy))

    @property
    def sending(self) -> int:
        """Sends in flight or settled-but-not-yet-written: the worker is busy with them."""
        return len(self._in_flight) + len(self._ready)

    def close(self) -> None:
        """Finish what is in flight (bounded by the providers' timeouts), then let go."""
        try:
            self.drain()
        finally:
            if self._sender is not None:
                self._sender.close()
            self._leases.close()
            self._http.close()

    def drain(self) -> PassSummary:
        """Claim nothing more; wait for the sends in flight and settle them."""
        summary = PassSummary()
        deadline = time.monotonic() + self.settings.provider_timeout_max_seconds + 10
        while self.sending and time.monotonic() < deadline:
            summary.add(self._turn(claim=False))
        return summary

    # ------------------------------------------------------------------ the loop

    def run_once(self, now: datetime | None = None) -> PassSummary:
        """Everything due at `now` (default: the clock): jobs, step contacts, then webhook
        deliveries (last, so that a slow receiver never delays a send)."""
        summary = PassSummary()
        with frozen_clock(now):
            while self.run_job():
                summary.jobs += 1
            summary.expired += self.expire_runs()
            summary.timers += self.fire_timers()
            while True:
                turn = self.run_batch()
                summary.add(turn)
                if turn.step_contacts == 0 and not self.sending and not turn.errors:
                    break
                if turn.errors and summary.errors > 3:
                    break  # the database is away: report what was done
            while delivered := self.deliver_webhooks():
                summary.webhooks += delivered
        return summary

    def deliver_webhooks(self) -> int:
        """Send one batch of due webhook deliveries; returns how many were handled."""
        return deliver_due(self.sessions, self._http)

    def run_job(self) -> bool:
        at = utc_now()
        lease = at + timedelta(seconds=self.settings.worker_lease_seconds)
        with unit_of_work(self.sessions) as session:
            job_id = claim_job(session, at, lease)
        if job_id is None:
            return False
        # A job with more to do is left claimable at once, by this worker or another.
        work_on_job(self.sessions, job_id, at, held_until=at)
        return True

    def expire_runs(self) -> int:
        """Finish, as `expired`, the open step contacts of runs past their max_time.

        Claims expire due step contacts too, but a contact `inactive` in a step (or
        waiting in a held draft sequence) is never claimed; this catches those.
        """
        now = utc_now()
        expired = 0
        while True:
            with unit_of_work(self.sessions) as session:
                with planned_for_values(session):
                    # Planned for `now`: the generic plan PostgreSQL keeps once the driver has
                    # prepared the statement cannot tell how few runs are past their expiry,
                    # and hashed them against every step contact in the table (measured in
                    # docs/benchmarks.md, "Bulk enrollment: where PostgreSQL's time went").
                    rows = session.execute(
                        select(StepContact, SequenceRun)
                        .join(SequenceRun, SequenceRun.id == StepContact.sequence_run_id)
                        .where(
                            SequenceRun.status == "active",
                            SequenceRun.expires_at <= now,
                            StepContact.status.in_(("pending", "inactive")),
                        )
                        .limit(self.settings.worker_batch_size)
                        .with_for_update(of=StepContact, skip_locked=True)
                    ).all()
                apply(
                    session, combine(progress.finish(sc, run, "expired", now) for sc, run in rows)
                )
            expired += len(rows)
            if len(rows) < self.settings.worker_batch_size:
                return expired

    def fire_timers(self) -> int:
        """Fire the no_response triggers whose wait is over; returns how many timers were
        handled (fired, or dropped because the contact replied or moved on)."""
        now = utc_now()
        handled = 0
        while True:
            with unit_of_work(self.sessions) as session:
                timers = session.scalars(
                    select(TriggerTimer)
                    .where(TriggerTimer.due_at <= now)
                    .order_by(TriggerTimer.due_at)
                    .limit(self.settings.worker_batch_size)
                    .with_for_update(skip_locked=True)
                ).all()
                for timer in timers:
                    self._fire_timer(session, timer, now)
            handled += len(timers)
            if len(timers) < self.settings.worker_batch_size:
                return handled

    def _fire_timer(self, session: Session, timer: TriggerTimer, now: datetime) -> None:
        # One timer's failure is its own: it is dropped and logged, the batch goes on.
        try:
            with session.begin_nested():
                apply(session, no_response(session, timer, now))
        except Exception:
            log.exception("no_response trigger %s failed; dropped", timer.trigger_id)
        session.delete(timer)

    def run_batch(self) -> PassSummary:
        """One turn: claim as many due step contacts as there are free send slots, then
        settle whatever is done. Waits a little for sends only when there is nothing else
        to do."""
        return self._turn(claim=True)

    def _turn(self, *, claim: bool) -> PassSummary:
        summary = PassSummary()
        try:
            free = self.settings.worker_send_concurrency - len(self._in_flight)
            wanted = min(self.settings.worker_batch_size, free)
            claimed = self._claim(wanted, summary) if claim and wanted > 0 else 0
            # A full batch means more may be due: claim again before waiting on sends (the
            # next claim passes over the channels whose share this one filled).
            self._collect(wait=not self._ready and not (claimed and claimed == wanted))
            if self._ready and self._settle_due(claimed):
                self._settle(summary)
        except Exception:
            log.exception("worker turn failed; its step contacts come back after their lease")
            summary.errors += 1
        return summary

    def _settle_due(self, claimed: int) -> bool:
        # Settle in groups: each settle is a transaction, and one per finished send would
        # cap the worker at the database's commit rate.
        waited = time.monotonic() - (self._ready_since or time.monotonic())
        return (
            not self._in_flight
            or claimed > 0
            or len(self._ready) >= min(self.settings.worker_batch_size, len(self._in_flight))
            or waited >= _WAIT_SECONDS
        )

    # ------------------------------------------------------------------ claim transaction

    def _claim(self, limit: int, summary: PassSummary) -> int:
        """Claim up to `limit` due step contacts; returns how many it claimed."""
        at = utc_now()
        token = uuid.uuid4()
        lease = at + timedelta(seconds=self.settings.worker_lease_seconds)
        with unit_of_work(self.sessions) as session:
            ids = claim_step_contacts(session, at, lease, limit, token, self._full_channels())
            if not ids:
                return 0
            loaded = load(session, ids)
            plan = self._plan(session, loaded, token, at)
            put_back(session, plan.deferred)
            outbound.write_messages(session, plan.messages, plan.links)
        if plan.render_bound:
            time.sleep(_AFTER_RENDER_BOUND_SECONDS)
        summary.deferred += sum(due > at for due in plan.deferred.values())
        self._add_ready(plan.settled)
        if plan.sends:
            self._leases.hold(token, [send.step_contact_id for _, send, _ in plan.sends], at)
            sender = self._send_stage()
            for item, send, not_before in plan.sends:
                self._in_flight[sender.submit(send, not_before)] = (item, send)
        return len(ids)

    def _send_stage(self) -> Sender:
        if self._sender is None:
            self._sender = Sender(
                self.settings.worker_send_concurrency,
                self.settings.provider_timeout_max_seconds,
                self._leases,
                self._policy,
            )
        return self._sender

    def _plan(self, session: Session, loaded: Loaded, token: uuid.UUID, now: datetime) -> _Plan:
        plan = _Plan()
        opted_out = {
            (p.contact_id, p.channel_id)
            for p in session.scalars(
                select(ContactPreference).where(
                    among(session, ContactPreference.contact_id, loaded.contacts),
                    ContactPreference.opt_in.is_(False),
                )
            )
        }
        to_send: list[tuple[Claimed, Channel]] = []
        for sc in loaded.step_contacts:
            item = loaded.item(token, sc)
            channel = loaded.channels.get(sc.channel_id) if sc.channel_id else None
            change = self._no_send(item, channel, opted_out, now)
            if change is not None:
                plan.settled.append(Done(item, change))
            else:
                assert channel is not None
                to_send.append((item, channel))
        # Steps whose templates render here first: renders in the sandbox's child are
        # bounded per claim (below), and must not push the others out.
        sandboxed = {item.id for item, _ in to_send if not _renders_here(item)}
        to_send.sort(key=lambda pair: pair[0].id in sandboxed)
        to_send = self._within_shares(to_send, plan, now)
        slots = throttle.reserve(session, _per_channel(to_send), now)
        waiting: Counter[uuid.UUID] = Counter()
        render_until: float | None = None
        for item, channel in to_send:
            channel_slots = slots.get(channel.id)
            starts_at: datetime | None = None
            if channel_slots is not None:
                taken = waiting[channel.id]
                waiting[channel.id] += 1
                if taken >= len(channel_slots.starts):
                    plan.deferred[item.id] = channel_slots.waiting_due(
                        taken - len(channel_slots.starts)
                    )
                    continue
                starts_at = channel_slots.starts[taken]
            message = loaded.messages.get(item.id)
            if message is None and item.id in sandboxed:
                if render_until is None:
                    render_until = time.monotonic() + self.settings.worker_claim_render_seconds
                elif time.monotonic() >= render_until:
                    # Back to the queue as it was: a later claim renders it. The claim holds
                    # SQLite's one write lock, and every other writer waits for it.
                    plan.deferred[item.id] = item.step_contact.scheduled_at
                    plan.render_bound = True
                    continue
            try:
                self._prepare_send(plan, item, channel, message, now, starts_at)
            except Exception:
                log.exception("preparing step contact %s failed; it fails", item.id)
                plan.settled.append(Done(item, FAIL))
        return plan

    def _share(self, channel: Channel) -> int:
        """The most sends of `channel` this worker may have in flight.

        Claims take the oldest due step contacts whoever they belong to. Without a bound,
        one organization's backlog on a slow or silent provider would fill every send slot
        for as long as its sends take (a gateway that never answers: the whole timeout),
        and every other organization's messages would wait behind it. So a channel gets at
        most half of the slots, fewer when its provider says so (an SMTP channel's pool of
        connections: more would only queue for one, against their own deadlines).
        """
        half = max(1, self.settings.worker_send_concurrency // 2)
        own = sends_at_once(channel.provider, channel.provider_config)
        return half if own is None else min(own, half)

    def _busy(self) -> Counter[uuid.UUID]:
        """Sends in flight, by channel."""
        return Counter(send.channel.id for _, send in self._in_flight.values())

    def _full_channels(self) -> set[uuid.UUID]:
        """The channels this worker has as many sends of in flight as it may."""
        channels = {send.channel.id: send.channel for _, send in self._in_flight.values()}
        return {
            channel_id
            for channel_id, sends in self._busy().items()
            if sends >= self._share(channels[channel_id])
        }

    def _within_shares(
        self, to_send: list[tuple[Claimed, Channel]], plan: _Plan, now: datetime
    ) -> list[tuple[Claimed, Channel]]:
        """The sends that fit their channel's share of this worker (`_share`); the others
        go back to the queue as they were, for a later claim (which passes over the channels
        whose share is taken)."""
        busy = self._busy()
        kept: list[tuple[Claimed, Channel]] = []
        for item, channel in to_send:
            if channel.provider != "outbox":
                if busy[channel.id] >= self._share(channel):
                    plan.deferred[item.id] = item.step_contact.scheduled_at
                    continue
                busy[channel.id] += 1
            kept.append((item, channel))
        return kept

    @staticmethod
    def _no_send(
        item: Claimed,
        channel: Channel | None,
        opted_out: set[tuple[uuid.UUID, uuid.UUID]],
        now: datetime,
    ) -> Outcome | None:
        """Why the step contact gets no message, if it does not."""
        sc, contact = item.step_contact, item.contact
        if item.run.expires_at is not None and item.run.expires_at <= now:
            return EXPIRE
        if sc.responded and item.ends_on_reply:
            # Replied while this send waited for a retry: the reply ends the run.
            return RESPOND
        if relative_key(item.step.schedule_options) is not None:
            try:
                wanted = wanted_at(sc.created_at, item.step, settings_of(item.sequence), contact)
            except ValueError:
                return INACTIVE  # the date went away since the contact entered the step
            if wanted < sc.created_at:
                return SKIP
        if (
            channel is None
            or contact.blocked
            or contact.state == "blocked"
            or (contact.id, channel.id) in opted_out
            or not recipient_address(channel.type, contact)
        ):
            return INACTIVE
        return None

    def _prepare_send(
        self,
        plan: _Plan,
        item: Claimed,
        channel: Channel,
        message: Message | None,
        now: datetime,
        starts_at: datetime | None,
    ) -> None:
        """The item's message: sent now (outbox), later (the send stage), or known already."""
        public_url = self.settings.public_url
        if message is None:
            try:
                row = outbound.new_message(item, channel, now, public_url, plan.links)
            except RenderError as exc:
                # The tenant's template fails this step contact, and only it.
                row = outbound.message_row(item, channel, body="", subject=None, now=now)
                row |= {"delivery_status": "failed", "error": str(exc), "attempts": 1}
                plan.messages.append(row)
                plan.settled.append(Done(item, PermanentSendError(str(exc))))
                return
            plan.messages.append(row)
            attempts = 0
        else:
            # Written by an earlier claim: a retry, or a worker that stopped mid-batch.
            if message.delivery_status in ("sent", "delivered"):
                # Accepted before that worker could settle it: never send it twice.
                plan.settled.append(Done(item, _accepted(message)))
                return
            if message.delivery_status == "failed":
                plan.settled.append(Done(item, PermanentSendError(message.error or "failed")))
                return
            row = {name: getattr(message, name) for name in outbound.SENT_COLUMNS}
            attempts = message.attempts
        send = outbound.send_of(item, channel, row, attempts, public_url)
        if channel.provider == "outbox":
            done = Done(item, _OUTBOX.record(send.outbound), send.message_id, attempts)
            plan.settled.append(done)
            return
        not_before = None
        if starts_at is not None:
            not_before = time.monotonic() + (starts_at - now).total_seconds()
        plan.sends.append((item, send, not_before))

    # ------------------------------------------------------------------ collecting results

    def _add_ready(self, outcomes: list[Done]) -> None:
        if outcomes and not self._ready:
            self._ready_since = time.monotonic()
        self._ready.extend(outcomes)

    def _collect(self, *, wait: bool) -> None:
        """Move finished sends to the ready list; with `wait`, block briefly for some."""
        if not self._in_flight:
            return
        if wait:
            done, _ = concurrent.futures.wait(
                self._in_flight, timeout=_WAIT_SECONDS, return_when="FIRST_COMPLETED"
            )
            if done:
                concurrent.futures.wait(self._in_flight, timeout=_LINGER_SECONDS)
        finished = [future for future in self._in_flight if future.done()]
        outcomes: list[Done] = []
        for future in finished:
            item, send = self._in_flight.pop(future)
            outcomes.append(Done(item, future.result(), send.message_id, send.attempts))
        self._add_ready(outcomes)

    # ------------------------------------------------------------------ settle transaction

    def _settle(self, summary: PassSummary) -> None:
        ready, self._ready, self._ready_since = self._ready, [], None
        now = utc_now()
        try:
            with unit_of_work(self.sessions) as session:
                settled = settle(session, ready, now)
        except (OperationalError, InterfaceError):
            # The database is away, or the settle lost a deadlock: nothing of it was
            # written. The outcomes wait for the next turn, their leases still renewed (a
            # message that went out is recorded once the database is back, not sent again).
            log.exception("settling %d step contacts failed; trying again", len(ready))
            self._add_ready(ready)
            raise
        except Exception:
            # One bad item must not roll back the others: settle each on its own.
            log.exception("settling %d step contacts together failed; one by one", len(ready))
            settled = PassSummary()
            for done in ready:
                settled.add(self._settle_alone(done, now))
        summary.add(settled)
        count_sends(settled.sends)  # committed: counted once, whichever way it was settled
        for done in ready:
            self._leases.release(done.item.token, [done.item.id])

    def _settle_alone(self, done: Done, now: datetime) -> PassSummary:
        try:
            with unit_of_work(self.sessions) as session:
                return settle(session, [done], now)
        except Exception:
            log.exception("settling step contact %s failed; it ends failed", done.item.id)
        try:
            # Its message's outcome is still recorded (it may have gone out: never again),
            # but the run ends here rather than going on.
            with unit_of_work(self.sessions) as session:
                return settle(session, [done], now, instead=FAIL)
        except Exception:
            log.exception("step contact %s is left for its lease to run out", done.item.id)
            return PassSummary(errors=1)


# A turn of a job that lost a race (a deadlock, a serialization failure, or a unique key
# that a concurrent request inserted first: a contact created by `POST /v1/contacts`
# between the turn's lookup and its insert) runs again this many times in all before the
# job fails: the next attempt finds the other side's rows and takes the path for them.
JOB_TURN_ATTEMPTS = 3


def work_on_job(
    sessions: sessionmaker[Session], job_id: uuid.UUID, at: datetime, held_until: datetime
) -> bool:
    """One turn of a claimed job, in a transaction of its own; True when it has more to do.
    It then stays `running`, leased until `held_until`. A failure fails the job."""
    for attempt in range(1, JOB_TURN_ATTEMPTS + 1):
        try:
            return _job_turn(sessions, job_id, at, held_until)
        except DBAPIError as exc:
            if attempt == JOB_TURN_ATTEMPTS or not is_retryable(exc):
                _fail_job(sessions, job_id, exc, at)
                return False
            log.info("job %s: turn run again after %s", job_id, type(exc.orig).__name__)
        except Exception as exc:
            _fail_job(sessions, job_id, exc, at)
            return False
    raise AssertionError("unreachable")


def _job_turn(
    sessions: sessionmaker[Session], job_id: uuid.UUID, at: datetime, held_until: datetime
) -> bool:
    with unit_of_work(sessions) as session:
        # Holding the job's row while it runs keeps other workers' claims (FOR UPDATE
        # SKIP LOCKED) off it even once its lease has run out, and makes two turns of
        # the same job (a lease that ran out mid-turn) run one after the other.
        job = session.get_one(Job, job_id, with_for_update=True)
        if job.status != "running":
            return False  # another worker finished it meanwhile
        if JOB_HANDLERS[job.kind](session, job, at):
            job.locked_until = held_until
            return True
        job.status, job.finished_at, job.locked_until = "done", at, None
    return False


def _fail_job(
    sessions: sessionmaker[Session], job_id: uuid.UUID, exc: Exception, at: datetime
) -> None:
    if isinstance(exc, TouchlineError):
        error = str(exc)
    else:
        log.error("job %s failed", job_id, exc_info=exc)
        error = f"internal error: {type(exc).__name__}"
    with unit_of_work(sessions) as session:
        job = session.get_one(Job, job_id)
        job.status, job.error, job.finished_at, job.locked_until = "failed", error, at, None


def _renders_here(item: Claimed) -> bool:
    """Whether the step's message renders in this process (see templates.renders_here)."""
    return renders_here(item.step.body) and renders_here(item.step.subject or "")


def _per_channel(to_send: list[tuple[Claimed, Channel]]) -> dict[uuid.UUID, tuple[Channel, int]]:
    counts: Counter[uuid.UUID] = Counter(channel.id for _, channel in to_send)
    channels = {channel.id: channel for _, channel in to_send}
    return {cid: (channels[cid], n) for cid, n in counts.items()}


def _accepted(message: Message) -> SendResult:
    """What the provider answered when it accepted `message`, as stored then."""
    if message.delivery_status == "delivered":
        return SendResult(message.provider_message_id, "delivered")
    return SendResult(message.provider_message_id, "sent")
