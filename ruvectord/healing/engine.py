"""The remediation engine: classify, decide safely, execute with a timeout, verify, roll back,
journal, learn. The self-healing design's seven steps, with its safety limits.

It never runs two actions at once (per daemon by a lock, per database by the journal's unique
index and by only acting while holding the actor lock), never acts on Unknown problems, and
never leaves a half-done action: the journal row exists before anything changes, and an
action interrupted by cancellation is rolled back in a shielded scope (or, after a crash, by
the next actor's recovery). Failures become results; nothing here crashes the daemon.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

import anyio

from ruvectord.clock import Clock
from ruvectord.config import Config, HealingConfig
from ruvectord.healing.learning import OutcomeRow, effectiveness, strategy_weights
from ruvectord.healing.problems import Problem, ProblemKind, classify, problem_from_json
from ruvectord.healing.strategy import (
    RemediationContext,
    RemediationResult,
    Sql,
    Strategy,
    StrategyRegistry,
)
from ruvectord.integrity.monitor import Cycle
from ruvectord.logs import get_logger
from ruvectord.metrics import Metrics

log = get_logger("ruvectord.healing")

IN_FLIGHT = ("running", "verifying", "rolling_back")


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

    async def attempts_since(self, collection_id: int, since: datetime) -> list[datetime]: ...

    async def lambdas_since(
        self, collection_id: int, since: datetime, limit: int
    ) -> list[tuple[float, float | None]]: ...

    async def degraded_since(self, collection: str) -> datetime | None: ...

    async def record_outcome(self, outcome: OutcomeRecord) -> None: ...

    async def outcomes_since(
        self, since: datetime, collection_id: int | None = None
    ) -> list[OutcomeRow]: ...

    async def save_weights(self, stats: Mapping[str, Any]) -> None: ...

    async def in_flight(self) -> list[ActionRow]: ...

    async def liftable(self, collection_id: int, strategies: list[str]) -> list[ActionRow]: ...

    async def mark_lifted(self, action_id: int, now: datetime) -> None: ...

    async def load_weights(self) -> dict[str, float]: ...


class Actor(Protocol):
    """Whether this daemon may act now (holds the actor lock, not on a standby)."""

    @property
    def is_actor(self) -> bool: ...

    @property
    def why_not(self) -> str: ...

    def on_lost(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call `callback` the moment acting stops; returns a function that unregisters it."""
        ...


class Reading(Protocol):
    @property
    def lambda_cut(self) -> float: ...


class Measure(Protocol):
    """A fresh lambda_cut reading of the collection (the monitor, in the daemon)."""

    async def measure(self) -> Reading: ...


Audit = Callable[..., Awaitable[None]]


