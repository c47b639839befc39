"""evict_cold_data: move rows nobody wrote or read for a while to a cold tier.

For MemoryPressure (impact 0.4, reversible), on a collection that declared a cold tier
(`collections[].placement.cold`): a placement value whose partition the DBA created without
an HNSW index (or with a cheaper one), so its rows cost no index memory; searches over the
collection still find them (by a scan of the cold partition: exact, slower; README has the
measured cost). A row is cold when its declared age column (a timestamptz the application
sets when it writes, or reads, the row) is older than `min_age_seconds`.

`plan` reads the partitions and the cutoff (the server's clock); `execute` moves at most
`max_rows_per_action` of the oldest rows, largest partitions first, in batches journaled
before and after (healing/moves.py); `rollback` moves exactly those rows back to the
partition and value each came from. Evicted rows stay cold once verified.

Not offered for IndexFragmentation: moving rows out of a partition does not shrink its
vector index (pgvector's VACUUM frees index entries in place; the file keeps its size until a
REINDEX), so the fragmentation reading would only get worse -- that is compact_indexes' job.
"""

from __future__ import annotations

from typing import Any

from ruvectord.healing import moves
from ruvectord.healing.problems import ProblemKind
from ruvectord.healing.strategy import RemediationContext, RemediationResult


class EvictColdData(moves.PlacementStrategy):
    name = "evict_cold_data"
    handles = frozenset({ProblemKind.MEMORY_PRESSURE})
    impact = 0.4  # medium-high: cold rows are found by a slower scan afterwards

    def applies_to(self, collection: str) -> bool:
        p = self.placement(collection)
        return p is not None and p.cold is not None

    def unavailable(self, collection: str) -> str | None:
        p = self.placement(collection)
        if p is None:
            return f"placement not declared for {collection}"
        if p.cold is None:
            return f"no cold tier declared for {collection} (placement.cold)"
        return None

    async def plan(self, ctx: RemediationContext) -> dict[str, Any]:
        try:
            cfg, parts = await self.ready(ctx)
        except moves.PlacementError as exc:
            return {"blocked": str(exc), "batches": []}
        if cfg.cold is None:
            return {"blocked": f"no cold tier declared for {ctx.collection}", "batches": []}
        cold = [p for p in parts if p.holds(cfg.cold.value)]
        if not cold:
            return {
                "blocked": f"no partition of {ctx.collection} holds the cold tier's value "
                f"{cfg.cold.value!r}: create it (without an HNSW index) first",
                "batches": [],
            }
        tier = moves.Partition(cold[0].name, cold[0].bound, cfg.cold.value, 0, 0, ())
        now = float(await ctx.sql.fetchval("SELECT extract(epoch FROM now())::float8"))
        cutoff = now - cfg.cold.min_age_seconds
        sources = sorted(
            (p for p in parts if p.value is not None and p.name != tier.name),
            key=lambda p: (-p.live_rows, p.name),
        )
        legs = [moves.Leg(p, (tier,), cfg.max_rows_per_action, cutoff) for p in sources]
        return {
            "legs": [moves.leg_json(leg) for leg in legs],
            "batches": [],
            "cold_partition": tier.name,
            "cold_vector_indexes": list(cold[0].vector_indexes),
        }

    async def execute(self, ctx: RemediationContext) -> RemediationResult:
        cfg = self.placement(ctx.collection)
        if cfg is None:
            return RemediationResult.failed(f"placement not declared for {ctx.collection}")
        extra = {"cold_partition": ctx.rollback_data.get("cold_partition")}
        if ctx.rollback_data.get("cold_vector_indexes"):
            # still correct, but the eviction saves no index memory: say so
            extra["warning"] = (
                f"the cold partition has vector indexes {ctx.rollback_data['cold_vector_indexes']}"
            )
        return await moves.result_of(ctx, cfg, extra)
