"""Field checks shared by every domain, done by libraries made for them."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Annotated
from zoneinfo import available_timezones

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from pydantic import AfterValidator


def normalize_phone(value: str) -> str:
    """Return the E.164 form of a phone number, or raise ValueError."""
    try:
        parsed = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException as exc:
        raise ValueError("phone must be an E.164 number such as +14155550100") from exc
    if not phonenumbers.is_valid_number(parsed):
        raise ValueError("phone is not a valid number")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def phone_for_lookup(value: str) -> str:
    """A phone as a filter or lookup gives it, in E.164 when it can be read as a number.

    An unencoded `+` in a query string arrives as a space, so digits alone are tried with a
    `+` in front before the value is taken as written (and then matches nothing).
    """
    for candidate in (value, "+" + value.strip()):
        try:
            return normalize_phone(candidate)
        except ValueError:
            continue
    return value


# An unquoted ASCII local part (RFC 5322 dot-atom): valid whatever its domain, and kept as
# written by email_validator.
_PLAIN_LOCAL = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*", re.ASCII
)


@lru_cache(maxsize=4096)
def _plain_domain(domain: str) -> str | None:
    """The domain as email_validator normalizes it, when it is valid and plain ASCII."""
    try:
        checked = validate_email("a@" + domain, check_deliverability=False)
    except EmailNotValidError:
        return None
    return checked.domain if checked.domain == checked.ascii_domain else None


def normalize_email(value: str) -> str:
    """The address in lower case: mail systems treat it case-blind in practice, and
    contacts are deduplicated by it."""
    # Most addresses are a plain local part at one of a few domains. Checking each domain
    # once gives the same answer as checking each address whole, at a fraction of the
    # cost (it was a third of a contact import's time); anything else is checked whole.
    local, at, domain = value.rpartition("@")
    if at and len(value) <= 254 and len(local) <= 64 and _PLAIN_LOCAL.fullmatch(local):
        plain = _plain_domain(domain)
        if plain is not None:
            return f"{local}@{plain}".lower()
    try:
        return validate_email(value, check_deliverability=False).normalized.lower()
    except EmailNotValidError as exc:
        raise ValueError(f"email is not valid: {exc}") from exc


def email_for_lookup(value: str) -> str:
    """An email as a filter or lookup gives it: normalized when valid, else as written
    (and then it matches nothing)."""
    try:
        return normalize_email(value)
    except ValueError:
        return value


@lru_cache(maxsize=1)
def _zones() -> frozenset[str]:
    return frozenset(available_timezones())


def check_timezone(value: str) -> str:
    if value not in _zones():
        raise ValueError("timezone must be an IANA time zone name such as America/New_York")
    return value


Phone = Annotated[str, AfterValidator(normalize_phone)]
Email = Annotated[str, AfterValidator(normalize_email)]
TimeZoneName = Annotated[str, AfterValidator(check_timezone)]