@dataclass
class Outcome:
    """What one healing attempt came to (also what the monitor's human line says)."""

    strategy: str
    action_id: int | None
    status: str
    verified: bool = False
    initial_lambda: float = 0.0
    final_lambda: float | None = None
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        head = self.strategy + (f" (action {self.action_id})" if self.action_id else "")
        if self.status in ("rollback_failed", "skipped"):
            return f"{head} {self.status}: {self.error}"
        if self.status == "succeeded":
            return f"{head} verified: lambda {self.initial_lambda:.3f} -> {self.final_lambda:.3f}"
        if self.final_lambda is not None:
            change = f"lambda {self.initial_lambda:.3f} -> {self.final_lambda:.3f}, not verified"
        else:
            change = self.error or "failed"
        return f"{head} {self.status}: {change}"


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
    ) -> None:
        self._config = config
        self.registry = registry
        self.journal = journal
        self.sql = sql
        self.clock = clock
        self.metrics = metrics
        self.actor = actor
        self.audit = audit
        self.node = node
        self._one_at_a_time = anyio.Lock()
        self._busy_with = ""

    @property
    def settings(self) -> HealingConfig:
        return self._config().healing

    async def load_weights(self) -> None:
        self.registry.weights = await self.journal.load_weights()

    # ------------------------------------------------------------------ the monitor's hook

    async def after_sample(self, cycle: Cycle, monitor: Measure) -> str | None:
        cfg = self.settings
        name = cycle.collection.name
        self.metrics.healing_enabled.labels(name).set(1 if cfg.enabled else 0)
        degraded = cycle.state.degraded
        if not cfg.enabled:
            return "healing is disabled" if degraded else None
        if not self.actor.is_actor:
            return f"not acting: {self.actor.why_not}" if degraded else None
        now = self.clock.now()
        for expired in await self.journal.expire_pending(now):
            log.warning("approval_expired", action_id=expired)
        if not degraded:
            self.metrics.healing_cooldown.labels(name).set(0)
        else:
            high = self._config().integrity.threshold_high
            if cycle.lambda_cut >= high:
                # the state machine is holding for recovery; there is nothing to heal right now
                return f"recovering: lambda {cycle.lambda_cut:.3f} >= {high:g}, no action needed"
        if self._one_at_a_time.locked():
            # one action at a time; this collection's loop keeps sampling meanwhile
            return f"waiting: a healing action on {self._busy_with} is in progress"
        async with self._one_at_a_time:
            self._busy_with = name
            try:
                if not degraded:
                    return await self._lift(cycle)
                return await self._decide(cycle, monitor)
            finally:
                self._busy_with = ""

    async def _lift(self, cycle: Cycle) -> str | None:
        """Back to normal: undo, newest first, what was only meant for the incident."""
        names = [
            n
            for n in self.registry.names
            if getattr(self.registry.get(n), "lift_on_recovery", False)
        ]
        lifted = []
        for row in await self.journal.liftable(cycle.collection_id, names):
            strategy = self.registry.get(row.strategy_name)
            assert strategy is not None
            ctx = self._context(
                strategy, problem_from_json(row.problem_class, row.problem_details), cycle
            )
            ctx.rollback_data, ctx.action_id = row.rollback_data, row.id
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
                return f"could not lift {row.strategy_name} (action {row.id}): {exc}"
            await self.journal.mark_lifted(row.id, self.clock.now())
            await self.audit(
                action_id=row.id,
                status="lifted",
                strategy=row.strategy_name,
                collection=cycle.collection.name,
            )
            lifted.append(f"{row.strategy_name} (action {row.id})")
        if not lifted:
            return None
        log.info("healing_lifted", collection=cycle.collection.name, actions=lifted)
        return f"integrity is normal again: lifted {', '.join(lifted)}"

    async def _decide(self, cycle: Cycle, monitor: Measure) -> str:
        cfg = self.settings
        cid = cycle.collection_id
        for row in await self.journal.approved_actions(cid):
            strategy = self.registry.get(row.strategy_name)
            if strategy is None:
                await self.journal.update_action(
                    row.id, "failed", error_message="strategy is not registered"
                )
                continue
            problem = classify(cycle.result, cycle.snapshot, cfg.classifier)
            outcome = await self._heal(strategy, problem, cycle, monitor, approved=row.id)
            return f"approved {outcome.describe()}"

        problem = classify(cycle.result, cycle.snapshot, cfg.classifier)
        blocked = await self.should_auto_heal(problem, cycle)
        if blocked is not None:
            log.info(
                "healing_deferred",
                collection=cycle.collection.name,
                problem=problem.kind.value,
                reason=blocked,
            )
            return f"{problem.describe()}; {blocked}"
        selection = self.registry.select(problem, cfg.max_auto_heal_impact, cycle.collection.name)
        if selection.strategy is None:
            log.warning(
                "no_strategy",
                collection=cycle.collection.name,
                problem=problem.kind.value,
                reason=selection.reason,
            )
            return f"{problem.describe()}; {selection.reason}"
        strategy = selection.strategy
        if strategy.name in cfg.require_approval_strategies:
            return await self._ask_approval(strategy, problem, cycle)
        log.info(
            "strategy_selected",
            collection=cycle.collection.name,
            strategy=strategy.name,
            problem=problem.kind.value,
            why=selection.reason,
        )
        outcome = await self._heal(strategy, problem, cycle, monitor)
        return f"{problem.describe()}; {outcome.describe()}"

    # ------------------------------------------------------------------ step 2: safeguards

    async def should_auto_heal(self, problem: Problem, cycle: Cycle) -> str | None:
        """None when healing may proceed, else why not (in words)."""
        cfg = self.settings
        name, cid = cycle.collection.name, cycle.collection_id
        if problem.kind is ProblemKind.UNKNOWN:
            return "deferred for human review (unknown problems are never healed automatically)"
        now = self.clock.now()
        window_start = now - timedelta(seconds=cfg.attempt_window_seconds)
        attempts = await self.journal.attempts_since(cid, window_start)
        if attempts:
            since_last = (now - max(attempts)).total_seconds()
            cooling = since_last < cfg.min_healing_interval_seconds
            self.metrics.healing_cooldown.labels(name).set(1 if cooling else 0)
            if cooling:
                left = cfg.min_healing_interval_seconds - since_last
                return f"cooldown: last attempt {since_last:.0f} s ago, next in {left:.0f} s"
        else:
            self.metrics.healing_cooldown.labels(name).set(0)
        if len(attempts) >= cfg.max_attempts_per_window:
            return (
                f"{len(attempts)} attempts in the last {cfg.attempt_window_seconds:g} s "
                f"(max {cfg.max_attempts_per_window})"
            )
        k = cfg.ineffective_after
        if k > 0:
            episode = await self.journal.degraded_since(name) or window_start
            recent = await self.journal.lambdas_since(cid, episode, k)
            if len(recent) >= k and all(
                final is None or final <= initial for initial, final in recent
            ):
                return (
                    f"stopped: the last {k} healings did not raise lambda_cut; human review needed"
                )
        return None

    # ------------------------------------------------------------------ approvals

    async def _ask_approval(self, strategy: Strategy, problem: Problem, cycle: Cycle) -> str:
        cfg = self.settings
        pending = await self.journal.pending_action(cycle.collection_id, strategy.name)
        if pending is not None:
            return f"{problem.describe()}; {strategy.name} awaits approval (action {pending.id})"
        now = self.clock.now()
        ctx = self._context(strategy, problem, cycle)
        try:
            ctx.rollback_data = await strategy.plan(ctx)
        except Exception as exc:
            return f"{problem.describe()}; {strategy.name} cannot be planned: {exc}"
        action_id = await self.journal.open_action(
            self._draft(
                strategy,
                problem,
                cycle,
                ctx,
                "pending_approval",
                now,
                expires_at=now + timedelta(seconds=cfg.approval_ttl_seconds),
            )
        )
        await self.audit(
            action_id=action_id,
            status="pending_approval",
            strategy=strategy.name,
            collection=cycle.collection.name,
            problem=problem.kind.value,
        )
        log.warning(
            "approval_requested",
            collection=cycle.collection.name,
            strategy=strategy.name,
            action_id=action_id,
            msg=f"approve with: ruvectord heal approve {action_id}",
        )
        return (
            f"{problem.describe()}; {strategy.name} needs approval: "
            f"ruvectord heal approve {action_id}"
        )

    # ------------------------------------------------------------------ steps 4-7

    def _context(self, strategy: Strategy, problem: Problem, cycle: Cycle) -> RemediationContext:
        return RemediationContext(
            collection=cycle.collection.name,
            collection_id=cycle.collection_id,
            table=cycle.collection.table,
            problem=problem,
            state=cycle.state,
            initial_lambda=cycle.lambda_cut,
            sql=self.sql,
            settings=self.settings,
        )

    def _draft(
        self,
        strategy: Strategy,
        problem: Problem,
        cycle: Cycle,
        ctx: RemediationContext,
        status: str,
        now: datetime,
        expires_at: datetime | None = None,
    ) -> ActionDraft:
        return ActionDraft(
            collection_id=cycle.collection_id,
            problem_class=problem.kind.value,
            problem_details=problem.details(),
            strategy_name=strategy.name,
            strategy_params=ctx.params,
            status=status,
            dry_run=ctx.dry_run,
            reversible=strategy.reversible,
            integrity_state=cycle.state.value,
            initial_lambda=cycle.lambda_cut,
            rollback_data=ctx.rollback_data,
            actor=self.node,
            created_at=now,
            expires_at=expires_at,
        )

    async def _heal(
        self,
        strategy: Strategy,
        problem: Problem,
        cycle: Cycle,
        monitor: Measure,
        *,
        approved: int | None = None,
    ) -> Outcome:
        cfg = self.settings
        name = cycle.collection.name
        ctx = self._context(strategy, problem, cycle)
        started_at = self.clock.now()
        try:
            ctx.rollback_data = await strategy.plan(ctx)
        except Exception as exc:
            log.error(
                "strategy_plan_failed", collection=name, strategy=strategy.name, error=str(exc)
            )
            if approved is not None:
                await self.journal.update_action(approved, "failed", error_message=str(exc))
            return Outcome(strategy.name, approved, "failed", error=f"plan failed: {exc}")
        # the journal row says "running", with the rollback data just read, before anything
        # changes; for an approved action the claim and the fresh rollback data are one write
        try:
            if approved is None:
                action_id = await self.journal.open_action(
                    self._draft(strategy, problem, cycle, ctx, "running", started_at)
                )
            elif await self.journal.claim_approved(approved, started_at, ctx.rollback_data):
                action_id = approved
            else:
                why = "no longer approved, or another action is in flight"
                return Outcome(strategy.name, approved, "skipped", error=why)
        except InFlightError as exc:
            return Outcome(strategy.name, None, "skipped", error=str(exc))
        ctx.action_id = action_id
        a = Attempt(
            strategy,
            problem,
            cycle,
            ctx,
            started_at,
            Outcome(strategy.name, action_id, "running", initial_lambda=cycle.lambda_cut),
            log.bind(collection=name, strategy=strategy.name, action_id=action_id),
        )
        self.metrics.healing_attempts.labels(name, strategy.name).inc()
        self.metrics.healing_active.labels(name).set(1)
        lost = anyio.CancelScope()
        unregister = self.actor.on_lost(lost.cancel)
        try:
            with lost:
                a.result = await self._execute(a)
                if a.result.success:
                    await self.journal.update_action(
                        action_id, "verifying", result=_jsonable(a.result.metadata)
                    )
                    await self.clock.sleep(cfg.settle_seconds)
                    after = await monitor.measure()
                    a.outcome.final_lambda = after.lambda_cut
                    a.outcome.verified = _improved(
                        cycle.lambda_cut, after.lambda_cut, cfg.min_improvement
                    )
            if lost.cancelled_caught:
                a.result = RemediationResult.failed("actor lock lost; stopped acting")
                a.log.error("actor_lost_during_action")
        except BaseException as exc:
            # cancelled (shutdown) or something unexpected: undo, journal, then let it go on
            with anyio.CancelScope(shield=True), anyio.move_on_after(30):
                why = (
                    "interrupted by shutdown"
                    if isinstance(exc, anyio.get_cancelled_exc_class())
                    else f"{type(exc).__name__}: {exc}"
                )
                a.outcome.error = why
                await self._undo(a, why, final_status="interrupted")
                await self.journal.record_outcome(self._outcome_record(a))
            raise
        finally:
            unregister()
            self.metrics.healing_active.labels(name).set(0)

        outcome = a.outcome
        if outcome.verified:
            outcome.status = "succeeded"
            await self.journal.update_action(
                action_id,
                "succeeded",
                final_lambda=outcome.final_lambda,
                completed_at=self.clock.now(),
            )
            self.metrics.healing_success.labels(name, strategy.name).inc()
            a.log.info("healing_verified", initial=cycle.lambda_cut, final=outcome.final_lambda)
        else:
            why = a.result.error or (
                f"lambda {cycle.lambda_cut:.3f} -> {outcome.final_lambda:.3f} is not a "
                f"{cfg.min_improvement:.0%} rise"
                if outcome.final_lambda is not None
                else "failed"
            )
            outcome.error = why
            await self._undo(a, why, final_status="failed" if a.result.error else "unverified")
        self.metrics.healing_duration.labels(name, strategy.name).observe(a.seconds)
        await self._record(a)
        return outcome

    async def _execute(self, a: Attempt) -> RemediationResult:
        timeout = 2 * a.strategy.estimated_duration
        try:
            with anyio.fail_after(timeout):
                result = await a.strategy.execute(a.ctx)
        except TimeoutError:
            a.log.error("strategy_timed_out", timeout=timeout)
            return RemediationResult.failed(f"timed out after {timeout:g} s")
        except Exception as exc:
            a.log.error("strategy_failed", error=f"{type(exc).__name__}: {exc}")
            return RemediationResult.failed(f"{type(exc).__name__}: {exc}")
        a.log.info(
            "strategy_executed",
            success=result.success,
            actions=result.actions_taken,
            metadata=dict(result.metadata),
        )
        return result

    async def _undo(self, a: Attempt, why: str, *, final_status: str) -> None:
        """Roll back a reversible action; journal what happened, whatever happens.

        A reversible action ends `rolled_back` (or `rollback_failed`, which alerts); an
        irreversible one ends with `final_status` (failed, unverified, interrupted).
        """
        action_id, outcome = a.outcome.action_id, a.outcome
        assert action_id is not None
        status, error = final_status, why
        if a.strategy.reversible:
            await self.journal.update_action(action_id, "rolling_back", error_message=why)
            try:
                with anyio.fail_after(max(10.0, 2 * a.strategy.estimated_duration)):
                    await a.strategy.rollback(a.ctx)
                status = "rolled_back"
            except Exception as exc:
                status = "rollback_failed"
                error = outcome.error = f"{why}; rollback failed: {type(exc).__name__}: {exc}"
        outcome.status = status
        await self.journal.update_action(
            action_id,
            status,
            error_message=error,
            final_lambda=outcome.final_lambda,
            completed_at=self.clock.now(),
        )
        if status == "rollback_failed":
            self.metrics.rollback_failures.labels(a.ctx.collection, a.strategy.name).inc()
            a.log.error("rollback_failed", msg=error)
            await self.audit(
                action_id=action_id,
                status=status,
                strategy=a.strategy.name,
                collection=a.ctx.collection,
                error=error,
                event_type="alert",
            )
        elif status == "rolled_back":
            a.log.warning("action_rolled_back", why=why)
        else:
            a.log.warning("action_not_reversible", status=status, why=why)

    async def _record(self, a: Attempt) -> None:
        """The outcome row, the signed audit event, the weights and the gauges."""
        cfg = self.settings
        now = self.clock.now()
        name = a.cycle.collection.name
        degraded_since = await self.journal.degraded_since(name)
        ttr = None
        if degraded_since is not None and a.outcome.verified:
            ttr = (now - degraded_since).total_seconds()
        await self.journal.record_outcome(self._outcome_record(a, ttr))
        await self.audit(
            action_id=a.outcome.action_id,
            status=a.outcome.status,
            strategy=a.strategy.name,
            collection=name,
            problem=a.problem.kind.value,
            initial_lambda=a.cycle.lambda_cut,
            final_lambda=a.outcome.final_lambda,
            verified=a.outcome.verified,
        )
        since = now - timedelta(days=cfg.learning_window_days)
        if cfg.learning_enabled:
            stats = strategy_weights(await self.journal.outcomes_since(since))
            await self.journal.save_weights(stats)
            self.registry.weights = {k: v.weight for k, v in stats.items()}
        mine = effectiveness(await self.journal.outcomes_since(since, a.cycle.collection_id))
        m = self.metrics
        m.healing_success_rate.labels(name).set(mine.overall_success_rate)
        m.healing_avg_improvement.labels(name).set(
            sum(s.avg_improvement * s.attempts for s in mine.strategies) / max(1, mine.attempts)
        )
        if mine.mean_time_to_recovery_seconds is not None:
            m.healing_ttr.labels(name).set(mine.mean_time_to_recovery_seconds)

    def _outcome_record(self, a: Attempt, ttr: float | None = None) -> OutcomeRecord:
        cycle, outcome = a.cycle, a.outcome
        improvement = None
        if outcome.final_lambda is not None and cycle.lambda_cut > 0:
            improvement = 100.0 * (outcome.final_lambda - cycle.lambda_cut) / cycle.lambda_cut
        memory = cycle.snapshot.memory
        return OutcomeRecord(
            collection_id=cycle.collection_id,
            problem_class=a.problem.kind.value,
            problem_details=a.problem.details(),
            strategy_name=a.strategy.name,
            strategy_params=a.ctx.params,
            started_at=a.started_at,
            completed_at=self.clock.now(),
            duration_ms=int(a.seconds * 1000),
            success=a.result.success,
            verified=outcome.verified,
            actions_taken=a.result.actions_taken,
            improvement_pct=improvement,
            error_message=outcome.error,
            initial_lambda=cycle.lambda_cut,
            final_lambda=outcome.final_lambda,
            witness_edges=cycle.result.witness_edges,
            system_metrics={
                "state": cycle.state.value,
                "action_id": outcome.action_id,
                "status": outcome.status,
                "time_to_recovery_seconds": ttr,
                "backends": cycle.snapshot.activity.backends,
                "waiting": cycle.snapshot.activity.waiting,
                "memory_pct": round(memory.usage_pct, 2) if memory else None,
            },
        )


@dataclass
class Attempt:
    """One healing attempt in flight: what the engine's steps pass to each other."""

    strategy: Strategy
    problem: Problem
    cycle: Cycle
    ctx: RemediationContext
    started_at: datetime
    outcome: Outcome
    log: Any
    result: RemediationResult = field(
        default_factory=lambda: RemediationResult.failed("not executed")
    )
    t0: float = field(default_factory=time.perf_counter)

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.t0


def _improved(before: float, after: float, min_improvement: float) -> bool:
    """Verified only if lambda_cut rose by at least `min_improvement` (10 % by default)."""
    return after > before and after >= before * (1.0 + min_improvement)


def _jsonable(value: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in value.items():
        if isinstance(v, float) and not math.isfinite(v):
            v = None
        out[str(k)] = v
    return out
