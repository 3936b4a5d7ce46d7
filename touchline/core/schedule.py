"""Pure time rules: when may a sequence step be sent?

Everything here works on timezone-aware datetimes and returns UTC. Delays are
absolute elapsed time (a one-day delay across a DST change is 24 real hours);
only the snapping into send windows happens in local wall-clock time, because
that is what the windows are expressed in.

Each rule describes its allowed set as wall-clock intervals in its own zone.
The earliest allowed instant at or after ``t`` is found per rule, and the rules
are applied in turn until none of them moves the time any more: each rule only
ever moves forward to the earliest instant it allows, so no instant allowed by
all rules is ever skipped, and the first fixed point is the earliest common
allowed instant.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Final, TypeAlias
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = [
    "LONGEST_WAIT",
    "LONGEST_WAIT_TEXT",
    "MAX_SEND_ATTEMPTS",
    "SEARCH_HORIZON",
    "WEEKDAYS",
    "BusinessHours",
    "Delay",
    "NoSendWindowError",
    "QuietHours",
    "Rule",
    "WeekendRule",
    "earliest_allowed",
    "explained_allowed",
    "next_send_time",
    "parse_opening_hours",
    "pick_zone",
    "retry_backoff",
]

MAX_SEND_ATTEMPTS: Final = 5

# The longest wait a tenant may ask for (a step's delay, a run's max_time, a schedule_at
# ahead): far beyond any campaign, and far from the calendar's end, so that no sum of
# these and the send windows can overflow a datetime.
LONGEST_WAIT: Final = timedelta(days=3650)
LONGEST_WAIT_TEXT: Final = "10 years (3650 days)"

# Long enough for windows that open once a week, short enough that a channel
# configured with no open time at all fails quickly instead of looping.
SEARCH_HORIZON: Final = timedelta(days=14)

WEEKDAYS: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

_DELAY_KEYS: Final = ("days", "hours", "minutes")
_ONE_SECOND: Final = timedelta(seconds=1)

OpeningHours: TypeAlias = dict[str, list[tuple[time, time | None]]]


class NoSendWindowError(ValueError):
    """No instant within the search horizon satisfies every rule."""


# --------------------------------------------------------------------------- delays


def _delay_part(key: str, value: object) -> int:
    # bool is an int subclass; True as "1 day" is almost certainly a client bug.
    if isinstance(value, bool):
        raise ValueError(f"schedule_options.{key} must be a whole number, got a boolean")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str):
        # isdigit() alone accepts non-ASCII digits such as "٣" or "²".
        if not (value.isascii() and value.isdigit()):
            raise ValueError(f"schedule_options.{key} must be a string of digits, got {value!r}")
        number = int(value)
    else:
        raise ValueError(
            f"schedule_options.{key} must be an integer or a string of digits, "
            f"got {type(value).__name__}"
        )
    if number < 0:
        raise ValueError(f"schedule_options.{key} must not be negative, got {number}")
    return number


@dataclass(frozen=True)
class Delay:
    days: int = 0
    hours: int = 0
    minutes: int = 0

    def __post_init__(self) -> None:
        for key in _DELAY_KEYS:
            _delay_part(key, getattr(self, key))
        try:
            self.as_timedelta()
        except OverflowError:
            raise ValueError("schedule_options delay is too large") from None

    @classmethod
    def parse(cls, raw: Mapping[str, object] | None) -> Delay:
        """Read ``{days, hours, minutes}``; missing keys and JSON nulls count as 0.

        Other keys are ignored: schedule_options carries more than the delay.
        """
        if raw is None:
            return cls()
        parts = {
            key: _delay_part(key, raw[key]) if raw.get(key) is not None else 0
            for key in _DELAY_KEYS
        }
        return cls(**parts)

    def as_timedelta(self) -> timedelta:
        return timedelta(days=self.days, hours=self.hours, minutes=self.minutes)


# --------------------------------------------------------------------------- opening hours


def _parse_hhmm(text: object, *, where: str, allow_24: bool) -> time | None:
    """Return the time, or None for an allowed "24:00" (end of day)."""
    if not isinstance(text, str):
        raise ValueError(f"{where} must be an 'HH:MM' string, got {type(text).__name__}")
    hh, sep, mm = text.partition(":")
    if (
        sep != ":"
        or len(hh) != 2
        or len(mm) != 2
        or not (hh + mm).isascii()
        or not (hh + mm).isdigit()
    ):
        raise ValueError(f"{where} must look like 'HH:MM', got {text!r}")
    hour, minute = int(hh), int(mm)
    if hour == 24 and minute == 0:
        if allow_24:
            return None
        raise ValueError(f"{where} may not be '24:00' (only an interval end may)")
    if hour > 23 or minute > 59:
        raise ValueError(f"{where} is not a valid time of day: {text!r}")
    return time(hour, minute)


def parse_opening_hours(raw: object) -> OpeningHours:
    """Validate channel opening hours and return them as times.

    Shape: ``{"mon": [["09:00", "17:00"], ...], ...}``; start inclusive, end
    exclusive, end ``"24:00"`` (returned as ``None``) meaning midnight. Weekdays
    may be omitted. ``None`` gives an empty dict. Overlapping intervals are
    accepted: they are harmless for scheduling. Intervals come back sorted.
    """
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ValueError(
            f"opening_hours must be an object keyed by weekday, got {type(raw).__name__}"
        )
    result: OpeningHours = {}
    for day, intervals in raw.items():
        if day not in WEEKDAYS:
            raise ValueError(
                f"opening_hours has an unknown weekday {day!r}; use one of {', '.join(WEEKDAYS)}"
            )
        # A bare string is a Sequence too; reject it so "09:00-17:00" is not read as characters.
        if isinstance(intervals, str | bytes) or not isinstance(intervals, Sequence):
            raise ValueError(f"opening_hours.{day} must be a list of ['HH:MM', 'HH:MM'] intervals")
        parsed: list[tuple[time, time | None]] = []
        for index, interval in enumerate(intervals):
            where = f"opening_hours.{day}[{index}]"
            if (
                isinstance(interval, str | bytes)
                or not isinstance(interval, Sequence)
                or len(interval) != 2
            ):
                raise ValueError(f"{where} must be a pair ['HH:MM', 'HH:MM']")
            start = _parse_hhmm(interval[0], where=f"{where} start", allow_24=False)
            end = _parse_hhmm(interval[1], where=f"{where} end", allow_24=True)
            assert start is not None  # allow_24=False never yields None
            if end is not None and start >= end:
                raise ValueError(
                    f"{where} must start before it ends, got {interval[0]!r}-{interval[1]!r}"
                )
            parsed.append((start, end))
        parsed.sort(key=lambda pair: pair[0])
        result[day] = parsed
    return result


# --------------------------------------------------------------------------- rules


@dataclass(frozen=True)
class WeekendRule:
    """No sends on local Saturday or Sunday; they move to Monday 00:00 local."""

    zone: ZoneInfo

    def _allows(self, wall: datetime) -> bool:
        return wall.weekday() < 5

    def _openings(self, day: date) -> tuple[time, ...]:
        return (time(0, 0),) if day.weekday() == 0 else ()


@dataclass(frozen=True)
class BusinessHours:
    """Sends only inside the channel's opening hours; empty or None means always open."""

    zone: ZoneInfo
    opening_hours: Mapping[str, Sequence[Sequence[str]]] | None
    _parsed: OpeningHours = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Validate at construction so a bad channel fails where it is configured,
        # not halfway through a scheduling search.
        object.__setattr__(self, "_parsed", parse_opening_hours(self.opening_hours))

    def _allows(self, wall: datetime) -> bool:
        if not self._parsed:
            return True
        now = wall.time()
        return any(
            start <= now and (end is None or now < end)
            for start, end in self._parsed.get(WEEKDAYS[wall.weekday()], ())
        )

    def _openings(self, day: date) -> tuple[time, ...]:
        return tuple(start for start, _ in self._parsed.get(WEEKDAYS[day.weekday()], ()))


