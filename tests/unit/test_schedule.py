"""Unit tests for touchline.core.schedule.

Expected instants are worked out by hand from the zone offsets noted next to
each case (EST = UTC-5, EDT = UTC-4, CET = UTC+1, CEST = UTC+2, IST = UTC+5:30).
Calendar anchors: 2025-01-06 is a Monday; in 2025 New York springs forward on
Sun 03-09 (02:00 EST -> 03:00 EDT, 07:00Z) and falls back on Sun 11-02
(02:00 EDT -> 01:00 EST, 06:00Z); Berlin springs forward on Sun 03-30
(02:00 CET -> 03:00 CEST, 01:00Z) and falls back on Sun 10-26
(03:00 CEST -> 02:00 CET, 01:00Z).
"""

from datetime import UTC, datetime, time, timedelta, timezone
from itertools import permutations
from zoneinfo import ZoneInfo

import pytest

from touchline.core.schedule import (
    MAX_SEND_ATTEMPTS,
    BusinessHours,
    Delay,
    NoSendWindowError,
    QuietHours,
    Rule,
    WeekendRule,
    earliest_allowed,
    next_send_time,
    parse_opening_hours,
    pick_zone,
    retry_backoff,
)

NY = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")
KOLKATA = ZoneInfo("Asia/Kolkata")
ZUTC = ZoneInfo("UTC")

WEEKDAYS_9_TO_5 = {day: [["09:00", "17:00"]] for day in ("mon", "tue", "wed", "thu", "fri")}


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


# --------------------------------------------------------------------------- delays


def test_zero_delay_sends_at_once() -> None:
    start = datetime(2025, 1, 7, 10, 15, 42, 123456, tzinfo=UTC)
    assert next_send_time(start, Delay.parse({}), []) == start
    assert next_send_time(start, Delay.parse(None), []) == start
    assert next_send_time(start, Delay.parse({"days": 0, "hours": "0", "minutes": 0}), []) == start


def test_delay_accepts_ints_and_digit_strings() -> None:
    delay = Delay.parse({"days": "1", "hours": 2, "minutes": "05"})
    assert delay == Delay(days=1, hours=2, minutes=5)
    assert delay.as_timedelta() == timedelta(days=1, hours=2, minutes=5)


def test_delay_missing_and_null_keys_are_zero_and_other_keys_ignored() -> None:
    assert Delay.parse({"hours": 3, "minutes": None, "timezone": "x"}) == Delay(hours=3)


def test_delay_is_added_as_elapsed_time() -> None:
    # 10:00Z + 1d 5h 7m = next day 15:07Z.
    assert next_send_time(utc(2025, 1, 6, 10), Delay(1, 5, 7), []) == datetime(
        2025, 1, 7, 15, 7, tzinfo=UTC
    )
    assert next_send_time(utc(2025, 1, 6, 10), timedelta(minutes=90), []) == utc(2025, 1, 6, 11, 30)


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"days": -1}, "days"),
        ({"hours": "-1"}, "hours"),
        ({"minutes": "1.5"}, "minutes"),
        ({"days": " 1"}, "days"),
        ({"days": ""}, "days"),
        ({"hours": "٣"}, "hours"),  # Arabic-Indic three: isdigit() but not ASCII
        ({"minutes": True}, "minutes"),
        ({"days": False}, "days"),
        ({"hours": 1.0}, "hours"),
        ({"minutes": [1]}, "minutes"),
    ],
)
def test_delay_rejects_bad_values_naming_the_key(raw: dict[str, object], key: str) -> None:
    with pytest.raises(ValueError, match=key):
        Delay.parse(raw)


def test_delay_rejects_overflowing_values() -> None:
    with pytest.raises(ValueError, match="too large"):
        Delay.parse({"days": "9999999999"})


def test_delay_constructor_validates() -> None:
    with pytest.raises(ValueError, match="hours"):
        Delay(hours=-2)


