"""What ruvectord holds in force after an action succeeded, and how it lets go.

A "lift on recovery" strategy's effect (a throttle) is a brake for the incident, not a new
limit. While the collection stays degraded, the acting daemon renews each leased effect every
cycle; once the collection is normal again, or healing is switched off or paused, or the
collection leaves the configuration, the effect is undone by the strategy's own rollback,
newest first, and journaled `lifted` with the reason. If the daemon is gone, nobody renews the
lease and the effect lapses by itself; the next actor finds the lapse and journals it.
"""

from __future__ import annotations

from collections.abc import Callable

import anyio

from ruvectord.clock import Clock
from ruvectord.config import HealingConfig
from ruvectord.healing.journal import ActionRow, Audit, HealingJournal, context_for
from ruvectord.healing.strategy import Sql, StrategyRegistry
from ruvectord.logs import get_logger

log = get_logger("ruvectord.healing.holds")


class Holds:
    def __init__(
        self,
        *,
        registry: StrategyRegistry,
        journal: HealingJournal,
        sql: Sql,
        settings: Callable[[], HealingConfig],
        clock: Clock,
        audit: Audit,
    ) -> None:
        self.registry = registry
        self.journal = journal
        self.sql = sql
        self._settings = settings
        self.clock = clock
        self.audit = audit

    @property
    def _held(self) -> list[str]:
        return [s.name for s in self.registry.strategies if s.lift_on_recovery]

    async def in_force(self, collection_id: int | None) -> list[ActionRow]:
        return await self.journal.in_force(collection_id, self._held)

    async def renew(self, collection_id: int, lease_seconds: float) -> list[str]:
        """Extend every leased effect of the collection; lift (and say so) what has lapsed.

        Only the newest action of a strategy holds the lease (an older one's rows were taken
        over by it); when that one has lapsed, the whole stack is undone, newest first.
        """
        rows = await self.in_force(collection_id)
        lapsed: list[ActionRow] = []
        seen: set[str] = set()
        for row in rows:  # newest first
            strategy = self.registry.get(row.strategy_name)
            if strategy is None or not strategy.leased or row.strategy_name in seen:
                continue
            seen.add(row.strategy_name)
            ctx = context_for(row, self.sql, self._settings())
            ctx.lease_seconds = lease_seconds
            if not await strategy.renew(ctx):
                lapsed += [r for r in rows if r.strategy_name == row.strategy_name]
        if not lapsed:
            return []
        return await self.lift(lapsed, "its lease lapsed or an operator lifted it")

    async def release(
        self,
        collection_id: int | None,
        why: str,
        *,
        collection: str | None = None,
        by: str | None = None,
    ) -> list[str]:
        """Undo everything held on a collection (by id or by name; neither: on every one).

        `by`: the operator who asked; their lift then holds the strategy off for the
        collection, as a rejection does (healing/policy.py)."""
        rows = await self.in_force(collection_id)
        if collection is not None:
            rows = [r for r in rows if r.collection == collection]
        return await self.lift(rows, why, by=by)

    async def lift(self, rows: list[ActionRow], why: str, *, by: str | None = None) -> list[str]:
        """Roll back each action (newest first) and journal it lifted; returns what was."""
        lifted: list[str] = []
        for row in sorted(rows, key=lambda r: -r.id):
            strategy = self.registry.get(row.strategy_name)
            if strategy is None:
                continue
            ctx = context_for(row, self.sql, self._settings())
            try:
                with anyio.fail_after(max(10.0, 2 * strategy.estimated_duration)):
                    await strategy.rollback(ctx)
            except Exception as exc:
                log.error(
                    "lift_failed",
                    action_id=row.id,
                    strategy=row.strategy_name,
                    error=f"{type(exc).__name__}: {exc}",
                )
                lifted.append(f"could not lift {row.strategy_name} (action {row.id}): {exc}")
                continue
            if await self.journal.mark_lifted(row.id, self.clock.now(), why, by):
                await self.audit(
                    action_id=row.id,
                    status="lifted",
                    strategy=row.strategy_name,
                    collection=row.collection,
                    reason=why,
                )
                log.info(
                    "healing_lifted",
                    collection=row.collection,
                    action_id=row.id,
                    strategy=row.strategy_name,
                    reason=why,
                )
                lifted.append(f"{row.strategy_name} (action {row.id})")
        return lifted
