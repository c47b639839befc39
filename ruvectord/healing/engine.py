"""The remediation engine: what healing does after each sample of a collection.

A thin coordinator over three parts: the pure policy (healing/policy.py) judges a snapshot of
history, the executor (healing/executor.py) runs one action from journal row to outcome, and
the holds (healing/holds.py) renew, lift and release what stays in force. The engine never
runs two actions at once (per daemon by a lock, per database by the journal's unique index
and by acting only while holding the actor lock), never acts on Unknown problems, and turns
every failure into a result; nothing here crashes the daemon.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta
from typing import Any, TypeVar

import anyio

from ruvectord.clock import Clock, Shutdown
from ruvectord.config import Config, HealingConfig
from ruvectord.healing.decide import DISABLED, Inputs, choose, recovering
from ruvectord.healing.executor import Actor, Executor, Measure
from ruvectord.healing.holds import Holds
from ruvectord.healing.journal import (
    ActionRow,
    Audit,
    HealingJournal,
    PastRow,
    Pause,
    context_for,
)
from ruvectord.healing.policy import History, Past, Touched, longest_interval
from ruvectord.healing.problems import classify
from ruvectord.healing.strategy import Sql, StrategyRegistry
from ruvectord.healing.undo import run_rollback
from ruvectord.integrity.monitor import Cycle
from ruvectord.logs import get_logger
from ruvectord.metrics import Metrics
from ruvectord.timebase import Instant

log = get_logger("ruvectord.healing")
T = TypeVar("T")

# how many recent actions of a collection the safeguards look at (the window is far smaller)
HISTORY_ROWS = 200
# pending approvals past their TTL are marked expired at most this often (one sweep for all)
EXPIRY_SWEEP_SECONDS = 10.0
# a normal collection with nothing of healing's in force asks again at most this often
CALM_RECHECK_SECONDS = 30.0


class PastLog:
    """When each journaled attempt or rejection was first seen, on the monotonic clock.

    The journal stores wall times; a row's age is read from the wall clock once, when this
    process first sees it (normally the cycle after it was written), and from then on measured
    on the monotonic clock, so a wall-clock step afterwards neither stretches a cooldown nor
    cuts it short.
    """

    def __init__(self) -> None:
        self._seen: dict[tuple[str, int], float] = {}

    def observe(self, rows: list[PastRow], now: Instant, window: float) -> tuple[Past, ...]:
        seen: dict[tuple[str, int], float] = {}
        out = []
        for r in rows:
            key = (r.kind, r.id)
            at = self._seen.get(key)
            if at is None:
                at = now.mono_of(r.at)
            seen[key] = at
            if now.mono - at <= window:
                out.append(Past(r.kind, r.strategy, now.mono - at))
        self._seen = seen
        return tuple(out)


class RemediationEngine:
    def __init__(
        self,
        *,
        config: Callable[[], Config],
        registry: StrategyRegistry,
        journal: HealingJournal,
        sql: Sql,
        clock: Clock,
        metrics: Metrics,
        actor: Actor,
        audit: Audit,
        node: str,
        shutdown: Shutdown | None = None,
        pause: Callable[[], Pause | None] = lambda: None,
    ) -> None:
        self._config = config
        self.pause = pause
        self.registry = registry
        self.journal = journal
        self.clock = clock
        self.metrics = metrics
        self.actor = actor
        self.audit = audit

        def set_weights(weights: Mapping[str, float]) -> None:
            registry.weights = dict(weights)

        self.executor = Executor(
            config=config,
            journal=journal,
            sql=sql,
            clock=clock,
            metrics=metrics,
            actor=actor,
            audit=audit,
            node=node,
            shutdown=shutdown or Shutdown(),
            weights=set_weights,
        )
        self.holds = Holds(
            registry=registry,
            journal=journal,
            sql=sql,
            settings=lambda: self._config().healing,
            clock=clock,
            audit=audit,
        )
        self._pasts: dict[int, PastLog] = {}
        self._alerted: set[tuple[int, str]] = set()  # (collection, class) alerted this episode
        self._one_at_a_time = anyio.Lock()
        self._busy_with = ""
        # collection -> monotonic time nothing of healing's was found in force there. Only
        # this daemon's own steps (all through `exclusively`) put something in force while it
        # acts, so a normal collection need not ask again each sample: a quiet collection
        # costs no query, rechecked every CALM_RECHECK_SECONDS all the same
        self._calm: dict[int, float] = {}
        self._steps = 0  # counts each step's start and end (`exclusively`)
        self._expiry_checked = -math.inf  # monotonic time of the last approval expiry sweep

    @property
    def settings(self) -> HealingConfig:
        return self._config().healing

    async def load_weights(self) -> None:
        self.registry.weights = await self.journal.load_weights()

    async def exclusively(self, what: str, step: Callable[[], Awaitable[T]]) -> T:
        """Run a step that changes the database while no action runs anywhere in this daemon."""
        async with self._one_at_a_time:
            self._calm.clear()  # whatever it does may put something in force
            self._steps += 1
            self._busy_with = what
            try:
                return await step()
            finally:
                self._busy_with = ""
                self._steps += 1
                self._calm.clear()

    async def why_off(self) -> str | None:
        """None while healing may act; else why not (the config file, or an operator's pause
        stored in the database as the dynamic setting healing.enabled)."""
        if self.settings.enabled:
            return None
        pause = self.pause()
        if pause is None:
            return DISABLED
        why = f": {pause.reason}" if pause.reason else ""
        return f"healing is paused by {pause.by} at {pause.at:%Y-%m-%d %H:%M:%S %Z}{why}"

    # ------------------------------------------------------------------ the monitor's hooks

    async def export(self, collection_id: int, name: str) -> None:
        await self.executor.export(collection_id, name)

    async def after_sample(self, cycle: Cycle, monitor: Measure) -> str | None:
        name, cid = cycle.collection.name, cycle.collection_id
        degraded = cycle.state.degraded
        off = await self.why_off()
        self.metrics.healing_enabled.labels(name).set(0 if off else 1)
        if not self.actor.is_actor:
            self._calm.clear()  # another actor may put things in force meanwhile
            return f"not acting: {self.actor.why_not}" if degraded else None
        if off is not None:
            lifted = await self.exclusively(name, lambda: self.holds.release(cid, off))
            if degraded:
                kind = "paused" if self.settings.enabled else "disabled"
                await self._record(cycle, {"g": off, "k": kind})
            if lifted:
                return f"{off}; lifted {', '.join(lifted)}"
            return off if degraded else None
        mono = self.clock.monotonic()
        if mono - self._expiry_checked >= EXPIRY_SWEEP_SECONDS:
            # one sweep for every collection's approvals, not one per collection-sample
            self._expiry_checked = mono
            for expired in await self.journal.expire_pending(self.clock.now()):
                log.warning("approval_expired", action_id=expired)
        lease = self.executor.lease_seconds()
        if not degraded:
            self.metrics.healing_cooldown.labels(name).set(0)
            self._alerted = {k for k in self._alerted if k[0] != cid}
            calm = self._calm.get(cid)
            if calm is not None and mono - calm < CALM_RECHECK_SECONDS:
                return None
            steps = self._steps
            if not await self.holds.in_force(cid):
                # calm only if no step ran or began meanwhile (its effect may be uncommitted)
                if steps == self._steps and not self._one_at_a_time.locked():
                    self._calm[cid] = mono
                return None
            warn = self._config().integrity.threshold_high  # what counts toward stress
            done = await self.exclusively(
                name,
                lambda: self.holds.let_go(cid, lease, lambda_cut=cycle.lambda_cut, warn_below=warn),
            )
            return f"integrity is normal again: {'; '.join(done)}" if done else None
        reapplied = await self.holds.reapply(cid, lease)
        # renewing is not a step (a long action elsewhere must not let leases lapse); undoing
        # what lapsed is one, like any other that changes the database
        lapsed: list[str] = []
        if lapsed_rows := await self.holds.renew(cid, lease):
            why = "its lease lapsed or an operator lifted it"
            lapsed = await self.exclusively(name, lambda: self.holds.lift(lapsed_rows, why))
        note = "".join(f"; {r}" for r in reapplied)
        note += f"; lifted {', '.join(lapsed)}" if lapsed else ""
        holding = recovering(cycle.lambda_cut, self._config().integrity.threshold_high)
        if holding is not None:
            # the state machine is holding for recovery; there is nothing to heal right now
            await self._record(cycle, {"g": holding, "k": "recovering"})
            return holding + note
        if self._one_at_a_time.locked():
            # one action at a time; this collection's loop keeps sampling meanwhile
            busy = f"waiting: a healing action on {self._busy_with} is in progress"
            await self._record(cycle, {"g": busy, "k": "busy"})
            return busy + note
        return await self.exclusively(name, lambda: self._decide(cycle, monitor)) + note

    async def _decide(self, cycle: Cycle, monitor: Measure) -> str:
        cfg = self.settings
        cid, name = cycle.collection_id, cycle.collection.name
        problem = classify(cycle.result, cycle.snapshot, cfg.classifier)
        for row in await self.journal.approved_actions(cid):
            strategy = self.registry.get(row.strategy_name)
            if strategy is None:
                await self.journal.update_action(
                    row.id, "failed", error_message="strategy is not registered"
                )
                continue
            await self._record(
                cycle,
                {
                    "g": f"running approved action {row.id} ({row.strategy_name})",
                    "k": "approved",
                    "c": problem.kind.value,
                },
            )
            outcome = await self.executor.run(strategy, problem, cycle, monitor, approved=row.id)
            return f"approved {outcome.describe()}"

        inputs = Inputs(self.clock.now(), await self.history(cycle), dict(self.registry.weights))
        # the pure selection `ruvectord replay` runs again on what is recorded here
        choice = choose(problem, inputs, cfg, self.registry, name)
        await self._record(cycle, choice.record(problem, inputs))
        self.metrics.healing_cooldown.labels(name).set(1 if choice.cooling else 0)
        if choice.blocked:
            log.info(
                "healing_deferred",
                collection=name,
                problem=problem.kind.value,
                reason=choice.why,
            )
            return f"{problem.describe()}; {choice.why}"
        selection = choice.selection
        assert selection is not None
        notes = "".join(f"; {n}" for n in selection.notes)
        if selection.strategy is None:
            log.warning(
                "no_strategy", collection=name, problem=problem.kind.value, reason=selection.reason
            )
            line = f"{problem.describe()}; {selection.reason}{notes}"
            if (cid, problem.kind.value) not in self._alerted:
                # a degradation nothing here can act on needs a person: said once an episode,
                # as a signed `alert` event (and in every cycle's line meanwhile); Prometheus
                # sees it as RuVectorProlongedDegradation
                self._alerted.add((cid, problem.kind.value))
                await self.audit(
                    collection=name,
                    event_type="alert",
                    problem=problem.kind.value,
                    error=f"no automatic healing: {line}",
                )
            return line
        strategy = selection.strategy
        if choice.approval:
            return await self.executor.ask_approval(strategy, problem, cycle)
        log.info(
            "strategy_selected",
            collection=name,
            strategy=strategy.name,
            problem=problem.kind.value,
            why=selection.reason,
        )
        # the strategy leaves alone the targets it acted on too recently (its plan reads this)
        params = {"resting_targets": dict(choice.resting)}
        outcome = await self.executor.run(strategy, problem, cycle, monitor, params=params)
        return f"{problem.describe()}; {outcome.describe()}{notes}"

    # ------------------------------------------------------------------ manual requests

    async def execute(
        self,
        cycle: Cycle,
        monitor: Measure,
        strategy_name: str,
        params: Mapping[str, Any],
        by: str,
    ) -> str:
        """An operator's `ruvector_healing_execute`: the chosen strategy, now.

        It skips the cooldown, the attempt window and the strategy's windows (a person chose
        the moment) and counts as the approval a strategy may need (the caller holds the
        operator role); it never skips the impact cap unless `force_impact` says so. The line
        it returns says what was skipped.
        """
        cfg = self.settings
        strategy = self.registry.get(strategy_name)
        if strategy is None:
            return (
                f"unknown strategy {strategy_name!r} (strategies: {', '.join(self.registry.names)})"
            )
        skipped = ["cooldown and attempt window skipped (manual)"]
        if strategy.impact > cfg.max_auto_heal_impact:
            if not params.get("force_impact"):
                return (
                    f"{strategy.name} has impact {strategy.impact:g} above "
                    f"max_auto_heal_impact {cfg.max_auto_heal_impact:g}; ask again with "
                    '{"force_impact": true} to run it anyway'
                )
            skipped.append(f"impact cap {cfg.max_auto_heal_impact:g} overridden by {by}")
        if strategy.name in cfg.require_approval_strategies:
            skipped.append(f"approved by {by}'s request")
        problem = classify(cycle.result, cycle.snapshot, cfg.classifier)
        if problem.kind not in strategy.handles:
            skipped.append(f"{strategy.name} does not handle {problem.kind.value}; run as asked")
        own = {k: v for k, v in params.items() if k not in ("dry_run", "force_impact")}
        if params.get("dry_run"):
            ctx = self.executor.context(strategy, problem, cycle)
            ctx.params.update(own)
            ctx.dry_run = True
            plan = await strategy.plan(ctx)
            would: Mapping[str, Any] = {}
            if strategy.supports_dry_run:
                ctx.rollback_data = plan
                would = (await strategy.execute(ctx)).metadata
            return f"dry run of {strategy.name}: plan {plan}; would {dict(would) or 'act'}"
        outcome = await self.exclusively(
            cycle.collection.name,
            lambda: self.executor.run(strategy, problem, cycle, monitor, params=own),
        )
        return f"{outcome.describe()} ({'; '.join(skipped)})"

    async def rollback(self, action_id: int, by: str) -> str:
        """An operator's `ruvector_healing_rollback`: undo a succeeded reversible action."""
        gone = f"action {action_id} is no longer in force; nothing to roll back"
        if (first := await self._in_force(action_id)) is None:
            return gone
        why = f"rolled back by {by}"

        async def undo() -> str:
            # asked again inside the step: a lapsed lease, undone as a step too, may have
            # ended the action while this request waited its turn
            if (row := await self._in_force(action_id)) is None:
                return gone
            strategy = self.registry.get(row.strategy_name)
            assert strategy is not None
            ctx = context_for(row, self.executor.sql, self.settings)
            failure = await run_rollback(strategy, ctx)
            status = "rolled_back" if failure is None else "rollback_failed"
            detail = why if failure is None else f"{why}; failed: {failure}"
            if not await self.journal.undo_succeeded(row.id, status, self.clock.now(), detail):
                # ended meanwhile by another path (its lease lapsed, another operator): the
                # journal keeps that path's word, and so does the answer
                return (
                    f"{row.strategy_name} (action {row.id}) was no longer in force when its "
                    f"rollback {'finished' if failure is None else 'failed'}; nothing recorded"
                )
            if failure is not None:
                self.metrics.rollback_failures.labels(row.collection, row.strategy_name).inc()
                log.error("rollback_failed", action_id=row.id, msg=detail)
            await self.audit(
                action_id=row.id,
                status=status,
                strategy=row.strategy_name,
                collection=row.collection,
                reason=detail,
                **({"event_type": "alert"} if failure is not None else {}),
            )
            if failure is not None:
                return f"rollback of {row.strategy_name} (action {row.id}) failed: {failure}"
            return f"{row.strategy_name} (action {row.id}) rolled back"

        return await self.exclusively(first.collection, undo)

    async def _in_force(self, action_id: int) -> ActionRow | None:
        rows = await self.journal.in_force(None, self.registry.names)
        return next((r for r in rows if r.id == action_id), None)

    async def _record(self, cycle: Cycle, decision: Mapping[str, Any]) -> None:
        """Keep what healing made of this degraded sample, for `ruvectord replay`; a failure
        to record is logged, never the reason a decision is not carried out."""
        try:
            await self.journal.record_decision(
                cycle.collection_id, cycle.snapshot.taken_at, decision
            )
        except Exception as exc:
            log.warning("decision_not_recorded", collection=cycle.collection.name, error=str(exc))

    async def history(self, cycle: Cycle) -> History:
        """The safeguards' view: the window's attempts and rejections, this episode's results."""
        cfg = self.settings
        cid, name = cycle.collection_id, cycle.collection.name
        rows = await self.journal.history(cid, HISTORY_ROWS)
        past = self._pasts.setdefault(cid, PastLog()).observe(
            rows, self.clock.instant(), cfg.attempt_window_seconds
        )
        episode: tuple[tuple[float, float | None], ...] = ()
        if cfg.ineffective_after > 0:
            start = await self.journal.degraded_since(name) or (
                self.clock.now() - timedelta(seconds=cfg.attempt_window_seconds)
            )
            episode = tuple(await self.journal.lambdas_since(cid, start, cfg.ineffective_after))
        touched: tuple[Touched, ...] = ()
        longest = longest_interval(cfg.strategies)
        if longest > 0:
            now = self.clock.now()
            found = await self.journal.touched_since(cid, now - timedelta(seconds=longest))
            touched = tuple(
                Touched(r.strategy, r.target, max(0.0, (now - r.at).total_seconds())) for r in found
            )
        return History(past, episode, touched)
