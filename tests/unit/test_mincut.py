"""Tests for ruvectord.integrity.mincut: exactness against networkx, invariants, validation."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from contextlib import contextmanager
from unittest import mock

import networkx as nx
import numpy as np
import pytest
import scipy.sparse.linalg
from hypothesis import given, settings
from hypothesis import strategies as st

from ruvectord.integrity import mincut
from ruvectord.integrity.mincut import (
    LambdaCut,
    MinCut,
    algebraic_connectivity,
    lambda_cut,
    min_cut,
)

Edges = list[tuple[int, int]]
Graph = tuple[int, Edges, list[float]]

TOLERANCE = 1e-9

# "auto" uses the module's size thresholds; the others force the Padberg-Rinaldi reduction on
# small graphs (where igraph alone would run) with and without the triangle tests.
MODES = ("auto", "contract", "contract+triangles")


@contextmanager
def cut_mode(mode: str) -> Iterator[None]:
    if mode == "auto":
        yield
        return
    with (
        mock.patch.object(mincut, "_DIRECT_MAX_NODES", 0),
        mock.patch.object(
            mincut, "_TRIANGLE_MIN_NODES", 0 if mode == "contract+triangles" else 10**9
        ),
    ):
        yield


# --- reference helpers -----------------------------------------------------------------------


def to_networkx(num_nodes: int, edges: Edges, caps: list[float]) -> nx.Graph:
    """Simple weighted graph: parallel edges merged (capacities add), self-loops dropped."""
    graph = nx.Graph()
    graph.add_nodes_from(range(num_nodes))
    for (u, v), c in zip(edges, caps, strict=True):
        if u == v:
            continue
        if graph.has_edge(u, v):
            graph[u][v]["weight"] += c
        else:
            graph.add_edge(u, v, weight=c)
    return graph


def smallest_component(components: list[set[int]]) -> frozenset[int]:
    chosen = min(components, key=lambda comp: (len(comp), min(comp)))
    return frozenset(chosen)


def check_cut(num_nodes: int, edges: Edges, caps: list[float], result: MinCut) -> None:
    """Assert `result` is an exact minimum cut with consistent side and witness."""
    side = result.side
    assert side, "side must be non-empty"
    assert len(side) < num_nodes, "side must be a proper subset"
    assert side <= frozenset(range(num_nodes))
    assert 2 * len(side) <= num_nodes, "side is the smaller side"

    crossing = tuple(i for i, (u, v) in enumerate(edges) if (u in side) != (v in side))
    assert result.witness == crossing
    assert list(result.witness) == sorted(result.witness)
    assert result.value == math.fsum(caps[i] for i in result.witness)

    graph = to_networkx(num_nodes, edges, caps)
    if nx.is_connected(graph):
        assert result.connected
        expected, _ = nx.stoer_wagner(graph)
        assert abs(result.value - expected) <= TOLERANCE
        positive = graph.edge_subgraph(
            [(u, v) for u, v, w in graph.edges(data="weight") if w > 0]
        ).copy()
        positive.add_nodes_from(range(num_nodes))
        if not nx.is_connected(positive):
            assert result.value == 0.0
            components = [set(c) for c in nx.connected_components(positive)]
            assert side == smallest_component(components)
    else:
        assert not result.connected
        assert result.value == 0.0
        assert result.witness == ()
        components = [set(c) for c in nx.connected_components(graph)]
        assert side == smallest_component(components)


def dense_lambda2(num_nodes: int, edges: Edges, weights: list[float]) -> float:
    laplacian = np.zeros((num_nodes, num_nodes))
    for (u, v), w in zip(edges, weights, strict=True):
        if u == v:
            continue
        laplacian[u, v] -= w
        laplacian[v, u] -= w
        laplacian[u, u] += w
        laplacian[v, v] += w
    return float(np.linalg.eigvalsh(laplacian)[1])


# --- graph generators --------------------------------------------------------------------------

capacities = st.one_of(
    st.sampled_from([0.0, 0.25, 0.5, 1.0, 1.0, 2.0]),
    st.floats(min_value=0.01, max_value=10.0, allow_nan=False, allow_infinity=False),
)


@st.composite
def simple_graphs(draw: st.DrawFn, max_nodes: int = 40) -> Graph:
    """Simple graphs, connected about half the time, with mixed (equal, zero, random) capacities."""
    n = draw(st.integers(min_value=2, max_value=max_nodes))
    seen: set[tuple[int, int]] = set()
    edges: Edges = []

    def add(u: int, v: int) -> None:
        key = (min(u, v), max(u, v))
        if u != v and key not in seen:
            seen.add(key)
            edges.append((u, v))

    if draw(st.booleans()):
        order = draw(st.permutations(range(n)))
        for i in range(1, n):
            add(order[i], order[draw(st.integers(min_value=0, max_value=i - 1))])
    node = st.integers(min_value=0, max_value=n - 1)
    for u, v in draw(st.lists(st.tuples(node, node), max_size=3 * n)):
        add(u, v)
    caps = draw(st.lists(capacities, min_size=len(edges), max_size=len(edges)))
    return n, edges, caps


@st.composite
def multigraphs(draw: st.DrawFn, max_nodes: int = 30) -> Graph:
    """Connected multigraphs with parallel edges and self-loops."""
    n = draw(st.integers(min_value=2, max_value=max_nodes))
    node = st.integers(min_value=0, max_value=n - 1)
    edges: Edges = [(i, draw(st.integers(min_value=0, max_value=i - 1))) for i in range(1, n)]
    edges += draw(st.lists(st.tuples(node, node), max_size=4 * n))
    # Duplicate some edges outright so parallel edges are common, not just possible.
    edges += draw(st.lists(st.sampled_from(edges), max_size=n))
    caps = draw(st.lists(capacities, min_size=len(edges), max_size=len(edges)))
    return n, edges, caps


@st.composite
def clustered_graphs(draw: st.DrawFn) -> Graph:
    """Dense blocks joined by a few edges: the minimum cut is usually not a single node's star
    and the reduction cannot collapse it, so igraph's cut of the reduced graph has to win."""
    blocks = draw(st.integers(min_value=2, max_value=3))
    sizes = [draw(st.integers(min_value=4, max_value=12)) for _ in range(blocks)]
    offsets = [sum(sizes[:b]) for b in range(blocks)]
    n = sum(sizes)
    edges: Edges = []
    caps: list[float] = []
    heavy = st.one_of(
        st.sampled_from([1.0, 1.0, 2.0]),
        st.floats(min_value=0.5, max_value=2.0, allow_nan=False, allow_infinity=False),
    )
    for size, offset in zip(sizes, offsets, strict=True):
        ring = draw(st.permutations(range(size)))
        # A ring plus chords keeps every block 2-edge-connected.
        for i in range(size):
            edges.append((offset + ring[i], offset + ring[(i + 1) % size]))
            caps.append(draw(heavy))
        local = st.integers(min_value=0, max_value=size - 1)
        for u, v in draw(st.lists(st.tuples(local, local), min_size=size, max_size=3 * size)):
            if u != v:
                edges.append((offset + u, offset + v))
                caps.append(draw(heavy))
    for b in range(1, blocks):
        for _ in range(draw(st.integers(min_value=1, max_value=3))):
            u = draw(st.integers(min_value=0, max_value=offsets[b] - 1))
            v = offsets[b] + draw(st.integers(min_value=0, max_value=sizes[b] - 1))
            edges.append((u, v))
            caps.append(draw(st.floats(min_value=0.05, max_value=2.0)))
    return n, edges, caps


