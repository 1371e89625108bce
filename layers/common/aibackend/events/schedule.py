"""EventBridge schedule expressions, `rate(...)` and `cron(...)`, parsed and evaluated in UTC.

The syntax and its limits are AWS's (scheduled rules), so an expression that passes here is one
`cdk deploy` accepts, and the local runtime fires at the times EventBridge would:

- `rate(value unit)`: `value` a positive whole number, `unit` one of `minute`, `hour`, `day` when
  the value is 1 and `minutes`, `hours`, `days` otherwise. A rate schedule starts when its rule is
  created, so it needs an anchor (the rule's creation time): it fires at `anchor + k * period`,
  k >= 1.
- `cron(minutes hours day-of-month month day-of-week year)`: six fields; `, - * /` everywhere,
  `?` in exactly one of day-of-month and day-of-week, `L` and `W` in day-of-month (`L`, `LW`,
  `15W`), `L` and `#` in day-of-week (`L` = Saturday, `6L` = the month's last Friday, `3#2` =
  its second Tuesday). Day-of-week runs 1-7 = SUN-SAT; months accept JAN-DEC; years 1970-2199.
  A range may wrap around (`22-2` hours, `FRI-MON`), except in the year field.
"""

from __future__ import annotations

import calendar
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MIN_YEAR, _MAX_YEAR = 1970, 2199

_MONTH_NAMES = {
    name: i
    for i, name in enumerate(
        ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"), 1
    )
}
_DAY_NAMES = {
    name: i for i, name in enumerate(("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"), 1)
}

_RATE_UNITS = {"minute": timedelta(minutes=1), "hour": timedelta(hours=1), "day": timedelta(days=1)}

CRON_FIELDS = ("minutes", "hours", "day-of-month", "month", "day-of-week", "year")


def _utc(t: datetime) -> datetime:
    """Aware UTC; a naive datetime is taken to be UTC already (EventBridge schedules are UTC)."""
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def aws_weekday(d: date) -> int:
    """Day of week the AWS way: 1 = Sunday ... 7 = Saturday."""
    return (d.weekday() + 1) % 7 + 1


class Schedule(ABC):
    """A parsed schedule expression."""

    expression: str

    @abstractmethod
    def next_after(self, t: datetime) -> datetime | None:
        """The first fire time strictly after `t` (UTC, aware), or None when it never fires again.

        Only a cron expression with a year field can run out (the last year is 2199).
        """

    def iter_after(self, t: datetime) -> Iterator[datetime]:
        """Fire times strictly after `t`, in order (endless for rates and most crons)."""
        nxt = self.next_after(t)
        while nxt is not None:
            yield nxt
            nxt = self.next_after(nxt)


