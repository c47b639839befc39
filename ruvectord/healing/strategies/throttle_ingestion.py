"""throttle_ingestion: turn away a share of inserts while integrity is degraded.

Levels follow the design: 50 % of inserts in stress, 90 % in critical, bulk inserts 10 points
more. They live in ruvector.throttles, where `ruvector_integrity_gate` (throttle_factor) and
the optional guard trigger on the collection's table (SQLSTATE RV429, "retry after N s") read
them. Rollback restores exactly the levels `plan` saw, rows that did not exist included.

The guard trigger is DDL on a busy table, so it is installed ahead of time (when the actor
starts and the collection is normal); `execute` only installs it itself with a very short lock
timeout, and carries on with gate-only throttling if the table is too busy for that.
"""

from __future__ import annotations

from typing import Any

from ruvectord.healing.problems import ProblemKind
from ruvectord.healing.strategy import RemediationContext, RemediationResult, Sql
from ruvectord.integrity.hysteresis import State

OPERATIONS = ("insert", "bulk_insert")


class ThrottleIngestion:
    name = "throttle_ingestion"
    handles = frozenset(
        {ProblemKind.HOTSPOT_CONGESTION, ProblemKind.MEMORY_PRESSURE, ProblemKind.REPLICATION_LAG}
    )
    impact = 0.4  # medium-high: it affects writes
    estimated_duration = 5.0
    reversible = True
    supports_dry_run = True
    lift_on_recovery = True

    async def plan(self, ctx: RemediationContext) -> dict[str, Any]:
        rows = await ctx.sql.fetch(
            "SELECT operation, throttle_pct, retry_after_seconds, action_id "
            "FROM ruvector.throttles WHERE collection_id = $1 AND operation = ANY($2::text[])",
            ctx.collection_id,
            list(OPERATIONS),
        )
        previous = {
            r["operation"]: {
                "throttle_pct": r["throttle_pct"],
                "retry_after_seconds": r["retry_after_seconds"],
                "action_id": r["action_id"],
            }
            for r in rows
        }
        # None: the row did not exist, and rollback deletes it again
        return {"previous": {op: previous.get(op) for op in OPERATIONS}}

    def levels(self, ctx: RemediationContext) -> dict[str, int]:
        t = ctx.settings.throttle
        pct = t.critical_pct if ctx.state is State.CRITICAL else t.stress_pct
        return {"insert": pct, "bulk_insert": min(100, pct + t.bulk_extra_pct)}

    async def execute(self, ctx: RemediationContext) -> RemediationResult:
        if ctx.state is State.NORMAL:
            return RemediationResult.noop("integrity is normal")
        levels = self.levels(ctx)
        if ctx.dry_run:
            return RemediationResult(True, 0, 0.0, {"dry_run": True, "would_set": levels})
        retry = ctx.settings.throttle.retry_after_seconds
        for op, pct in levels.items():
            await _set_level(ctx.sql, ctx.collection_id, op, pct, retry, ctx.action_id)
        guard = "disabled by healing.throttle.install_trigger"
        if ctx.settings.throttle.install_trigger:
            guard = await ensure_guard(ctx.sql, ctx.table, ctx.collection_id, lock_timeout_ms=200)
        return RemediationResult(
            True,
            len(levels),
            0.0,
            {"throttle_pct": levels, "retry_after_seconds": retry, "guard": guard},
        )

    async def rollback(self, ctx: RemediationContext) -> None:
        previous: dict[str, Any] = ctx.rollback_data.get("previous", {})
        for op in OPERATIONS:
            before = previous.get(op)
            if before is None:
                await ctx.sql.execute(
                    "DELETE FROM ruvector.throttles WHERE collection_id = $1 AND operation = $2",
                    ctx.collection_id,
                    op,
                    idempotent=True,
                )
            else:
                await _set_level(
                    ctx.sql,
                    ctx.collection_id,
                    op,
                    before["throttle_pct"],
                    before["retry_after_seconds"],
                    before["action_id"],
                )


async def _set_level(
    sql: Sql, collection_id: int, op: str, pct: int, retry: float, action_id: int | None
) -> None:
    await sql.execute(
        """
        INSERT INTO ruvector.throttles
               (collection_id, operation, throttle_pct, retry_after_seconds, action_id, updated_at)
        VALUES ($1, $2, $3, $4, $5, now())
        ON CONFLICT (collection_id, operation) DO UPDATE SET
            throttle_pct = EXCLUDED.throttle_pct,
            retry_after_seconds = EXCLUDED.retry_after_seconds,
            action_id = EXCLUDED.action_id, updated_at = now()
        """,
        collection_id,
        op,
        pct,
        retry,
        action_id,
        idempotent=True,
    )


async def ensure_guard(sql: Sql, table: str, collection_id: int, *, lock_timeout_ms: int) -> str:
    """Install the guard trigger unless present; never wait long for the table's lock."""
    if await sql.fetchval("SELECT ruvector.has_throttle_guard($1::regclass)", table):
        return "installed"
    try:
        await sql.execute(
            "SELECT ruvector.install_throttle_guard($1::regclass, $2, make_interval(secs => $3))",
            table,
            collection_id,
            lock_timeout_ms / 1000.0,
        )
    except Exception as exc:  # the table is busy (lock_timeout) or we lack the privilege
        return f"not installed ({type(exc).__name__}: {exc}); throttling through the gate only"
    return "installed now"