def synthetic_contracted(
    partitions: int, centroids: int, seed: int
) -> tuple[int, Edges, list[float], list[float]]:
    """A graph shaped like the contracted integrity graph: (num_nodes, edges, effective, unit).

    Gateway 0; partitions on a ring (4 nearest neighbours) each routed to the gateway; an index
    node per partition; IVF centroids on the gateway and an index; replicas; maintenance nodes.
    """
    rng = random.Random(seed)
    parts = list(range(1, partitions + 1))
    indexes = list(range(partitions + 1, 2 * partitions + 1))
    nxt = 2 * partitions + 1
    hot = rng.randrange(partitions)
    edges: Edges = []
    unit: list[float] = []
    health: list[float] = []

    def add(u: int, v: int, weight: float, hot_edge: bool = False) -> None:
        edges.append((u, v))
        unit.append(weight)
        health.append(rng.uniform(0.01, 0.3) if hot_edge else rng.uniform(0.3, 1.0))

    k = min(4, partitions - 1)
    links = {
        (min(i, (i + d) % partitions), max(i, (i + d) % partitions))
        for i in range(partitions)
        for d in (1, 2, -1, -2)
        if (i + d) % partitions != i
    }
    for i, p in enumerate(parts):
        add(0, p, 0.5, i == hot)
        add(0, indexes[i], 1.0, i == hot)
    for i, j in sorted(links):
        add(parts[i], parts[j], 1.0 / (2 * k), hot in (i, j))
    for c in range(centroids):
        add(0, nxt, 1.0 / (centroids + 1))
        add(nxt, indexes[c % partitions], 1.0, c % partitions == hot)
        nxt += 1
    for _ in range(rng.randint(0, 3)):
        add(0, nxt, 1.0)
        nxt += 1
    for _ in range(rng.randint(0, 3)):
        touched = rng.sample(parts, rng.randint(1, partitions))
        for p in touched:
            add(nxt, p, 1.0 / len(touched), p - 1 == hot)
        nxt += 1
    effective = [w * h for w, h in zip(unit, health, strict=True)]
    return nxt, edges, effective, unit


