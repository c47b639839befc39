"""The integrity state machine (normal / stress / critical) with hysteresis.

Rules (spec section 3), each parameter configurable:

- normal -> stress:   lambda < T_high for N consecutive samples
- stress -> critical: lambda < T_low for M consecutive samples (counted while in stress)
- critical -> stress: lambda > T_low + offset, held for H seconds
- stress -> normal:   lambda > T_high + offset, held for H seconds
- no transition within the cooldown after the previous one

A sample that breaks a streak resets its counter; a recovery hold restarts when lambda falls
back to or below the recovery bar. A transition that is due during the cooldown is not lost:
it happens at the first sample after the cooldown whose condition still holds.

Pure: time arrives as an argument (an `Instant`), never read from a clock. Holds and the
cooldown are measured on its monotonic part, so a wall-clock jump in either direction neither
freezes nor fires a transition; wall time is kept only to say when a transition happened.
The whole tracker is a small value that round-trips through JSON (as wall times, converted
back to the new process's monotonic clock on restore), so it survives a daemon restart.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from ruvectord.timebase import Instant


class State(StrEnum):
    NORMAL = "normal"
    STRESS = "stress"
    CRITICAL = "critical"

    @property
    def degraded(self) -> bool:
        return self is not State.NORMAL


@dataclass(frozen=True, slots=True)
class Policy:
    threshold_high: float = 0.8
    threshold_low: float = 0.3
    degrade_samples: int = 3
    critical_samples: int = 2
    recovery_offset: float = 0.1
    recovery_hold_seconds: float = 300.0
    cooldown_seconds: float = 60.0

    def __post_init__(self) -> None:
        if not 0 <= self.threshold_low < self.threshold_high <= 1:
            raise ValueError(
                f"thresholds must satisfy 0 <= low < high <= 1 "
                f"(low {self.threshold_low}, high {self.threshold_high})"
            )
        if self.degrade_samples < 1 or self.critical_samples < 1:
            raise ValueError("degrade_samples and critical_samples must be >= 1")
        if self.recovery_hold_seconds < 0 or self.cooldown_seconds < 0:
            raise ValueError("recovery_hold_seconds and cooldown_seconds must be >= 0")


@dataclass(frozen=True, slots=True)
class Tracker:
    """Everything the machine remembers between samples."""

    state: State = State.NORMAL
    low_streak: int = 0  # consecutive samples counting towards the next degradation
    hold_since: float | None = None  # monotonic: first sample of the current recovery hold
    last_transition: float | None = None  # monotonic: when the state last changed
    last_transition_at: datetime | None = None  # the same moment in wall time, for people

    def to_json(self, now: Instant) -> dict[str, Any]:
        def wall(mono: float | None) -> str | None:
            return None if mono is None else now.wall_of(mono).isoformat()

        return {
            "state": self.state.value,
            "low_streak": self.low_streak,
            "hold_since": wall(self.hold_since),
            "last_transition_at": wall(self.last_transition),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], now: Instant) -> Tracker:
        def mono(key: str) -> float | None:
            raw = data.get(key)
            return now.mono_of(datetime.fromisoformat(raw)) if raw else None

        last = data.get("last_transition_at")
        return cls(
            state=State(data.get("state", "normal")),
            low_streak=int(data.get("low_streak", 0)),
            hold_since=mono("hold_since"),
            last_transition=mono("last_transition_at"),
            last_transition_at=datetime.fromisoformat(last) if last else None,
        )


@dataclass(frozen=True, slots=True)
class Step:
    """The outcome of one observation: the new tracker and, in words, why."""

    tracker: Tracker
    previous: State
    reason: str

    @property
    def state(self) -> State:
        return self.tracker.state

    @property
    def changed(self) -> bool:
        return self.tracker.state is not self.previous


def observe(tracker: Tracker, value: float, now: Instant, policy: Policy) -> Step:
    """Feed one lambda_cut sample taken at `now`; return the next tracker and a reason."""
    p = policy
    t = tracker
    since_transition = None if t.last_transition is None else now.mono - t.last_transition
    in_cooldown = since_transition is not None and since_transition < p.cooldown_seconds

    def move(to: State, why: str, pending: Tracker) -> Step:
        if in_cooldown:
            assert since_transition is not None
            left = p.cooldown_seconds - since_transition
            return Step(pending, t.state, f"{why}; {to} waits for the cooldown ({left:.0f} s left)")
        # Counters and holds start afresh in the new state.
        return Step(Tracker(to, 0, None, now.mono, now.wall), t.state, why)

    def recover(to: State, bar: float) -> Step:
        """Above the recovery bar: start or continue the hold; move once it is long enough."""
        since = now.mono if t.hold_since is None else t.hold_since
        held = now.mono - since
        pending = replace(t, low_streak=0, hold_since=since)
        why = f"lambda {value:.3f} > {bar:g} held {held:.0f} s"
        if held >= p.recovery_hold_seconds:
            return move(to, why, pending)
        return Step(pending, t.state, f"{why} of {p.recovery_hold_seconds:g} s")

    if t.state is State.NORMAL:
        if value < p.threshold_high:
            streak = t.low_streak + 1
            t_next = replace(t, low_streak=streak, hold_since=None)
            why = f"lambda {value:.3f} < {p.threshold_high:g} for {streak} sample(s)"
            if streak >= p.degrade_samples:
                return move(State.STRESS, why, t_next)
            return Step(t_next, t.state, f"{why}, stress after {p.degrade_samples}")
        t_next = replace(t, low_streak=0, hold_since=None)
        return Step(t_next, t.state, f"lambda {value:.3f} >= {p.threshold_high:g}")

    if t.state is State.STRESS:
        # degradation streak towards critical
        if value < p.threshold_low:
            streak = t.low_streak + 1
            t_next = replace(t, low_streak=streak, hold_since=None)
            why = f"lambda {value:.3f} < {p.threshold_low:g} for {streak} sample(s)"
            if streak >= p.critical_samples:
                return move(State.CRITICAL, why, t_next)
            return Step(t_next, t.state, f"{why}, critical after {p.critical_samples}")
        bar = p.threshold_high + p.recovery_offset
        if value > bar:
            return recover(State.NORMAL, bar)
        t_next = replace(t, low_streak=0, hold_since=None)
        return Step(t_next, t.state, f"lambda {value:.3f} between {p.threshold_low:g} and {bar:g}")

    # critical: only a held recovery leaves it
    bar = p.threshold_low + p.recovery_offset
    if value > bar:
        return recover(State.STRESS, bar)
    t_next = replace(t, low_streak=0, hold_since=None)
    return Step(t_next, t.state, f"lambda {value:.3f} <= {bar:g}")