@dataclass(frozen=True)
class QuietHours:
    """No sends from ``start`` (inclusive) to ``end`` (exclusive) local time.

    ``start > end`` crosses midnight; ``start == end`` disables the rule.
    """

    zone: ZoneInfo
    start: time = time(21, 0)
    end: time = time(8, 0)

    def __post_init__(self) -> None:
        # Comparing an aware time with the naive wall time would raise mid-search.
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            raise ValueError(
                "quiet hours start/end must be naive local times; the zone is separate"
            )

    def _allows(self, wall: datetime) -> bool:
        now = wall.time()
        if self.start == self.end:
            return True
        if self.start < self.end:
            return not (self.start <= now < self.end)
        return self.end <= now < self.start

    def _openings(self, day: date) -> tuple[time, ...]:
        return () if self.start == self.end else (self.end,)


Rule: TypeAlias = WeekendRule | BusinessHours | QuietHours


# --------------------------------------------------------------------------- local time


def _wall(instant: datetime, zone: ZoneInfo) -> datetime:
    return instant.astimezone(zone).replace(tzinfo=None, fold=0)


def _first_second(lo: datetime, hi: datetime, pred: Callable[[datetime], bool]) -> datetime:
    """Smallest whole-second instant in (lo, hi] where ``pred`` holds, given pred(hi)."""
    lo_s, hi_s = math.floor(lo.timestamp()), math.ceil(hi.timestamp())
    while hi_s - lo_s > 1:
        mid = (lo_s + hi_s) // 2
        if pred(datetime.fromtimestamp(mid, UTC)):
            hi_s = mid
        else:
            lo_s = mid
    return datetime.fromtimestamp(hi_s, UTC)


