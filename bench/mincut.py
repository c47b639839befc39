"""Benchmark ruvectord's min_cut against igraph and networkx Stoer-Wagner.

Usage: .venv/bin/python bench/mincut.py [--quick]

Times the exact global minimum cut on graphs shaped like the contracted integrity graph and on
random connected graphs, checks that all implementations agree within 1e-9 and exits non-zero
if any value disagrees.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import igraph
import networkx as nx

from ruvectord.config import Budgets
from ruvectord.integrity.graph import build
from ruvectord.integrity.mincut import min_cut
from ruvectord.integrity.snapshot import (
    CentroidStats,
    IndexStats,
    MaintenanceJob,
    PartitionStats,
    ReplicaStats,
    Snapshot,
    rates,
)

Graph = tuple[int, list[tuple[int, int]], list[float], list[float]]

TOLERANCE = 1e-9


def builder_contracted(partitions: int, centroids: int, seed: int) -> Graph:
    """A contracted graph exactly as the daemon builds it, from a synthetic snapshot.

    One hot partition (skewed load, a queue), HNSW indexes with some dead tuples, IVF
    centroid statistics with a few skewed lists, 0-3 replicas with some lag and 0-3
    maintenance jobs, one of them blocking. Returns (num_nodes, edges, effective, unit).
    """
    rng = random.Random(seed)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    hot = rng.randrange(partitions)

    def part(i: int, ops: int) -> PartitionStats:
        return PartitionStats(
            oid=10_000 + i,
            name=f"public.items_p{i}",
            bound=None,
            tenant=None,
            live_tuples=100_000,
            dead_tuples=rng.randrange(0, 20_000),
            inserts=ops,
            updates=0,
            deletes=0,
            seq_scans=0,
            idx_scans=0,
            table_bytes=1 << 26,
            index_bytes=1 << 25,
            active_backends=rng.randrange(12, 28) if i == hot else rng.randrange(0, 4),
            waiting_backends=0,
        )

    before = Snapshot("bench", t0, tuple(part(i, 0) for i in range(partitions)))
    after = Snapshot(
        "bench",
        t0 + timedelta(seconds=10),
        tuple(part(i, 40_000 if i == hot else rng.randrange(500, 1500)) for i in range(partitions)),
        indexes=tuple(
            IndexStats(20_000 + i, f"public.items_p{i}_idx", 10_000 + i, "hnsw", 1 << 25, True)
            for i in range(partitions)
        ),
        centroids=tuple(
            CentroidStats(c, rng.randrange(50, 150) * (20 if c % 97 == 0 else 1), None)
            for c in range(centroids)
        ),
        replicas=tuple(
            ReplicaStats(
                f"standby{r}",
                100 + r,
                "streaming",
                "async",
                rng.uniform(0, 5),
                rng.randrange(0, 1 << 24),
            )
            for r in range(rng.randint(0, 3))
        ),
        maintenance=tuple(
            MaintenanceJob(
                200 + j,
                "autovacuum",
                "autovacuum",
                tuple(
                    10_000 + p for p in rng.sample(range(partitions), rng.randint(1, partitions))
                ),
                blocking=3 if j == 0 else 0,
            )
            for j in range(rng.randint(0, 3))
        ),
    )
    graph = build(after, rates(before, after), Budgets())
    return len(graph.nodes), graph.pairs, graph.effective, graph.unit


def random_connected(n: int, seed: int) -> Graph:
    """A random connected graph with about 4n edges and capacities in [0.01, 1]."""
    rng = random.Random(seed)
    edges = [(i, rng.randrange(i)) for i in range(1, n)]
    seen = {(min(u, v), max(u, v)) for u, v in edges}
    target = min(4 * n, n * (n - 1) // 2)
    while len(edges) < target:
        u, v = rng.randrange(n), rng.randrange(n)
        key = (min(u, v), max(u, v))
        if u != v and key not in seen:
            seen.add(key)
            edges.append((u, v))
    caps = [rng.uniform(0.01, 1.0) for _ in edges]
    return n, edges, caps, [1.0] * len(edges)


def ours(graph: Graph) -> float:
    n, edges, caps, _ = graph
    return min_cut(n, edges, caps).value


def igraph_sw(graph: Graph) -> float:
    # Safe only because every benchmark capacity is positive: igraph 1.0's Stoer-Wagner crashes
    # on zero-capacity edges in a connected graph (see ruvectord/integrity/mincut.py).
    n, edges, caps, _ = graph
    return float(igraph.Graph(n=n, edges=edges).mincut(capacity=caps).value)


def networkx_sw(graph: Graph) -> float:
    n, edges, caps, _ = graph
    g = nx.Graph()
    g.add_nodes_from(range(n))
    for (u, v), c in zip(edges, caps, strict=True):
        if u == v:
            continue
        if g.has_edge(u, v):
            g[u][v]["weight"] += c
        else:
            g.add_edge(u, v, weight=c)
    value, _ = nx.stoer_wagner(g)
    return float(value)


def timed(fn: Callable[[Graph], float], graph: Graph, repeats: int) -> tuple[float, float]:
    """Median wall time in ms over `repeats` runs, and the value returned."""
    times: list[float] = []
    value = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        value = fn(graph)
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times), value


@dataclass
class Row:
    case: str
    nodes: int
    edges: int
    ours_ms: float
    igraph_ms: float
    networkx_ms: float | None
    agree: bool


def run_case(case: str, graph: Graph, repeats: int, with_networkx: bool) -> Row:
    ours_ms, ours_value = timed(ours, graph, repeats)
    igraph_ms, igraph_value = timed(igraph_sw, graph, repeats)
    agree = abs(ours_value - igraph_value) <= TOLERANCE
    networkx_ms: float | None = None
    if with_networkx:
        networkx_ms, networkx_value = timed(networkx_sw, graph, max(1, repeats // 2))
        agree = agree and abs(ours_value - networkx_value) <= TOLERANCE
    return Row(case, graph[0], len(graph[1]), ours_ms, igraph_ms, networkx_ms, agree)


def format_table(rows: list[Row]) -> str:
    header = (
        "case",
        "nodes",
        "edges",
        "ours ms",
        "igraph ms",
        "networkx ms",
        "igraph/ours",
        "networkx/ours",
        "agree",
    )
    lines: list[tuple[str, ...]] = [header]
    for r in rows:
        nx_ms = "-" if r.networkx_ms is None else f"{r.networkx_ms:.2f}"
        nx_ratio = "-" if r.networkx_ms is None else f"{r.networkx_ms / r.ours_ms:.1f}x"
        lines.append(
            (
                r.case,
                str(r.nodes),
                str(r.edges),
                f"{r.ours_ms:.2f}",
                f"{r.igraph_ms:.2f}",
                nx_ms,
                f"{r.igraph_ms / r.ours_ms:.1f}x",
                nx_ratio,
                "yes" if r.agree else "NO",
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = []
    for line in lines:
        cells = [
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(line, widths, strict=True))
        ]
        out.append("  ".join(cells))
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repeats, skip slow networkx")
    args = parser.parse_args(argv)
    quick: bool = args.quick

    cases: list[tuple[str, Graph]] = []
    for partitions in (16, 64, 256):
        for centroids in (0, 250, 1000):
            graph = builder_contracted(partitions, centroids, seed=partitions * 7 + centroids)
            cases.append((f"contracted P={partitions} C={centroids}", graph))
    for n in (10, 30, 100, 300, 1000):
        cases.append((f"random n={n}", random_connected(n, seed=n)))

    rows: list[Row] = []
    for case, graph in cases:
        n = graph[0]
        repeats = (3 if n > 300 else 7) if quick else (5 if n > 300 else 21)
        with_networkx = n <= 300 or not quick
        rows.append(run_case(case, graph, repeats, with_networkx))
        print(f"done {case}", file=sys.stderr)

    print(format_table(rows))
    if not all(r.agree for r in rows):
        print("DISAGREEMENT: some minimum cut values differ by more than 1e-9")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
