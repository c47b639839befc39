"""One reading of both clocks: monotonic seconds for durations, wall time for timestamps.

Holds, cooldowns, windows and intervals are measured on the monotonic clock, so a wall-clock
step (NTP, a careless `date -s`) neither freezes nor fires anything; wall time is only what a
human reads and what is stored. Pure: a value, no clock is read here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True, slots=True)
class Instant:
    mono: float  # seconds on a clock that never jumps (comparable within one process only)
    wall: datetime  # timezone-aware UTC

    def wall_of(self, mono: float) -> datetime:
        """The wall time of an earlier monotonic reading, as seen from now."""
        return self.wall - timedelta(seconds=self.mono - mono)

    def mono_of(self, wall: datetime) -> float:
        """The monotonic reading of a stored wall time, as seen from now; never in the future.

        Used only to pick up state written by an earlier process (whose monotonic clock means
        nothing here): a timestamp "ahead" of now (the clock stepped back meanwhile) counts
        as now, so an interval may restart but never stretches into the future.
        """
        age = max(0.0, (self.wall - wall).total_seconds())
        return self.mono - age
