"""drain_hot_partition: route new writes away from a hot partition for a while, and move a
bounded share of its rows.

For HotspotCongestion (impact 0.5, reversible, lifted on recovery), on a collection that
declared its placement, LIST-partitioned with one value per hot partition. Writers that ask
`ruvector_route(collection, value)` for the placement value of a new row get one of the three
least used partitions' values instead while the drain holds (README: "drain_hot_partition"
shows the ten lines an application needs). The drain map row (ruvector.drains) is a lease like
a throttle: the acting daemon renews it every cycle while the collection is degraded, never
past `drain_seconds`; if the daemon dies the drain lapses and writers go home by themselves.

`plan` reads the drain row that exists now (restored exactly by rollback, absence included),
the targets and the rows to move; `execute` writes the drain row, then moves rows as
rebalance_partitions does (healing/moves.py); `rollback` -- after a failed or unverified
action, a crash, or once the collection is normal again -- restores the route and moves the
journaled rows back.
"""

from __future__ import annotations

from typing import Any

from ruvectord.healing import moves
from ruvectord.healing.problems import HotspotCongestion, ProblemKind
from ruvectord.healing.strategies.rebalance_partitions import TARGETS, cold_tier
from ruvectord.healing.strategy import RemediationContext, RemediationResult


class DrainHotPartition(moves.PlacementStrategy):
    name = "drain_hot_partition"
    handles = frozenset({ProblemKind.HOTSPOT_CONGESTION})
    impact = 0.5  # high-ish: where new rows land changes for a while
    lift_on_recovery = True
    leased = True

    async def plan(self, ctx: RemediationContext) -> dict[str, Any]:
        try:
            cfg, parts = await self.ready(ctx)
        except moves.PlacementError as exc:
            return {"blocked": str(exc), "batches": []}
        problem = ctx.problem
        names = set(problem.partition_names) if isinstance(problem, HotspotCongestion) else set()
        hot = [p for p in parts if p.name in names]
        if not hot:
            return {"blocked": f"no hot partition of {ctx.collection} to drain", "batches": []}
        source = hot[0]
        values = moves.list_values(source.bound) or ()
        if len(values) != 1:
            return {
                "blocked": f"{source.name} is not a LIST partition of one value "
                f"({source.bound}): writes to it cannot be routed elsewhere",
                "batches": [],
            }
        exclude = {p.name for p in hot} | cold_tier(parts, cfg.cold.value if cfg.cold else None)
        targets = moves.coldest(parts, exclude, TARGETS)
        if not targets:
            return {
                "blocked": f"{ctx.collection} has no other partition to take writes",
                "batches": [],
            }
        row = await ctx.sql.fetchrow(
            "SELECT to_values, action_id, extract(epoch FROM expires_at)::float8 AS expires "
            "FROM ruvector.drains WHERE collection_id = $1 AND from_value = $2",
            ctx.collection_id,
            values[0],
        )
        now = float(await ctx.sql.fetchval("SELECT extract(epoch FROM now())::float8"))
        leg = moves.Leg(source, tuple(targets), moves.rows_to_move(source, targets, cfg))
        return {
            "legs": [moves.leg_json(leg)],
            "batches": [],
            "from_value": values[0],
            "to_values": [t.value for t in targets],
            "until_epoch": now + cfg.drain_seconds,
            # None: there was no drain of this value, and rollback deletes it again
            "previous": None
            if row is None
            else {
                "to_values": list(row["to_values"]),
                "action_id": row["action_id"],
                "expires_epoch": row["expires"],
            },
        }

    async def execute(self, ctx: RemediationContext) -> RemediationResult:
        cfg = self.placement(ctx.collection)
        data = ctx.rollback_data
        if cfg is None:
            return RemediationResult.failed(f"placement not declared for {ctx.collection}")
        if data.get("blocked"):
            return RemediationResult.failed(str(data["blocked"]))
        if not ctx.dry_run:
            await ctx.sql.execute(
                """
                INSERT INTO ruvector.drains
                       (collection_id, from_value, to_values, action_id, expires_at, updated_at)
                VALUES ($1, $2, $3::text[], $4,
                        least(now() + make_interval(secs => $5), to_timestamp($6)), now())
                ON CONFLICT (collection_id, from_value) DO UPDATE SET
                    to_values = EXCLUDED.to_values, action_id = EXCLUDED.action_id,
                    expires_at = EXCLUDED.expires_at, updated_at = now()
                """,
                ctx.collection_id,
                data["from_value"],
                data["to_values"],
                ctx.action_id,
                ctx.lease_seconds,
                data["until_epoch"],
                idempotent=True,
            )
        extra = {"drained": data["from_value"], "to_values": data["to_values"]}
        return await moves.result_of(ctx, cfg, extra)

    async def renew(self, ctx: RemediationContext) -> bool:
        # only a drain still in force, and never past drain_seconds: a lapsed or lifted drain
        # is not brought back
        renewed = await ctx.sql.fetch(
            "UPDATE ruvector.drains SET expires_at = least(now() + make_interval(secs => $3), "
            "to_timestamp($4)), updated_at = now() WHERE collection_id = $1 AND action_id = $2 "
            "AND expires_at > statement_timestamp() AND now() < to_timestamp($4) "
            "RETURNING from_value",
            ctx.collection_id,
            ctx.action_id,
            ctx.lease_seconds,
            float(ctx.rollback_data.get("until_epoch") or 0.0),
        )
        return bool(renewed)

    async def rollback(self, ctx: RemediationContext) -> None:
        data = ctx.rollback_data
        value = data.get("from_value")
        if value is not None:
            before = data.get("previous")
            if before is None:
                await ctx.sql.execute(
                    "DELETE FROM ruvector.drains WHERE collection_id = $1 AND from_value = $2",
                    ctx.collection_id,
                    value,
                    idempotent=True,
                )
            else:
                await ctx.sql.execute(
                    "UPDATE ruvector.drains SET to_values = $3::text[], action_id = $4, "
                    "expires_at = to_timestamp($5), updated_at = now() "
                    "WHERE collection_id = $1 AND from_value = $2",
                    ctx.collection_id,
                    value,
                    before["to_values"],
                    before["action_id"],
                    before["expires_epoch"],
                    idempotent=True,
                )
        await moves.undo(ctx)
