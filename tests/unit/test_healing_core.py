"""Classifier, strategy selection and the learning formula: pure, no database."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import pytest

from ruvectord.config import ClassifierConfig
from ruvectord.healing.learning import OutcomeRow, effectiveness, strategy_weights
from ruvectord.healing.problems import (
    CentroidSkew,
    HotspotCongestion,
    IndexFragmentation,
    MaintenanceContention,
    MemoryPressure,
    ProblemKind,
    ReplicationLag,
    Unknown,
    classify,
    problem_from_json,
)
from ruvectord.healing.strategy import RemediationContext, RemediationResult, StrategyRegistry
from ruvectord.integrity.evaluate import IntegrityResult, evaluate
from ruvectord.integrity.graph import build
from ruvectord.integrity.snapshot import (
    CentroidStats,
    IndexStats,
    MaintenanceJob,
    MemoryStats,
    ReplicaStats,
    Snapshot,
    rates,
)
from tests.unit.test_graph import BUDGETS, snapshots

RULES = ClassifierConfig()


def judge(before: Snapshot, after: Snapshot, rules: ClassifierConfig = RULES) -> Any:
    result: IntegrityResult = evaluate(build(after, rates(before, after), BUDGETS), lambda2=False)
    return classify(result, after, rules)


def test_hotspot_names_the_hot_partition_and_its_load_ratio() -> None:
    ops = dict.fromkeys(range(8), 10)
    ops[5] = 3000
    problem = judge(*snapshots(ops=ops))
    assert isinstance(problem, HotspotCongestion)
    assert problem.partition_ids == (1005,) and problem.partition_names == ("public.items_p5",)
    assert problem.load_ratio == pytest.approx(3000 / ((3000 + 70) / 8), rel=1e-3)


def test_hotspot_threshold_is_configurable() -> None:
    ops = dict.fromkeys(range(8), 10)
    ops[5] = 3000
    # four weak partition links: not "more than 4"
    rules = RULES.model_copy(update={"hotspot_partition_links": 4})
    assert not isinstance(judge(*snapshots(ops=ops), rules), HotspotCongestion)


def test_centroid_skew() -> None:
    counts = [100] * 20 + [5000] * 10
    problem = judge(
        *snapshots(centroids=tuple(CentroidStats(i, c, None) for i, c in enumerate(counts)))
    )
    assert isinstance(problem, CentroidSkew)
    assert problem.centroid_ids == tuple(range(20, 30))
    assert problem.skew_factor == pytest.approx(5000 / (52000 / 30), rel=1e-3)


def test_replication_lag() -> None:
    rep = ReplicaStats("standby1", 4242, "streaming", "async", 12.5, 300 * 1024 * 1024)
    problem = judge(*snapshots(replicas=(rep,)))
    assert problem == ReplicationLag((4242,), ("standby1",), 12.5, 300 * 1024 * 1024)


def test_maintenance_contention_needs_more_than_two_dependency_edges() -> None:
    job = MaintenanceJob(77, "vacuum_full", "VACUUM FULL", tuple(1000 + i for i in range(3)), 4)
    problem = judge(*snapshots(maintenance=(job,)))
    assert problem == MaintenanceContention(("vacuum_full",), (77,), 4)
    narrow = replace(job, partitions=(1000, 1001))
    assert isinstance(judge(*snapshots(maintenance=(narrow,))), Unknown)


def test_memory_pressure_from_the_snapshot() -> None:
    ix = IndexStats(5000, "public.items_p1_idx", 1001, "hnsw", 8192, True)
    before, after = snapshots(indexes=(ix,))
    parts = list(after.partitions)
    parts[1] = replace(parts[1], dead_tuples=2500)  # degraded, but not a graph pattern
    after = replace(
        after,
        partitions=tuple(parts),
        memory=MemoryStats(100, 10),
        largest_relations=(("public.items_p1", 999),),
    )
    problem = judge(before, after)
    assert problem == MemoryPressure(90.0, (("public.items_p1", 999),))


def test_index_fragmentation_above_thirty_percent() -> None:
    ix = IndexStats(5000, "public.items_p1_idx", 1001, "hnsw", 8192, True)
    before, after = snapshots(indexes=(ix,))
    parts = list(after.partitions)
    parts[1] = replace(parts[1], dead_tuples=5000)  # 33 %
    problem = judge(before, replace(after, partitions=tuple(parts)))
    assert problem == IndexFragmentation((5000,), ("public.items_p1_idx",), 33.33)


def test_everything_else_is_unknown_and_so_is_a_healthy_cut() -> None:
    problem = judge(*snapshots())
    assert isinstance(problem, Unknown) and "partition_link" in problem.witness_summary


def test_problems_round_trip_through_the_journal() -> None:
    for p in (
        HotspotCongestion((1,), ("a",), 2.5),
        MemoryPressure(91.0, (("t", 5),)),
        ReplicationLag((1,), ("r",), 1.0, 5),
        Unknown("x"),
    ):
        assert problem_from_json(p.kind.value, p.details()) == p


@dataclass
class Named:
    name: str
    impact: float
    handles: frozenset[ProblemKind] = frozenset({ProblemKind.HOTSPOT_CONGESTION})
    estimated_duration: float = 1.0
    reversible: bool = True
    supports_dry_run: bool = False
    lift_on_recovery: bool = False
    leased: bool = False

    async def plan(self, ctx: RemediationContext) -> dict[str, Any]:
        return {}

    async def renew(self, ctx: RemediationContext) -> bool:
        return True

    async def execute(self, ctx: RemediationContext) -> RemediationResult:
        return RemediationResult(True)

    async def rollback(self, ctx: RemediationContext) -> None:
        return None


HOT = HotspotCongestion((1,), ("p1",), 4.0)


def test_selection_prefers_weight_then_lower_impact_then_name() -> None:
    reg = StrategyRegistry([Named("b_mid", 0.3), Named("a_low", 0.1), Named("c_low", 0.1)])
    assert reg.select(HOT, 0.5).strategy.name == "a_low"  # type: ignore[union-attr]
    reg.weights = {"b_mid": 1.4}
    chosen = reg.select(HOT, 0.5)
    assert chosen.strategy is not None and chosen.strategy.name == "b_mid"
    assert chosen.reason == "b_mid (weight 1.40, impact 0.3)"
    assert chosen.candidates == ("b_mid", "a_low", "c_low")
    reg.weights = {"a_low": 0.0}  # a strategy that never worked loses to an untried one
    assert reg.select(HOT, 0.5).strategy.name == "c_low"  # type: ignore[union-attr]


def test_selection_respects_impact_and_class() -> None:
    reg = StrategyRegistry([Named("heavy", 0.9)])
    assert reg.select(HOT, 0.5).strategy is None
    assert "exceeds impact 0.5" in reg.select(HOT, 0.5).reason
    assert reg.select(Unknown("x"), 1.0).reason == "no strategy handles Unknown"
    with pytest.raises(ValueError, match="registered twice"):
        reg.register(Named("heavy", 0.1))
    with pytest.raises(ValueError, match=r"impact 1\.5 not in 0\.\.1"):
        reg.register(Named("silly", 1.5))


T = datetime(2026, 1, 1, tzinfo=UTC)


def test_weight_formula_worked_example() -> None:
    """throttle: 4 attempts, 3 verified; improvements 30 %, 20 %, 10 %, -20 % (in percent).

    success rate 3/4 = 0.75; average improvement (0.3 + 0.2 + 0.1 - 0.2) / 4 = 0.1;
    weight = 0.75 * (1 + 0.1) = 0.825.
    """
    rows = [
        OutcomeRow("throttle", True, True, 30.0, T),
        OutcomeRow("throttle", True, True, 20.0, T),
        OutcomeRow("throttle", True, True, 10.0, T),
        OutcomeRow("throttle", False, False, -20.0, T),
        OutcomeRow("rebalance", True, False, None, T),  # succeeded, never verified
    ]
    stats = strategy_weights(rows)
    assert stats["throttle"].weight == pytest.approx(0.825)
    assert stats["throttle"].success_rate == 0.75
    assert stats["throttle"].avg_improvement == pytest.approx(0.1)
    assert stats["rebalance"].weight == 0.0
    report = effectiveness(rows, {"throttle": 0.5})  # persisted (frozen) weights win
    assert report.strategies[1].name == "throttle" and report.strategies[1].weight == 0.5
    assert report.overall_success_rate == pytest.approx(3 / 5)
    assert report.lines()[-1].startswith("overall: 5 attempt(s), 60% verified")
