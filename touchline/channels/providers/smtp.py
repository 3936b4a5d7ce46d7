"""Email delivery through any SMTP server (aiosmtplib), over a small pool of logged-in
connections per channel config."""

from __future__ import annotations

import asyncio
import socket
import ssl
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from typing import Literal

import aiosmtplib
from aiosmtplib.typing import Default
from pydantic import Field, ValidationInfo, field_validator, model_validator

from touchline.channels.providers.base import (
    OutboundMessage,
    PermanentSendError,
    ProviderConfig,
    SendResult,
    TransientSendError,
    check_destination,
    shorten,
)
from touchline.netpolicy import DestinationRefused, OutboundPolicy

# Servers drop sessions idle for a while (RFC 5321 asks them to wait 5 minutes, many
# wait far less); one idle longer than this is closed rather than tried.
IDLE_SECONDS = 30.0
# How long aclose() waits for each QUIT: politeness, not delivery.
QUIT_SECONDS = 2.0


class SmtpConfig(ProviderConfig):
    host: str = Field(min_length=1)
    port: int = Field(default=587, ge=1, le=65535)
    username: str | None = None
    password: str | None = None
    starttls: bool = False
    ssl: bool = False
    # The most connections kept open (and logged in) to this server at once; sends
    # beyond it wait for a free connection, within their timeout.
    pool_size: int = Field(default=4, ge=1, le=20)

    @field_validator("host")
    @classmethod
    def _allowed_host(cls, value: str, info: ValidationInfo) -> str:
        check_destination(value, info)
        return value

    @model_validator(mode="after")
    def _one_tls_mode(self) -> SmtpConfig:
        if self.ssl and self.starttls:
            # STARTTLS upgrades a plain connection; with implicit TLS there is none.
            raise ValueError("ssl and starttls are mutually exclusive")
        return self


def message_id_for(message: OutboundMessage) -> str:
    """The Message-ID header for a message: the same on every retry of one send.

    Receiving systems that deduplicate on Message-ID then discard the second copy
    when a send is retried after the server accepted it but the reply was lost.
    """
    return f"<{message.id}@touchline>"


def _is_4xx(code: int) -> bool:
    return 400 <= code < 500


class _Connection(aiosmtplib.SMTP):
    """An SMTP session that knows whether any message content was handed over."""

    data_started = False
    idle_since = 0.0

    async def data(
        self,
        message: str | bytes,
        /,
        *,
        timeout: float | Literal[Default.token] | None = Default.token,
    ) -> aiosmtplib.SMTPResponse:
        # From here on a failure is ambiguous (the server may have accepted the
        # message), so the send must not be repeated on another connection.
        self.data_started = True
        return await super().data(message, timeout=timeout)


class _StaleConnectionError(Exception):
    """A reused connection died before any of the message was handed over."""


