"""Email delivery through any SMTP server, using the standard library's smtplib."""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, parseaddr

from pydantic import BaseModel, ConfigDict, Field, model_validator

from touchline.channels.providers.base import (
    OutboundMessage,
    PermanentSendError,
    SendResult,
    TransientSendError,
)


class SmtpConfig(BaseModel):
    # Unknown keys are dropped rather than rejected so that a stored config survives
    # a field being removed in a later version.
    model_config = ConfigDict(extra="ignore")

    host: str = Field(min_length=1)
    port: int = Field(default=587, ge=1, le=65535)
    username: str | None = None
    password: str | None = None
    starttls: bool = False
    ssl: bool = False
    timeout: float = Field(default=10, gt=0)

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


class SmtpProvider:
    def __init__(self, config: SmtpConfig, *, ssl_context: ssl.SSLContext | None = None) -> None:
        """`ssl_context` replaces the default (system CAs, hostname checked), e.g. to
        trust a private CA; it is used for both implicit TLS and STARTTLS."""
        self.config = config
        self._ssl_context = ssl_context

    def send(self, message: OutboundMessage) -> SendResult:
        email = self._build(message)
        envelope_from = parseaddr(message.from_address)[1] or message.from_address
        envelope_to = parseaddr(message.to)[1] or message.to
        try:
            self._deliver(email, envelope_from, envelope_to)
        # SMTPException subclasses OSError, so the SMTP cases must come first.
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            detail = "; ".join(
                f"{rcpt}: {code} {_text(reply)}" for rcpt, (code, reply) in exc.recipients.items()
            )
            # Only one recipient per send, but be exact if there were several: retry
            # only when every refusal was temporary (e.g. greylisting).
            if codes and all(_is_4xx(code) for code in codes):
                raise TransientSendError(f"recipient deferred: {detail}") from exc
            raise PermanentSendError(f"recipient refused: {detail}") from exc
        except smtplib.SMTPResponseException as exc:
            # Covers the AUTH, MAIL FROM, DATA, HELO and greeting replies. A 454
            # "temporary authentication failure" is retried like any other 4xx; 535
            # (bad credentials) is not.
            text = f"SMTP {exc.smtp_code} {_text(exc.smtp_error)}"
            if 500 <= exc.smtp_code < 600:
                raise PermanentSendError(text) from exc
            raise TransientSendError(text) from exc
        except smtplib.SMTPServerDisconnected as exc:
            raise TransientSendError(f"SMTP server disconnected: {exc}") from exc
        except smtplib.SMTPException as exc:
            # What remains are mismatches between config and server (no STARTTLS,
            # no AUTH, no usable AUTH mechanism, no SMTPUTF8): retrying cannot help.
            raise PermanentSendError(f"SMTP error: {exc}") from exc
        except OSError as exc:
            # Refused or reset connections, timeouts, DNS failures, TLS failures.
            raise TransientSendError(
                f"cannot reach SMTP server {self.config.host}:{self.config.port}: {exc}"
            ) from exc
        return SendResult(provider_message_id=email["Message-ID"])

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

    def _context(self) -> ssl.SSLContext:
        return self._ssl_context or ssl.create_default_context()

    def _deliver(self, email: EmailMessage, envelope_from: str, envelope_to: str) -> None:
        cfg = self.config
        smtp: smtplib.SMTP
        if cfg.ssl:
            smtp = smtplib.SMTP_SSL(
                cfg.host, cfg.port, timeout=cfg.timeout, context=self._context()
            )
        else:
            smtp = smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout)
        try:
            if cfg.starttls:
                smtp.starttls(context=self._context())
            if cfg.username:
                smtp.login(cfg.username, cfg.password or "")
            smtp.send_message(email, from_addr=envelope_from, to_addrs=[envelope_to])
        finally:
            _close_quietly(smtp)


def _close_quietly(smtp: smtplib.SMTP) -> None:
    # Not `with smtplib.SMTP(...)`: its __exit__ raises when QUIT gets an odd reply,
    # which after an accepted message would turn a success into a retried send.
    try:
        smtp.quit()
    except (smtplib.SMTPException, OSError):
        pass
    finally:
        smtp.close()


def _text(reply: bytes | str) -> str:
    if isinstance(reply, bytes):
        return reply.decode("utf-8", errors="replace")
    return reply
