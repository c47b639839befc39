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

import igraph
import networkx as nx

from ruvectord.integrity.mincut import min_cut

Graph = tuple[int, list[tuple[int, int]], list[float], list[float]]

TOLERANCE = 1e-9


def synthetic_contracted(partitions: int, centroids: int, seed: int) -> Graph:
    """A graph shaped like the contracted integrity graph, with one random hot partition.

    Returns (num_nodes, edges, effective, unit). Kept separate so the real graph builder can
    replace it.
    """
    rng = random.Random(seed)
    gateway = 0
    parts = list(range(1, partitions + 1))
    indexes = list(range(partitions + 1, 2 * partitions + 1))
    next_node = 2 * partitions + 1
    hot = rng.randrange(partitions)

    edges: list[tuple[int, int]] = []
    unit: list[float] = []
    health: list[float] = []

    def add(u: int, v: int, weight: float, hot_edge: bool = False) -> None:
        edges.append((u, v))
        unit.append(weight)
        health.append(rng.uniform(0.01, 0.3) if hot_edge else rng.uniform(0.5, 1.0))

    k = min(4, partitions - 1)
    link_weight = 1.0 / (2 * k) if k > 0 else 0.0
    links: set[tuple[int, int]] = set()
    for i in range(partitions):
        for offset in (1, 2, -1, -2):
            j = (i + offset) % partitions
            if j != i:
                links.add((min(i, j), max(i, j)))
    for i, p in enumerate(parts):
        add(gateway, p, 0.5, i == hot)
        add(gateway, indexes[i], 1.0, i == hot)
    for i, j in sorted(links):
        add(parts[i], parts[j], link_weight, hot in (i, j))

    for c in range(centroids):
        node = next_node
        next_node += 1
        add(gateway, node, 1.0 / (centroids + 1))
        add(node, indexes[c % partitions], 1.0, c % partitions == hot)

    for _ in range(rng.randint(0, 3)):
        add(gateway, next_node, 1.0)
        next_node += 1
    for _ in range(rng.randint(0, 3)):
        touched = rng.sample(parts, rng.randint(1, partitions))
        for p in touched:
            add(next_node, p, 1.0 / len(touched), p - 1 == hot)
        next_node += 1

    effective = [w * h for w, h in zip(unit, health, strict=True)]
    return next_node, edges, effective, unit


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
            graph = synthetic_contracted(partitions, centroids, seed=partitions * 7 + centroids)
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