@dataclass(frozen=True)
class RateSchedule(Schedule):
    """`rate(5 minutes)`: every `period`, counted from `anchor` (the rule's creation time)."""

    expression: str
    period: timedelta
    anchor: datetime = _EPOCH

    def next_after(self, t: datetime) -> datetime:
        anchor = _utc(self.anchor)
        elapsed = _utc(t) - anchor
        k = max(1, elapsed // self.period + 1)
        return anchor + k * self.period


@dataclass(frozen=True)
class DayOfMonth:
    """Day-of-month field: a set of days, or one of `L`, `LW`, `nW`; None everywhere means `?`."""

    days: frozenset[int] | None = None
    last: bool = False
    last_weekday: bool = False
    nearest_weekday_to: int | None = None

    def days_in(self, year: int, month: int) -> list[int]:
        n = calendar.monthrange(year, month)[1]
        if self.days is not None:
            return sorted(d for d in self.days if d <= n)
        if self.last:
            return [n]
        if self.last_weekday:
            return [_nearest_weekday(year, month, n)]
        if self.nearest_weekday_to is not None:
            if self.nearest_weekday_to > n:
                return []  # like Quartz: `31W` has no day in a 30-day month
            return [_nearest_weekday(year, month, self.nearest_weekday_to)]
        return list(range(1, n + 1))


def _nearest_weekday(year: int, month: int, day: int) -> int:
    """The weekday (Mon-Fri) nearest to `day`, never leaving the month (AWS/Quartz `W`)."""
    n = calendar.monthrange(year, month)[1]
    wd = date(year, month, day).weekday()  # Mon=0 .. Sun=6
    if wd == 5:  # Saturday: the Friday before, or the Monday after when the 1st is a Saturday
        return day - 1 if day > 1 else day + 2
    if wd == 6:  # Sunday: the Monday after, or the Friday before when it is the last day
        return day + 1 if day < n else day - 2
    return day


@dataclass(frozen=True)
class DayOfWeek:
    """Day-of-week field: a set of days (1 = SUN), `nL` (last n-day) or `n#k` (k-th n-day)."""

    days: frozenset[int] | None = None
    last_of: int | None = None
    nth: tuple[int, int] | None = None

    def days_in(self, year: int, month: int) -> list[int]:
        n = calendar.monthrange(year, month)[1]
        first = aws_weekday(date(year, month, 1))
        if self.days is not None:
            return [d for d in range(1, n + 1) if (first - 1 + d - 1) % 7 + 1 in self.days]
        if self.last_of is not None:
            last = aws_weekday(date(year, month, n))
            return [n - (last - self.last_of) % 7]
        if self.nth is not None:
            dow, k = self.nth
            day = 1 + (dow - first) % 7 + 7 * (k - 1)
            return [day] if day <= n else []
        return list(range(1, n + 1))


@dataclass(frozen=True)
class CronSchedule(Schedule):
    """`cron(0 12 ? * MON-FRI *)`: AWS's six-field cron, in UTC."""

    expression: str
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    months: tuple[int, ...]
    years: tuple[int, ...]
    #: Exactly one of these two is None (the field written `?`).
    day_of_month: DayOfMonth | None
    day_of_week: DayOfWeek | None

    def _days(self, year: int, month: int) -> list[int]:
        if self.day_of_month is not None:
            return self.day_of_month.days_in(year, month)
        assert self.day_of_week is not None  # guaranteed by the parser
        return self.day_of_week.days_in(year, month)

    def next_after(self, t: datetime) -> datetime | None:
        start = _utc(t).replace(second=0, microsecond=0) + timedelta(minutes=1)
        if start.year > _MAX_YEAR:
            return None
        for year in self.years:
            if year < start.year:
                continue
            y_edge = year == start.year
            for month in self.months:
                if y_edge and month < start.month:
                    continue
                m_edge = y_edge and month == start.month
                for day in self._days(year, month):
                    if m_edge and day < start.day:
                        continue
                    d_edge = m_edge and day == start.day
                    for hour in self.hours:
                        if d_edge and hour < start.hour:
                            continue
                        h_edge = d_edge and hour == start.hour
                        for minute in self.minutes:
                            if h_edge and minute < start.minute:
                                continue
                            return datetime(year, month, day, hour, minute, tzinfo=UTC)
        return None


def parse_schedule(expr: str, *, anchor: datetime | None = None) -> Schedule:
    """Parse an EventBridge schedule expression; raise ValueError saying what is wrong.

    `anchor` is when a rate schedule started (its rule's creation time); it defaults to the Unix
    epoch, which lines `rate(5 minutes)` up with :00, :05, ... Cron schedules ignore it.
    """
    text = expr.strip()
    m = re.fullmatch(r"(rate|cron)\((.*)\)", text, flags=re.DOTALL)
    if m is None:
        raise ValueError(
            f"schedule expression {expr!r} must be rate(value unit), e.g. rate(5 minutes), or "
            "cron(minutes hours day-of-month month day-of-week year), e.g. cron(0 12 * * ? *)"
        )
    kind, body = m.groups()
    if kind == "rate":
        return _parse_rate(text, body, anchor)
    return _parse_cron(text, body)


def _parse_rate(text: str, body: str, anchor: datetime | None) -> RateSchedule:
    parts = body.split()
    if len(parts) != 2:
        raise ValueError(
            f"{text}: a rate expression needs a value and a unit, e.g. rate(5 minutes)"
        )
    value_s, unit = parts
    if not value_s.isdigit() or int(value_s) < 1:
        raise ValueError(f"{text}: the value must be a positive whole number, got {value_s!r}")
    value = int(value_s)
    singular = unit.removesuffix("s")
    if singular not in _RATE_UNITS:
        raise ValueError(f"{text}: the unit must be minute(s), hour(s) or day(s), got {unit!r}")
    if value == 1 and unit != singular:
        raise ValueError(f"{text}: a value of 1 takes the singular unit: rate(1 {singular})")
    if value != 1 and unit == singular:
        raise ValueError(
            f"{text}: a value other than 1 takes the plural unit: rate({value} {singular}s)"
        )
    return RateSchedule(
        expression=text,
        period=value * _RATE_UNITS[singular],
        anchor=_EPOCH if anchor is None else _utc(anchor),
    )


@dataclass(frozen=True)
class _Field:
    name: str
    lo: int
    hi: int
    names: dict[str, int] = field(default_factory=dict)
    names_hint: str = ""
    wraps: bool = True


_MINUTE = _Field("minutes", 0, 59)
_HOUR = _Field("hours", 0, 23)
_DOM = _Field("day-of-month", 1, 31)
_MONTH = _Field("month", 1, 12, _MONTH_NAMES, "JAN-DEC")
_DOW = _Field("day-of-week", 1, 7, _DAY_NAMES, "SUN-SAT")
_YEAR = _Field("year", _MIN_YEAR, _MAX_YEAR, wraps=False)


def _parse_cron(text: str, body: str) -> CronSchedule:
    fields = body.split()
    if len(fields) != 6:
        raise ValueError(
            f"{text}: has {len(fields)} field(s); AWS cron needs 6: "
            "minutes hours day-of-month month day-of-week year, e.g. cron(0 12 * * ? *)"
        )
    minute, hour, dom, month, dow, year = fields
    if (dom == "?") == (dow == "?"):
        raise ValueError(
            f"{text}: exactly one of day-of-month ({dom!r}) and day-of-week ({dow!r}) must be "
            "'?', e.g. cron(0 12 * * ? *) or cron(0 12 ? * MON-FRI *)"
        )
    return CronSchedule(
        expression=text,
        minutes=_values(text, minute, _MINUTE),
        hours=_values(text, hour, _HOUR),
        months=_values(text, month, _MONTH),
        years=_values(text, year, _YEAR),
        day_of_month=None if dom == "?" else _parse_dom(text, dom),
        day_of_week=None if dow == "?" else _parse_dow(text, dow),
    )


def _parse_dom(text: str, token: str) -> DayOfMonth:
    up = token.upper()
    if "L" in up or "W" in up:
        if up == "L":
            return DayOfMonth(last=True)
        if up == "LW":
            return DayOfMonth(last_weekday=True)
        m = re.fullmatch(r"(\d+)W", up)
        if m is None:
            raise ValueError(
                f"{text}: day-of-month {token!r}: 'L' and 'W' stand alone in the field, "
                "as L (last day), LW (last weekday) or nW (weekday nearest day n), e.g. 15W"
            )
        day = _number(text, m.group(1), _DOM)
        return DayOfMonth(nearest_weekday_to=day)
    return DayOfMonth(days=frozenset(_values(text, token, _DOM)))


def _parse_dow(text: str, token: str) -> DayOfWeek:
    up = token.upper()
    if "#" in up:
        m = re.fullmatch(r"(\w+)#(\d+)", up)
        if m is None:
            raise ValueError(
                f"{text}: day-of-week {token!r}: '#' takes one day and its occurrence in the "
                "month, alone in the field, e.g. 3#2 (the second Tuesday)"
            )
        k = int(m.group(2))
        if not 1 <= k <= 5:
            raise ValueError(
                f"{text}: day-of-week {token!r}: the occurrence after '#' must be 1-5, got {k}"
            )
        return DayOfWeek(nth=(_number(text, m.group(1), _DOW), k))
    if "L" in up:  # no day name contains an L
        if up == "L":
            return DayOfWeek(days=frozenset({7}))  # `L` alone: the last day of the week
        m = re.fullmatch(r"(\w+?)L", up)
        if m is None:
            raise ValueError(
                f"{text}: day-of-week {token!r}: 'L' stands alone in the field, as L (Saturday) "
                "or nL (the month's last day n), e.g. 6L (the last Friday)"
            )
        return DayOfWeek(last_of=_number(text, m.group(1), _DOW))
    return DayOfWeek(days=frozenset(_values(text, token, _DOW)))


def _number(text: str, token: str, f: _Field) -> int:
    up = token.upper()
    if up in f.names:
        return f.names[up]
    if not up.isdigit():
        hint = f" or a name ({f.names_hint})" if f.names_hint else ""
        raise ValueError(f"{text}: {f.name} {token!r} is not a number{hint}")
    value = int(up)
    if not f.lo <= value <= f.hi:
        raise ValueError(f"{text}: {f.name} value {value} is out of range {f.lo}-{f.hi}")
    return value


def _values(text: str, token: str, f: _Field) -> tuple[int, ...]:
    """Expand `*`, lists, ranges (wrapping where the field allows) and steps to sorted values."""
    out: set[int] = set()
    for part in token.split(","):
        if not part:
            raise ValueError(f"{text}: {f.name} {token!r} has an empty list item")
        base, slash, step_s = part.partition("/")
        step = 1
        if slash:
            if not step_s.isdigit() or int(step_s) < 1:
                raise ValueError(
                    f"{text}: {f.name} {part!r}: the step after '/' must be a positive whole "
                    f"number, got {step_s!r}"
                )
            step = int(step_s)
        if base == "*":
            lo, hi = f.lo, f.hi
        elif base == "?":
            raise ValueError(
                f"{text}: {f.name} {part!r}: '?' is only allowed in day-of-month or day-of-week"
            )
        elif "-" in base:
            a, _, b = base.partition("-")
            lo, hi = _number(text, a, f), _number(text, b, f)
        else:
            lo = _number(text, base, f)
            hi = f.hi if slash else lo  # `5/15`: from 5 to the end of the field
        if hi >= lo:
            out.update(range(lo, hi + 1, step))
        elif not f.wraps:
            raise ValueError(f"{text}: {f.name} range {base!r} runs backwards")
        else:
            span = f.hi - f.lo + 1
            seq = range(lo, hi + span + 1, step)
            out.update((v - f.lo) % span + f.lo for v in seq)
    return tuple(sorted(out))