class SmtpProvider:
    def __init__(
        self,
        config: SmtpConfig,
        *,
        policy: OutboundPolicy,
        ssl_context: ssl.SSLContext | None = None,
        timeout_max: float | None = None,
    ) -> None:
        """Connections go only to addresses `policy` allows. `ssl_context` replaces the
        default (system CAs, hostname checked), e.g. to trust a private CA; it is used
        for both implicit TLS and STARTTLS. Each send takes at most the config's timeout,
        capped at `timeout_max`, waiting for a pooled connection included. Use one
        instance from one event loop."""
        self.config = config
        self._policy = policy
        self.timeout = config.send_timeout(timeout_max)
        self._ssl_context = ssl_context
        self._slots = asyncio.Semaphore(config.pool_size)
        # Most recently used last: the one least likely to have been dropped is reused.
        self._idle: list[_Connection] = []
        self._closed = False

    async def send(self, message: OutboundMessage) -> SendResult:
        email = self._build(message)
        envelope_from = parseaddr(message.from_address)[1] or message.from_address
        envelope_to = parseaddr(message.to)[1] or message.to
        cfg = self.config
        try:
            async with asyncio.timeout(self.timeout):
                await self._deliver(email, envelope_from, envelope_to)
        except DestinationRefused as exc:
            # Nothing was sent; the same host would be refused every time.
            raise PermanentSendError(f"SMTP: {exc}") from exc
        # The SMTP cases first: several also subclass ConnectionError or TimeoutError.
        # Replies are kept shortened: one is the server's status line, not a body, but
        # may run over several lines.
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [refused.code for refused in exc.recipients]
            detail = shorten(
                "; ".join(
                    f"{refused.recipient}: {refused.code} {refused.message}"
                    for refused in exc.recipients
                )
            )
            # Only one recipient per send, but be exact if there were several: retry
            # only when every refusal was temporary (e.g. greylisting).
            if codes and all(_is_4xx(code) for code in codes):
                raise TransientSendError(f"recipient deferred: {detail}") from exc
            raise PermanentSendError(f"recipient refused: {detail}") from exc
        except aiosmtplib.SMTPResponseException as exc:
            # Covers the AUTH, MAIL FROM, DATA, HELO and greeting replies. A 454
            # "temporary authentication failure" is retried like any other 4xx; 535
            # (bad credentials) is not.
            text = f"SMTP {exc.code} {shorten(exc.message)}"
            if 500 <= exc.code < 600:
                raise PermanentSendError(text) from exc
            raise TransientSendError(text) from exc
        except aiosmtplib.SMTPServerDisconnected as exc:
            raise TransientSendError(f"SMTP server disconnected: {exc}") from exc
        except aiosmtplib.SMTPConnectError as exc:
            raise TransientSendError(
                f"cannot reach SMTP server {cfg.host}:{cfg.port}: {exc}"
            ) from exc
        except TimeoutError as exc:
            raise TransientSendError(
                f"SMTP server {cfg.host}:{cfg.port}: timed out after {self.timeout:g}s"
            ) from exc
        except aiosmtplib.SMTPException as exc:
            # What remains are mismatches between config and server (no STARTTLS,
            # no AUTH, no usable AUTH mechanism, no SMTPUTF8): retrying cannot help.
            raise PermanentSendError(f"SMTP error: {exc}") from exc
        except OSError as exc:
            # Reset connections, TLS failures (an untrusted certificate included,
            # which is also a ValueError, hence this order).
            raise TransientSendError(
                f"cannot reach SMTP server {cfg.host}:{cfg.port}: {exc}"
            ) from exc
        except ValueError as exc:
            # aiosmtplib refuses envelope addresses that could smuggle SMTP commands.
            raise PermanentSendError(f"cannot send email: {exc}") from exc
        return SendResult(provider_message_id=email["Message-ID"])

    async def aclose(self) -> None:
        """QUIT and close the idle connections; those in use are closed when their send
        ends."""
        self._closed = True
        idle, self._idle = self._idle, []
        await asyncio.gather(*(_quit(smtp) for smtp in idle))

    def _build(self, message: OutboundMessage) -> EmailMessage:
        email = EmailMessage()
        try:
            email["From"] = message.from_address
            email["To"] = message.to
            if message.subject is not None:
                email["Subject"] = message.subject
            email["Date"] = formatdate(localtime=False)
            email["Message-ID"] = message_id_for(message)
            email.set_content(message.body)
        except (ValueError, TypeError) as exc:
            # The email package refuses header values with CR/LF (header injection)
            # and unparsable addresses; the same input would fail on every retry.
            raise PermanentSendError(f"cannot build email: {exc}") from exc
        return email

    async def _deliver(self, email: EmailMessage, envelope_from: str, envelope_to: str) -> None:
        async with self._slots:
            smtp = self._take_idle()
            if smtp is not None:
                try:
                    await self._transact(smtp, email, envelope_from, envelope_to, reused=True)
                    return
                except _StaleConnectionError:
                    pass
            smtp = await self._connect()
            await self._transact(smtp, email, envelope_from, envelope_to, reused=False)

    async def _transact(
        self,
        smtp: _Connection,
        email: EmailMessage,
        envelope_from: str,
        envelope_to: str,
        *,
        reused: bool,
    ) -> None:
        """MAIL, RCPT and DATA on a borrowed connection; it goes back to the pool only
        if all went well."""
        smtp.data_started = False
        try:
            await smtp.send_message(email, sender=envelope_from, recipients=[envelope_to])
        except BaseException as exc:
            # Whatever happened (a refusal, a reset, a cancellation mid-command), the
            # session's state is unknown: never reuse it.
            smtp.close()
            if reused and not smtp.data_started and _is_dead_connection(exc):
                raise _StaleConnectionError from exc
            raise
        if self._closed:
            # No QUIT here: waiting for its reply could turn this delivered message
            # into a timed-out send.
            smtp.close()
            return
        smtp.idle_since = asyncio.get_running_loop().time()
        self._idle.append(smtp)

    def _take_idle(self) -> _Connection | None:
        now = asyncio.get_running_loop().time()
        while self._idle:
            smtp = self._idle.pop()
            if smtp.is_connected and now - smtp.idle_since <= IDLE_SECONDS:
                return smtp
            # Dropped by the server meanwhile, or likely to be soon: no QUIT, as a
            # server that already hung up would make it wait.
            smtp.close()
        return None

    async def _connect(self) -> _Connection:
        cfg = self.config
        tls = cfg.ssl or cfg.starttls
        # aiosmtplib's default EHLO name, looked up before connecting rather than by
        # connect(): the server is not kept waiting on it, and connect() has nothing to
        # wait for before the socket is its transport's.
        local_hostname = await asyncio.to_thread(socket.getfqdn)
        sock = await self._open_socket()
        try:
            smtp = _Connection(
                # Connected to a checked address already; the host name is kept for TLS
                # (SNI and certificate verification, implicit TLS and STARTTLS alike).
                hostname=cfg.host,
                sock=sock,
                local_hostname=local_hostname,
                # Login happens within connect(); an empty username means no AUTH.
                username=cfg.username or None,
                password=cfg.password or "",
                use_tls=cfg.ssl,
                # Never an opportunistic upgrade: only what the config asks for.
                start_tls=cfg.starttls,
                tls_context=self._tls_context() if tls else None,
                # The send's own deadline bounds every step; aiosmtplib's would only race it.
                timeout=None,
            )
        except BaseException:
            sock.close()
            raise
        # connect() closes the connection, socket included, when it fails or is cancelled.
        await smtp.connect()
        return smtp

    async def _open_socket(self) -> socket.socket:
        """A TCP connection to the configured server, made to an address the policy
        allows, after resolving its name here: aiosmtplib would resolve it again."""
        cfg = self.config
        loop = asyncio.get_running_loop()
        infos = await self._policy.resolve_async(cfg.host, cfg.port)
        failure = OSError(f"no address for {cfg.host}")
        for family, kind, proto, _, address in infos:
            sock = socket.socket(family, kind, proto)
            try:
                sock.setblocking(False)
                await loop.sock_connect(sock, address)
            except OSError as exc:
                sock.close()
                failure = exc
                continue
            except BaseException:
                sock.close()
                raise
            return sock
        raise failure

    def _tls_context(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            # Made once per provider: loading the system CAs costs milliseconds.
            self._ssl_context = ssl.create_default_context()
        return self._ssl_context


def _is_dead_connection(exc: BaseException) -> bool:
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        # 421: the server is closing the session, e.g. after its idle timeout.
        return exc.code == 421
    return isinstance(exc, ConnectionError | aiosmtplib.SMTPServerDisconnected)


async def _quit(smtp: _Connection) -> None:
    # QUIT's reply does not matter: the connection is being closed either way.
    try:
        async with asyncio.timeout(QUIT_SECONDS):
            await smtp.quit()
    except (aiosmtplib.SMTPException, OSError, TimeoutError):
        pass
    finally:
        smtp.close()