def test_next_send_time_rejects_negative_delay_and_naive_start() -> None:
    with pytest.raises(ValueError, match="negative"):
        next_send_time(utc(2025, 1, 6), timedelta(seconds=-1), [])
    with pytest.raises(ValueError, match="timezone-aware"):
        next_send_time(datetime(2025, 1, 6), Delay(), [])
    with pytest.raises(ValueError, match="timezone-aware"):
        earliest_allowed(datetime(2025, 1, 6), [])


def test_result_is_utc_even_for_non_utc_input() -> None:
    start = datetime(2025, 1, 7, 12, 0, tzinfo=timezone(timedelta(hours=3)))
    result = next_send_time(start, Delay(), [WeekendRule(BERLIN)])
    assert result == utc(2025, 1, 7, 9)
    assert result.tzinfo is UTC


# --------------------------------------------------------------------------- weekend


def test_weekend_friday_23_plus_two_hours_moves_to_monday_midnight_berlin() -> None:
    # Fri 2025-01-10 23:00 CET = 22:00Z; +2h = Sat 01:00 CET -> Mon 01-13 00:00 CET = 01-12 23:00Z.
    start = utc(2025, 1, 10, 22)
    assert next_send_time(start, Delay(hours=2), [WeekendRule(BERLIN)]) == utc(2025, 1, 12, 23)
    # Friday 23:00 itself is still a weekday.
    assert next_send_time(start, Delay(), [WeekendRule(BERLIN)]) == start


@pytest.mark.parametrize(
    ("zone", "at", "expected"),
    [
        # Sat 10:00 EST -> Mon 00:00 EST = 05:00Z.
        (NY, utc(2025, 1, 11, 15), utc(2025, 1, 13, 5)),
        # Monday 04:30Z is still Sunday 23:30 EST in New York -> Mon 00:00 EST = 05:00Z.
        (NY, utc(2025, 1, 13, 4, 30), utc(2025, 1, 13, 5)),
        # Friday 23:30Z is already Saturday 00:30 CET in Berlin -> Mon 00:00 CET = Sun 23:00Z.
        (BERLIN, utc(2025, 1, 10, 23, 30), utc(2025, 1, 12, 23)),
        # Tuesday stays.
        (BERLIN, utc(2025, 1, 7, 3), utc(2025, 1, 7, 3)),
    ],
)
def test_weekend_rule_uses_local_weekday(zone: ZoneInfo, at: datetime, expected: datetime) -> None:
    assert earliest_allowed(at, [WeekendRule(zone)]) == expected