def random_connected(n: int, extra: int, seed: int) -> Graph:
    rng = random.Random(seed)
    edges: Edges = [(i, rng.randrange(i)) for i in range(1, n)]
    edges += [(rng.randrange(n), rng.randrange(n)) for _ in range(extra)]
    return n, edges, [rng.uniform(0.01, 1.0) for _ in edges]


def grid(side: int, seed: int) -> Graph:
    rng = random.Random(seed)
    edges: Edges = []
    for i in range(side):
        for j in range(side):
            if i + 1 < side:
                edges.append((i * side + j, (i + 1) * side + j))
            if j + 1 < side:
                edges.append((i * side + j, i * side + j + 1))
    return side * side, edges, [rng.choice([0.5, 1.0, rng.uniform(0.5, 1.0)]) for _ in edges]


def regular(degree: int, n: int, seed: int) -> Graph:
    edges = [(int(u), int(v)) for u, v in nx.random_regular_graph(degree, n, seed=seed).edges()]
    return n, edges, [1.0] * len(edges)


# --- min_cut: generated graphs -------------------------------------------------------------------


@settings(max_examples=250, deadline=None)
@given(graph=simple_graphs(), mode=st.sampled_from(MODES))
def test_min_cut_matches_networkx_on_simple_graphs(graph: Graph, mode: str) -> None:
    n, edges, caps = graph
    with cut_mode(mode):
        result = min_cut(n, edges, caps)
    check_cut(n, edges, caps, result)


@settings(max_examples=250, deadline=None)
@given(graph=multigraphs(), mode=st.sampled_from(MODES))
def test_min_cut_matches_networkx_on_multigraphs(graph: Graph, mode: str) -> None:
    n, edges, caps = graph
    with cut_mode(mode):
        result = min_cut(n, edges, caps)
    check_cut(n, edges, caps, result)


@settings(max_examples=250, deadline=None)
@given(graph=clustered_graphs(), mode=st.sampled_from(MODES))
def test_min_cut_matches_networkx_on_clustered_graphs(graph: Graph, mode: str) -> None:
    n, edges, caps = graph
    with cut_mode(mode):
        result = min_cut(n, edges, caps)
    check_cut(n, edges, caps, result)


@settings(max_examples=100, deadline=None)
@given(graph=st.one_of(simple_graphs(max_nodes=25), clustered_graphs()))
def test_min_cut_is_the_same_in_every_mode(graph: Graph) -> None:
    n, edges, caps = graph
    values = []
    for mode in MODES:
        with cut_mode(mode):
            values.append(min_cut(n, edges, caps).value)
    assert max(values) - min(values) <= TOLERANCE


# --- min_cut: structured graphs ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("partitions", "centroids", "seed"),
    [
        (2, 0, 1),
        (3, 0, 2),
        (4, 5, 3),
        (5, 0, 4),
        (8, 20, 5),
        (16, 0, 6),
        (16, 100, 7),
        (40, 0, 8),
        (64, 40, 9),
        (100, 60, 10),
    ],
)
@pytest.mark.parametrize("mode", MODES)
def test_min_cut_matches_networkx_on_contracted_graphs(
    partitions: int, centroids: int, seed: int, mode: str
) -> None:
    n, edges, effective, unit = synthetic_contracted(partitions, centroids, seed)
    assert n <= 300
    with cut_mode(mode):
        for caps in (effective, unit):
            check_cut(n, edges, caps, min_cut(n, edges, caps))


def two_expanders(n: int, bridges: int, seed: int) -> Graph:
    """Two random 6-regular graphs joined by `bridges` unit edges: nothing contracts and the
    minimum cut (the bridges) is far below every star."""
    _, left, _ = regular(6, n, seed)
    _, right, _ = regular(6, n, seed + 1)
    rng = random.Random(seed)
    edges = left + [(u + n, v + n) for u, v in right]
    edges += [(rng.randrange(n), n + rng.randrange(n)) for _ in range(bridges)]
    return 2 * n, edges, [1.0] * len(edges)


