"""Every table, imported here so that Alembic and the app see one metadata."""

from touchline.models.base import Base
from touchline.models.channel import Channel, ChannelThrottle
from touchline.models.contact import Contact, ContactPreference, ContactTag
from touchline.models.health import ReadinessProbe
from touchline.models.job import Job, JobPart
from touchline.models.message import LinkClick, Message, TrackedLink
from touchline.models.organization import ApiKey, Organization
from touchline.models.run import OPEN_STEP_CONTACT_STATUSES, SequenceRun, StepContact
from touchline.models.sequence import Sequence, Step
from touchline.models.trigger import TriggerFiring, TriggerTimer
from touchline.models.webhook import WebhookAttempt, WebhookDelivery, WebhookSubscription
from touchline.models.worker import WorkerHeartbeat

__all__ = [
    "OPEN_STEP_CONTACT_STATUSES",
    "ApiKey",
    "Base",
    "Channel",
    "ChannelThrottle",
    "Contact",
    "ContactPreference",
    "ContactTag",
    "Job",
    "JobPart",
    "LinkClick",
    "Message",
    "Organization",
    "ReadinessProbe",
    "Sequence",
    "SequenceRun",
    "Step",
    "StepContact",
    "TrackedLink",
    "TriggerFiring",
    "TriggerTimer",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookSubscription",
    "WorkerHeartbeat",
]
