"""The worker: claim due step contacts, send their messages, advance the runs.

Each batch takes two short transactions around the sends:
1. claim: mark the batch `active` with a lease, decide who may receive the step, and write
   the outbound message row (unique per step contact) for each;
2. settle: record each provider's answer, finish the step contacts, enter the next steps.
A worker that dies between the two leaves `active` rows whose lease runs out; the next
claim finds their message rows already written and sends those same rows again, with the
same id as the provider's idempotency key, so no step contact ever gets a second message.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from touchline.bulk import among, insert_rows
from touchline.channels.providers import build_provider
from touchline.channels.providers.base import (
    OutboundMessage,
    PermanentSendError,
    Provider,
    SendResult,
    TransientSendError,
)
from touchline.config import Settings
from touchline.db import frozen_clock, unit_of_work, utc_now
from touchline.engine import progress
from touchline.engine.claims import claim_job, claim_step_contacts
from touchline.engine.schedule import MAX_SEND_ATTEMPTS, retry_backoff
from touchline.engine.settlement import Settlement
from touchline.engine.views import (
    ContactLike,
    ContactRow,
    SequenceLike,
    SequenceRow,
    StepLike,
    StepRow,
    load_rows,
    next_steps,
)
from touchline.enrollment.service import run_enrollment, run_removal
from touchline.errors import TouchlineError
from touchline.messaging.links import rewrite_links
from touchline.messaging.templates import contact_variables, render
from touchline.models import (
    Channel,
    ContactPreference,
    Job,
    Message,
    SequenceRun,
    StepContact,
    TrackedLink,
)
from touchline.webhooks import events
from touchline.webhooks.delivery import deliver_due

log = logging.getLogger("touchline.worker")

# What a send needs of a message written by an earlier claim.
_SENT_COLUMNS = (
    "id",
    "organization_id",
    "attempts",
    "to_address",
    "from_address",
    "body",
    "subject",
)

JOB_HANDLERS = {"enroll": run_enrollment, "remove": run_removal}


@dataclass
class PassSummary:
    jobs: int = 0
    sent: int = 0
    inactive: int = 0
    failed: int = 0
    retried: int = 0
    expired: int = 0
    webhooks: int = 0

    def add(self, other: PassSummary) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    @property
    def step_contacts(self) -> int:
        return self.sent + self.inactive + self.failed + self.retried + self.expired


@dataclass
class _Send:
    """A message to hand to a provider, outside any transaction."""

    message_id: uuid.UUID
    organization_id: uuid.UUID
    step_contact_id: uuid.UUID
    channel_id: uuid.UUID
    # Attempts made before this one.
    attempts: int
    outbound: OutboundMessage


@dataclass
class _Loaded:
    """The rows a batch of step contacts needs, read with one query per table."""

    step_contacts: list[StepContact]
    runs: dict[uuid.UUID, SequenceRun] = field(default_factory=dict)
    steps: dict[uuid.UUID, StepRow] = field(default_factory=dict)
    sequences: dict[uuid.UUID, SequenceRow] = field(default_factory=dict)
    contacts: dict[uuid.UUID, ContactRow] = field(default_factory=dict)
    channels: dict[uuid.UUID, Channel] = field(default_factory=dict)
    messages: dict[uuid.UUID, Message] = field(default_factory=dict)
    # The live step after each step of the batch, by the batch step's id.
    next_steps: dict[uuid.UUID, StepRow] = field(default_factory=dict)

    def following(self, step: StepLike) -> StepRow | None:
        return self.next_steps.get(step.id)


def _by_id(session: Session, model: Any, ids: Iterable[uuid.UUID | None]) -> dict[uuid.UUID, Any]:
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    return {
        row.id: row
        for row in session.scalars(select(model).where(among(session, model.id, wanted)))
    }


def _load(session: Session, ids: list[uuid.UUID]) -> _Loaded:
    scs = list(session.scalars(select(StepContact).where(among(session, StepContact.id, ids))))
    loaded = _Loaded(step_contacts=scs)
    loaded.runs = _by_id(session, SequenceRun, (sc.sequence_run_id for sc in scs))
    loaded.steps = load_rows(session, StepRow, (sc.step_id for sc in scs))
    loaded.sequences = load_rows(session, SequenceRow, (sc.sequence_id for sc in scs))
    loaded.contacts = load_rows(session, ContactRow, (sc.contact_id for sc in scs))
    loaded.next_steps = next_steps(session, loaded.steps.values())
    loaded.channels = _by_id(
        session,
        Channel,
        {sc.channel_id for sc in scs}
        | {s.channel_id for s in loaded.next_steps.values()}
        | {r.channel_id for r in loaded.runs.values()}
        | {q.default_channel_id for q in loaded.sequences.values()},
    )
    loaded.messages = {
        m.step_contact_id: m
        for m in session.scalars(
            select(Message).where(among(session, Message.step_contact_id, ids))
        )
        if m.step_contact_id is not None
    }
    return loaded


def _removes_on_response(sequence: SequenceLike) -> bool:
    return bool((sequence.settings or {}).get("on_response", "remove") == "remove")


class Worker:
    def __init__(self, sessions: sessionmaker[Session], settings: Settings) -> None:
        self.sessions = sessions
        self.settings = settings
        self._providers: dict[tuple[uuid.UUID, datetime], Provider] = {}
        # Channels of the batch being sent, kept past the claim transaction.
        self._channels: dict[uuid.UUID, Channel] = {}
        # One pool of connections for every HTTP provider: a client per send would pay
        # for a new connection (and TLS setup) on every message.
        self._http = httpx.Client()

    def close(self) -> None:
        self._http.close()

    # ------------------------------------------------------------------ the loop

    def run_once(self, now: datetime | None = None) -> PassSummary:
        """Everything due at `now` (default: the clock): jobs, step contacts, then webhook
        deliveries (last, so that a slow receiver never delays a send)."""
        summary = PassSummary()
        with frozen_clock(now):
            while self.run_job():
                summary.jobs += 1
            summary.expired += self.expire_runs()
            while True:
                batch = self.run_batch()
                summary.add(batch)
                if batch.step_contacts == 0:
                    break
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
        try:
            with unit_of_work(self.sessions) as session:
                # Holding the job's row while it runs keeps other workers' claims (FOR
                # UPDATE SKIP LOCKED) off it even once its lease has run out.
                job = session.get_one(Job, job_id, with_for_update=True)
                if job.status != "running":
                    return True  # another worker finished it meanwhile
                JOB_HANDLERS[job.kind](session, job, at)
                job.status, job.finished_at, job.locked_until = "done", at, None
        except TouchlineError as exc:
            self._fail_job(job_id, str(exc), at)
        except Exception as exc:
            log.exception("job %s failed", job_id)
            self._fail_job(job_id, f"internal error: {type(exc).__name__}", at)
        return True

    def _fail_job(self, job_id: uuid.UUID, error: str, at: datetime) -> None:
        with unit_of_work(self.sessions) as session:
            job = session.get_one(Job, job_id)
            job.status, job.error, job.finished_at, job.locked_until = "failed", error, at, None

    def expire_runs(self) -> int:
        """Finish, as `expired`, the open step contacts of runs past their max_time.

        Claims expire due step contacts too, but a contact `inactive` in a step (or
        waiting in a held draft sequence) is never claimed; this catches those.
        """
        now = utc_now()
        expired = 0
        while True:
            with unit_of_work(self.sessions) as session:
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
                for sc, run in rows:
                    progress.finish_step_contact(sc, run, "expired", now)
            expired += len(rows)
            if len(rows) < self.settings.worker_batch_size:
                return expired

    def run_batch(self) -> PassSummary:
        at = utc_now()
        summary = PassSummary()
        # One session for both transactions: the settle works on the rows the claim loaded
        # (kept past its commit, expire_on_commit=False) and reads again only what others
        # may have changed while the messages were out.
        with self.sessions() as session:
            with session.begin():
                lease = at + timedelta(seconds=self.settings.worker_lease_seconds)
                ids = claim_step_contacts(session, at, lease, self.settings.worker_batch_size)
                if not ids:
                    return summary
                loaded = _load(session, ids)
                sends = self._prepare(session, loaded, at, summary)
            results = [(s, self._send(s)) for s in sends]
            if results:
                with session.begin():
                    self._settle(session, loaded, results, utc_now(), summary)
        return summary

    # ------------------------------------------------------------------ claim transaction

    def _prepare(
        self, session: Session, loaded: _Loaded, now: datetime, summary: PassSummary
    ) -> list[_Send]:
        opted_out = {
            (p.contact_id, p.channel_id)
            for p in session.scalars(
                select(ContactPreference).where(
                    among(session, ContactPreference.contact_id, loaded.contacts),
                    ContactPreference.opt_in.is_(False),
                )
            )
        }
        sends: list[_Send] = []
        new_messages: list[dict[str, Any]] = []
        new_links: list[dict[str, Any]] = []
        for sc in loaded.step_contacts:
            run = loaded.runs[sc.sequence_run_id]
            sequence = loaded.sequences[sc.sequence_id]
            contact = loaded.contacts[sc.contact_id]
            channel = loaded.channels.get(sc.channel_id) if sc.channel_id else None
            if run.expires_at is not None and run.expires_at <= now:
                progress.finish_step_contact(sc, run, "expired", now)
                summary.expired += 1
                continue
            if sc.responded and _removes_on_response(sequence):
                # Replied while this send waited for a retry: the reply ends the run.
                progress.finish_step_contact(sc, run, "responded", now)
                continue
            if (
                channel is None
                or contact.blocked
                or contact.state == "blocked"
                or (contact.id, channel.id) in opted_out
                or not (contact.phone if channel.type == "sms" else contact.email)
            ):
                progress.mark_inactive(sc, run, now)
                summary.inactive += 1
                continue
            message = loaded.messages.get(sc.id)
            if message is None:
                row = self._new_message(
                    sc, loaded.steps[sc.step_id], sequence, contact, channel, now, new_links
                )
                new_messages.append(row)
            else:
                # Written by an earlier claim: a retry, or a worker that stopped mid-batch.
                row = {name: getattr(message, name) for name in _SENT_COLUMNS}
            sends.append(self._outbound(sc, channel, row))
            self._channels[channel.id] = channel
        self._write_messages(session, new_messages, new_links)
        return sends

    def _outbound(self, sc: StepContact, channel: Channel, message: dict[str, Any]) -> _Send:
        return _Send(
            message_id=message["id"],
            organization_id=message["organization_id"],
            step_contact_id=sc.id,
            channel_id=channel.id,
            attempts=message["attempts"],
            outbound=OutboundMessage(
                id=message["id"],
                channel_type="sms" if channel.type == "sms" else "email",
                to=message["to_address"],
                from_address=message["from_address"],
                body=message["body"],
                subject=message["subject"],
                status_callback_url=self._status_callback_url(channel),
            ),
        )

    def _new_message(
        self,
        sc: StepContact,
        step: StepLike,
        sequence: SequenceLike,
        contact: ContactLike,
        channel: Channel,
        now: datetime,
        links: list[dict[str, Any]],
    ) -> dict[str, Any]:
        """The step contact's outbound message row; adds its tracked links to `links`."""
        variables = contact_variables(contact)
        to = contact.phone if channel.type == "sms" else contact.email
        message_id = uuid.uuid4()
        body = render(step.body, variables)
        if (sequence.settings or {}).get("link_tracking"):
            body, found = rewrite_links(body, self.settings.public_url)
            links.extend(
                {
                    "id": uuid.uuid4(),
                    "organization_id": sc.organization_id,
                    "token": token,
                    "url": url,
                    "step_contact_id": sc.id,
                    "message_id": message_id,
                    "clicks": 0,
                    "created_at": now,
                }
                for url, token in found
            )
        return {
            "id": message_id,
            "organization_id": sc.organization_id,
            "direction": "OUTBOUND",
            "channel_id": channel.id,
            "contact_id": contact.id,
            "sequence_id": sc.sequence_id,
            "step_id": sc.step_id,
            "step_contact_id": sc.id,
            "to_address": to or "",
            "from_address": channel.address,
            "body": body,
            "subject": render(step.subject, variables) if step.subject else None,
            "delivery_status": "queued",
            "attempts": 0,
            "created_at": now,
            "updated_at": now,
        }

    @staticmethod
    def _write_messages(
        session: Session, messages: list[dict[str, Any]], links: list[dict[str, Any]]
    ) -> None:
        """Insert the batch's new messages (and their links) with one statement each,
        not as ORM objects the commit would flush one by one; the session does not see
        them, so their `created` events are reported here."""
        if not messages:
            return
        insert_rows(session, Message, messages)
        insert_rows(session, TrackedLink, links)
        events.report(
            session, Message, [(m["organization_id"], m["id"]) for m in messages], "created"
        )

    def _status_callback_url(self, channel: Channel) -> str | None:
        if channel.provider != "twilio":
            return None
        return f"{self.settings.public_url.rstrip('/')}/webhooks/twilio/status"

    # ------------------------------------------------------------------ sending

    def _provider(self, channel: Channel) -> Provider:
        key = (channel.id, channel.updated_at)
        provider = self._providers.get(key)
        if provider is None:
            provider = build_provider(
                channel.provider, channel.provider_config, http_client=self._http
            )
            self._providers[key] = provider
        return provider

    def _send(self, send: _Send) -> SendResult | Exception:
        try:
            return self._provider(self._channels[send.channel_id]).send(send.outbound)
        except (TransientSendError, PermanentSendError) as exc:
            return exc
        except Exception as exc:
            # A provider bug must not take the batch down; retry it like an outage.
            log.exception("provider raised unexpectedly")
            return TransientSendError(f"{type(exc).__name__}: {exc}")

    # ------------------------------------------------------------------ settle transaction

    def _settle(
        self,
        session: Session,
        loaded: _Loaded,
        results: list[tuple[_Send, SendResult | Exception]],
        now: datetime,
        summary: PassSummary,
    ) -> None:
        # While the messages were out, a reply, a removal or a move may have changed the
        # step contacts: read their status again. Their runs need not be: whatever
        # finishes or moves a run changes its open step contact too, and the settle touches
        # the run only while that step contact is still this worker's.
        current = {
            sc_id: (status, responded)
            for sc_id, status, responded in session.execute(
                select(StepContact.id, StepContact.status, StepContact.responded).where(
                    among(session, StepContact.id, (send.step_contact_id for send, _ in results))
                )
            )
        }
        step_contacts = {sc.id: sc for sc in loaded.step_contacts}
        settlement = Settlement(session, now)
        for send, result in results:
            sc = step_contacts[send.step_contact_id]
            status, responded = current[sc.id]
            self._settle_one(loaded, sc, status, responded, send, result, settlement, summary)
        settlement.write()
        # Last, right before the commit: other workers' settles queue on these rows' locks
        # (steps shared by their batches), so they are held for as short a time as can be.
        progress.count_many(session, settlement.counts)

    def _settle_one(
        self,
        loaded: _Loaded,
        sc: StepContact,
        status: str,
        responded: bool,
        send: _Send,
        result: SendResult | Exception,
        settlement: Settlement,
        summary: PassSummary,
    ) -> None:
        """Apply one provider's answer (`status`, `responded`: the step contact as it is
        now; the loaded object is as it was at the claim)."""
        now = settlement.now
        run = loaded.runs[sc.sequence_run_id]
        step = loaded.steps[sc.step_id]
        sequence = loaded.sequences[sc.sequence_id]
        attempts = send.attempts + 1
        still_ours = status == "active"

        def update_message(**columns: Any) -> None:
            settlement.update_message(
                send.organization_id, send.message_id, attempts=attempts, updated_at=now, **columns
            )

        if isinstance(result, SendResult):
            update_message(
                delivery_status=result.delivery_status,
                provider_message_id=result.provider_message_id,
                error=None,
                next_attempt_at=None,
            )
            settlement.counts[(step.id, "sent_messages")] += 1
            summary.sent += 1
            if still_ours and responded and _removes_on_response(sequence):
                # The contact replied while this message was on its way: it went out, and
                # the reply ends the run instead of the next step.
                settlement.finish(sc, run, "responded")
            elif still_ours:
                settlement.complete_and_advance(
                    sc, run, sequence, loaded.following(step), loaded.contacts[sc.contact_id]
                )
        elif isinstance(result, TransientSendError) and attempts < MAX_SEND_ATTEMPTS:
            wait = retry_backoff(attempts)
            update_message(error=str(result), next_attempt_at=now + wait)
            summary.retried += 1
            if still_ours:
                # The lease doubles as the retry timer: the row is claimed again then.
                settlement.renew_lease(sc, now + wait)
        else:
            update_message(delivery_status="failed", error=str(result), next_attempt_at=None)
            settlement.counts[(step.id, "failed_deliveries")] += 1
            summary.failed += 1
            if still_ours:
                settlement.finish(sc, run, "failed")
