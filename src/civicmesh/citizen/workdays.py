"""Working days by the official Chinese calendar: public holidays and the make-up workdays (调休) that the
State Council announces each year, as published in the maintained `chinesecalendar` package.

Time limits of the 12345 hotline are counted in working days from the day after receipt; a request received
on day D with a limit of N working days is due at the end of the N-th working day after D (local time).
"""

from __future__ import annotations

import datetime as dt
import logging
from functools import lru_cache

import chinese_calendar

log = logging.getLogger("civicmesh.citizen.workdays")

_warned_years: set[int] = set()


def parse_offset(offset: str) -> dt.timezone:
    """'+08:00' -> a fixed UTC offset."""
    sign = -1 if offset.startswith("-") else 1
    hours, minutes = offset.lstrip("+-").split(":")
    return dt.timezone(sign * dt.timedelta(hours=int(hours), minutes=int(minutes)))


@lru_cache(maxsize=4096)
def is_working_day(day: dt.date) -> bool:
    try:
        return bool(chinese_calendar.is_workday(day))
    except NotImplementedError:
        # The package covers the years the State Council has announced; beyond them only weekends are known.
        if day.year not in _warned_years:
            _warned_years.add(day.year)
            log.warning(
                "no official holiday calendar for %s in chinesecalendar %s; counting Mon-Fri only",
                day.year,
                getattr(chinese_calendar, "__version__", "?"),
            )
        return day.weekday() < 5


def calendar_covers(day: dt.date) -> bool:
    try:
        chinese_calendar.is_workday(day)
        return True
    except NotImplementedError:
        return False


def add_working_days(start: dt.date, days: int) -> dt.date:
    """The `days`-th working day after `start`; with 0, `start` if it is a working day, else the next one."""
    if days < 0:
        raise ValueError("days must be >= 0")
    current = start
    if days == 0:
        while not is_working_day(current):
            current += dt.timedelta(days=1)
        return current
    remaining = days
    while remaining:
        current += dt.timedelta(days=1)
        if is_working_day(current):
            remaining -= 1
    return current


def working_days_between(start: dt.date, end: dt.date) -> int:
    """Working days in (start, end]; negative if end is before start."""
    if end < start:
        return -working_days_between(end, start)
    count = 0
    current = start
    while current < end:
        current += dt.timedelta(days=1)
        if is_working_day(current):
            count += 1
    return count


def due_at(received: dt.datetime, days: int, tz: dt.tzinfo) -> dt.datetime:
    """The deadline: the last second of the due working day, in the jurisdiction's local time."""
    if received.tzinfo is None:
        raise ValueError("received must carry a time zone")
    local_day = received.astimezone(tz).date()
    due_day = add_working_days(local_day, days)
    return dt.datetime.combine(due_day, dt.time(23, 59, 59), tzinfo=tz)


def shift_working_days(moment: dt.datetime, days: int, tz: dt.tzinfo) -> dt.datetime:
    """`moment` moved by `days` working days (negative: backwards), keeping the local time of day."""
    local = moment.astimezone(tz)
    day = local.date()
    step = 1 if days >= 0 else -1
    remaining = abs(days)
    while remaining:
        day += dt.timedelta(days=step)
        if is_working_day(day):
            remaining -= 1
    return dt.datetime.combine(day, local.timetz())
