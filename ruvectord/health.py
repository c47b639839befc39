"""Whether the daemon makes progress, and the one line it says about itself to systemd.

Plain functions and classes over what the collection loops report, with times passed in: no
I/O and no clock of their own.

The systemd watchdog is fed only while every collection loop keeps finishing cycles, good or
failed, as Patroni feeds its watchdog from its HA loop: a loop stuck on an await that never
returns stops the pings, and systemd restarts the daemon (`WatchdogSec=` in the unit). A loop's
allowance is two sampling intervals, or one interval plus the sample's own time bound when that
is longer: a stalled server fails a sample only after that bound, and restarting the daemon
would not make the server answer. While a healing action runs inside a cycle, the action's own
timeouts (execute, verify, rollback) bound it, so the allowance grows by `healing_bound`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime


@dataclass
class _Loop:
    interval: float
    sample_bound: float
    finished: float  # monotonic seconds: the last cycle that ended, or when the loop began
    healing_since: float | None = None


@dataclass
class Progress:
    """When each collection loop last finished a cycle (monotonic seconds)."""

    healing_bound: float = 0.0
    _loops: dict[str, _Loop] = field(default_factory=dict)

    def register(self, name: str, *, interval: float, sample_bound: float, now: float) -> None:
        self._loops[name] = _Loop(interval, sample_bound, now)

    def forget(self, name: str) -> None:
        self._loops.pop(name, None)

    def finished(self, name: str, now: float, *, interval: float | None = None) -> None:
        loop = self._loops.get(name)
        if loop is not None:
            loop.finished = now
            loop.healing_since = None
            if interval is not None:  # the interval is a dynamic setting
                loop.interval = interval

    def healing(self, name: str, now: float) -> None:
        loop = self._loops.get(name)
        if loop is not None:
            loop.healing_since = now

    def healed(self, name: str) -> None:
        loop = self._loops.get(name)
        if loop is not None:
            loop.healing_since = None

    def allowance(self, name: str) -> float:
        loop = self._loops[name]
        limit = max(2 * loop.interval, loop.interval + loop.sample_bound)
        if loop.healing_since is not None:
            limit = max(limit, loop.healing_since - loop.finished + self.healing_bound)
        return limit

    def stalled(self, now: float) -> list[str]:
        """One phrase per loop that has not finished a cycle within its allowance."""
        out = []
        for name in sorted(self._loops):
            age, limit = now - self._loops[name].finished, self.allowance(name)
            if age > limit:
                out.append(f"{name} has not finished a cycle for {age:.0f} s (limit {limit:.0f} s)")
        return out


@dataclass(frozen=True)
class Facts:
    """What the STATUS line reports, gathered by the daemon at the end of a cycle."""

    collections: int
    acting: bool | None  # None: this daemon was started without healing
    why_not_acting: str = ""
    healing_enabled: bool = True
    degraded: tuple[tuple[str, str], ...] = ()  # (collection, state)
    failing: tuple[tuple[str, str], ...] = ()  # (collection, why its last sample failed)
    last_sample: datetime | None = None
    database_down_since: datetime | None = None
    stalled: tuple[str, ...] = ()


MAX_NAMED = 4  # STATUS is one line in `systemctl status`; the rest is in /status and the logs


def status_line(f: Facts, now: datetime) -> str:
    """e.g. "acting on 3 collections; degraded: orders critical; last sample 14:02:03 UTC"."""
    n = f"{f.collections} collection{'s' if f.collections != 1 else ''}"
    if f.acting is None:
        head = f"monitoring {n} (started without healing)"
    elif not f.healing_enabled:
        head = f"monitoring {n}, not acting: healing is disabled"
    elif f.acting:
        head = f"acting on {n}"
    else:
        head = f"monitoring {n}, not acting: {f.why_not_acting or 'not the actor'}"
    parts = [head]
    if f.database_down_since is not None:
        parts.append(f"database unreachable since {_when(f.database_down_since, now)}")
    if f.stalled:
        parts.append("stuck: " + _named(list(f.stalled)))
    if f.degraded:
        parts.append("degraded: " + _named([f"{c} {s}" for c, s in f.degraded]))
    if f.failing:
        parts.append("sampling fails: " + _named([f"{c} ({why})" for c, why in f.failing]))
    parts.append(
        "no sample yet" if f.last_sample is None else f"last sample {_when(f.last_sample, now)}"
    )
    return "; ".join(parts)


def _named(items: list[str]) -> str:
    shown = ", ".join(items[:MAX_NAMED])
    return shown + (f" and {len(items) - MAX_NAMED} more" if len(items) > MAX_NAMED else "")


def _when(at: datetime, now: datetime) -> str:
    at, now = at.astimezone(UTC), now.astimezone(UTC)
    return at.strftime("%H:%M:%S UTC" if at.date() == now.date() else "%Y-%m-%d %H:%M:%S UTC")
