from __future__ import annotations

from typing import Annotated
from urllib.parse import parse_qsl

from fastapi import Query, Request, Response
from fastapi.responses import RedirectResponse
from pydantic import ValidationError
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from touchline.channels.providers.twilio import TwilioConfig, validate_twilio_signature
from touchline.db import unit_of_work, utc_now
from touchline.deps import DbSession, OrgId, ReadSession
from touchline.errors import TouchlineError, from_pydantic
from touchline.messaging import service
from touchline.messaging.schemas import InboundMessage, MessageListQuery, MessageOut
from touchline.models import Channel, Message
from touchline.routing import api_router
from touchline.schemas import Data, Page

router = api_router(tags=["messages"])


class Forbidden(TouchlineError, status=403, message="Signature check failed"): ...


@router.get("/v1/messages", summary="List messages")
def list_messages(
    query: Annotated[MessageListQuery, Query()], session: ReadSession, org: OrgId
) -> Page[MessageOut]:
    """Outbound and inbound, newest first. Filters combine; a `contact_id` of another organization,
    like an unknown one, gives an empty page rather than a 404."""
    return service.list_messages(session, org, query)


@router.post("/v1/messages/inbound", status_code=201, summary="Record a message a contact sent")
def inbound(body: InboundMessage, session: DbSession, org: OrgId) -> Data[MessageOut]:
    """A reply marks the contact's open step contacts on that channel `responded` and applies each
    sequence's `on_response`. STOP, UNSUBSCRIBE, CANCEL, END or QUIT opt the contact out of the
    channel; START opts back in."""
    return Data(data=service.message_out(service.receive(session, org, body, utc_now())))


TWIML_EMPTY = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'


async def _twilio_form(request: Request) -> tuple[str, dict[str, str], str]:
    form = dict(
        parse_qsl((await request.body()).decode("utf-8", "replace"), keep_blank_values=True)
    )
    public = request.app.state.settings.public_url.rstrip("/")
    url = public + request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return url, form, request.headers.get("X-Twilio-Signature", "")


def _verified(channel: Channel, url: str, form: dict[str, str], signature: str) -> bool:
    # A channel moved off Twilio keeps no auth token to check Twilio's late reports with.
    if channel.provider != "twilio":
        return False
    token = TwilioConfig.model_validate(channel.provider_config).auth_token
    return validate_twilio_signature(url, form, signature, token)


@router.post(
    "/webhooks/twilio/inbound",
    tags=["providers"],
    summary="Twilio's incoming-message webhook",
    response_class=Response,
    responses={
        200: {
            "description": "Empty TwiML",
            "content": {"text/xml": {"schema": {"type": "string"}}},
        },
        403: {"description": "Bad signature"},
    },
)
async def twilio_inbound(request: Request) -> Response:
    """Point a Twilio number's messaging webhook here. Verified by Twilio's X-Twilio-Signature
    against the channel's auth token; answers empty TwiML."""
    url, form, signature = await _twilio_form(request)

    def receive() -> None:
        with unit_of_work(request.app.state.sessions) as session:
            channels = session.scalars(
                select(Channel).where(
                    Channel.address == form.get("To", ""), Channel.provider == "twilio"
                )
            ).all()
            channel = next((c for c in channels if _verified(c, url, form, signature)), None)
            if channel is None:
                raise Forbidden()
            try:
                data = InboundMessage.model_validate(
                    {
                        "from": form.get("From", ""),
                        "to": str(channel.id),
                        "body": form.get("Body", ""),
                    }
                )
            except ValidationError as exc:
                # Signed but unusable (no sender, say): the caller's fault, not a crash.
                raise from_pydantic(exc) from exc
            service.receive(
                session, channel.organization_id, data, utc_now(), form.get("MessageSid")
            )

    await run_in_threadpool(receive)
    return Response(TWIML_EMPTY, media_type="text/xml")


TWILIO_STATUSES = {"delivered": "delivered", "failed": "failed", "undelivered": "failed"}


@router.post(
    "/webhooks/twilio/status",
    tags=["providers"],
    summary="Twilio's delivery status callback",
    status_code=204,
    response_class=Response,
    responses={403: {"description": "Bad signature"}},
)
async def twilio_status(request: Request) -> Response:
    """Touchline asks Twilio to report here when a channel's `status_callback` is on; `delivered`
    and `failed`/`undelivered` update the message."""
    url, form, signature = await _twilio_form(request)

    def update() -> None:
        with unit_of_work(request.app.state.sessions) as session:
            sid = form.get("MessageSid", "")
            message = session.scalars(
                select(Message).where(Message.provider_message_id == sid)
            ).first()
            channel = (
                session.get(Channel, message.channel_id) if message and message.channel_id else None
            )
            if channel is None or not _verified(channel, url, form, signature):
                raise Forbidden()
            status = TWILIO_STATUSES.get(form.get("MessageStatus", ""))
            if status is not None:
                error = form.get("ErrorCode")
                service.update_delivery(
                    session, sid, status, f"Twilio error {error}" if error else None, utc_now()
                )

    await run_in_threadpool(update)
    return Response(status_code=204)


@router.get(
    "/l/{token}",
    tags=["links"],
    summary="Follow a tracked link",
    response_class=RedirectResponse,
    status_code=302,
    responses={302: {"description": "Redirect to the original URL"}},
)
def follow(token: str, session: DbSession) -> RedirectResponse:
    """Redirects (302) to the original URL and marks the step contact `clicked_link`. No API key:
    this is the link contacts receive."""
    return RedirectResponse(service.follow_link(session, token, utc_now()), status_code=302)