# --------------------------------------------------------------------------- business hours


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        # Tue 07:00 EST (12:00Z) before opening -> 09:00 EST = 14:00Z.
        (utc(2025, 1, 7, 12), utc(2025, 1, 7, 14)),
        # Tue 09:00 EST exactly: start is inclusive.
        (utc(2025, 1, 7, 14), utc(2025, 1, 7, 14)),
        # Tue 12:00 EST inside.
        (utc(2025, 1, 7, 17), utc(2025, 1, 7, 17)),
        # Tue 17:00 EST: end is exclusive -> Wed 09:00 EST = 14:00Z.
        (utc(2025, 1, 7, 22), utc(2025, 1, 8, 14)),
        # Fri 18:00 EST after closing, sat/sun missing = closed -> Mon 09:00 EST.
        (utc(2025, 1, 10, 23), utc(2025, 1, 13, 14)),
    ],
)
def test_business_hours_new_york(at: datetime, expected: datetime) -> None:
    assert earliest_allowed(at, [BusinessHours(NY, WEEKDAYS_9_TO_5)]) == expected


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        # Thu 01-09 08:00 EST -> next Wednesday 01-15 10:00 EST = 15:00Z (six days closed).
        (utc(2025, 1, 9, 13), utc(2025, 1, 15, 15)),
        # Wed 01-08 12:30 EST, just after the window -> a full week later.
        (utc(2025, 1, 8, 17, 30), utc(2025, 1, 15, 15)),
        # Wed 01-08 11:59 EST is inside.
        (utc(2025, 1, 8, 16, 59), utc(2025, 1, 8, 16, 59)),
    ],
)
def test_business_hours_only_on_wednesday(at: datetime, expected: datetime) -> None:
    rules: list[Rule] = [BusinessHours(NY, {"wed": [["10:00", "12:00"]], "thu": []})]
    assert earliest_allowed(at, rules) == expected


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        # "24:00" runs to midnight: Mon 23:59 is open, and Tue 00:00-02:00 continues it.
        (utc(2025, 1, 6, 23, 59), utc(2025, 1, 6, 23, 59)),
        (utc(2025, 1, 7, 0, 0), utc(2025, 1, 7, 0, 0)),
        (utc(2025, 1, 7, 1, 59), utc(2025, 1, 7, 1, 59)),
        # Tue 02:00 closes -> next Monday 20:00.
        (utc(2025, 1, 7, 2, 0), utc(2025, 1, 13, 20)),
        # Mon 19:00 -> 20:00.
        (utc(2025, 1, 6, 19), utc(2025, 1, 6, 20)),
    ],
)
def test_business_hours_24_00_end(at: datetime, expected: datetime) -> None:
    hours = {"mon": [["20:00", "24:00"]], "tue": [["00:00", "02:00"]]}
    assert earliest_allowed(at, [BusinessHours(ZUTC, hours)]) == expected


def test_business_hours_lunch_break() -> None:
    hours = {"mon": [["13:00", "17:00"], ["09:00", "12:00"]]}  # unsorted on purpose
    rule = BusinessHours(ZUTC, hours)
    assert earliest_allowed(utc(2025, 1, 6, 12, 30), [rule]) == utc(2025, 1, 6, 13)
    assert earliest_allowed(utc(2025, 1, 6, 8), [rule]) == utc(2025, 1, 6, 9)


@pytest.mark.parametrize("hours", [None, {}])
def test_business_hours_without_opening_hours_are_always_open(
    hours: dict[str, list[list[str]]] | None,
) -> None:
    at = utc(2025, 1, 12, 3)  # a Sunday night
    assert earliest_allowed(at, [BusinessHours(ZUTC, hours)]) == at


def test_business_hours_closed_every_day_raises() -> None:
    closed: dict[str, list[list[str]]] = {
        day: [] for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
    }
    with pytest.raises(NoSendWindowError, match="no send window within 14 days"):
        next_send_time(utc(2025, 1, 6), Delay(), [BusinessHours(BERLIN, closed)])


def test_no_send_window_error_is_a_value_error() -> None:
    assert issubclass(NoSendWindowError, ValueError)


# --------------------------------------------------------------------------- opening hours parsing


