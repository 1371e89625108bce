"""EventBridge schedule expressions: next fire times in UTC and AWS's validation rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from itertools import islice

import pytest

from aibackend.events.schedule import CronSchedule, RateSchedule, parse_schedule


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# (expression, after, expected next fire time); 2026-11-27 is a Friday.
NEXT_FIRE = [
    # weekdays at noon: Friday noon itself is not "after" Friday noon
    ("cron(0 12 ? * MON-FRI *)", "2026-11-27 12:00", "2026-11-30 12:00"),
    ("cron(0 12 ? * MON-FRI *)", "2026-11-27 11:59:30", "2026-11-27 12:00"),
    ("cron(0/5 8-17 ? * MON-FRI *)", "2026-11-27 17:55", "2026-11-30 08:00"),
    # steps: from a start value to the end of the field
    ("cron(0/15 * * * ? *)", "2026-11-27 12:07", "2026-11-27 12:15"),
    ("cron(0/15 * * * ? *)", "2026-11-27 12:15", "2026-11-27 12:30"),
    ("cron(0/15 * * * ? *)", "2026-11-27 12:45", "2026-11-27 13:00"),
    ("cron(*/15 * * * ? *)", "2026-11-27 12:59:59", "2026-11-27 13:00"),
    ("cron(5/20 * * * ? *)", "2026-11-27 12:45", "2026-11-27 13:05"),
    # L: last day of the month, leap years included (2100 is not one, 2000 was)
    ("cron(0 0 L * ? *)", "2024-02-01 00:00", "2024-02-29 00:00"),
    ("cron(0 0 L * ? *)", "2025-02-01 00:00", "2025-02-28 00:00"),
    ("cron(0 0 L * ? *)", "2100-02-01 00:00", "2100-02-28 00:00"),
    ("cron(0 0 L * ? *)", "2000-02-01 00:00", "2000-02-29 00:00"),
    ("cron(0 0 L 2 ? *)", "2027-03-01 00:00", "2028-02-29 00:00"),
    ("cron(0 0 29 2 ? *)", "2026-11-27 12:00", "2028-02-29 00:00"),
    # a day some months lack is skipped in those months
    ("cron(0 8 31 * ? *)", "2027-01-31 09:00", "2027-03-31 08:00"),
    # W: nearest weekday, never leaving the month
    ("cron(0 9 15W * ? *)", "2026-11-01 00:00", "2026-11-16 09:00"),  # 15th is a Sunday
    ("cron(0 9 1W * ? *)", "2026-07-15 00:00", "2026-08-03 09:00"),  # 1st is a Saturday
    ("cron(0 9 31W * ? *)", "2026-05-01 00:00", "2026-05-29 09:00"),  # 31st is a Sunday
    ("cron(0 9 LW * ? *)", "2026-10-01 00:00", "2026-10-30 09:00"),  # 31st is a Saturday
    # #: n-th weekday of the month; a fifth one only in months that have it
    ("cron(0 10 ? * 3#2 *)", "2026-11-27 12:00", "2026-12-08 10:00"),
    ("cron(0 10 ? * 2#5 *)", "2026-12-01 00:00", "2027-03-29 10:00"),
    # nL: last given weekday of the month; L alone: Saturday
    ("cron(0 10 ? * 6L *)", "2026-11-27 09:00", "2026-11-27 10:00"),
    ("cron(0 10 ? * 6L *)", "2026-11-27 12:00", "2026-12-25 10:00"),
    ("cron(0 10 ? * L *)", "2026-11-27 12:00", "2026-11-28 10:00"),
    # names, in any case; ranges that wrap around
    ("cron(0 12 ? * sun *)", "2026-11-27 12:00", "2026-11-29 12:00"),
    ("cron(0 12 ? * FRI-MON *)", "2026-11-27 12:00", "2026-11-28 12:00"),
    ("cron(0 22-2 * * ? *)", "2026-11-27 23:30", "2026-11-28 00:00"),
    ("cron(0 22-2 * * ? *)", "2026-11-28 02:30", "2026-11-28 22:00"),
    ("cron(0 0 1 NOV-FEB ? *)", "2027-02-15 00:00", "2027-11-01 00:00"),
    ("cron(0 0 1,15 JAN,JUL ? *)", "2026-11-27 12:00", "2027-01-01 00:00"),
    # a year list
    ("cron(15 10 ? * 6L 2019-2022)", "2022-12-01 00:00", "2022-12-30 10:15"),
]


@pytest.mark.parametrize(("expr", "after", "expected"), NEXT_FIRE)
def test_cron_next_fire_time(expr: str, after: str, expected: str) -> None:
    # GIVEN a cron expression
    schedule = parse_schedule(expr)
    # WHEN asked for the next fire time after a moment
    nxt = schedule.next_after(utc(after))
    # THEN it is the first matching minute strictly after it, in UTC
    assert isinstance(schedule, CronSchedule)
    assert nxt == utc(expected)
    assert nxt is not None and nxt.tzinfo == UTC


@pytest.mark.parametrize(
    ("expr", "after"),
    [
        ("cron(15 10 ? * 6L 2019-2022)", "2026-11-27 12:00"),
        ("cron(0 0 1 1 ? 2199)", "2199-01-01 00:00"),
    ],
)
def test_cron_that_ran_out_of_years_never_fires(expr: str, after: str) -> None:
    # GIVEN a cron whose last year has passed WHEN asked for the next fire time THEN None
    assert parse_schedule(expr).next_after(utc(after)) is None


def test_iter_after_lists_consecutive_fire_times() -> None:
    # GIVEN the last day of every month at midnight
    schedule = parse_schedule("cron(0 0 L * ? *)")
    # WHEN iterating from the end of 2027
    times = list(islice(schedule.iter_after(utc("2027-12-31 00:00")), 3))
    # THEN consecutive month ends follow, February of a leap year included
    assert times == [utc("2028-01-31 00:00"), utc("2028-02-29 00:00"), utc("2028-03-31 00:00")]


def test_times_in_other_zones_and_naive_times_are_utc() -> None:
    # GIVEN noon UTC every day
    schedule = parse_schedule("cron(0 12 * * ? *)")
    # WHEN asked with 12:30 in UTC+1 (11:30 UTC) and with a naive 11:30
    cet = datetime(2026, 11, 27, 12, 30, tzinfo=timezone(timedelta(hours=1)))
    # THEN both mean 11:30 UTC, so the next fire is noon UTC the same day
    assert schedule.next_after(cet) == utc("2026-11-27 12:00")
    assert schedule.next_after(datetime(2026, 11, 27, 11, 30)) == utc("2026-11-27 12:00")


RATES = [
    # (expression, anchor, after, expected)
    ("rate(5 minutes)", "2026-11-27 12:02:30", "2026-11-27 12:02:30", "2026-11-27 12:07:30"),
    ("rate(5 minutes)", "2026-11-27 12:02:30", "2026-11-27 12:07:30", "2026-11-27 12:12:30"),
    ("rate(5 minutes)", "2026-11-27 12:02:30", "2026-11-27 12:00:00", "2026-11-27 12:07:30"),
    ("rate(1 hour)", "2026-11-27 12:02:30", "2026-11-27 15:00:00", "2026-11-27 15:02:30"),
    ("rate(2 days)", "2026-11-27 12:00:00", "2026-11-28 12:00:00", "2026-11-29 12:00:00"),
]


@pytest.mark.parametrize(("expr", "anchor", "after", "expected"), RATES)
def test_rate_counts_from_its_anchor(expr: str, anchor: str, after: str, expected: str) -> None:
    # GIVEN a rate schedule whose rule was created at `anchor`
    schedule = parse_schedule(expr, anchor=utc(anchor))
    # WHEN asked for the next fire time
    # THEN it is the first whole period after the anchor that lies after the moment
    assert isinstance(schedule, RateSchedule)
    assert schedule.next_after(utc(after)) == utc(expected)


def test_rate_without_anchor_lines_up_with_the_epoch() -> None:
    # GIVEN a rate with no anchor WHEN asked THEN it fires on whole periods since 1970
    assert parse_schedule("rate(1 day)").next_after(utc("2026-11-27 12:00")) == utc(
        "2026-11-28 00:00"
    )


INVALID = [
    # rate: value and unit
    ("rate(1 hours)", "a value of 1 takes the singular unit: rate(1 hour)"),
    ("rate(5 hour)", "a value other than 1 takes the plural unit: rate(5 hours)"),
    ("rate(1 minutes)", "singular unit: rate(1 minute)"),
    ("rate(0 minutes)", "the value must be a positive whole number, got '0'"),
    ("rate(-5 minutes)", "the value must be a positive whole number, got '-5'"),
    ("rate(1.5 hours)", "the value must be a positive whole number, got '1.5'"),
    ("rate(2 weeks)", "the unit must be minute(s), hour(s) or day(s), got 'weeks'"),
    ("rate(5)", "a rate expression needs a value and a unit"),
    # not an expression at all
    ("every 5 minutes", "must be rate(value unit)"),
    ("cron 0 12 * * ? *", "must be rate(value unit)"),
    # cron: field count and the '?' rule
    ("cron(0 12 * * ?)", "has 5 field(s); AWS cron needs 6"),
    ("cron(0 0 12 * * ? *)", "has 7 field(s); AWS cron needs 6"),
    ("cron(0 12 * * * *)", "exactly one of day-of-month ('*') and day-of-week ('*') must be '?'"),
    ("cron(0 12 ? * ? *)", "exactly one of day-of-month ('?') and day-of-week ('?') must be '?'"),
    ("cron(? 12 * * ? *)", "minutes '?': '?' is only allowed in day-of-month or day-of-week"),
    # ranges of each field
    ("cron(60 * * * ? *)", "minutes value 60 is out of range 0-59"),
    ("cron(0 24 * * ? *)", "hours value 24 is out of range 0-23"),
    ("cron(0 0 32 * ? *)", "day-of-month value 32 is out of range 1-31"),
    ("cron(0 0 1 13 ? *)", "month value 13 is out of range 1-12"),
    ("cron(0 0 ? * 0 *)", "day-of-week value 0 is out of range 1-7"),
    ("cron(0 0 1 * ? 1969)", "year value 1969 is out of range 1970-2199"),
    ("cron(0 0 1 * ? 2200)", "year value 2200 is out of range 1970-2199"),
    ("cron(0 0 1 * ? 2030-2020)", "year range '2030-2020' runs backwards"),
    # names, steps, lists
    ("cron(0 0 1 FOO ? *)", "month 'FOO' is not a number or a name (JAN-DEC)"),
    ("cron(0 0 ? * MONDAY *)", "day-of-week 'MONDAY' is not a number or a name (SUN-SAT)"),
    ("cron(0 x * * ? *)", "hours 'x' is not a number"),
    ("cron(*/0 * * * ? *)", "the step after '/' must be a positive whole number, got '0'"),
    ("cron(0,,5 * * * ? *)", "minutes '0,,5' has an empty list item"),
    # L, W and #
    ("cron(0 0 L,15 * ? *)", "'L' and 'W' stand alone in the field"),
    ("cron(0 0 W * ? *)", "'L' and 'W' stand alone in the field"),
    ("cron(0 0 0W * ? *)", "day-of-month value 0 is out of range 1-31"),
    ("cron(0 0 ? * 3#6 *)", "the occurrence after '#' must be 1-5, got 6"),
    ("cron(0 0 ? * 3#1,6#3 *)", "'#' takes one day and its occurrence in the month"),
    ("cron(0 0 ? * 8#1 *)", "day-of-week value 8 is out of range 1-7"),
    ("cron(0 0 ? * L,2 *)", "'L' stands alone in the field"),
]


@pytest.mark.parametrize(("expr", "message"), INVALID)
def test_invalid_expression_says_what_is_wrong(expr: str, message: str) -> None:
    # GIVEN an expression AWS would refuse
    # WHEN it is parsed
    with pytest.raises(ValueError) as err:
        parse_schedule(expr)
    # THEN the error quotes the expression and names the problem
    assert message in str(err.value)
    assert expr.split("(")[0] in str(err.value)


@pytest.mark.parametrize(
    "expr",
    [
        "cron(0 10 * * ? *)",
        "cron(15 12 * * ? *)",
        "cron(0 18 ? * MON-FRI *)",
        "cron(0 8 1 * ? *)",
        "cron(0/10 * ? * MON-FRI *)",
        "cron(0/5 8-17 ? * MON-FRI *)",
        "cron(0 9 ? * 2#1 *)",
        "cron(0 12 ? JAN,FEB,MAR MON *)",
        "rate(1 minute)",
        "rate(5 minutes)",
        "rate(1 hour)",
        "rate(1 day)",
        " rate(10 days) ",
    ],
)
def test_documented_examples_are_valid(expr: str) -> None:
    # GIVEN an example from the EventBridge docs WHEN parsed THEN it is accepted as written
    assert parse_schedule(expr).expression == expr.strip()
