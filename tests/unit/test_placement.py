"""The pure parts of the moving strategies: partition bounds, the declaration, selection."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from ruvectord.config import Config, PlacementConfig, parse_config
from ruvectord.errors import ConfigError
from ruvectord.healing import moves
from ruvectord.healing.problems import HotspotCongestion, MemoryPressure
from ruvectord.healing.strategies import builtin_registry


def test_partition_bounds_give_a_value_that_routes_there() -> None:
    assert moves.list_values("FOR VALUES IN (3)") == ("3",)
    assert moves.list_values("FOR VALUES IN ('a', 'b''c', NULL)") == ("a", "b'c")
    assert moves.list_values("FOR VALUES FROM (0) TO (10)") is None
    assert moves.range_bounds("FOR VALUES FROM (0) TO (10)") == (0, 10)
    assert moves.range_bounds("FOR VALUES FROM (MINVALUE) TO (5)") == (None, 5)
    assert moves.value_for("FOR VALUES IN (7, 8)") == "7"
    assert moves.value_for("FOR VALUES FROM (20) TO (30)") == "20"
    assert moves.value_for("FOR VALUES FROM (MINVALUE) TO (30)") is None
    p = moves.Partition("public.t_r", "FOR VALUES FROM (20) TO (30)", "20", 0, 0, ())
    assert p.holds("29") and not p.holds("30") and not p.holds("x")
    q = moves.Partition("public.t_l", "FOR VALUES IN ('-1')", "-1", 0, 0, ())
    assert q.holds("-1") and not q.holds("1")


def test_coldest_never_picks_the_hot_or_an_unroutable_partition() -> None:
    parts = [
        moves.Partition(f"p{i}", f"FOR VALUES IN ({i})", str(i), 100, ops, ())
        for i, ops in enumerate([50, 5, 500, 1])
    ] + [moves.Partition("pd", "DEFAULT", None, 0, 0, ())]
    assert [p.name for p in moves.coldest(parts, {"p3"}, 2)] == ["p1", "p0"]
    cfg = PlacementConfig(column="shard", max_rows_per_batch=10, max_rows_per_action=50)
    hot = moves.Partition("h", "FOR VALUES IN (9)", "9", 1000, 0, ())
    assert moves.rows_to_move(hot, parts[:2], cfg) == 50  # the action's bound
    assert moves.rows_to_move(parts[0], parts[1:2], cfg) == 10  # at least a batch


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("{column: shard, max_rows_per_batch: 500, max_rows_per_action: 100}", "is greater than"),
        ("{column: id}", "column and key_column are both id"),
        ("{key_column: id}", "placement.column: required key is missing"),
        ("{column: shard, cold: {value: 1}}", "placement.cold.age_column: required key"),
        ("{column: shard, max_batches_per_second: 0}", "max_batches_per_second: 0 is not > 0"),
    ],
)
def test_a_bad_declaration_is_refused_naming_the_key(text: str, problem: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config(
            f"collections:\n  - {{name: items, table: t, vector_column: v, placement: {text}}}\n",
            env={},
        )
    assert any(problem in p for p in exc.value.problems), exc.value.problems


def _config(placement: str) -> Callable[[], Config]:
    cfg = parse_config(
        f"collections:\n  - {{name: items, table: t, vector_column: v{placement}}}\n", env={}
    )
    return lambda: cfg


def test_without_a_declaration_the_strategies_say_why_they_are_not_offered() -> None:
    hot = HotspotCongestion((1,), ("public.t_p3",), 7.0)
    registry = builtin_registry(config=_config(""))
    chosen = registry.select(hot, 0.5, collection="items")
    assert chosen.strategy is not None and chosen.strategy.name == "throttle_ingestion"
    assert chosen.notes == (
        "not offered: drain_hot_partition, rebalance_partitions (placement not declared for items)",
    )
    memory = registry.select(MemoryPressure(95.0, ()), 0.5, collection="items")
    assert memory.notes == ("not offered: evict_cold_data (placement not declared for items)",)


def test_with_a_declaration_the_lower_impact_wins_a_tie_and_weights_decide_after() -> None:
    hot = HotspotCongestion((1,), ("public.t_p3",), 7.0)
    registry = builtin_registry(config=_config(", placement: {column: shard}"))
    first = registry.select(hot, 0.5, collection="items")
    assert first.strategy is not None and first.strategy.name == "rebalance_partitions"
    assert set(first.candidates) == {
        "rebalance_partitions",
        "throttle_ingestion",
        "drain_hot_partition",
    }
    registry.weights = {"rebalance_partitions": 0.0, "throttle_ingestion": 1.66}
    again = registry.select(hot, 0.5, collection="items")
    assert again.strategy is not None and again.strategy.name == "throttle_ingestion"
    # evict needs a cold tier too
    memory = registry.select(MemoryPressure(95.0, ()), 0.5, collection="items")
    assert memory.notes == (
        "not offered: evict_cold_data (no cold tier declared for items (placement.cold))",
    )