def test_parse_opening_hours_returns_sorted_times() -> None:
    parsed = parse_opening_hours({"mon": [["13:00", "24:00"], ["09:30", "12:00"]], "sun": []})
    assert parsed == {"mon": [(time(9, 30), time(12)), (time(13), None)], "sun": []}
    assert parse_opening_hours(None) == {}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ([["09:00", "17:00"]], "object keyed by weekday"),
        ({"monday": [["09:00", "17:00"]]}, "unknown weekday 'monday'"),
        ({"Mon": [["09:00", "17:00"]]}, "unknown weekday 'Mon'"),
        ({"mon": "09:00-17:00"}, r"opening_hours\.mon must be a list"),
        ({"mon": ["09:00-17:00"]}, r"opening_hours\.mon\[0\] must be a pair"),
        ({"mon": [["09:00", "12:00", "13:00"]]}, "must be a pair"),
        ({"mon": [["9:00", "17:00"]]}, "HH:MM"),
        ({"mon": [["09:00", 1700]]}, "end must be an 'HH:MM' string"),
        ({"mon": [["25:00", "26:00"]]}, "not a valid time"),
        ({"mon": [["09:60", "17:00"]]}, "not a valid time"),
        ({"mon": [["17:00", "09:00"]]}, "must start before it ends"),
        ({"mon": [["09:00", "09:00"]]}, "must start before it ends"),
        ({"mon": [["24:00", "24:00"]]}, "may not be '24:00'"),
        ({"tue": [["09:00", "17:00"], ["x", "18:00"]]}, r"opening_hours\.tue\[1\] start"),
    ],
)
def test_parse_opening_hours_rejects_bad_shapes(raw: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_opening_hours(raw)


def test_business_hours_validates_on_construction() -> None:
    with pytest.raises(ValueError, match="unknown weekday"):
        BusinessHours(ZUTC, {"funday": [["09:00", "17:00"]]})


# --------------------------------------------------------------------------- quiet hours


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (utc(2025, 1, 7, 22), utc(2025, 1, 8, 8)),  # 22:00 -> 08:00 next day
        (utc(2025, 1, 7, 21), utc(2025, 1, 8, 8)),  # start is inclusive
        (utc(2025, 1, 7, 20, 59), utc(2025, 1, 7, 20, 59)),
        (utc(2025, 1, 8, 0), utc(2025, 1, 8, 8)),  # after midnight -> same day 08:00
        (utc(2025, 1, 8, 7, 59), utc(2025, 1, 8, 8)),
        (utc(2025, 1, 8, 8), utc(2025, 1, 8, 8)),  # end is exclusive: 08:00 stays
    ],
)
def test_quiet_hours_cross_midnight(at: datetime, expected: datetime) -> None:
    assert earliest_allowed(at, [QuietHours(ZUTC)]) == expected


def test_quiet_hours_start_equal_end_is_off() -> None:
    rule = QuietHours(ZUTC, time(22), time(22))
    for hour in (0, 7, 21, 22, 23):
        assert earliest_allowed(utc(2025, 1, 7, hour), [rule]) == utc(2025, 1, 7, hour)


def test_quiet_hours_within_one_day() -> None:
    rule = QuietHours(ZUTC, time(12), time(13))
    assert earliest_allowed(utc(2025, 1, 7, 12, 30), [rule]) == utc(2025, 1, 7, 13)
    assert earliest_allowed(utc(2025, 1, 7, 11, 59), [rule]) == utc(2025, 1, 7, 11, 59)
    assert earliest_allowed(utc(2025, 1, 7, 13), [rule]) == utc(2025, 1, 7, 13)


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        # 16:00Z = 21:30 IST -> 08:00 IST next day = 02:30Z.
        (utc(2025, 1, 7, 16), utc(2025, 1, 8, 2, 30)),
        # 15:29Z = 20:59 IST stays; 15:30Z = 21:00 IST is quiet.
        (utc(2025, 1, 7, 15, 29), utc(2025, 1, 7, 15, 29)),
        (utc(2025, 1, 7, 15, 30), utc(2025, 1, 8, 2, 30)),
        # 02:29Z = 07:59 IST -> 02:30Z.
        (utc(2025, 1, 8, 2, 29), utc(2025, 1, 8, 2, 30)),
        # 20:00Z on the 7th is already 01:30 IST on the 8th -> 08:00 IST on the 8th.
        (utc(2025, 1, 7, 20), utc(2025, 1, 8, 2, 30)),
    ],
)
def test_quiet_hours_kolkata_half_hour_offset(at: datetime, expected: datetime) -> None:
    assert earliest_allowed(at, [QuietHours(KOLKATA)]) == expected


def test_quiet_hours_reject_aware_times() -> None:
    with pytest.raises(ValueError, match="naive"):
        QuietHours(ZUTC, time(21, tzinfo=UTC), time(8))


# --------------------------------------------------------------------------- combined rules


