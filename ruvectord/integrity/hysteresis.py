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

Pure: time arrives as an argument, never read from a clock. The whole tracker is a small
value that round-trips through JSON, so it survives a daemon restart.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Any


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
    hold_since: datetime | None = None  # first sample of the current recovery hold
    last_transition_at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["state"] = self.state.value
        for key in ("hold_since", "last_transition_at"):
            value = data[key]
            data[key] = value.isoformat() if value is not None else None
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Tracker:
        def ts(key: str) -> datetime | None:
            raw = data.get(key)
            return datetime.fromisoformat(raw) if raw else None

        return cls(
            state=State(data.get("state", "normal")),
            low_streak=int(data.get("low_streak", 0)),
            hold_since=ts("hold_since"),
            last_transition_at=ts("last_transition_at"),
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


def observe(tracker: Tracker, value: float, now: datetime, policy: Policy) -> Step:
    """Feed one lambda_cut sample taken at `now`; return the next tracker and a reason."""
    p = policy
    t = tracker
    in_cooldown = t.last_transition_at is not None and (
        (now - t.last_transition_at).total_seconds() < p.cooldown_seconds
    )

    def move(to: State, why: str, pending: Tracker) -> Step:
        if in_cooldown:
            assert t.last_transition_at is not None
            left = p.cooldown_seconds - (now - t.last_transition_at).total_seconds()
            return Step(pending, t.state, f"{why}; {to} waits for the cooldown ({left:.0f} s left)")
        # Counters and holds start afresh in the new state.
        return Step(Tracker(to, 0, None, now), t.state, why)

    def recover(to: State, bar: float) -> Step:
        """Above the recovery bar: start or continue the hold; move once it is long enough."""
        since = t.hold_since or now
        held = (now - since).total_seconds()
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
