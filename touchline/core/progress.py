"""Every change of a step contact or a run, as a function that returns a changeset.

The API (enrollment, removal, moves, replies, opt-in and out, clicks) and the worker (sends'
outcomes, expiry) call these and hand the result to the applier (touchline/applier.py), so
the run's pointers (`current_step_contact_id`, `last_completed_step_contact_id`), its
`updated_at`, the guard each change needs and the webhook events stay the same whoever made
the change. Nothing here reads or writes the database: the arguments are rows the caller
read (ORM objects or plain rows, see views.py).

Guards: a request changes a step contact it read under its run's lock (`locks.py`), guarded
by the status it read; the worker's changes are guarded by its claim (`claim = token AND
status = 'active'`). A guard that no longer holds drops the change and what follows it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from touchline.core.changes import (
    Changeset,
    IfResponded,
    Insert,
    Update,
    combine,
    count,
    insert,
    update,
)
from touchline.core.relative import NoDateError
from touchline.core.schedule import Delay, NoSendWindowError, earliest_allowed
from touchline.core.settings import settings_of
from touchline.core.states import FinishReason, check_transition
from touchline.core.views import (
    ClaimedLike,
    ContactLike,
    NewRun,
    RunLike,
    SequenceLike,
    StepContactLike,
    StepLike,
)
from touchline.core.windows import due_at, rules_for
from touchline.models import Channel, LinkClick, SequenceRun, StepContact, TriggerTimer
from touchline.models.ids import new_id


def step_channel_id(step: StepLike, run: RunLike, sequence: SequenceLike) -> uuid.UUID | None:
    """The step's own channel, else the run's, else the sequence's default."""
    return step.channel_id or run.channel_id or sequence.default_channel_id


@dataclass(frozen=True, slots=True)
class Place:
    """Where a contact waits for a message: a step of a sequence, sent on `channel` (see
    `step_channel_id`)."""

    sequence: SequenceLike
    step: StepLike
    contact: ContactLike
    channel: Channel | None

    def due(self, start: datetime) -> datetime | str:
        """When the step's message may go out, waiting from `start`, or why it never can:
        the send windows never open, a date-relative step has no date to go by, or the
        stored delay lands past the calendar's end (a delay saved before delays were
        bounded). Either way it is this step contact's problem alone."""
        settings = settings_of(self.sequence)
        try:
            return due_at(start, self.step, settings, self.channel, self.contact)
        except NoDateError as exc:
            return str(exc)
        except NoSendWindowError:
            return "the send windows never open"
        except (ValueError, OverflowError):
            return "the step's delay lands past the calendar's end"


def _expiry(start: datetime, max_time: int | None) -> datetime | None:
    if not max_time:
        return None
    try:
        return start + timedelta(seconds=max_time)
    except OverflowError:
        # A max_time saved before it was bounded, past the calendar's end: never.
        return None


def begin(
    place: Place,
    organization_id: uuid.UUID,
    run_channel_id: uuid.UUID | None,
    start: datetime,
    now: datetime,
    previous: Iterable[RunLike] = (),
    due: datetime | str | None = None,
) -> tuple[NewRun, dict[str, Any], Changeset]:
    """A new run of the place's sequence for its contact, standing in its step, waiting
    from `start`; it becomes the contact's latest run there, so the `previous` latest ones
    stop being so. Returns the run, its step contact, the changes. `due` is the step's
    `place.due(start)` when the caller already knows it (see `enter_step`)."""
    sequence, contact = place.sequence, place.contact
    settings = settings_of(sequence)
    run = NewRun(
        {
            "id": new_id(),
            "expires_at": _expiry(now, settings.max_time),
            "organization_id": organization_id,
            "sequence_id": sequence.id,
            "contact_id": contact.id,
            "channel_id": run_channel_id,
            "status": "active",
            "is_latest": True,
            "created_at": now,
            "updated_at": now,
        }
    )
    sc = _step_contact(run, place, start, now, due)
    # A new run is written standing in its first step, not inserted and then moved there.
    run.row |= _entered(sc["id"], place.step.id, now)
    # Built whole, not added up: a bulk enrollment begins thousands of runs.
    changes = Changeset(
        inserts=[Insert(SequenceRun, run.row), Insert(StepContact, sc)],
        updates=[
            Update(SequenceRun, old.id, old.organization_id, {"is_latest": False}, announce=False)
            for old in previous
        ],
    )
    return run, sc, changes