def test_quiet_hours_push_into_weekend_then_quiet_again() -> None:
    # Fri 01-10 22:00 CET (21:00Z): quiet -> Sat 08:00 -> weekend -> Mon 00:00 -> quiet
    # -> Mon 01-13 08:00 CET = 07:00Z.
    rules: list[Rule] = [QuietHours(BERLIN), WeekendRule(BERLIN)]
    assert earliest_allowed(utc(2025, 1, 10, 21), rules) == utc(2025, 1, 13, 7)


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        # Business hours 06:00-23:00 CET, quiet 21:00-08:00: effectively 08:00-21:00.
        (utc(2025, 1, 7, 5, 30), utc(2025, 1, 7, 7)),  # Tue 06:30 CET -> 08:00 CET
        (utc(2025, 1, 7, 20, 30), utc(2025, 1, 8, 7)),  # Tue 21:30 CET -> Wed 08:00 CET
        (utc(2025, 1, 10, 20, 30), utc(2025, 1, 13, 7)),  # Fri 21:30 CET -> Mon 08:00 CET
        (utc(2025, 1, 7, 12), utc(2025, 1, 7, 12)),
    ],
)
def test_business_hours_and_quiet_hours_and_weekend_in_any_order(
    at: datetime, expected: datetime
) -> None:
    rules: list[Rule] = [
        BusinessHours(
            BERLIN, {d: [["06:00", "23:00"]] for d in ("mon", "tue", "wed", "thu", "fri")}
        ),
        QuietHours(BERLIN),
        WeekendRule(BERLIN),
    ]
    for order in permutations(rules):
        assert earliest_allowed(at, list(order)) == expected


def test_rules_in_different_zones() -> None:
    # Business hours 09-17 New York, quiet hours in Kolkata. Tue 15:30Z = 10:30 EST (open)
    # but 21:00 IST (quiet) -> 08:00 IST = Wed 02:30Z = Tue 21:30 EST (closed)
    # -> Wed 09:00 EST = 14:00Z = 19:30 IST (not quiet).
    rules: list[Rule] = [BusinessHours(NY, WEEKDAYS_9_TO_5), QuietHours(KOLKATA)]
    assert earliest_allowed(utc(2025, 1, 7, 15, 30), rules) == utc(2025, 1, 8, 14)


@pytest.mark.parametrize(
    "rules",
    [
        [BusinessHours(ZUTC, {"sat": [["09:00", "17:00"]]}), WeekendRule(ZUTC)],
        [BusinessHours(ZUTC, {"mon": [["22:00", "23:00"]]}), QuietHours(ZUTC)],
        # Each open alone, never together: 11:00-12:00 EST = 16:00-17:00Z = 21:30-22:30 IST.
        [BusinessHours(NY, {"tue": [["11:00", "12:00"]]}), QuietHours(KOLKATA)],
    ],
)
def test_rules_that_never_overlap_raise(rules: list[Rule]) -> None:
    with pytest.raises(NoSendWindowError):
        earliest_allowed(utc(2025, 1, 6), rules)


# --------------------------------------------------------------------------- daylight saving


def test_ny_spring_forward_gap_opening_moves_to_end_of_gap() -> None:
    # 02:30 does not exist on 2025-03-09 in New York; the first instant after the
    # gap is 03:00 EDT = 07:00Z. Start at 00:00 EST = 05:00Z.
    rule = BusinessHours(NY, {"sun": [["02:30", "05:00"]]})
    assert earliest_allowed(utc(2025, 3, 9, 5), [rule]) == utc(2025, 3, 9, 7)


def test_ny_window_entirely_inside_gap_is_skipped() -> None:
    # [02:00, 02:30) never happens on 2025-03-09 -> next Sunday 02:00 EDT = 06:00Z.
    rule = BusinessHours(NY, {"sun": [["02:00", "02:30"]]})
    assert earliest_allowed(utc(2025, 3, 9, 5), [rule]) == utc(2025, 3, 16, 6)


