"""What ruvectord holds in force after an action succeeded, and how it lets go.

A "lift on recovery" strategy's effect (a throttle) is a brake for the incident, not a new
limit. While the collection stays degraded, the acting daemon renews each leased effect every
cycle. Once the collection is normal again, a brake that can step (`Steps`) is let go in
steps with holds and back-off (healing/brake.py), renewed meanwhile; any other effect is undone
at once. Healing switched off or paused, or the collection leaving the configuration, undoes
everything at once. Undoing is the strategy's own rollback, newest first, journaled `lifted`
with the reason. If the daemon is gone, nobody renews the lease and the effect lapses by
itself; the next actor finds the lapse and journals it.

Where a brake is in its let-go lives in this daemon's memory: a new actor starts the let-go
afresh from the full level, which errs on the side of the brake.
"""

from __future__ import annotations

from collections.abc import Callable

from ruvectord.clock import Clock
from ruvectord.config import HealingConfig
from ruvectord.healing.brake import Lifting, LiftPolicy, Memory, begin, next_move, remember
from ruvectord.healing.journal import ActionRow, Audit, HealingJournal, context_for
from ruvectord.healing.strategy import Sql, Steps, StrategyRegistry
from ruvectord.healing.undo import run_rollback
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
        # (collection id, strategy) -> where its let-go is, and what the last one taught
        self._lifting: dict[tuple[int, str], Lifting] = {}
        self._memory: dict[tuple[int, str], Memory] = {}

    @property
    def _held(self) -> list[str]:
        return [s.name for s in self.registry.strategies if s.lift_on_recovery]

    async def in_force(self, collection_id: int | None) -> list[ActionRow]:
        return await self.journal.in_force(collection_id, self._held)

    async def renew(self, collection_id: int, lease_seconds: float) -> list[ActionRow]:
        """Extend every leased effect of the collection; return what has lapsed, for the
        caller to lift (`lift`, one step at a time: undoing a move moves rows).

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
        return lapsed

    async def let_go(
        self, collection_id: int, lease_seconds: float, *, lambda_cut: float, warn_below: float
    ) -> list[str]:
        """Integrity is normal: step each steppable brake down (or hold it, or back up when
        lambda dips below `warn_below`), lift the rest; one phrase per thing done."""
        rows = await self.in_force(collection_id)
        policy = LiftPolicy.from_config(self._settings().throttle)
        now = self.clock.monotonic()
        newest: dict[str, ActionRow] = {}
        for row in rows:  # newest first
            newest.setdefault(row.strategy_name, row)
        out: list[str] = []
        at_once = [r for r in rows if policy.steps <= 1 or self._stepper(r.strategy_name) is None]
        if at_once and (lifted := await self.lift(at_once, "integrity is normal again")):
            out.append(f"lifted {', '.join(lifted)}")
        for name, row in newest.items():
            strategy = self._stepper(name)
            if strategy is None or any(r.strategy_name == name for r in at_once):
                continue
            key = (collection_id, name)
            stack = [r for r in rows if r.strategy_name == name]
            lifting = self._lifting.get(key) or begin(policy, now, self._memory.get(key))
            lifting, move = next_move(
                lifting, policy, now=now, lambda_cut=lambda_cut, warn_below=warn_below
            )
            self._lifting[key] = lifting
            if move.kind == "lift":
                why = f"integrity is normal again; {move.why}"
                if lifted := await self.lift(stack, why):
                    out.append(f"lifted {', '.join(lifted)} ({move.why})")
                continue
            ctx = context_for(row, self.sql, self._settings())
            ctx.lease_seconds = lease_seconds
            if not await strategy.step(ctx, move.fraction):
                why = "its lease lapsed or an operator lifted it"
                if lifted := await self.lift(stack, why):
                    out.append(f"lifted {', '.join(lifted)} ({why})")
                continue
            if move.kind != "hold":
                log.info(
                    "brake_stepped",
                    collection=row.collection,
                    action_id=row.id,
                    strategy=name,
                    move=move.kind,
                    fraction=move.fraction,
                    hold_seconds=lifting.hold,
                    msg=move.why,
                )
            out.append(f"{name}: {move.why}")
        return out

    async def reapply(self, collection_id: int, lease_seconds: float) -> list[str]:
        """Degraded again while a brake was being let go: back to its full level, and the
        next let-go holds longer."""
        out: list[str] = []
        now = self.clock.monotonic()
        for (cid, name), lifting in list(self._lifting.items()):
            if cid != collection_id:
                continue
            del self._lifting[(cid, name)]
            self._memory[(cid, name)] = remember(lifting, now)
            strategy = self._stepper(name)
            if lifting.step == 0 or strategy is None:
                continue
            rows = [r for r in await self.in_force(collection_id) if r.strategy_name == name]
            if not rows:
                continue
            ctx = context_for(rows[0], self.sql, self._settings())
            ctx.lease_seconds = lease_seconds
            if await strategy.step(ctx, 1.0):
                out.append(f"{name} back to its full level (degraded again while letting go)")
                log.warning(
                    "brake_reapplied",
                    collection=rows[0].collection,
                    action_id=rows[0].id,
                    strategy=name,
                    msg=out[-1],
                )
        return out

    def _stepper(self, name: str) -> Steps | None:
        strategy: object = self.registry.get(name)
        return strategy if isinstance(strategy, Steps) else None

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
            failure = await run_rollback(strategy, context_for(row, self.sql, self._settings()))
            if failure is not None:
                log.error(
                    "lift_failed", action_id=row.id, strategy=row.strategy_name, error=failure
                )
                lifted.append(f"could not lift {row.strategy_name} (action {row.id}): {failure}")
                continue
            key = (row.collection_id, row.strategy_name)
            if key in self._lifting:
                self._memory[key] = remember(self._lifting.pop(key), self.clock.monotonic())
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
