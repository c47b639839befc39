"""The safeguards, decided over a snapshot of history: may healing act now, and with what?

Pure: the engine gathers a `History` -- the attempts and rejections of the attempt window, with
their ages on the monotonic clock, and the outcomes of the current degradation episode -- and
asks. The design's limits, each configurable:

- never for an Unknown problem (it needs a human);
- `min_healing_interval_seconds` after the last attempt;
- at most `max_attempts_per_window` attempts per `attempt_window_seconds`; a human's no (a
  rejected approval, or an operator lifting a brake) counts as one, and holds that strategy
  off the collection for at least the healing interval;
- not once the last `ineffective_after` healings of this episode did not raise lambda_cut.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ruvectord.config import HealingConfig
from ruvectord.healing.problems import Problem, ProblemKind


@dataclass(frozen=True, slots=True)
class Past:
    kind: str  # attempt | rejection
    strategy: str
    age: float  # seconds ago, on the monotonic clock


@dataclass(frozen=True, slots=True)
class History:
    past: tuple[Past, ...] = ()  # within the attempt window
    # (initial, final) lambda_cut of this degradation episode's healings, newest first
    episode: tuple[tuple[float, float | None], ...] = ()

    @property
    def attempts(self) -> list[Past]:
        return [p for p in self.past if p.kind == "attempt"]


@dataclass(frozen=True, slots=True)
class Verdict:
    blocked: str | None  # why healing may not act now, in words; None: it may
    cooling: bool = False  # waiting for min_healing_interval (the cooldown gauge)


def judge(problem: Problem, history: History, cfg: HealingConfig) -> Verdict:
    if problem.kind is ProblemKind.UNKNOWN:
        return Verdict(
            "deferred for human review (unknown problems are never healed automatically)"
        )
    attempts = history.attempts
    if attempts:
        since_last = min(p.age for p in attempts)
        if since_last < cfg.min_healing_interval_seconds:
            left = cfg.min_healing_interval_seconds - since_last
            return Verdict(
                f"cooldown: last attempt {since_last:.0f} s ago, next in {left:.0f} s", True
            )
    counted = len(history.past)
    if counted >= cfg.max_attempts_per_window:
        rejected = counted - len(attempts)
        what = f"{len(attempts)} attempts" + (f" and {rejected} rejections" if rejected else "")
        return Verdict(
            f"{what} in the last {cfg.attempt_window_seconds:g} s "
            f"(max {cfg.max_attempts_per_window})"
        )
    k = cfg.ineffective_after
    recent = history.episode[:k]
    if k > 0 and len(recent) >= k and all(final is None or final <= i for i, final in recent):
        return Verdict(
            f"stopped: the last {k} healings did not raise lambda_cut; human review needed"
        )
    return Verdict(None)


def held_off(history: History, cfg: HealingConfig) -> Mapping[str, float]:
    """Strategies a human rejected recently -> seconds before they may be proposed again."""
    out: dict[str, float] = {}
    for p in history.past:
        left = cfg.min_healing_interval_seconds - p.age
        if p.kind == "rejection" and left > 0:
            out[p.strategy] = max(left, out.get(p.strategy, 0.0))
    return out
