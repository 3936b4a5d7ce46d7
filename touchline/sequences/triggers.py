"""Triggers on a step, as the API takes and shows them, and the checks of the ids they name.

A trigger watches what a contact does while on its step (replies, a keyword, a click) and
runs its actions in order. They are stored on the step as JSON (`steps.triggers`), each with
an id of its own so that a firing can say which one fired.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)
from sqlalchemy import select
from sqlalchemy.orm import Session

from touchline.contacts.schemas import Tag
from touchline.core.schedule import LONGEST_WAIT, LONGEST_WAIT_TEXT, Delay
from touchline.core.triggers import keyword_form
from touchline.errors import ErrorDetail, ValidationFailed
from touchline.models import Channel, Sequence, Step
from touchline.models.ids import new_id
from touchline.schemas import RequestModel

MAX_TRIGGERS = 10
MAX_ACTIONS = 10
MAX_KEYWORDS = 20

Keyword = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=160)]


class MoveToStep(RequestModel):
    type: Literal["move_to_step"]
    step_id: uuid.UUID = Field(description="A live step of this or another sequence.")


class RemoveFromSequence(RequestModel):
    type: Literal["remove_from_sequence"]


class AddToSequence(RequestModel):
    type: Literal["add_to_sequence"]
    sequence_id: uuid.UUID
    step_id: uuid.UUID | None = Field(default=None, description="Default: the first step.")


class TagAction(RequestModel):
    type: Literal["add_tag", "remove_tag"]
    tag: Tag


class OptAction(RequestModel):
    type: Literal["opt_out", "opt_in"]
    channel_id: uuid.UUID | None = Field(
        default=None, description="Default: the channel of the step the contact is on."
    )


class SendWebhook(RequestModel):
    type: Literal["send_webhook"]


Action = Annotated[
    MoveToStep | RemoveFromSequence | AddToSequence | TagAction | OptAction | SendWebhook,
    Field(discriminator="type"),
]


class Within(RequestModel):
    days: int = Field(default=0, ge=0)
    hours: int = Field(default=0, ge=0)
    minutes: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _bounded(self) -> Within:
        wait = Delay(self.days, self.hours, self.minutes).as_timedelta()
        if not timedelta(minutes=1) <= wait <= LONGEST_WAIT:
            raise ValueError(f"within must be from 1 minute to {LONGEST_WAIT_TEXT}")
        return self


class TriggerIn(RequestModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "type": "keyword",
                    "keywords": ["YES", "CONFIRM"],
                    "actions": [
                        {"type": "move_to_step", "step_id": "6f1c1b9e-6f7c-4f53-9a57-0b8d2c1e4a10"},
                        {"type": "add_tag", "tag": "confirmed"},
                    ],
                },
                {
                    "type": "no_response",
                    "within": {"days": 2, "hours": 0, "minutes": 0},
                    "actions": [{"type": "send_webhook"}],
                },
            ]
        }
    )

    id: uuid.UUID | None = Field(
        default=None, description="Kept when given (an update of the trigger); else new."
    )
    type: Literal["reply", "keyword", "link_click", "no_response"]
    keywords: list[Keyword] | None = Field(
        default=None,
        max_length=MAX_KEYWORDS,
        description="keyword triggers: fire when the reply, or its first word, is one of "
        "these (case, surrounding spaces and punctuation ignored).",
    )
    within: Within | None = Field(
        default=None,
        description="no_response triggers: fire when the contact has not replied this long "
        "after the step's message went out (send windows do not apply).",
    )
    actions: list[Action] = Field(min_length=1, max_length=MAX_ACTIONS)

    @field_validator("keywords")
    @classmethod
    def _folded(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else [keyword_form(k) for k in value]

    @model_validator(mode="after")
    def _keywords_match_type(self) -> TriggerIn:
        if (self.type == "keyword") != bool(self.keywords):
            raise ValueError("keywords are required by keyword triggers and only by them")
        if (self.type == "no_response") != (self.within is not None):
            raise ValueError("within is required by no_response triggers and only by them")
        return self


class TriggerOut(BaseModel):
    id: uuid.UUID
    type: str
    keywords: list[str] | None = None
    within: dict[str, int] | None = None
    actions: list[dict[str, Any]]


Triggers = Annotated[list[TriggerIn], Field(max_length=MAX_TRIGGERS)]


class FiringOut(BaseModel):
    """The body of a `trigger.fired` event: which trigger fired for whom, set off by what,
    and what each action did (`outcome`)."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    trigger_id: uuid.UUID
    trigger_type: str
    sequence_id: uuid.UUID
    sequence_run_id: uuid.UUID
    step_id: uuid.UUID
    step_contact_id: uuid.UUID
    contact_id: uuid.UUID
    message_id: uuid.UUID | None
    actions: list[dict[str, Any]]
    created_at: datetime


def stored(triggers: list[TriggerIn]) -> list[dict[str, Any]]:
    """The triggers as the step keeps them: JSON, each with its id."""
    return [
        t.model_dump(mode="json", exclude_none=True) | {"id": str(t.id or new_id())}
        for t in triggers
    ]


def check_targets(session: Session, sequence: Sequence, triggers: list[TriggerIn]) -> None:
    """Every id an action names is the organization's, and a sequence it moves or adds
    contacts to is active (or is the trigger's own, which may be a draft being built): 422
    naming the field of each one that is not."""
    problems: list[ErrorDetail] = []
    for t_index, trigger in enumerate(triggers):
        for a_index, action in enumerate(trigger.actions):
            where = f"triggers[{t_index}].actions[{a_index}]"
            problems += _check(session, sequence, action, where)
    if problems:
        raise ValidationFailed(details=problems)


def _check(session: Session, own: Sequence, action: Any, where: str) -> list[ErrorDetail]:
    org_id = own.organization_id
    if isinstance(action, MoveToStep):
        step = _live_step(session, org_id, action.step_id)
        if step is None:
            return [ErrorDetail("Unknown step", f"{where}.step_id")]
        if step.sequence_id == own.id:
            return []
        return _takes_contacts(session.get_one(Sequence, step.sequence_id), f"{where}.step_id")
    if isinstance(action, AddToSequence):
        sequence = session.get(Sequence, action.sequence_id)
        if sequence is None or sequence.organization_id != org_id:
            return [ErrorDetail("Unknown sequence", f"{where}.sequence_id")]
        if action.step_id is not None:
            step = _live_step(session, org_id, action.step_id)
            if step is None or step.sequence_id != sequence.id:
                return [ErrorDetail("Unknown step for this sequence", f"{where}.step_id")]
        if sequence.id == own.id:
            return []
        return _takes_contacts(sequence, f"{where}.sequence_id")
    if isinstance(action, OptAction) and action.channel_id is not None:
        channel = session.get(Channel, action.channel_id)
        if channel is None or channel.organization_id != org_id:
            return [ErrorDetail("Unknown channel", f"{where}.channel_id")]
    return []


def _live_step(session: Session, org_id: uuid.UUID, step_id: uuid.UUID) -> Step | None:
    return session.scalars(
        select(Step).where(
            Step.id == step_id, Step.organization_id == org_id, Step.deleted_at.is_(None)
        )
    ).first()


def _takes_contacts(sequence: Sequence, field: str) -> list[ErrorDetail]:
    if sequence.status != "active":
        return [ErrorDetail(f"The target sequence is {sequence.status}", field)]
    return []
