"""Maintenance windows: when a strategy may be chosen, on the wall clock of a time zone.

Pure: `parse` turns a window such as ``Sat 01:00-05:00 Europe/Berlin`` into a value, and
`is_open(window, at)` answers for a given instant (passed in, never read from a clock).

Grammar: ``DAYS HH:MM-HH:MM [ZONE]``. DAYS is one day (``Sat``), a range (``Mon-Fri``), a
comma list of either (``Mon,Wed,Fri-Sun``), or ``*`` / ``daily`` for every day. ZONE is an
IANA name (default ``UTC``). A window whose end is not after its start crosses midnight: it
belongs to the day it starts on (``Fri 22:00-02:00`` is Friday 22:00 to Saturday 02:00).
``HH:MM`` is wall-clock time in ZONE, so across a DST change a window keeps its local hours:
a day that loses an hour (spring forward) makes a window over the gap an hour shorter, one that
gains an hour (fall back) makes it an hour longer. Local times that do not exist (the skipped
hour) are never "inside" anything; ambiguous ones (the repeated hour) are inside if either
reading is.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WINDOW = re.compile(
    r"^\s*(?P<days>[A-Za-z*,\-]+)\s+(?P<start>\d{1,2}:\d{2})\s*-\s*(?P<end>\d{1,2}:\d{2})"
    r"(?:\s+(?P<zone>\S+))?\s*$"
)


class WindowError(ValueError):
    """A window that does not parse; the message names the text and the rule."""


@dataclass(frozen=True)
class Window:
    text: str
    days: frozenset[int]  # 0 = Monday, the day a window starts on
    start: time
    end: time
    zone: str

    @property
    def crosses_midnight(self) -> bool:
        return self.end <= self.start

    def contains(self, at: datetime) -> bool:
        """Whether the aware datetime `at` falls inside this window."""
        if at.tzinfo is None:
            raise ValueError("a window is evaluated at an aware datetime")
        tz = ZoneInfo(self.zone)
        local = at.astimezone(tz)
        # the wall-clock reading; `fold` tells the two readings of a repeated hour apart, and
        # both count as "inside" whenever the wall time itself is inside
        wall = local.replace(tzinfo=None, fold=0)
        day, clock = wall.weekday(), wall.time()
        if not self.crosses_midnight:
            return day in self.days and self.start <= clock < self.end
        if day in self.days and clock >= self.start:
            return True
        return (day - 1) % 7 in self.days and clock < self.end

    def __str__(self) -> str:
        return self.text


def _hhmm(text: str, window: str) -> time:
    hours, minutes = (int(p) for p in text.split(":"))
    if hours == 24 and minutes == 0:
        return time(0, 0)  # "-24:00": the end of the day, i.e. midnight of the next
    if not (0 <= hours < 24 and 0 <= minutes < 60):
        raise WindowError(f"{window!r}: {text} is not a time of day (00:00 to 24:00)")
    return time(hours, minutes)


def _days(text: str, window: str) -> frozenset[int]:
    if text.lower() in ("*", "daily"):
        return frozenset(range(7))
    out: set[int] = set()
    for part in text.lower().split(","):
        ends = part.split("-")
        if len(ends) > 2 or not all(e[:3] in DAYS and len(e) >= 3 for e in ends):
            raise WindowError(
                f"{window!r}: {part!r} is not a day or a range of days (Mon..Sun, e.g. Mon-Fri)"
            )
        first, last = DAYS.index(ends[0][:3]), DAYS.index(ends[-1][:3])
        day = first
        while True:  # a range may wrap: Sat-Mon is Sat, Sun, Mon
            out.add(day)
            if day == last:
                break
            day = (day + 1) % 7
    return frozenset(out)


def parse(text: str) -> Window:
    m = _WINDOW.match(text)
    if m is None:
        raise WindowError(
            f"{text!r} is not a window of the form 'DAYS HH:MM-HH:MM [ZONE]', "
            "e.g. 'Sat 01:00-05:00 Europe/Berlin'"
        )
    zone = m.group("zone") or "UTC"
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise WindowError(f"{text!r}: {zone!r} is not a known time zone") from None
    # equal ends (00:00-24:00, 01:00-01:00) make a whole day from the start
    start, end = _hhmm(m.group("start"), text), _hhmm(m.group("end"), text)
    return Window(text.strip(), _days(m.group("days"), text), start, end, zone)


def is_open(windows: Iterable[Window], at: datetime) -> bool:
    """No windows means always open; otherwise open inside any of them."""
    found = list(windows)
    return not found or any(w.contains(at) for w in found)


def next_opening(windows: Iterable[Window], at: datetime, *, horizon_days: int = 8) -> datetime:
    """The first minute at or after `at` (UTC) inside a window; for the decision line."""
    found = list(windows)
    probe = at.replace(second=0, microsecond=0)
    if probe < at:
        probe += timedelta(minutes=1)
    for _ in range(horizon_days * 24 * 60):
        if any(w.contains(probe) for w in found):
            return probe
        probe += timedelta(minutes=1)
    raise ValueError("no window opens within the horizon")
