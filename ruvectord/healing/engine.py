"""The remediation engine: what healing does after each sample of a collection.

A thin coordinator over three parts: the pure policy (healing/policy.py) judges a snapshot of
history, the executor (healing/executor.py) runs one action from journal row to outcome, and
the holds (healing/holds.py) renew, lift and release what stays in force. The engine never
runs two actions at once (per daemon by a lock, per database by the journal's unique index
and by acting only while holding the actor lock), never acts on Unknown problems, and turns
every failure into a result; nothing here crashes the daemon.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta
from typing import TypeVar

import anyio

from ruvectord.clock import Clock, Shutdown
from ruvectord.config import Config, HealingConfig
from ruvectord.healing.executor import Actor, Executor, Measure
from ruvectord.healing.holds import Holds
from ruvectord.healing.journal import Audit, Control, HealingJournal, PastRow
from ruvectord.healing.policy import History, Past, held_off, judge
from ruvectord.healing.problems import classify
from ruvectord.healing.strategy import Sql, StrategyRegistry
from ruvectord.integrity.monitor import Cycle
from ruvectord.logs import get_logger
from ruvectord.metrics import Metrics
from ruvectord.timebase import Instant

log = get_logger("ruvectord.healing")
T = TypeVar("T")

# how many recent actions of a collection the safeguards look at (the window is far smaller)
HISTORY_ROWS = 200


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
    ) -> None:
        self._config = config
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
            settings=lambda: config().healing,
            clock=clock,
            audit=audit,
        )
        self._pasts: dict[int, PastLog] = {}
        self._one_at_a_time = anyio.Lock()
        self._busy_with = ""

    @property
    def settings(self) -> HealingConfig:
        return self._config().healing

    async def load_weights(self) -> None:
        self.registry.weights = await self.journal.load_weights()

    async def exclusively(self, what: str, step: Callable[[], Awaitable[T]]) -> T:
        """Run a step that changes the database while no action runs anywhere in this daemon."""
        async with self._one_at_a_time:
            self._busy_with = what
            try:
                return await step()
            finally:
                self._busy_with = ""

    async def why_off(self) -> str | None:
        """None while healing may act; else why not (the config, or an operator's pause)."""
        if not self.settings.enabled:
            return "healing is disabled (healing.enabled: false)"
        control: Control = await self.journal.control()
        if control.paused:
            when = f" at {control.changed_at:%Y-%m-%d %H:%M:%S %Z}" if control.changed_at else ""
            why = f": {control.reason}" if control.reason else ""
            return f"healing is paused by {control.changed_by or 'an operator'}{when}{why}"
        return None

    # ------------------------------------------------------------------ the monitor's hook

    async def after_sample(self, cycle: Cycle, monitor: Measure) -> str | None:
        name, cid = cycle.collection.name, cycle.collection_id
        degraded = cycle.state.degraded
        off = await self.why_off()
        self.metrics.healing_enabled.labels(name).set(0 if off else 1)
        if not self.actor.is_actor:
            return f"not acting: {self.actor.why_not}" if degraded else None
        if off is not None:
            lifted = await self.exclusively(name, lambda: self.holds.release(cid, off))
            if lifted:
                return f"{off}; lifted {', '.join(lifted)}"
            return off if degraded else None
        for expired in await self.journal.expire_pending(self.clock.now()):
            log.warning("approval_expired", action_id=expired)
        if not degraded:
            self.metrics.healing_cooldown.labels(name).set(0)
            lifted = await self.exclusively(
                name, lambda: self.holds.release(cid, "integrity is normal again")
            )
            return f"integrity is normal again: lifted {', '.join(lifted)}" if lifted else None
        lapsed = await self.holds.renew(cid, self.executor.lease_seconds())
        note = f"; lifted {', '.join(lapsed)}" if lapsed else ""
        high = self._config().integrity.threshold_high
        if cycle.lambda_cut >= high:
            # the state machine is holding for recovery; there is nothing to heal right now
            return f"recovering: lambda {cycle.lambda_cut:.3f} >= {high:g}, no action needed{note}"
        if self._one_at_a_time.locked():
            # one action at a time; this collection's loop keeps sampling meanwhile
            return f"waiting: a healing action on {self._busy_with} is in progress{note}"
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
            outcome = await self.executor.run(strategy, problem, cycle, monitor, approved=row.id)
            return f"approved {outcome.describe()}"

        history = await self.history(cycle)
        verdict = judge(problem, history, cfg)
        self.metrics.healing_cooldown.labels(name).set(1 if verdict.cooling else 0)
        if verdict.blocked is not None:
            log.info(
                "healing_deferred",
                collection=name,
                problem=problem.kind.value,
                reason=verdict.blocked,
            )
            return f"{problem.describe()}; {verdict.blocked}"
        selection = self.registry.select(
            problem, cfg.max_auto_heal_impact, held_off(history, cfg), collection=name
        )
        notes = "".join(f"; {n}" for n in selection.notes)
        if selection.strategy is None:
            log.warning(
                "no_strategy", collection=name, problem=problem.kind.value, reason=selection.reason
            )
            return f"{problem.describe()}; {selection.reason}{notes}"
        strategy = selection.strategy
        if strategy.name in cfg.require_approval_strategies:
            return await self.executor.ask_approval(strategy, problem, cycle)
        log.info(
            "strategy_selected",
            collection=name,
            strategy=strategy.name,
            problem=problem.kind.value,
            why=selection.reason,
        )
        outcome = await self.executor.run(strategy, problem, cycle, monitor)
        return f"{problem.describe()}; {outcome.describe()}{notes}"

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
        return History(past, episode)