def _entered(step_contact_id: uuid.UUID, step_id: uuid.UUID, now: datetime) -> dict[str, Any]:
    """What entering a step changes on the run: it now stands there."""
    return {"current_step_contact_id": step_contact_id, "last_step_id": step_id, "updated_at": now}


def enter_step(
    run: RunLike, place: Place, start: datetime, now: datetime
) -> tuple[dict[str, Any], Changeset]:
    """Put the contact in the place's step of its run: pending until its message is due
    from `start`, or inactive when it cannot be. Returns the new step contact's row and the
    changes."""
    sc = _step_contact(run, place, start, now)
    changes = insert(StepContact, sc) + update(
        SequenceRun, run.id, run.organization_id, _entered(sc["id"], place.step.id, now)
    )
    return sc, changes


def _step_contact(
    run: RunLike, place: Place, start: datetime, now: datetime, due: datetime | str | None = None
) -> dict[str, Any]:
    """The row of the contact's stay in the place's step of `run`."""
    sequence, step, channel = place.sequence, place.step, place.channel
    if due is None:
        due = place.due(start)
    scheduled = due if isinstance(due, datetime) else None
    return {
        "id": new_id(),
        "organization_id": run.organization_id,
        "sequence_id": run.sequence_id,
        "step_id": step.id,
        "sequence_run_id": run.id,
        "contact_id": place.contact.id,
        "channel_id": channel.id if channel else None,
        "status": "pending" if scheduled is not None else "inactive",
        "note": None if isinstance(due, datetime) else due,
        "held": sequence.status != "active",
        "scheduled_at": scheduled or start,
        "sequence_version": sequence.version,
        "created_at": now,
        "updated_at": now,
    }


def _set(
    sc: StepContactLike,
    run: RunLike,
    values: dict[str, Any],
    now: datetime,
    then: Callable[[Mapping[str, Any]], Changeset] | None = None,
) -> Changeset:
    """Change a step contact a request read (guarded by the status it read); its run is
    updated too, since the API shows a run's `updated_at` as its last change."""
    if "status" in values:
        check_transition(sc.status, values["status"])
        if values["status"] != "active":
            values["locked_until"] = None

    def touch_run(row: Mapping[str, Any]) -> Changeset:
        run_changes = update(SequenceRun, run.id, run.organization_id, {"updated_at": now})
        return run_changes + then(row) if then is not None else run_changes

    return update(
        StepContact,
        sc.id,
        sc.organization_id,
        values | {"updated_at": now},
        {"status": sc.status},
        then=touch_run,
    )


def reschedule(
    sc: StepContactLike, run: RunLike, place: Place, start: datetime, now: datetime
) -> Changeset:
    """Start the contact's wait in its current step over from `start` (reprocessing)."""
    due = place.due(start)
    if not isinstance(due, datetime):
        values: dict[str, Any] = {"note": due}
        if sc.status != "inactive":
            values["status"] = "inactive"
    else:
        values = {
            "scheduled_at": due,
            "channel_id": place.channel.id if place.channel else None,
            "sequence_version": place.sequence.version,
            "note": None,
        }
        if sc.status != "pending":
            values["status"] = "pending"
    return _set(sc, run, values, now)


def _finished(reason: FinishReason | IfResponded, now: datetime) -> dict[str, Any]:
    return {
        "status": "finished",
        "finish_reason": reason,
        "completed_at": now,
        "locked_until": None,
        "updated_at": now,
    }