@pytest.mark.parametrize(
    "graph",
    [
        pytest.param(two_expanders(20, 2, 1), id="two-expanders-40"),
        pytest.param(two_expanders(80, 3, 2), id="two-expanders-160"),
        pytest.param(random_connected(60, 180, 1), id="random-60"),
        pytest.param(random_connected(150, 450, 2), id="random-150"),
        pytest.param(random_connected(300, 900, 3), id="random-300"),
        pytest.param(grid(12, 4), id="grid-12"),
        pytest.param(regular(4, 120, 5), id="regular4-120"),
        pytest.param(regular(6, 200, 6), id="regular6-200"),
    ],
)
def test_min_cut_matches_networkx_on_larger_graphs(graph: Graph) -> None:
    n, edges, caps = graph
    check_cut(n, edges, caps, min_cut(n, edges, caps))


# --- min_cut: specific semantics -----------------------------------------------------------------


def test_self_loops_are_ignored() -> None:
    edges = [(0, 1), (1, 2), (1, 1), (2, 2)]
    result = min_cut(3, edges, [2.0, 1.0, 100.0, 100.0])
    assert result == MinCut(value=1.0, side=frozenset({2}), witness=(1,), connected=True)


def test_parallel_edges_add_and_all_appear_in_the_witness() -> None:
    edges = [(0, 1), (0, 1), (1, 2)]
    result = min_cut(3, edges, [0.25, 0.5, 1.0])
    assert result.value == 0.75
    assert result.side == frozenset({0})
    assert result.witness == (0, 1)


def test_disconnected_graph_reports_smallest_component() -> None:
    # Components {0, 1, 2}, {3, 4} and {5, 6}; the two pairs tie on size, {3, 4} has the
    # smaller node.
    edges = [(0, 1), (1, 2), (3, 4), (5, 6)]
    result = min_cut(7, edges, [1.0, 1.0, 1.0, 1.0])
    assert result == MinCut(value=0.0, side=frozenset({3, 4}), witness=(), connected=False)


def test_isolated_node_is_the_cut() -> None:
    result = min_cut(4, [(0, 1), (1, 2)], [1.0, 1.0])
    assert result == MinCut(value=0.0, side=frozenset({3}), witness=(), connected=False)


def test_no_edges_at_all() -> None:
    result = min_cut(2, [], [])
    assert result == MinCut(value=0.0, side=frozenset({0}), witness=(), connected=False)


def test_zero_capacity_bridge_is_a_connected_zero_cut() -> None:
    edges = [(0, 1), (1, 2), (2, 0), (2, 3), (3, 4)]
    result = min_cut(5, edges, [1.0, 1.0, 1.0, 0.0, 1.0])
    assert result == MinCut(value=0.0, side=frozenset({3, 4}), witness=(3,), connected=True)


def test_large_disconnected_graph_takes_the_reduction_path() -> None:
    n, edges, caps = random_connected(80, 200, 11)
    # Cut node 79 loose: drop its edges, so the reduction has to discover the split.
    kept = [i for i, (u, v) in enumerate(edges) if 79 not in (u, v)]
    edges = [edges[i] for i in kept]
    caps = [caps[i] for i in kept]
    result = min_cut(n, edges, caps)
    assert result == MinCut(value=0.0, side=frozenset({79}), witness=(), connected=False)


def test_large_graph_with_zero_capacity_split() -> None:
    n, edges, caps = random_connected(80, 200, 12)
    touching = [i for i, (u, v) in enumerate(edges) if 79 in (u, v)]
    caps = [0.0 if i in touching else c for i, c in enumerate(caps)]
    result = min_cut(n, edges, caps)
    assert result.connected
    assert result.value == 0.0
    assert result.side == frozenset({79})
    assert result.witness == tuple(i for i in touching if edges[i][0] != edges[i][1])


@pytest.mark.parametrize("mode", MODES)
def test_zero_capacity_path_never_reaches_igraph(mode: str) -> None:
    # igraph 1.0's Stoer-Wagner corrupts memory on exactly this graph; min_cut must not pass
    # zero capacities through to it.
    with cut_mode(mode):
        result = min_cut(4, [(0, 1), (1, 2), (2, 3)], [1.0, 0.0, 1.0])
    assert result == MinCut(value=0.0, side=frozenset({0, 1}), witness=(1,), connected=True)