def test_ny_fall_back_ambiguous_opening_takes_first_occurrence() -> None:
    # 01:30 happens twice on 2025-11-02: 01:30 EDT = 05:30Z, then 01:30 EST = 06:30Z.
    # Starting at 00:00 EDT = 04:00Z the first one wins.
    rule = BusinessHours(NY, {"sun": [["01:30", "03:00"]]})
    assert earliest_allowed(utc(2025, 11, 2, 4), [rule]) == utc(2025, 11, 2, 5, 30)
    quiet = QuietHours(NY, time(23), time(1, 30))
    assert earliest_allowed(utc(2025, 11, 2, 4), [quiet]) == utc(2025, 11, 2, 5, 30)


def test_ny_fall_back_after_first_occurrence_uses_second_never_goes_back() -> None:
    # 06:15Z = 01:15 EST (second pass). 01:30 EDT (05:30Z) is in the past, so 01:30 EST = 06:30Z.
    rule = BusinessHours(NY, {"sun": [["01:30", "03:00"]]})
    assert earliest_allowed(utc(2025, 11, 2, 6, 15), [rule]) == utc(2025, 11, 2, 6, 30)


def test_ny_fall_back_clock_drops_back_into_window() -> None:
    # Window [00:30, 01:30). At 01:45 EDT (05:45Z) it is closed, but at 06:00Z the clock
    # falls back to 01:00 EST, inside the window again.
    rule = BusinessHours(NY, {"sun": [["00:30", "01:30"]]})
    assert earliest_allowed(utc(2025, 11, 2, 5, 45), [rule]) == utc(2025, 11, 2, 6)
    # Past the second 01:30 (06:30Z) -> next Sunday 00:30 EST = 05:30Z.
    assert earliest_allowed(utc(2025, 11, 2, 6, 45), [rule]) == utc(2025, 11, 9, 5, 30)


def test_berlin_spring_forward_quiet_hours_end_in_gap() -> None:
    # Quiet until 02:30, which does not exist on 2025-03-30 -> 03:00 CEST = 01:00Z.
    # Start Sat 23:00 CET = 22:00Z.
    rule = QuietHours(BERLIN, time(21), time(2, 30))
    assert earliest_allowed(utc(2025, 3, 29, 22), [rule]) == utc(2025, 3, 30, 1)


def test_berlin_fall_back_quiet_hours_end_in_fold() -> None:
    # 02:30 happens twice on 2025-10-26: 02:30 CEST = 00:30Z first, 02:30 CET = 01:30Z.
    # Start Sat 22:00 CEST = 20:00Z.
    rule = QuietHours(BERLIN, time(21), time(2, 30))
    assert earliest_allowed(utc(2025, 10, 25, 20), [rule]) == utc(2025, 10, 26, 0, 30)


def test_berlin_business_hours_on_dst_days_keep_local_opening() -> None:
    # Opening 09:00 local: 08:00Z on CET days, 07:00Z on CEST days.
    rule = BusinessHours(BERLIN, {"sun": [["09:00", "17:00"]], "mon": [["09:00", "17:00"]]})
    assert earliest_allowed(utc(2025, 3, 30, 0), [rule]) == utc(2025, 3, 30, 7)
    assert earliest_allowed(utc(2025, 10, 26, 0), [rule]) == utc(2025, 10, 26, 8)