def _resolve(wall: datetime, zone: ZoneInfo, fold: int) -> datetime:
    """The UTC instant of a local wall time; ``fold`` picks the occurrence of an ambiguous one.

    A wall time inside a spring-forward gap never shows on the clock; PEP 495
    maps it to an instant on one side of the gap, whose wall time is not the
    one asked for. The search does not rely on it: the first instant after the
    gap is the transition itself, which ``_candidates`` offers separately.
    """
    return wall.replace(tzinfo=zone, fold=fold).astimezone(UTC)


def _offset_differs(zone: ZoneInfo, offset: timedelta | None) -> Callable[[datetime], bool]:
    return lambda instant: instant.astimezone(zone).utcoffset() != offset


def _transitions(zone: ZoneInfo, lo: datetime, hi: datetime) -> Iterator[datetime]:
    """Offset changes in (lo, hi].

    Only the offsets at the ends are compared, so two changes that cancel out
    within one day would be missed; that is assumed not to happen.
    """
    while lo < hi:
        before = lo.astimezone(zone).utcoffset()
        if hi.astimezone(zone).utcoffset() == before:
            return
        lo = _first_second(lo, hi, _offset_differs(zone, before))
        yield lo


def _candidates(rule: Rule, day: date) -> Iterator[datetime]:
    """Instants on local ``day`` where the rule's allowed set may begin.

    Besides the window openings (both occurrences of an ambiguous one), every
    offset change: spring-forward lands on the first instant after a gap that
    swallowed an opening, and fall-back can drop the clock back into a window
    mid-interval.
    """
    zone = rule.zone
    for opening in rule._openings(day):
        wall = datetime.combine(day, opening)
        yield _resolve(wall, zone, 0)
        yield _resolve(wall, zone, 1)
    day_start = _resolve(datetime.combine(day, time(0)), zone, 0)
    day_end = _resolve(datetime.combine(day + timedelta(days=1), time(0)), zone, 0)
    yield from _transitions(zone, day_start - _ONE_SECOND, day_end - _ONE_SECOND)