def run_finished(reason: str, now: datetime) -> dict[str, Any]:
    return {"status": "finished", "finish_reason": reason, "finished_at": now, "updated_at": now}


def _after_finish(run: RunLike, sc_id: uuid.UUID, reason: str, now: datetime) -> Changeset:
    """What a finished step contact changes on its run: the run ends unless the step was
    completed (then the caller decides whether the run goes on)."""
    values: dict[str, Any] = {"last_completed_step_contact_id": sc_id, "updated_at": now}
    if reason != "completed":
        values |= run_finished(reason, now)
    return update(SequenceRun, run.id, run.organization_id, values)


def finish(sc: StepContactLike, run: RunLike, reason: FinishReason, now: datetime) -> Changeset:
    """A request (or the worker's expiry) finishes a step contact it read: removed,
    expired, responded."""
    check_transition(sc.status, "finished")
    return update(
        StepContact,
        sc.id,
        sc.organization_id,
        _finished(reason, now),
        {"status": sc.status},
        then=lambda _row: _after_finish(run, sc.id, reason, now),
    )


def finish_run(run: RunLike, reason: str, now: datetime) -> Changeset:
    return update(SequenceRun, run.id, run.organization_id, run_finished(reason, now))


def move(
    sc: StepContactLike,
    run: RunLike,
    target: Place,
    now: datetime,
    previous: Iterable[RunLike] = (),
) -> tuple[uuid.UUID, Changeset]:
    """Leave the current step for `target`, in this run or in a new run of another sequence
    (whose latest runs are `previous`); the contact waits in the target step as if it had
    just entered it. Returns the new step contact's id and the changes."""
    if target.sequence.id == run.sequence_id:
        row, entered = enter_step(run, target, now, now)
    else:
        _, row, began = begin(target, run.organization_id, run.channel_id, now, now, previous)
        entered = finish_run(run, "moved", now) + began
    # Entered only if the move applies: a writer that changed the step contact first wins.
    moved = _set(sc, run, {"status": "moved", "completed_at": now}, now, then=lambda _: entered)
    return row["id"], moved


def respond(sc: StepContactLike, run: RunLike, on_response: str, now: datetime) -> Changeset:
    """The contact replied while in this step; `on_response: remove` ends the run (unless a
    worker is sending the step right now: it owns the row until it settles it, and its
    settle reads `responded`)."""
    changes = Changeset() if sc.responded else count(sc.step_id, "responses")
    if on_response == "remove" and sc.status != "active":
        values = _finished("responded", now) | {"responded": True}
        return changes + update(
            StepContact,
            sc.id,
            sc.organization_id,
            values,
            {"status": sc.status},
            then=lambda _row: _after_finish(run, sc.id, "responded", now),
        )
    return changes + _set(sc, run, {"responded": True}, now)


def unsubscribe(sc: StepContactLike, run: RunLike, now: datetime) -> Changeset:
    """The contact opted out of the step's channel; the worker makes its next send inactive."""
    changes = Changeset() if sc.unsubscribed else count(sc.step_id, "unsubscribes")
    return changes + _set(sc, run, {"unsubscribed": True}, now)


def reactivate(
    sc: StepContactLike,
    run: RunLike,
    sequence: SequenceLike,
    contact: ContactLike,
    channel: Channel | None,
    now: datetime,
) -> Changeset:
    """An inactive contact may receive the step again (it opted back in): its wait is over,
    so it is due at the first moment the send windows allow."""
    rules = rules_for(settings_of(sequence), channel, contact)
    try:
        scheduled = earliest_allowed(now, rules)
    except NoSendWindowError:
        return Changeset()
    values = {"status": "pending", "scheduled_at": scheduled, "sequence_version": sequence.version}
    return _set(sc, run, values, now)


