"""The healing journal: what is written before and after every step, and crash recovery.

The journal row of an action exists before the action changes anything, with the data its
rollback needs. So when an actor starts (or takes over the actor lock), every action still
`running`, `verifying` or `rolling_back` belongs to a daemon that is gone: a reversible one is
rolled back, an irreversible one is marked `interrupted`. Nothing is left half-done.
`postgres/actions.py` implements `HealingJournal` on the ruvector.* tables.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import anyio

from ruvectord.config import HealingConfig
from ruvectord.healing.learning import OutcomeRow
from ruvectord.healing.problems import problem_from_json
from ruvectord.healing.strategy import (
    Cleans,
    RemediationContext,
    Sql,
    StrategyRegistry,
)
from ruvectord.healing.undo import run_rollback
from ruvectord.integrity.hysteresis import State
from ruvectord.logs import get_logger

log = get_logger("ruvectord.healing.recovery")

IN_FLIGHT = ("running", "verifying", "rolling_back")

# signs one healing step into the audit trail (fields become the event's metadata)
Audit = Callable[..., Awaitable[None]]


class InFlightError(Exception):
    """Another action is already running on this database."""


@dataclass(frozen=True)
class ActionDraft:
    collection_id: int
    problem_class: str
    problem_details: Mapping[str, Any]
    strategy_name: str
    strategy_params: Mapping[str, Any]
    status: str  # running | pending_approval
    dry_run: bool
    reversible: bool
    integrity_state: str
    initial_lambda: float
    rollback_data: Mapping[str, Any]
    actor: str
    created_at: datetime
    expires_at: datetime | None = None


@dataclass(frozen=True)
class ActionRow:
    id: int
    collection_id: int
    collection: str
    table: str
    problem_class: str
    problem_details: dict[str, Any]
    strategy_name: str
    strategy_params: dict[str, Any]
    status: str
    reversible: bool
    integrity_state: str
    initial_lambda: float
    rollback_data: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True)
class OutcomeRecord:
    collection_id: int
    problem_class: str
    problem_details: Mapping[str, Any]
    strategy_name: str
    strategy_params: Mapping[str, Any]
    started_at: datetime
    completed_at: datetime
    duration_ms: int
    success: bool
    verified: bool
    actions_taken: int
    improvement_pct: float | None
    error_message: str | None
    initial_lambda: float
    final_lambda: float | None
    witness_edges: list[dict[str, Any]]
    system_metrics: Mapping[str, Any]


@dataclass(frozen=True)
class PastRow:
    """An attempt (when it started) or a human's no (a rejection, or a lift an operator
    asked for: when it was decided)."""

    id: int
    kind: str  # attempt | rejection
    strategy: str
    at: datetime


@dataclass(frozen=True)
class TouchedRow:
    """A target an action names (`targets` in its result, or else in its rollback data)."""

    strategy: str
    target: str
    at: datetime  # when that action started


@dataclass(frozen=True)
class Pause:
    """Who switched healing off in the database (`ruvectord pause`), when, and why."""

    by: str
    at: datetime
    reason: str | None = None


@dataclass(frozen=True)
class Request:
    id: int
    kind: str
    collection: str | None
    action_id: int | None
    payload: dict[str, Any]
    requested_by: str
    requested_at: datetime


class HealingJournal(Protocol):
    """What the engine needs from the database (postgres/actions.py implements it)."""

    async def open_action(self, draft: ActionDraft) -> int: ...

    async def update_action(self, action_id: int, status: str, **fields: Any) -> bool: ...

    async def claim_approved(
        self, action_id: int, now: datetime, rollback_data: Mapping[str, Any]
    ) -> bool: ...

    async def approved_actions(self, collection_id: int) -> list[ActionRow]: ...

    async def pending_action(self, collection_id: int, strategy: str) -> ActionRow | None: ...

    async def expire_pending(self, now: datetime) -> list[int]: ...

    async def history(self, collection_id: int, limit: int) -> list[PastRow]:
        """The collection's latest attempts and rejections (newest first)."""
        ...

    async def touched_since(self, collection_id: int, since: datetime) -> list[TouchedRow]:
        """Targets the collection's actions acted on since then (per-target limits)."""
        ...

    async def lambdas_since(
        self, collection_id: int, since: datetime, limit: int
    ) -> list[tuple[float, float | None]]: ...

    async def degraded_since(self, collection: str) -> datetime | None: ...

    async def record_outcome(self, outcome: OutcomeRecord) -> None: ...

    async def record_decision(
        self, collection_id: int, sampled_at: datetime, decision: Mapping[str, Any]
    ) -> None:
        """What healing made of the sample taken at `sampled_at` (healing/decide.py)."""
        ...

    async def outcomes_since(
        self, since: datetime, collection_id: int | None = None
    ) -> list[OutcomeRow]: ...

    async def save_weights(self, stats: Mapping[str, Any]) -> None: ...

    async def in_flight(self) -> list[ActionRow]: ...

    async def in_force(self, collection_id: int | None, strategies: list[str]) -> list[ActionRow]:
        """Succeeded actions of these strategies whose effect still holds, newest first."""
        ...

    async def mark_lifted(
        self, action_id: int, now: datetime, why: str, by: str | None = None
    ) -> bool:
        """Journal a held action as lifted; `by` an operator (it then counts as a rejection)."""
        ...

    async def undo_succeeded(self, action_id: int, status: str, now: datetime, why: str) -> bool:
        """A succeeded action an operator had rolled back: `rolled_back` or `rollback_failed`
        (the only change a finished row may still see)."""
        ...

    async def load_weights(self) -> dict[str, float]: ...

    async def pending_requests(self) -> list[Request]: ...

    async def finish_request(
        self, request_id: int, status: str, result: Mapping[str, Any], by: str
    ) -> bool: ...