def test_balanced_tie_keeps_the_side_holding_node_zero() -> None:
    # A 4-cycle with two heavy opposite edges: the unique minimum cut splits it in half.
    edges = [(0, 1), (1, 2), (2, 3), (3, 0)]
    result = min_cut(4, edges, [5.0, 1.0, 5.0, 1.0])
    assert result == MinCut(value=2.0, side=frozenset({0, 1}), witness=(1, 3), connected=True)


def test_accepts_numpy_integers_and_tuples_of_any_int_kind() -> None:
    edges = [(np.int64(0), np.int32(1)), (1, 2)]
    result = min_cut(3, edges, [np.float64(0.5), 2.0])  # type: ignore[arg-type]
    assert result.value == 0.5
    assert all(type(x) is int for x in result.side)


# --- validation ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("num_nodes", "edges", "caps", "message"),
    [
        (1, [], [], r"num_nodes must be at least 2, got 1"),
        (0, [], [], r"num_nodes must be at least 2, got 0"),
        (3, [(0, 1)], [1.0, 2.0], r"len\(edges\) == 1 but len\(capacities\) == 2"),
        (3, [(0, 3)], [1.0], r"edge 0 = \(0, 3\) has a node index out of range \[0, 3\)"),
        (3, [(0, 1), (-1, 2)], [1.0, 1.0], r"edge 1 = \(-1, 2\) .*out of range"),
        (3, [(0, 1), (1, 2)], [1.0, -0.5], r"capacities\[1\] = -0.5 is negative"),
        (3, [(0, 1)], [math.nan], r"capacities\[0\] = nan is not finite"),
        (3, [(0, 1)], [math.inf], r"capacities\[0\] = inf is not finite"),
        (3, [(0, 1), (1, 2)], [1.0, -math.inf], r"capacities\[1\] = -inf is not finite"),
    ],
)
def test_min_cut_rejects_bad_input(
    num_nodes: int, edges: Edges, caps: list[float], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        min_cut(num_nodes, edges, caps)


def test_lambda_cut_rejects_mismatched_lengths() -> None:
    with pytest.raises(ValueError, match=r"effective has 1 entries but edges has 2"):
        lambda_cut(3, [(0, 1), (1, 2)], [1.0], [1.0, 1.0])
    with pytest.raises(ValueError, match=r"unit has 3 entries but edges has 2"):
        lambda_cut(3, [(0, 1), (1, 2)], [1.0, 1.0], [1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match=r"capacities\[0\] = -1.0 is negative"):
        lambda_cut(3, [(0, 1), (1, 2)], [1.0, 1.0], [-1.0, 1.0])


def test_algebraic_connectivity_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match=r"num_nodes must be at least 2, got 1"):
        algebraic_connectivity(1, [], [])
    with pytest.raises(ValueError, match=r"weights\[0\] = -2.0 is negative"):
        algebraic_connectivity(2, [(0, 1)], [-2.0])
    with pytest.raises(ValueError, match=r"len\(edges\) == 1 but len\(weights\) == 0"):
        algebraic_connectivity(2, [(0, 1)], [])
    with pytest.raises(ValueError, match=r"out of range"):
        algebraic_connectivity(2, [(0, 2)], [1.0])


# --- lambda_cut ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("partitions", "centroids"), [(2, 0), (16, 0), (16, 50), (64, 200)])
def test_lambda_cut_of_a_healthy_graph_is_one(partitions: int, centroids: int) -> None:
    n, edges, _, unit = synthetic_contracted(partitions, centroids, seed=partitions)
    result = lambda_cut(n, edges, unit, unit)
    assert result.normalised == 1.0
    assert result.raw == result.unit > 0.0


def test_lambda_cut_of_a_disconnected_graph_is_zero() -> None:
    edges = [(0, 1), (1, 2)]
    result = lambda_cut(4, edges, [0.5, 0.5], [1.0, 1.0])
    assert result.normalised == 0.0
    assert result.raw == 0.0
    assert not result.cut.connected
    assert result.cut.side == frozenset({3})


def test_lambda_cut_worked_example() -> None:
    # Path 0 - 1 - 2 with structural weights 1 and 2: the structural cut is edge 0 (1.0). With
    # health 0.9 and 0.2 the effective capacities are 0.9 and 0.4, so edge 1 becomes the
    # bottleneck: raw 0.4, normalised 0.4 / 1.0.
    edges = [(0, 1), (1, 2)]
    result = lambda_cut(3, edges, [0.9, 0.4], [1.0, 2.0])
    assert result == LambdaCut(
        raw=0.4,
        unit=1.0,
        normalised=0.4,
        cut=MinCut(value=0.4, side=frozenset({2}), witness=(1,), connected=True),
    )


def test_lambda_cut_degraded_contracted_graph_is_between_zero_and_one() -> None:
    n, edges, effective, unit = synthetic_contracted(32, 40, seed=3)
    result = lambda_cut(n, edges, effective, unit)
    assert 0.0 < result.normalised < 1.0
    assert result.normalised == pytest.approx(result.raw / result.unit)
    assert result.cut.value == result.raw


def test_lambda_cut_clamps_to_one() -> None:
    result = lambda_cut(2, [(0, 1)], [3.0], [1.0])
    assert result.normalised == 1.0
    assert result.raw == 3.0


def test_lambda_cut_with_zero_structural_cut_is_zero() -> None:
    result = lambda_cut(3, [(0, 1), (1, 2)], [1.0, 1.0], [1.0, 0.0])
    assert result.unit == 0.0
    assert result.normalised == 0.0


# --- algebraic connectivity ----------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(graph=st.one_of(simple_graphs(), multigraphs()), dense_limit=st.sampled_from([0, 400]))
def test_algebraic_connectivity_matches_dense_eigvalsh(graph: Graph, dense_limit: int) -> None:
    n, edges, weights = graph
    expected = dense_lambda2(n, edges, weights)
    got = algebraic_connectivity(n, edges, weights, dense_limit=dense_limit)
    assert got >= 0.0
    assert got == pytest.approx(max(expected, 0.0), rel=1e-6, abs=1e-9)


@pytest.mark.parametrize(("partitions", "centroids"), [(16, 0), (64, 250), (256, 1000)])
def test_algebraic_connectivity_sparse_on_contracted_graphs(
    partitions: int, centroids: int
) -> None:
    n, edges, effective, _ = synthetic_contracted(partitions, centroids, seed=1)
    expected = dense_lambda2(n, edges, effective)
    assert algebraic_connectivity(n, edges, effective, dense_limit=0) == pytest.approx(
        expected, rel=1e-6
    )
    assert algebraic_connectivity(n, edges, effective) == pytest.approx(expected, rel=1e-6)


def test_algebraic_connectivity_of_a_long_path_keeps_relative_accuracy() -> None:
    n = 1500
    edges = [(i, i + 1) for i in range(n - 1)]
    expected = 2.0 - 2.0 * math.cos(math.pi / n)
    got = algebraic_connectivity(n, edges, [1.0] * len(edges))
    assert got == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize(
    "failure",
    [
        scipy.sparse.linalg.ArpackNoConvergence("no convergence", np.zeros(0), np.zeros((0, 0))),
        scipy.sparse.linalg.ArpackError(-9999),
    ],
)
def test_algebraic_connectivity_falls_back_to_dense(failure: Exception) -> None:
    n, edges, effective, _ = synthetic_contracted(16, 10, seed=2)
    expected = dense_lambda2(n, edges, effective)
    with mock.patch.object(scipy.sparse.linalg, "eigsh", side_effect=failure) as eigsh:
        got = algebraic_connectivity(n, edges, effective, dense_limit=0)
    assert eigsh.called
    assert got == pytest.approx(expected, rel=1e-9)


def test_algebraic_connectivity_of_a_disconnected_graph_is_zero() -> None:
    edges = [(0, 1), (2, 3)]
    assert algebraic_connectivity(4, edges, [1.0, 1.0]) == 0.0
    assert algebraic_connectivity(4, edges, [1.0, 1.0], dense_limit=0) == 0.0
    # Connected by the edge set, but only through a zero weight.
    assert algebraic_connectivity(4, [*edges, (1, 2)], [1.0, 1.0, 0.0], dense_limit=0) == 0.0


def test_algebraic_connectivity_closed_forms() -> None:
    # Two nodes joined by w: eigenvalues 0 and 2w. Complete graph K_n: lambda2 = n.
    assert algebraic_connectivity(2, [(0, 1), (0, 1), (1, 1)], [0.5, 1.0, 9.0]) == pytest.approx(
        3.0
    )
    k6 = [(i, j) for i in range(6) for j in range(i + 1, 6)]
    for dense_limit in (0, 400):
        got = algebraic_connectivity(6, k6, [1.0] * len(k6), dense_limit=dense_limit)
        assert got == pytest.approx(6.0, rel=1e-9)
