"""rebalance_partitions: move a bounded set of rows from a hot partition to the coldest ones.

The design's RebalancePartitions, for HotspotCongestion (impact 0.3, reversible), on a
collection that declared its placement (`collections[].placement`). `plan` picks the hot
partition the classifier named, the three least used partitions that can receive rows (never
the cold tier) and how many rows to move (the hot partition's excess over their mean, at least
one batch, at most `max_rows_per_action`); nothing changes yet. `execute` moves them in
batches through healing/moves.py: newest keys first, each batch journaled before and after,
one transaction each, lambda_cut checked between batches (stop once it rose, undo the last
batch and stop when it fell). `rollback` moves back exactly the rows the journal says moved.
Moved rows stay where they are once the action is verified (not lifted on recovery).
"""

from __future__ import annotations

from typing import Any, ClassVar

from ruvectord.healing import moves
from ruvectord.healing.problems import HotspotCongestion, ProblemKind
from ruvectord.healing.strategy import RemediationContext, RemediationResult

TARGETS = 3


class RebalancePartitions(moves.PlacementStrategy):
    name = "rebalance_partitions"
    handles = frozenset({ProblemKind.HOTSPOT_CONGESTION})
    impact = 0.3  # medium: rows move, writers wait a few milliseconds per batch
    # what an operator may pass to ruvector_healing_execute (the design's example: max_moves)
    manual_params: ClassVar[dict[str, dict[str, Any]]] = {
        "max_moves": {"kind": "int", "minimum": 1, "maximum": 1_000_000}
    }

    async def plan(self, ctx: RemediationContext) -> dict[str, Any]:
        try:
            cfg, parts = await self.ready(ctx)
        except moves.PlacementError as exc:
            # journaled as a failed attempt (so it is learned from), never retried blindly
            return {"blocked": str(exc), "batches": []}
        problem = ctx.problem
        hot_names = (
            set(problem.partition_names) if isinstance(problem, HotspotCongestion) else set()
        )
        hot = [p for p in parts if p.name in hot_names]
        if not hot:
            return {"blocked": f"no hot partition of {ctx.collection} to relieve", "batches": []}
        exclude = {p.name for p in hot} | cold_tier(parts, cfg.cold.value if cfg.cold else None)
        targets = moves.coldest(parts, exclude, TARGETS)
        if not targets:
            return {
                "blocked": f"{ctx.collection} has no other partition to take rows",
                "batches": [],
            }
        cap = int(ctx.params.get("max_moves", 1_000_000))
        legs = [
            moves.Leg(h, tuple(targets), min(cap, moves.rows_to_move(h, targets, cfg))) for h in hot
        ]
        return {"legs": [moves.leg_json(leg) for leg in legs], "batches": []}

    async def execute(self, ctx: RemediationContext) -> RemediationResult:
        cfg = self.placement(ctx.collection)
        if cfg is None:
            return RemediationResult.failed(f"placement not declared for {ctx.collection}")
        return await moves.result_of(ctx, cfg)


def cold_tier(parts: list[moves.Partition], value: str | None) -> set[str]:
    """The partition that holds the cold tier's value (never a rebalance or drain target)."""
    if value is None:
        return set()
    return {p.name for p in parts if p.holds(value)}
