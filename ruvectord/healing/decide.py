"""Strategy selection for one degraded sample, and what is recorded of it for replay.

Pure: the engine (engine.py) gathers the selection's inputs -- the safeguards' history
(policy.History), the learned weights and the time -- and calls `choose`; `ruvectord replay`
calls the same `choose` with the inputs recorded at the time (`ruvector.healing_decisions`),
so with the same config it chooses what the daemon chose, word for word.

A recorded decision is a small JSON object:

    {"g": "...", "k": kind}        healing did not get to choose, and why: `disabled` (the
                                   config), `paused` (an operator), `recovering`, `busy`
                                   (another action runs), `approved` (it ran an approved one)
    {"c": class, "s": strategy or null, "w": why, "a": needs approval,
     "in": {"p": past, "e": episode, "t": touched, "W": weights, "n": now}}
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ruvectord.config import HealingConfig
from ruvectord.healing.policy import History, Past, Touched, held_off, judge, limits
from ruvectord.healing.problems import Problem
from ruvectord.healing.strategy import Selection, StrategyRegistry

DISABLED = "healing is disabled (healing.enabled: false)"


@dataclass(frozen=True, slots=True)
class Inputs:
    """What selection reads besides the problem and the config."""

    now: datetime  # the per-strategy calendar windows are read at this time
    history: History = field(default_factory=History)
    weights: Mapping[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        h = self.history
        return {
            "p": [[p.kind, p.strategy, p.age] for p in h.past],
            "e": [list(e) for e in h.episode],
            "t": [[t.strategy, t.target, t.age] for t in h.touched],
            "W": dict(self.weights),
            "n": self.now.isoformat(),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Inputs:
        return cls(
            datetime.fromisoformat(data["n"]),
            History(
                tuple(Past(k, s, a) for k, s, a in data.get("p", ())),
                tuple((i, f) for i, f in data.get("e", ())),
                tuple(Touched(s, t, a) for s, t, a in data.get("t", ())),
            ),
            dict(data.get("W", {})),
        )

    def later(self, seconds: float, now: datetime) -> Inputs:
        """The same history `seconds` on, as a replay borrows it for a sample the daemon did
        not choose on (nothing it would itself have done is added)."""
        h = self.history
        return Inputs(
            now,
            History(
                tuple(Past(p.kind, p.strategy, p.age + seconds) for p in h.past),
                h.episode,
                tuple(Touched(t.strategy, t.target, t.age + seconds) for t in h.touched),
            ),
            self.weights,
        )


@dataclass(frozen=True)
class Choice:
    strategy: str | None  # None: nothing may or can act now, `why` says why
    why: str
    approval: bool = False  # the chosen strategy waits for an operator's approval
    cooling: bool = False  # blocked by min_healing_interval_seconds (the cooldown gauge)
    blocked: bool = False  # the safeguards said no before any strategy was considered
    selection: Selection | None = None
    resting: Mapping[str, float] = field(default_factory=dict)  # the chosen one's targets

    def record(self, problem: Problem, inputs: Inputs) -> dict[str, Any]:
        return {
            "c": problem.kind.value,
            "s": self.strategy,
            "w": self.why,
            "a": self.approval,
            "in": inputs.to_json(),
        }


def choose(
    problem: Problem,
    inputs: Inputs,
    cfg: HealingConfig,
    registry: StrategyRegistry,
    collection: str,
) -> Choice:
    """The safeguards, then the best strategy within the limits (policy.py, strategy.py)."""
    history = inputs.history
    verdict = judge(problem, history, cfg)
    if verdict.blocked is not None:
        return Choice(None, verdict.blocked, cooling=verdict.cooling, blocked=True)
    bounds = limits(history, cfg.strategies, inputs.now)
    selection = registry.select(
        problem,
        cfg.max_auto_heal_impact,
        held_off(history, cfg),
        collection=collection,
        limits=bounds,
        weights=inputs.weights,
    )
    if selection.strategy is None:
        return Choice(None, selection.reason, selection=selection)
    name = selection.strategy.name
    return Choice(
        name,
        selection.reason,
        approval=name in cfg.require_approval_strategies,
        selection=selection,
        resting=bounds.resting_for(name),
    )


def recovering(lambda_cut: float, threshold_high: float) -> str | None:
    """Degraded but above the stress threshold: the state machine holds for recovery and
    there is nothing to heal right now."""
    if lambda_cut >= threshold_high:
        return f"recovering: lambda {lambda_cut:.3f} >= {threshold_high:g}, no action needed"
    return None
