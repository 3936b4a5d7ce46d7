"""The send stage: a worker's messages in flight, many at once, each bounded in time.

Providers spend nearly all of a send waiting on the network, so one worker keeps up to
`TOUCHLINE_WORKER_SEND_CONCURRENCY` sends in flight on an asyncio loop that runs in a thread
of its own; the worker's loop hands sends over and collects their results as futures. HTTP
providers share one aiohttp session (pooled keep-alive connections); each SMTP channel keeps
a small pool of logged-in connections (see channels/providers). Every send is bounded by its
channel's timeout, itself capped by `TOUCHLINE_PROVIDER_TIMEOUT_MAX_SECONDS`: a gateway that
never answers costs its own sends that long and holds no one else's. docs/decisions.md says
why asyncio and aiohttp (measured against threads and httpx).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime

import aiohttp

from touchline.channels.providers import build_provider
from touchline.channels.providers.base import (
    OutboundMessage,
    PermanentSendError,
    Provider,
    SendResult,
    TransientSendError,
)
from touchline.channels.providers.http import guarded_connector
from touchline.models import Channel
from touchline.netpolicy import OutboundPolicy
from touchline.worker.leases import LeaseKeeper

log = logging.getLogger("touchline.worker")

# Providers kept ready (with their pooled connections) per worker; a channel's settings
# change makes a new one. Bounded: an organization may have many channels.
_PROVIDERS_KEPT = 256
# Beyond the provider's own bound: a provider that fails to enforce its timeout still
# cannot hold a send slot longer than this much more.
_GRACE_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class Send:
    """A message to hand to a provider, outside any transaction."""

    token: uuid.UUID
    step_contact_id: uuid.UUID
    message_id: uuid.UUID
    organization_id: uuid.UUID
    channel: Channel
    # Attempts made before this one.
    attempts: int
    outbound: OutboundMessage


@dataclass(frozen=True, slots=True)
class NotSent:
    """A send that did not start: the worker no longer held the step contact's lease."""

    reason: str


Result = SendResult | TransientSendError | PermanentSendError | NotSent


class Sender:
    """An asyncio loop in a thread, sending what the worker hands it."""

    def __init__(
        self, concurrency: int, timeout_max: float, leases: LeaseKeeper, policy: OutboundPolicy
    ) -> None:
        """`policy` decides where providers may connect: a send to anywhere else fails
        for good, that send alone."""
        self._concurrency = concurrency
        self._timeout_max = timeout_max
        self._leases = leases
        self._policy = policy
        self._providers: OrderedDict[tuple[uuid.UUID, datetime], Provider] = OrderedDict()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="touchline-sender", daemon=True
        )
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._open(), self._loop).result()

    async def _open(self) -> None:
        self._slots = asyncio.Semaphore(self._concurrency)
        # One pool for every HTTP provider: a connection per send would pay for TCP (and
        # TLS) setup on every message. limit_per_host=0: the overall limit is the bound.
        self._http = aiohttp.ClientSession(
            connector=guarded_connector(self._policy, limit=self._concurrency, limit_per_host=0)
        )

    def submit(
        self, send: Send, not_before: float | None = None
    ) -> concurrent.futures.Future[Result]:
        """Start `send` (no earlier than `not_before` on the monotonic clock: a channel's
        rate); the future's result is the provider's answer, never an exception."""
        return asyncio.run_coroutine_threadsafe(self._send(send, not_before), self._loop)

    async def _send(self, send: Send, not_before: float | None) -> Result:
        if not_before is not None:
            await asyncio.sleep(max(0.0, not_before - time.monotonic()))
        async with self._slots:
            if not self._leases.holds(send.token, send.step_contact_id):
                return NotSent("the worker's lease on the step contact ended before the send")
            return await self._attempt(send)

    async def _attempt(self, send: Send) -> Result:
        try:
            async with asyncio.timeout(self._timeout_max + _GRACE_SECONDS):
                return await self._provider(send.channel).send(send.outbound)
        except (TransientSendError, PermanentSendError) as exc:
            return exc
        except TimeoutError:
            return TransientSendError(f"no answer within {self._timeout_max:g} s")
        except Exception as exc:
            # A provider bug must not take the worker down; retry it like an outage.
            log.exception("provider raised unexpectedly")
            return TransientSendError(f"{type(exc).__name__}: {exc}")

    def _provider(self, channel: Channel) -> Provider:
        key = (channel.id, channel.updated_at)
        provider = self._providers.get(key)
        if provider is not None:
            self._providers.move_to_end(key)
            return provider
        provider = build_provider(
            channel.provider,
            channel.provider_config,
            http=self._http,
            policy=self._policy,
            timeout_max=self._timeout_max,
        )
        self._providers[key] = provider
        if len(self._providers) > _PROVIDERS_KEPT:
            _, evicted = self._providers.popitem(last=False)
            self._loop.create_task(evicted.aclose())
        return provider

    async def _close(self) -> None:
        for provider in self._providers.values():
            try:
                await provider.aclose()
            except Exception:
                log.exception("closing a provider failed")
        self._providers.clear()
        await self._http.close()

    def close(self) -> None:
        try:
            asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(timeout=30)
        except Exception:
            log.exception("closing the sender failed")
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()
