"""Time as an injected dependency.

Everything that waits or compares timestamps (sampling interval, hysteresis holds, cooldowns,
settle waits, approval expiry) asks a `Clock`, so tests can run hours of daemon time in
milliseconds with `ManualClock`.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Protocol

import anyio
import anyio.lowlevel

from ruvectord.timebase import Instant


class Clock(Protocol):
    def now(self) -> datetime:
        """Wall-clock time, timezone-aware UTC."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards (for durations)."""
        ...

    async def sleep(self, seconds: float) -> None: ...

    def instant(self) -> Instant:
        """Both clocks read together."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(max(0.0, seconds))

    def instant(self) -> Instant:
        return Instant(self.monotonic(), self.now())


class ManualClock:
    """A clock that only moves when told to; `sleep` advances it instead of waiting."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 1, tzinfo=UTC)
        self._mono = 0.0

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"cannot move a clock backwards ({seconds} s)")
        self._now += timedelta(seconds=seconds)
        self._mono += seconds

    def jump(self, seconds: float) -> None:
        """Step the wall clock only (either way), as NTP or `date -s` would."""
        self._now += timedelta(seconds=seconds)

    def instant(self) -> Instant:
        return Instant(self._mono, self._now)

    async def sleep(self, seconds: float) -> None:
        self.advance(max(0.0, seconds))
        # still yield, so a sleeping task lets others run exactly as with the real clock
        await anyio.lowlevel.checkpoint()


class Shutdown:
    """The daemon's deadline once it has been asked to stop, on the event loop's clock.

    Clean-up steps that must not be cut short by cancellation (a rollback, a journal write)
    run shielded, but only for what is left of `daemon.shutdown_timeout_seconds`; whatever
    they could not finish is named in `left_behind`, and the next start repairs it.
    """

    MARGIN = 0.5  # kept back for closing the pool and saying goodbye

    def __init__(self) -> None:
        self.deadline: float | None = None
        self.left_behind: list[str] = []

    @property
    def stopping(self) -> bool:
        return self.deadline is not None

    def begin(self, seconds: float) -> None:
        if self.deadline is None:
            self.deadline = anyio.current_time() + seconds

    def budget(self, wanted: float) -> float:
        """How long a shielded step may take: `wanted`, or what is left before the deadline."""
        if self.deadline is None:
            return wanted
        return max(0.0, min(wanted, self.deadline - anyio.current_time() - self.MARGIN))
