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

And per strategy (`healing.strategies.<name>`, `limits`): not while it is disabled or outside
its calendar windows, and no target (an index, a partition) acted on again within its
`min_interval_per_target_seconds`. Ages of targets are wall-clock (hours-long intervals, read
from the journal); the time is passed in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from ruvectord.config import HealingConfig, StrategiesConfig
from ruvectord.healing.problems import Problem, ProblemKind
from ruvectord.healing.windows import is_open, next_opening, parse


@dataclass(frozen=True, slots=True)
class Past:
    kind: str  # attempt | rejection
    strategy: str
    age: float  # seconds ago, on the monotonic clock


@dataclass(frozen=True, slots=True)
class Touched:
    """A target an action acted on (its journal row names it), and how long ago."""

    strategy: str
    target: str
    age: float  # seconds since that action started


@dataclass(frozen=True, slots=True)
class History:
    past: tuple[Past, ...] = ()  # within the attempt window
    # (initial, final) lambda_cut of this degradation episode's healings, newest first
    episode: tuple[tuple[float, float | None], ...] = ()
    touched: tuple[Touched, ...] = ()  # within the longest min_interval_per_target_seconds

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


@dataclass(frozen=True)
class Limits:
    """Per-strategy limits at one instant: what may not be chosen, which targets are resting."""

    closed: Mapping[str, str] = field(default_factory=dict)  # strategy -> why not now
    # strategy -> target -> seconds before it may be acted on again
    resting: Mapping[str, Mapping[str, float]] = field(default_factory=dict)

    def resting_for(self, strategy: str) -> dict[str, float]:
        return dict(self.resting.get(strategy, {}))


def longest_interval(strategies: StrategiesConfig) -> float:
    found = [strategies.limits(n) for n in type(strategies).model_fields]
    return max((c.min_interval_per_target_seconds for c in found if c is not None), default=0.0)


def limits(history: History, strategies: StrategiesConfig, now: datetime) -> Limits:
    closed: dict[str, str] = {}
    resting: dict[str, dict[str, float]] = {}
    for name in type(strategies).model_fields:
        cfg = strategies.limits(name)
        if cfg is None:
            continue
        if not cfg.enabled:
            closed[name] = f"{name} is disabled (healing.strategies.{name}.enabled: false)"
        elif cfg.windows:
            windows = [parse(w) for w in cfg.windows]
            if not is_open(windows, now):
                try:
                    opens = f"; next opens {next_opening(windows, now):%a %Y-%m-%d %H:%M} UTC"
                except ValueError:
                    opens = ""
                closed[name] = (
                    f"{name} is outside its maintenance windows ({', '.join(cfg.windows)}){opens}"
                )
        for t in history.touched:
            left = cfg.min_interval_per_target_seconds - t.age
            if t.strategy == name and left > 0:
                mine = resting.setdefault(name, {})
                mine[t.target] = max(left, mine.get(t.target, 0.0))
    return Limits(closed, resting)
