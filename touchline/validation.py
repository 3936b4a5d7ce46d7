"""Field checks shared by every domain, done by libraries made for them."""

from __future__ import annotations

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


def normalize_email(value: str) -> str:
    """The address in lower case: mail systems treat it case-blind in practice, and
    contacts are deduplicated by it."""
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
