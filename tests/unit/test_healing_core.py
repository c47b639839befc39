"""Classifier, strategy selection and the learning formula: pure, no database."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ruvectord.config import ClassifierConfig, parse_config
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
    deficit,
    problem_from_json,
)
from ruvectord.healing.strategy import RemediationContext, RemediationResult, StrategyRegistry
from ruvectord.integrity.evaluate import IntegrityResult, evaluate
from ruvectord.integrity.graph import build, expected_index_bytes
from ruvectord.integrity.snapshot import (
    CentroidStats,
    DatabaseStats,
    IndexStats,
    MaintenanceJob,
    MemoryStats,
    ReplicaStats,
    Snapshot,
    rates,
)
from tests.unit.test_calibration import FAULTS, Shape, shapes
from tests.unit.test_graph import BUDGETS, snapshots

RULES = ClassifierConfig()


def judge(before: Snapshot, after: Snapshot, rules: ClassifierConfig = RULES) -> Any:
    result: IntegrityResult = evaluate(build(after, rates(before, after), BUDGETS), lambda2=False)
    return classify(result, after, rules)


def lam(before: Snapshot, after: Snapshot) -> float:
    return evaluate(build(after, rates(before, after), BUDGETS), lambda2=False).lambda_cut


def test_hotspot_names_the_hot_partition_and_its_load_ratio() -> None:
    ops = dict.fromkeys(range(8), 10)
    ops[5] = 3000
    problem = judge(*snapshots(ops=ops))
    assert isinstance(problem, HotspotCongestion)
    assert problem.partition_ids == (1005,) and problem.partition_names == ("public.items_p5",)
    assert problem.load_ratio == pytest.approx(3000 / ((3000 + 70) / 8), rel=1e-3)


def with_errors(before: Snapshot, after: Snapshot, rate: float) -> tuple[Snapshot, Snapshot]:
    """Deadlocks and conflicts in `rate` of the transactions between the two samples."""
    errors = round(1000 * rate)
    return (
        replace(before, database=DatabaseStats(1000, 0, 0, 0, 0, 0)),
        replace(after, database=DatabaseStats(2000, 0, errors, 0, 0, 0)),
    )


def test_a_class_needs_min_share_of_the_missing_capacity() -> None:
    ops = dict.fromkeys(range(8), 10)
    ops[5] = 3000
    before, after = with_errors(*snapshots(ops=ops), rate=0.2)
    result = evaluate(build(after, rates(before, after), BUDGETS), lambda2=False)
    d = deficit(result)
    hot = d.share(ProblemKind.HOTSPOT_CONGESTION.value)
    assert 0.5 < hot < 0.9 and d.share("errors") == pytest.approx(1 - hot)
    assert isinstance(classify(result, after, RULES), HotspotCongestion)
    strict = RULES.model_copy(update={"min_share": 0.9})
    problem = classify(result, after, strict)
    assert isinstance(problem, Unknown)
    assert f"missing capacity: HotspotCongestion {hot:.0%}, errors" in problem.witness_summary


def test_retired_classifier_keys_warn_and_change_nothing() -> None:
    for key, value in [
        ("hotspot_partition_links", 3),
        ("skew_centroids", 5),
        ("contention_dependencies", 2),
        ("fragmentation_pct", 30.0),
    ]:
        with pytest.warns(FutureWarning, match=f"healing.classifier.{key} is ignored"):
            config = parse_config(f"healing:\n  classifier:\n    {key}: {value}\n")
        assert config.healing.classifier == ClassifierConfig()


def test_centroid_skew() -> None:
    counts = [100] * 20 + [5000] * 10
    problem = judge(
        *snapshots(centroids=tuple(CentroidStats(i, c, None) for i, c in enumerate(counts)))
    )
    assert isinstance(problem, CentroidSkew)
    assert problem.centroid_ids == tuple(range(20, 30))
    assert problem.skew_factor == pytest.approx(5000 / (52000 / 30), rel=1e-3)


def test_centroid_skew_reads_the_same_with_or_without_latency_figures() -> None:
    """3 ms of a 100 ms budget on every list: the same three skewed lists, the same class."""
    counts = [1500] * 3 + [100] * 7
    bare = tuple(CentroidStats(i, c, None, 77) for i, c in enumerate(counts))
    timed = tuple(replace(c, latency_ms=3.0) for c in bare)
    ivf = IndexStats(77, "public.items_ivf", 1001, "ivfflat", 8192, True)
    problems = [judge(*snapshots(indexes=(ivf,), centroids=lists)) for lists in (bare, timed)]
    assert problems[0] == problems[1] == CentroidSkew((0, 1, 2), 2.885, ("public.items_ivf",))


def test_replication_lag() -> None:
    rep = ReplicaStats("standby1", 4242, "streaming", "async", 12.5, 300 * 1024 * 1024)
    problem = judge(*snapshots(replicas=(rep,)))
    assert problem == ReplicationLag((4242,), ("standby1",), 12.5, 300 * 1024 * 1024)


@pytest.mark.parametrize("touched", [1, 3, 8])
def test_maintenance_contention_from_one_job_on_any_number_of_partitions(touched: int) -> None:
    job = MaintenanceJob(
        77, "vacuum_full", "VACUUM FULL", tuple(1000 + i for i in range(touched)), 4, 30.0, 20.0
    )
    assert judge(*snapshots(maintenance=(job,))) == MaintenanceContention(
        ("vacuum_full",), (77,), 4
    )


def test_memory_pressure_when_the_cut_explains_nothing() -> None:
    before, after = with_errors(*snapshots(), rate=0.3)  # errors lower every edge alike
    after = replace(
        after, memory=MemoryStats(100, 10), largest_relations=(("public.items_p1", 999),)
    )
    assert judge(before, after) == MemoryPressure(90.0, (("public.items_p1", 999),))
    calm = replace(after, memory=MemoryStats(100, 60))
    assert isinstance(judge(before, calm), Unknown)


def fragmented(dead: int, **index: Any) -> tuple[Snapshot, Snapshot]:
    ix = IndexStats(5000, "public.items_p1_idx", 1001, "hnsw", 8192, True, **index)
    before, after = snapshots(indexes=(ix,))
    parts = list(after.partitions)
    parts[1] = replace(parts[1], dead_tuples=dead)
    return before, replace(after, partitions=tuple(parts))


@pytest.mark.parametrize(("dead", "pct"), [(1500, 13.04), (2500, 20.0), (3900, 28.06)])
def test_fragmentation_classifies_wherever_it_lowers_lambda(dead: int, pct: float) -> None:
    """12-30 % dead: under 0.8, and IndexFragmentation (it used to take more than 30 %)."""
    before, after = fragmented(dead)
    assert lam(before, after) < 0.8
    assert judge(before, after) == IndexFragmentation((5000,), ("public.items_p1_idx",), pct)


def test_index_bloat_survives_page_pruning() -> None:
    """47 % of the index entries dead, n_dead_tup pruned down to 0: the size still says so."""
    live = 10_000
    healthy = IndexStats(5000, "i", 1001, "hnsw", 0, True, {}, "vector", 16)
    expected = expected_index_bytes(healthy, live)
    assert expected is not None
    bloated = {"vector_type": "vector", "dims": 16, "options": {}}
    before, after = fragmented(0, **bloated)
    ix = replace(after.indexes[0], bytes=round(expected / 0.53))
    after = replace(after, indexes=(ix,))
    problem = judge(before, after)
    assert isinstance(problem, IndexFragmentation)
    assert problem.fragmentation_pct == pytest.approx(47.0, abs=0.1)
    # a healthy index of the same rows is not bloated
    fine = replace(after, indexes=(replace(ix, bytes=round(expected * 0.97)),))
    assert lam(before, fine) == 1.0


def test_everything_else_is_unknown_and_so_is_a_healthy_cut() -> None:
    problem = judge(*snapshots())
    assert isinstance(problem, Unknown) and "partition_link" in problem.witness_summary


EXPECTED = {
    "fragmented index": ProblemKind.INDEX_FRAGMENTATION,
    "lagging replica": ProblemKind.REPLICATION_LAG,
    "blocking job": ProblemKind.MAINTENANCE_CONTENTION,
    "queued partition": ProblemKind.HOTSPOT_CONGESTION,
    "skewed IVF lists": ProblemKind.CENTROID_SKEW,
}


@settings(max_examples=60, deadline=None)
@given(shape=shapes(), fault=st.sampled_from(sorted(FAULTS)), severity=st.floats(0.0, 1.0))
def test_every_fault_that_lowers_lambda_fires_its_class(
    shape: Shape, fault: str, severity: float
) -> None:
    """One source of truth: wherever a single fault takes lambda under 0.8, its class fires."""
    before, after, _ = FAULTS[fault](shape, severity)
    result = evaluate(build(after, rates(before, after), BUDGETS), lambda2=False)
    if result.lambda_cut >= 0.8:
        return
    assert classify(result, after, RULES).kind is EXPECTED[fault], result.witness_edges


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
        OutcomeRow("throttle", True, True, 30.0, T, time_to_verification_seconds=40.0),
        OutcomeRow("throttle", True, True, 20.0, T, time_to_verification_seconds=20.0),
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
    assert report.attempts == 5
    # over the verified attempts that know it; recovery is the transitions' business
    assert report.mean_time_to_verification_seconds == pytest.approx(30.0)
