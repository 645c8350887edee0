"""Working-day arithmetic against the official 2026 calendar (the State Council's 2026 holiday notice, as
published in chinesecalendar): National Day 1-7 Oct with make-up workdays Sun 20 Sep and Sat 10 Oct;
Spring Festival 15-23 Feb with make-up workdays Sat 14 Feb and Sat 28 Feb."""

from __future__ import annotations

import datetime as dt

import pytest

from civicmesh.citizen.workdays import (
    add_working_days,
    calendar_covers,
    due_at,
    is_working_day,
    shift_working_days,
    working_days_between,
)

CST = dt.timezone(dt.timedelta(hours=8))
D = dt.date


@pytest.fixture(autouse=True)
def _needs_2026() -> None:
    if not calendar_covers(D(2026, 10, 1)):
        pytest.skip("the installed chinesecalendar does not cover 2026")


def test_national_day_holidays_and_make_up_days() -> None:
    assert not any(is_working_day(D(2026, 10, d)) for d in range(1, 8))
    assert is_working_day(D(2026, 9, 20))  # a Sunday, worked to make up for the holiday
    assert is_working_day(D(2026, 10, 10))  # a Saturday, worked
    assert not is_working_day(D(2026, 10, 11))  # an ordinary Sunday


def test_deadline_skips_national_day_and_counts_the_saturday_make_up_day() -> None:
    # Received Wed 30 Sep: working days after it are 8, 9, 10 (Sat, make-up), 12, 13 Oct.
    assert add_working_days(D(2026, 9, 30), 1) == D(2026, 10, 8)
    assert add_working_days(D(2026, 9, 30), 3) == D(2026, 10, 10)
    assert add_working_days(D(2026, 9, 30), 5) == D(2026, 10, 13)
    # A plain Monday-Friday count would have said 1 Oct and 7 Oct.
    due = due_at(dt.datetime(2026, 9, 30, 10, 0, tzinfo=CST), 10, CST)
    assert due == dt.datetime(2026, 10, 20, 23, 59, 59, tzinfo=CST)


def test_spring_festival() -> None:
    assert is_working_day(D(2026, 2, 14))  # Saturday before the festival, worked
    assert not any(is_working_day(D(2026, 2, d)) for d in range(15, 24))
    assert is_working_day(D(2026, 2, 28))  # Saturday after, worked
    # A consultation (1 working day) received on Fri 13 Feb is due on the make-up Saturday 14 Feb.
    assert due_at(dt.datetime(2026, 2, 13, 16, 0, tzinfo=CST), 1, CST).date() == D(2026, 2, 14)
    # A consultation received on Sat 14 Feb (a workday) is due after the whole festival, on Tue 24 Feb.
    assert due_at(dt.datetime(2026, 2, 14, 9, 0, tzinfo=CST), 1, CST).date() == D(2026, 2, 24)
    # Help (5 working days) from Fri 13 Feb: 14, 24, 25, 26, 27 Feb.
    assert add_working_days(D(2026, 2, 13), 5) == D(2026, 2, 27)


def test_local_day_decides_not_utc_day() -> None:
    # 17:00 UTC on 30 Sep is already 1 Oct (a holiday) in Beijing; same-day limits move to 8 Oct.
    received = dt.datetime(2026, 9, 30, 17, 0, tzinfo=dt.UTC)
    assert due_at(received, 0, CST).date() == D(2026, 10, 8)
    assert due_at(dt.datetime(2026, 9, 30, 10, 0, tzinfo=dt.UTC), 0, CST).date() == D(2026, 9, 30)


def test_counting_and_shifting() -> None:
    assert working_days_between(D(2026, 9, 30), D(2026, 10, 13)) == 5
    assert working_days_between(D(2026, 10, 13), D(2026, 9, 30)) == -5
    back = shift_working_days(dt.datetime(2026, 10, 8, 23, 59, 59, tzinfo=CST), -1, CST)
    assert back.date() == D(2026, 9, 30)


def test_naive_time_is_refused() -> None:
    with pytest.raises(ValueError):
        due_at(dt.datetime(2026, 9, 30, 10, 0), 1, CST)