@pytest.mark.parametrize(
    ("start", "expected", "local_wall"),
    [
        # New York: Sat 03-08 12:00 EST = 17:00Z; 24 real hours later is 17:00Z = 13:00 EDT.
        (utc(2025, 3, 8, 17), utc(2025, 3, 9, 17), (NY, 13)),
        # New York: Sat 11-01 12:00 EDT = 16:00Z; +24h = 16:00Z = 11:00 EST.
        (utc(2025, 11, 1, 16), utc(2025, 11, 2, 16), (NY, 11)),
        # Berlin: Sat 03-29 12:00 CET = 11:00Z; +24h = 11:00Z = 13:00 CEST.
        (utc(2025, 3, 29, 11), utc(2025, 3, 30, 11), (BERLIN, 13)),
        # Berlin: Sat 10-25 12:00 CEST = 10:00Z; +24h = 10:00Z = 11:00 CET.
        (utc(2025, 10, 25, 10), utc(2025, 10, 26, 10), (BERLIN, 11)),
    ],
)
def test_one_day_delay_is_elapsed_time_not_wall_clock(
    start: datetime, expected: datetime, local_wall: tuple[ZoneInfo, int]
) -> None:
    # Documented behaviour: a delay is absolute time; the local wall-clock hour
    # shifts by the DST change. Only window snapping is in local time.
    zone, hour = local_wall
    result = next_send_time(start, Delay(days=1), [QuietHours(zone)])
    assert result == expected
    assert result.astimezone(zone).hour == hour
    assert start.astimezone(zone).hour == 12


# --------------------------------------------------------------------------- retries


@pytest.mark.parametrize(
    ("attempt", "seconds"),
    [
        (1, 30),
        (2, 60),
        (3, 120),
        (4, 240),
        (5, 480),
        (7, 1920),
        (8, 3600),  # 3840 capped at one hour
        (100, 3600),
        (10**9, 3600),
    ],
)
def test_retry_backoff_defaults(attempt: int, seconds: int) -> None:
    assert retry_backoff(attempt) == timedelta(seconds=seconds)


def test_retry_backoff_custom_parameters() -> None:
    base, cap = timedelta(seconds=1), timedelta(seconds=10)
    assert [retry_backoff(n, base=base, factor=3.0, cap=cap) for n in (1, 2, 3, 4)] == [
        timedelta(seconds=1),
        timedelta(seconds=3),
        timedelta(seconds=9),
        timedelta(seconds=10),
    ]
    assert retry_backoff(50, factor=1.0) == timedelta(seconds=30)
    assert retry_backoff(3, base=timedelta(0)) == timedelta(0)
    assert retry_backoff(1, base=timedelta(hours=2)) == timedelta(hours=1)


@pytest.mark.parametrize(
    ("attempt", "kwargs"),
    [
        (0, {}),
        (-1, {}),
        (1, {"factor": 0.5}),
        (1, {"factor": float("nan")}),
        (1, {"base": timedelta(seconds=-1)}),
        (1, {"cap": timedelta(seconds=-1)}),
    ],
)
def test_retry_backoff_rejects_bad_input(attempt: int, kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"attempt|factor|negative"):
        retry_backoff(attempt, **kwargs)  # type: ignore[arg-type]


def test_max_send_attempts() -> None:
    assert MAX_SEND_ATTEMPTS == 5


# --------------------------------------------------------------------------- zones


@pytest.mark.parametrize(
    ("use_contact", "contact_tz", "sequence_tz", "expected"),
    [
        (True, "Asia/Kolkata", "Europe/Berlin", "Asia/Kolkata"),
        (False, "Asia/Kolkata", "Europe/Berlin", "Europe/Berlin"),
        (True, None, "Europe/Berlin", "Europe/Berlin"),
        (True, "", "Europe/Berlin", "Europe/Berlin"),
        (True, "Not/AZone", "Europe/Berlin", "Europe/Berlin"),
        (True, "America", "Europe/Berlin", "Europe/Berlin"),  # a directory, not a zone
        (True, "../etc/passwd", "Europe/Berlin", "Europe/Berlin"),
        (True, "Not/AZone", None, "UTC"),
        (True, "Not/AZone", "Also/Bad", "UTC"),
        (False, None, None, "UTC"),
        (False, "Asia/Kolkata", "", "UTC"),
    ],
)
def test_pick_zone_fallbacks(
    use_contact: bool, contact_tz: str | None, sequence_tz: str | None, expected: str
) -> None:
    assert pick_zone(use_contact, contact_tz, sequence_tz) == ZoneInfo(expected)
