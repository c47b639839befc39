"""Maintenance windows: parsing and evaluation at a given instant (days, midnight, DST)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from ruvectord.healing.windows import WindowError, is_open, next_opening, parse

BERLIN = ZoneInfo("Europe/Berlin")


def berlin(y: int, mo: int, d: int, h: int, mi: int, fold: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=BERLIN, fold=fold)


def test_a_weekly_window_in_its_own_time_zone() -> None:
    w = parse("Sat 01:00-05:00 Europe/Berlin")
    # 2026-01-03 is a Saturday; Berlin is UTC+1 in winter
    assert w.contains(berlin(2026, 1, 3, 1, 0))
    assert w.contains(berlin(2026, 1, 3, 4, 59))
    assert not w.contains(berlin(2026, 1, 3, 5, 0))  # the end is exclusive
    assert not w.contains(berlin(2026, 1, 3, 0, 59))
    assert not w.contains(berlin(2026, 1, 4, 2, 0))  # Sunday
    # the same instants in UTC
    assert w.contains(datetime(2026, 1, 3, 0, 30, tzinfo=UTC))
    assert not w.contains(datetime(2026, 1, 3, 4, 30, tzinfo=UTC))  # 05:30 in Berlin


def test_days_of_week_lists_ranges_and_every_day() -> None:
    weekdays = parse("Mon-Fri 09:00-17:00")  # UTC by default
    for day in range(5, 12):  # 2026-01-05 is a Monday
        at = datetime(2026, 1, day, 12, tzinfo=UTC)
        assert weekdays.contains(at) is (at.weekday() < 5), at
    wrap = parse("Sat-Mon 00:00-24:00 UTC")  # a range may wrap around Sunday
    assert {d for d in range(7) if wrap.contains(datetime(2026, 1, 5 + d, 12, tzinfo=UTC))} == {
        0,
        5,
        6,
    }
    listed = parse("mon,wed,Fri-Sat 10:00-11:00")
    assert listed.days == frozenset({0, 2, 4, 5})
    assert parse("daily 03:00-04:00").days == parse("* 03:00-04:00").days == frozenset(range(7))


def test_a_window_crossing_midnight_belongs_to_the_day_it_starts() -> None:
    w = parse("Fri 22:00-02:00 UTC")  # 2026-01-09 is a Friday
    assert w.contains(datetime(2026, 1, 9, 23, 0, tzinfo=UTC))
    assert w.contains(datetime(2026, 1, 10, 1, 59, tzinfo=UTC))  # Saturday, still Friday's
    assert not w.contains(datetime(2026, 1, 10, 2, 0, tzinfo=UTC))
    assert not w.contains(datetime(2026, 1, 9, 1, 0, tzinfo=UTC))  # Friday early: Thursday's
    assert not w.contains(datetime(2026, 1, 10, 23, 0, tzinfo=UTC))  # Saturday night


def test_dst_spring_forward_shortens_a_window_over_the_gap() -> None:
    # 2026-03-29, Sunday: Berlin jumps from 02:00 to 03:00
    w = parse("Sun 01:00-04:00 Europe/Berlin")
    start = datetime(2026, 3, 29, 0, 0, tzinfo=UTC)  # 01:00 CET
    inside = [start + timedelta(minutes=m) for m in range(0, 300, 15)]
    minutes = sum(15 for at in inside if w.contains(at))
    assert minutes == 120  # 01:00-02:00 CET and 03:00-04:00 CEST: two real hours
    assert w.contains(datetime(2026, 3, 29, 1, 30, tzinfo=UTC))  # 03:30 CEST
    assert not w.contains(datetime(2026, 3, 29, 2, 0, tzinfo=UTC))  # 04:00 CEST


def test_dst_fall_back_lengthens_a_window_over_the_repeated_hour() -> None:
    # 2026-10-25, Sunday: Berlin goes from 03:00 CEST back to 02:00 CET
    w = parse("Sun 02:00-03:00 Europe/Berlin")
    assert w.contains(berlin(2026, 10, 25, 2, 30, fold=0))  # first 02:30 (CEST)
    assert w.contains(berlin(2026, 10, 25, 2, 30, fold=1))  # second 02:30 (CET)
    start = datetime(2026, 10, 24, 23, 0, tzinfo=UTC)  # 01:00 CEST
    minutes = sum(15 for m in range(0, 300, 15) if w.contains(start + timedelta(minutes=m)))
    assert minutes == 120  # the wall-clock hour happens twice


def test_no_windows_means_always_and_next_opening_is_reported() -> None:
    at = datetime(2026, 1, 5, 12, tzinfo=UTC)  # Monday
    assert is_open([], at)
    sat = [parse("Sat 01:00-05:00 Europe/Berlin")]
    assert not is_open(sat, at)
    assert next_opening(sat, at) == datetime(2026, 1, 10, 0, 0, tzinfo=UTC)
    assert next_opening(sat, datetime(2026, 1, 10, 0, 30, tzinfo=UTC)) == datetime(
        2026, 1, 10, 0, 30, tzinfo=UTC
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Sat 1-5", "is not a window of the form"),
        ("Funday 01:00-02:00", "is not a day or a range of days"),
        ("Sat 25:00-26:00", "is not a time of day"),
        ("Sat 01:00-02:00 Mars/Olympus", "is not a known time zone"),
    ],
)
def test_bad_windows_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(WindowError, match=message):
        parse(text)


def test_a_window_needs_an_aware_time() -> None:
    with pytest.raises(ValueError, match="aware"):
        parse("Sat 01:00-02:00").contains(datetime(2026, 1, 3, 1, 30))
