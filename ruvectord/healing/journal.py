"""Crash safety: whatever a previous actor left in flight is undone before anything new runs.

The journal row of an action is written before the action changes anything, with the data
its rollback needs. So when an actor starts (or takes over the actor lock), every action still
`running`, `verifying` or `rolling_back` belongs to a daemon that is gone: a reversible one is
rolled back, an irreversible one is marked `interrupted`. Nothing is left half-done.
"""

from __future__ import annotations

from datetime import datetime

import anyio

from ruvectord.config import HealingConfig
from ruvectord.healing.engine import ActionRow, Audit, HealingJournal, OutcomeRecord
from ruvectord.healing.problems import problem_from_json
from ruvectord.healing.strategy import RemediationContext, Sql, StrategyRegistry
from ruvectord.integrity.hysteresis import State
from ruvectord.logs import get_logger

log = get_logger("ruvectord.healing.recovery")


async def recover(
    journal: HealingJournal,
    registry: StrategyRegistry,
    sql: Sql,
    settings: HealingConfig,
    audit: Audit,
    now: datetime,
) -> list[tuple[int, str]]:
    """Roll back or mark every in-flight action; returns (action id, new status) pairs."""
    done: list[tuple[int, str]] = []
    for row in await journal.in_flight():
        # each action is undone and recorded as a whole, even if a shutdown arrives meanwhile
        with anyio.CancelScope(shield=True):
            status = await _recover_and_record(journal, registry, sql, settings, audit, now, row)
        if status is not None:
            done.append((row.id, status))
    return done


async def _recover_and_record(
    journal: HealingJournal,
    registry: StrategyRegistry,
    sql: Sql,
    settings: HealingConfig,
    audit: Audit,
    now: datetime,
    row: ActionRow,
) -> str | None:
    status, error = await _recover_one(row, registry, sql, settings)
    changed = await journal.update_action(row.id, status, error_message=error, completed_at=now)
    if not changed:
        return None  # someone else (the former actor, shutting down) finished it meanwhile
    await journal.record_outcome(
        OutcomeRecord(
            collection_id=row.collection_id,
            problem_class=row.problem_class,
            problem_details=row.problem_details,
            strategy_name=row.strategy_name,
            strategy_params=row.strategy_params,
            started_at=row.created_at,
            completed_at=now,
            duration_ms=max(0, int((now - row.created_at).total_seconds() * 1000)),
            success=False,
            verified=False,
            actions_taken=0,
            improvement_pct=None,
            error_message=error,
            initial_lambda=row.initial_lambda,
            final_lambda=None,
            witness_edges=[],
            system_metrics={"action_id": row.id, "status": status, "recovered": True},
        )
    )
    await audit(
        action_id=row.id,
        status=status,
        strategy=row.strategy_name,
        collection=row.collection,
        error=error,
        event_type="alert" if status == "rollback_failed" else "recovery",
    )
    log.warning(
        "action_recovered",
        action_id=row.id,
        collection=row.collection,
        strategy=row.strategy_name,
        status=status,
        msg=error,
    )
    return status


async def _recover_one(
    row: ActionRow, registry: StrategyRegistry, sql: Sql, settings: HealingConfig
) -> tuple[str, str]:
    was = f"interrupted while {row.status} (the daemon that ran it stopped)"
    strategy = registry.get(row.strategy_name)
    if not row.reversible:
        return "interrupted", f"{was}; not reversible, left as it was"
    if strategy is None:
        return "rollback_failed", f"{was}; strategy {row.strategy_name!r} is not registered here"
    ctx = RemediationContext(
        collection=row.collection,
        collection_id=row.collection_id,
        table=row.table,
        problem=problem_from_json(row.problem_class, row.problem_details),
        state=State(row.integrity_state),
        initial_lambda=row.initial_lambda,
        sql=sql,
        settings=settings,
        params=row.strategy_params,
        rollback_data=row.rollback_data,
        action_id=row.id,
    )
    try:
        with anyio.fail_after(max(10.0, 2 * strategy.estimated_duration)):
            await strategy.rollback(ctx)
    except Exception as exc:
        return "rollback_failed", f"{was}; rollback failed: {type(exc).__name__}: {exc}"
    return "rolled_back", f"{was}; rolled back at takeover"