def click(sc: StepContactLike, link_id: uuid.UUID, now: datetime) -> Changeset:
    """A tracked link of the step's message was followed (and kept for the run's history)."""
    clicked = {
        "id": new_id(),
        "organization_id": sc.organization_id,
        "link_id": link_id,
        "step_contact_id": sc.id,
        "created_at": now,
    }
    return (
        count(sc.step_id, "link_clicks")
        + update(StepContact, sc.id, sc.organization_id, {"clicked_link": True, "updated_at": now})
        + insert(LinkClick, clicked)
    )


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a worker's settle does to one step contact it claimed."""

    kind: Literal["finish", "retry", "inactive"]
    # finish: why. `completed` becomes `responded` when the contact replied meanwhile and
    # the sequence ends runs on a reply.
    reason: FinishReason | None = None
    # retry: the row stays the worker's (`active`) and is claimed again from this instant.
    until: datetime | None = None


COMPLETE = Outcome("finish", "completed")
FAIL = Outcome("finish", "failed")
EXPIRE = Outcome("finish", "expired")
RESPOND = Outcome("finish", "responded")
# A date-relative step whose moment had passed when the contact entered it.
SKIP = Outcome("finish", "skipped")
INACTIVE = Outcome("inactive")


def retry_at(until: datetime) -> Outcome:
    return Outcome("retry", until=until)


def settle(item: ClaimedLike, outcome: Outcome, now: datetime) -> Changeset:
    """The worker's change of a step contact it claimed, guarded by its claim: a removal,
    move or reply that committed first changed the row (its status, or `responded`, read
    by the finish in the same statement), and a row whose lease lapsed and that another
    worker took over carries that worker's token; either way nothing here applies."""
    sc = item.step_contact
    values: dict[str, Any] = {"claim": None, "updated_at": now}
    then: Callable[[Mapping[str, Any]], Changeset] | None = None
    if outcome.kind == "retry":
        values["locked_until"] = outcome.until
    elif outcome.kind == "inactive":
        values |= {"status": "inactive", "locked_until": None}
        then = lambda _row: update(  # noqa: E731
            SequenceRun, item.run.id, item.run.organization_id, {"updated_at": now}
        )
    else:
        reason: FinishReason | IfResponded = outcome.reason or "completed"
        if reason == "completed" and item.ends_on_reply:
            reason = IfResponded("responded", "completed")
        values |= _finished(reason, now)
        then = lambda row: _advance(item, row["finish_reason"], now)  # noqa: E731
    return update(
        StepContact,
        sc.id,
        sc.organization_id,
        values,
        {"claim": item.token, "status": "active"},
        # A new lease is not news; its outcome follows.
        announce=outcome.kind != "retry",
        then=then,
    )


def _advance(item: ClaimedLike, reason: str, now: datetime) -> Changeset:
    """After a step contact finished: the run ends, or enters the following step (after a
    sent or a skipped step)."""
    if reason == "skipped":
        return _after_finish(item.run, item.step_contact.id, "completed", now) + _next(item, now)
    changes = _after_finish(item.run, item.step_contact.id, reason, now)
    if reason != "completed":
        return changes
    return changes + _next(item, now) + _await_replies(item, now)


def _next(item: ClaimedLike, now: datetime) -> Changeset:
    if item.following is None:
        return finish_run(item.run, "completed", now)
    place = Place(item.sequence, item.following, item.contact, item.following_channel)
    return enter_step(item.run, place, now, now)[1]


def _await_replies(item: ClaimedLike, now: datetime) -> Changeset:
    """The step's no_response triggers start waiting now that its message went out."""
    return combine(
        insert(
            TriggerTimer,
            {
                "id": new_id(),
                "organization_id": item.step_contact.organization_id,
                "step_contact_id": item.step_contact.id,
                "trigger_id": uuid.UUID(trigger["id"]),
                "due_at": now + Delay.parse(trigger["within"]).as_timedelta(),
            },
        )
        for trigger in item.step.triggers or []
        if trigger["type"] == "no_response"
    )
