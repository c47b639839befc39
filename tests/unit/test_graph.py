"""The contracted graph: capacity formulas, structural weights, and what each fault looks like."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ruvectord.config import Budgets
from ruvectord.integrity.evaluate import evaluate
from ruvectord.integrity.graph import EdgeKind, NodeKind, build, partition_health, ring_pairs
from ruvectord.integrity.snapshot import (
    CentroidStats,
    IndexStats,
    MaintenanceJob,
    PartitionStats,
    ReplicaStats,
    Snapshot,
    rates,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
BUDGETS = Budgets()


def partition(i: int, ops: int = 0, queue: int = 0, dead: int = 0) -> PartitionStats:
    return PartitionStats(
        oid=1000 + i,
        name=f"public.items_p{i}",
        bound=None,
        tenant=None,
        live_tuples=10_000,
        dead_tuples=dead,
        inserts=ops,
        updates=0,
        deletes=0,
        seq_scans=0,
        idx_scans=0,
        table_bytes=8192 * 100,
        index_bytes=8192 * 50,
        active_backends=queue,
        waiting_backends=0,
    )


def snapshots(
    n: int = 8, ops: dict[int, int] | None = None, **extra: object
) -> tuple[Snapshot, Snapshot]:
    """Two snapshots one second apart; `ops` = operations per partition in that second."""
    ops = ops or dict.fromkeys(range(n), 100)
    before = Snapshot("items", T0, tuple(partition(i) for i in range(n)))
    after = Snapshot(
        "items",
        T0 + timedelta(seconds=1),
        tuple(partition(i, ops=ops.get(i, 0)) for i in range(n)),
    )
    return before, replace(after, **extra)  # type: ignore[arg-type]


def graph_of(before: Snapshot, after: Snapshot, budgets: Budgets = BUDGETS):  # type: ignore[no-untyped-def]
    return build(after, rates(before, after), budgets)


def test_a_healthy_system_is_as_connected_as_its_topology() -> None:
    g = graph_of(*snapshots())
    assert all(e.capacity == 1.0 for e in g.edges)
    result = evaluate(g, lambda2=True)
    assert result.lambda_cut == 1.0
    assert result.lambda2 is not None and result.lambda2 > 0
    kinds = Counter(n.kind for n in g.nodes)
    assert kinds == {NodeKind.GATEWAY: 1, NodeKind.PARTITION: 8}


def test_capacities_follow_the_spec_formulas() -> None:
    before, after = snapshots(n=4)
    after = replace(
        after, partitions=(replace(after.partitions[0], active_backends=8), *after.partitions[1:])
    )
    g = graph_of(before, after)
    routing = [e for e in g.edges if e.kind is EdgeKind.ROUTING]
    assert routing[0].capacity == 1 - 8 / 32 and routing[0].reason == "queue 8/32"
    assert {e.weight for e in routing} == {0.5}
    # every healthy star is worth 1.0
    for node in g.nodes[1:]:
        star = sum(e.weight for e in g.edges if node.index in (e.source, e.target))
        assert star == pytest.approx(1.0)


def test_a_hot_partition_is_cut_off_by_its_routing_and_partition_links() -> None:
    ops = dict.fromkeys(range(8), 10)
    ops[3] = 2000
    g = graph_of(*snapshots(ops=ops))
    result = evaluate(g, lambda2=False)
    assert result.lambda_cut < 0.8
    kinds = Counter(g.edges[i].kind for i in result.witness_indices)
    assert kinds == {EdgeKind.PARTITION_LINK: 4, EdgeKind.ROUTING: 1}
    assert [g.nodes[i].name for i in result.cut_side] == ["public.items_p3"]
    assert result.summary() == "4 partition_link + 1 routing around public.items_p3"


def test_skew_without_load_is_not_a_hotspot() -> None:
    ops = dict.fromkeys(range(8), 0)
    ops[3] = 5  # all the load, but five operations a second
    result = evaluate(graph_of(*snapshots(ops=ops)), lambda2=False)
    assert result.lambda_cut > 0.95


def test_even_heavy_load_is_not_a_hotspot() -> None:
    result = evaluate(graph_of(*snapshots(ops=dict.fromkeys(range(8), 50_000))), lambda2=False)
    assert result.lambda_cut == 1.0


def test_partition_health_formula() -> None:
    assert partition_health(100, 100, BUDGETS) == (1.0, 1.0)
    health, ratio = partition_health(800, 100, BUDGETS)
    assert ratio == 8 and health == 1 / (1 + (8 / 2 - 1) * 1)
    health, _ = partition_health(100, 12.5, BUDGETS)  # same skew, half the intensity
    assert health == 1 / (1 + 3 * 0.5)


def test_a_blocking_maintenance_job_degrades_with_how_many_it_blocks_and_how_long() -> None:
    job = MaintenanceJob(
        pid=42,
        kind="lock",
        description="LOCK TABLE items IN SHARE MODE",
        partitions=tuple(1000 + i for i in range(8)),
        blocking=5,
        blocked_seconds=20.0,  # five writers, four seconds each
    )
    g = graph_of(*snapshots(maintenance=(job,)))
    result = evaluate(g, lambda2=False)
    assert result.lambda_cut == pytest.approx(1 / (1 + 20.0 / BUDGETS.lock_wait_budget_seconds))
    # its hold on each partition is a leaf of its own; the cut takes one of them
    holds = [e for e in g.edges if e.kind is EdgeKind.DEPENDENCY]
    assert len(holds) == 8 and len({e.source for e in holds}) == 8
    (edge,) = [g.edges[i] for i in result.witness_indices]
    assert edge.kind is EdgeKind.DEPENDENCY and edge.reason == "blocks 5 backend(s), 20.0 s waited"
    assert g.nodes[edge.target].attrs["partitions_touched"] == 8
    # more waiting, by more writers or for longer, reads lower; never a constant
    readings = [
        evaluate(
            graph_of(*snapshots(maintenance=(replace(job, blocked_seconds=s),))), lambda2=False
        )
        for s in (0.5, 5.0, 50.0, 500.0)
    ]
    lambdas = [r.lambda_cut for r in readings]
    assert lambdas == sorted(lambdas, reverse=True) and len(set(lambdas)) == 4
    assert lambdas[0] > 0.95  # a writer that waited half a second is no incident
    # the same job not blocking anyone is harmless
    calm = replace(job, blocking=0, blocked_seconds=0.0)
    assert evaluate(graph_of(*snapshots(maintenance=(calm,))), lambda2=False).lambda_cut == 1.0


def test_a_lagging_replica_shows_as_a_replication_edge() -> None:
    lagging = ReplicaStats("standby1", 7, "streaming", "async", 3.0, 200 * 1024 * 1024)
    g = graph_of(*snapshots(replicas=(lagging,)))
    result = evaluate(g, lambda2=False)
    (edge,) = [g.edges[i] for i in result.witness_indices]
    assert edge.kind is EdgeKind.REPLICATION
    assert abs(edge.capacity - (1 - 200 / 256)) < 1e-12
    stopped = replace(lagging, state="catchup", lag_bytes=0)
    assert evaluate(graph_of(*snapshots(replicas=(stopped,))), lambda2=False).lambda_cut == 0.01


def test_an_invalid_or_fragmented_index_degrades_its_route() -> None:
    ix = IndexStats(
        oid=5000,
        name="public.items_p1_embedding_idx",
        partition_oid=1001,
        method="hnsw",
        bytes=8192 * 400,
        valid=True,
    )
    before, after = snapshots(indexes=(ix,))
    parts = list(after.partitions)
    parts[1] = replace(parts[1], dead_tuples=5000)  # a third of the rows are dead
    g = graph_of(before, replace(after, partitions=tuple(parts)))
    result = evaluate(g, lambda2=False)
    assert abs(result.lambda_cut - (1 - (5000 / 15000) / 0.6)) < 1e-9
    idx = next(n for n in g.nodes if n.kind is NodeKind.INDEX)
    assert idx.attrs["fragmentation_pct"] == 33.33
    broken = evaluate(graph_of(*snapshots(indexes=(replace(ix, valid=False),))), lambda2=False)
    assert broken.lambda_cut == 0.01


def test_skewed_centroids_are_cut_off_together() -> None:
    counts = [100] * 20 + [5000] * 10
    cents = tuple(CentroidStats(i, c, None) for i, c in enumerate(counts))
    g = graph_of(*snapshots(centroids=cents))
    result = evaluate(g, lambda2=False)
    assert result.lambda_cut < 0.8
    centroid_nodes = {
        end
        for i in result.witness_indices
        for end in (g.edges[i].source, g.edges[i].target)
        if g.nodes[end].kind is NodeKind.CENTROID
    }
    assert len(centroid_nodes) > 5


def test_max_centroids_caps_the_graph() -> None:
    cents = tuple(CentroidStats(i, 100 + i, None) for i in range(3000))
    g = graph_of(*snapshots(centroids=cents))
    assert sum(1 for n in g.nodes if n.kind is NodeKind.CENTROID) == 1000


def test_ring_pairs_give_every_partition_the_configured_neighbours() -> None:
    for n in range(2, 40):
        pairs = ring_pairs(n, 4)
        degree = Counter(x for p in pairs for x in p)
        assert set(degree.values()) == {min(4, n - 1)}, n
    assert ring_pairs(1, 4) == ()


@settings(max_examples=100, deadline=None)
@given(
    n=st.integers(1, 40),
    loads=st.lists(st.integers(0, 5000), min_size=40, max_size=40),
    queues=st.lists(st.integers(0, 64), min_size=40, max_size=40),
)
def test_capacities_stay_in_range_and_lambda_is_normalised(
    n: int, loads: list[int], queues: list[int]
) -> None:
    before, after = snapshots(n=n, ops=dict(enumerate(loads[:n])))
    after = replace(
        after,
        partitions=tuple(
            replace(p, active_backends=queues[i]) for i, p in enumerate(after.partitions)
        ),
    )
    g = graph_of(before, after)
    assert all(0.01 <= e.capacity <= 1.0 for e in g.edges)
    result = evaluate(g, lambda2=False)
    assert 0.0 < result.lambda_cut <= 1.0


def test_the_summary_names_the_part_cut_off_from_the_gateway() -> None:
    """On a plain table the skewed lists outnumber the rest: still, they are what is cut off."""
    counts = [3000] + [100] * 9
    lists = tuple(CentroidStats(i, c, None, 77) for i, c in enumerate(counts))
    ivf = IndexStats(77, "public.items_ivf", 1000, "ivfflat", 8192, True)
    result = evaluate(graph_of(*snapshots(n=1, indexes=(ivf,), centroids=lists)), lambda2=False)
    assert result.lambda_cut < 0.8
    assert 0 in result.cut_side  # the smaller side: gateway, table, index
    assert result.summary().startswith("10 centroid_route around public.items_ivf lists, list 0")