def context_for(row: ActionRow, sql: Sql, settings: HealingConfig) -> RemediationContext:
    """The context a journaled action's rollback runs in, rebuilt from its row alone."""
    return RemediationContext(
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


async def recover(
    journal: HealingJournal,
    registry: StrategyRegistry,
    sql: Sql,
    settings: HealingConfig,
    audit: Audit,
    now: datetime,
    *,
    on_rollback_failed: Callable[[str, str], None] | None = None,
) -> list[tuple[int, str]]:
    """Roll back or mark every in-flight action; returns (action id, new status) pairs.

    `on_rollback_failed(collection, strategy)` is told of each rollback that failed (the
    daemon counts them in `ruvector_healing_rollback_failures_total`)."""
    done: list[tuple[int, str]] = []
    for row in await journal.in_flight():
        # each action is undone and recorded as a whole, even if a shutdown arrives meanwhile
        with anyio.CancelScope(shield=True):
            status = await _recover_and_record(journal, registry, sql, settings, audit, now, row)
        if status is not None:
            done.append((row.id, status))
            if status == "rollback_failed" and on_rollback_failed is not None:
                on_rollback_failed(row.collection, row.strategy_name)
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
        left = f"{was}; not reversible, left as it was"
        cleans: object = strategy
        if isinstance(cleans, Cleans):
            # what the interrupted run left behind (an invalid index) is cleared away
            try:
                with anyio.fail_after(120.0):
                    cleaned = await cleans.cleanup(context_for(row, sql, settings))
            except Exception as exc:
                cleaned = f"cleanup failed: {type(exc).__name__}: {exc}"
            if cleaned:
                left += f"; {cleaned}"
        return "interrupted", left
    if strategy is None:
        return "rollback_failed", f"{was}; strategy {row.strategy_name!r} is not registered here"
    failure = await run_rollback(strategy, context_for(row, sql, settings))
    if failure is not None:
        return "rollback_failed", f"{was}; rollback failed: {failure}"
    return "rolled_back", f"{was}; rolled back at takeover"
