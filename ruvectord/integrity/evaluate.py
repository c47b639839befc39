"""Contracted graph -> integrity signal: lambda_cut (normalised), witness edges, lambda2.

Pure and CPU-bound; the monitor runs it in a worker thread so the event loop stays free.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from ruvectord.integrity.graph import ContractedGraph
from ruvectord.integrity.mincut import LambdaCut, algebraic_connectivity, lambda_cut


@dataclass(frozen=True, slots=True)
class IntegrityResult:
    graph: ContractedGraph
    cut: LambdaCut
    lambda2: float | None
    computation_ms: float

    @property
    def lambda_cut(self) -> float:
        return self.cut.normalised

    @property
    def witness_indices(self) -> tuple[int, ...]:
        return self.cut.cut.witness

    @property
    def witness_edges(self) -> list[dict[str, Any]]:
        return self.graph.witness(self.cut.cut.witness)

    @property
    def cut_side(self) -> list[int]:
        """The smaller side of the cut: the part of the system that is cut off."""
        side = self.cut.cut.side
        other = set(range(len(self.graph.nodes))) - side
        return sorted(side if len(side) <= len(other) else other)

    @property
    def cut_off(self) -> list[int]:
        """The side of the cut without the gateway (node 0): what the system cannot reach.

        Usually the smaller side too, but not always: an IVF index's lists (a hub and its
        lists) outnumber the gateway, a plain table and its index.
        """
        side = self.cut.cut.side
        if 0 in side:
            return sorted(set(range(len(self.graph.nodes))) - side)
        return sorted(side)

    def summary(self) -> str:
        """e.g. '4 partition_link + 1 routing around items_p3'."""
        if not self.cut.cut.connected:
            return "graph is disconnected"
        kinds = Counter(self.graph.edges[i].kind.value for i in self.witness_indices)
        parts = " + ".join(f"{n} {k}" for k, n in sorted(kinds.items(), key=lambda x: -x[1]))
        cut_off = self.cut_off
        names = [self.graph.nodes[i].name for i in cut_off[:3]]
        more = len(cut_off) - len(names)
        around = ", ".join(names) + (f" and {more} more" if more > 0 else "")
        return f"{parts} around {around}"


def evaluate(graph: ContractedGraph, *, lambda2: bool, dense_limit: int = 400) -> IntegrityResult:
    started = time.perf_counter()
    n = len(graph.nodes)
    pairs = graph.pairs
    cut = lambda_cut(n, pairs, graph.effective, graph.unit)
    l2 = (
        algebraic_connectivity(n, pairs, graph.effective, dense_limit=dense_limit)
        if lambda2
        else None
    )
    return IntegrityResult(graph, cut, l2, (time.perf_counter() - started) * 1000)


def finite(value: float | None) -> float | None:
    """A reading as JSON can carry it: NaN and infinities (an empty graph's) become None."""
    return value if value is not None and math.isfinite(value) else None
