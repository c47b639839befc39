"""Learning from outcomes: the design's weight formula and the effectiveness report.

    weight = success_rate * (1 + average improvement)

over the outcomes of the learning window (30 days by default), where success means "succeeded
and verified" and the improvement is lambda_cut's relative rise (healing_outcomes stores it
in percent, so 25.0 there is 0.25 here). A strategy never tried keeps the default weight 1.0.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class OutcomeRow:
    strategy_name: str
    success: bool
    verified: bool | None
    improvement_pct: float | None
    started_at: datetime
    completed_at: datetime | None = None
    time_to_verification_seconds: float | None = None

    @property
    def effective(self) -> bool:
        return self.success and bool(self.verified)


@dataclass(frozen=True, slots=True)
class StrategyStats:
    name: str
    weight: float
    attempts: int
    successes: int
    success_rate: float
    avg_improvement: float  # fraction


def strategy_weights(outcomes: Iterable[OutcomeRow]) -> dict[str, StrategyStats]:
    groups: dict[str, list[OutcomeRow]] = defaultdict(list)
    for o in outcomes:
        groups[o.strategy_name].append(o)
    stats = {}
    for name, rows in sorted(groups.items()):
        n = len(rows)
        successes = sum(1 for o in rows if o.effective)
        success_rate = successes / n
        # the design divides by every outcome, not only those that report an improvement
        avg_improvement = sum((o.improvement_pct or 0.0) / 100.0 for o in rows) / n
        stats[name] = StrategyStats(
            name,
            success_rate * (1.0 + avg_improvement),
            n,
            successes,
            success_rate,
            avg_improvement,
        )
    return stats


@dataclass(frozen=True, slots=True)
class EffectivenessReport:
    strategies: tuple[StrategyStats, ...]
    attempts: int
    overall_success_rate: float
    # from the start of the degradation to the verified action; time to *recovery* (back to
    # normal) comes from the transitions, not from outcomes (ruvector_healing_effectiveness())
    mean_time_to_verification_seconds: float | None


def effectiveness(
    outcomes: Iterable[OutcomeRow], weights: dict[str, float] | None = None
) -> EffectivenessReport:
    rows = list(outcomes)
    stats = strategy_weights(rows)
    if weights is not None:  # frozen or persisted weights win over the recomputed ones
        stats = {
            k: StrategyStats(
                v.name,
                weights.get(k, v.weight),
                v.attempts,
                v.successes,
                v.success_rate,
                v.avg_improvement,
            )
            for k, v in stats.items()
        }
    verified = [
        o.time_to_verification_seconds
        for o in rows
        if o.effective and o.time_to_verification_seconds is not None
    ]
    return EffectivenessReport(
        tuple(stats.values()),
        len(rows),
        sum(1 for o in rows if o.effective) / len(rows) if rows else 0.0,
        sum(verified) / len(verified) if verified else None,
    )