def _next_allowed(rule: Rule, at: datetime, limit: datetime) -> datetime | None:
    """Earliest instant >= ``at`` that ``rule`` allows, or None if none up to ``limit``."""
    zone = rule.zone
    if rule._allows(_wall(at, zone)):
        return at
    best: datetime | None = None
    # Start a day early: after a fall-back the clock can revisit yesterday's date.
    day = _wall(at, zone).date() - timedelta(days=1)
    last_day = _wall(limit, zone).date() + timedelta(days=1)
    while day <= last_day:
        for candidate in _candidates(rule, day):
            if (
                candidate > at
                and (best is None or candidate < best)
                and rule._allows(_wall(candidate, zone))
            ):
                best = candidate
        # Clock jumps are shorter than a day, so nothing found after the day
        # following best's date can be earlier than best.
        if best is not None and day > _wall(best, zone).date():
            break
        day += timedelta(days=1)
    return best if best is not None and best <= limit else None


def _require_aware(value: datetime, name: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got naive {value.isoformat()}")


def earliest_allowed(at: datetime, rules: Sequence[Rule]) -> datetime:
    """The earliest instant >= ``at`` that every rule allows, in UTC.

    Raises NoSendWindowError when there is none within SEARCH_HORIZON of ``at``.
    """
    return explained_allowed(at, rules)[0]


def explained_allowed(at: datetime, rules: Sequence[Rule]) -> tuple[datetime, list[Rule]]:
    """`earliest_allowed`, with the rules that moved the instant, in the order they did."""
    _require_aware(at, "at")
    current = wanted = at.astimezone(UTC)
    limit = wanted + SEARCH_HORIZON
    movers: list[Rule] = []
    moved = True
    while moved:
        moved = False
        for rule in rules:
            found = _next_allowed(rule, current, limit)
            if found is None:
                raise NoSendWindowError(
                    f"no send window within {SEARCH_HORIZON.days} days after "
                    f"{wanted.isoformat()} satisfies all of: "
                    + ", ".join(f"{type(r).__name__}({r.zone.key})" for r in rules)
                )
            if found != current:
                current = found
                moved = True
                if rule not in movers:
                    movers.append(rule)
    return current, movers


def next_send_time(start: datetime, delay: Delay | timedelta, rules: Sequence[Rule]) -> datetime:
    """``start`` plus the delay as absolute elapsed time, then moved into every window."""
    _require_aware(start, "start")
    elapsed = delay.as_timedelta() if isinstance(delay, Delay) else delay
    if elapsed < timedelta(0):
        raise ValueError(f"delay must not be negative, got {elapsed}")
    return earliest_allowed(start.astimezone(UTC) + elapsed, rules)


# --------------------------------------------------------------------------- misc


def pick_zone(
    use_contact_timezone: bool, contact_tz: str | None, sequence_tz: str | None
) -> ZoneInfo:
    """The contact's zone if wanted and valid, else the sequence's if valid, else UTC.

    Zone names come from user data, so an unknown or malformed one falls back
    rather than failing the send.
    """
    for key in (contact_tz if use_contact_timezone else None, sequence_tz):
        if not key:
            continue
        try:
            return ZoneInfo(key)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            # OSError: keys naming a directory ("America") or too long a path.
            continue
    return ZoneInfo("UTC")


def retry_backoff(
    attempt: int,
    *,
    base: timedelta = timedelta(seconds=30),
    factor: float = 2.0,
    cap: timedelta = timedelta(hours=1),
) -> timedelta:
    """Wait before the next attempt after ``attempt`` failed ones.

    ``base * factor ** (attempt - 1)``, never more than ``cap``.
    """
    if attempt < 1:
        raise ValueError(f"attempt counts failed attempts and starts at 1, got {attempt}")
    if base < timedelta(0) or cap < timedelta(0):
        raise ValueError("base and cap must not be negative")
    if not factor >= 1:  # also rejects NaN
        raise ValueError(f"factor must be at least 1, got {factor}")
    delay = base
    if delay == timedelta(0) or factor == 1:
        return min(delay, cap)
    # Multiply step by step so a huge attempt number cannot overflow a float.
    for _ in range(attempt - 1):
        if delay.total_seconds() * factor >= cap.total_seconds():
            return cap
        delay *= factor
    return min(delay, cap)
