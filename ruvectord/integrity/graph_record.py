"""The contracted graph as it is kept: its document form, and when a snapshot is due.

Owns the one serialised shape of a graph, shared by ruvector.graph_snapshots (written at
transitions and periodically) and the daemon's `/status?graph=1` (the latest sample's graph,
from memory), and the rule for when a sample's graph is written. Pure: values in, values out.

Edges travel as compact arrays, `[kind, source, target, capacity, weight, reason]` by edge
index, rather than one object (or one row) each: a graph of 64 partitions is a few hundred
edges, and the graph is what made every sample cost ~39 KB of WAL before it was kept only
when it tells something.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from ruvectord.integrity.graph import ContractedGraph

GraphReason = Literal["transition", "periodic"]


def graph_reason(
    *, transitioned: bool, last_written: float | None, now: float, every_seconds: float
) -> GraphReason | None:
    """Why this sample's graph is kept, or None when it is not.

    Every transition's graph is kept (forensics: what the cut looked like when the state
    changed); otherwise one every `every_seconds`, and the first one a writer takes (it does
    not know when another daemon last wrote one). `now` and `last_written` are monotonic.
    """
    if transitioned:
        return "transition"
    if last_written is None or now - last_written >= every_seconds:
        return "periodic"
    return None


def graph_document(
    graph: ContractedGraph, witness: Sequence[int], cut_side: Sequence[int]
) -> dict[str, Any]:
    """nodes, edges, witness (edge indices) and cut_side (node indices) of a reading."""
    return {
        "nodes": [
            {"index": n.index, "kind": n.kind.value, "id": n.id, "name": n.name, "attrs": n.attrs}
            for n in graph.nodes
        ],
        "edges": [
            [e.kind.value, e.source, e.target, e.capacity, e.weight, e.reason] for e in graph.edges
        ],
        "witness": sorted(witness),
        "cut_side": list(cut_side),
    }
