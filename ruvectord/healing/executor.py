"""The executor: one healing action from journal row to recorded outcome.

Steps 4 to 7 of the design: `plan` reads what rollback will need, the journal row (status
`running`, with that rollback data) is written before anything changes, `execute` runs under a
timeout of twice the strategy's estimate, verification waits `settle_seconds` and asks for a
fresh lambda_cut (at least `min_improvement` higher, or it is not verified), anything else is
rolled back, and the outcome, the signed audit event and the learned weights are recorded.
An action interrupted by cancellation (shutdown, the actor lock lost) is rolled back in a
shielded scope, within what is left of the shutdown deadline; what could not be finished in
time stays in the journal for the next actor's recovery.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

import anyio

from ruvectord.clock import Clock, Shutdown
from ruvectord.config import Config, HealingConfig
from ruvectord.healing.journal import (
    ActionDraft,
    Audit,
    HealingJournal,
    InFlightError,
    OutcomeRecord,
)
from ruvectord.healing.learning import effectiveness, strategy_weights
from ruvectord.healing.problems import Problem
from ruvectord.healing.strategy import (
    Cleans,
    RemediationContext,
    RemediationResult,
    Sql,
    Strategy,
    Verifies,
)
from ruvectord.healing.undo import run_rollback
from ruvectord.integrity.monitor import Cycle
from ruvectord.logs import get_logger
from ruvectord.metrics import Metrics

log = get_logger("ruvectord.healing")


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
        text = self._describe()
        # what the strategy itself said (what it left alone, and why) belongs in the line too
        note = self.extra.get("note")
        return f"{text}; {note}" if note else text

    def _describe(self) -> str:
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


@dataclass
class Attempt:
    """One healing attempt in flight: what the executor's steps pass to each other."""

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


class Executor:
    def __init__(
        self,
        *,
        config: Callable[[], Config],
        journal: HealingJournal,
        sql: Sql,
        clock: Clock,
        metrics: Metrics,
        actor: Actor,
        audit: Audit,
        node: str,
        shutdown: Shutdown,
        weights: Callable[[Mapping[str, float]], None],
    ) -> None:
        self._config = config
        self.journal = journal
        self.sql = sql
        self.clock = clock
        self.metrics = metrics
        self.actor = actor
        self.audit = audit
        self.node = node
        self.shutdown = shutdown
        self._set_weights = weights
        # actions running now -> the scope that stops them and why someone asked it to
        self._running: dict[int, tuple[anyio.CancelScope, list[str]]] = {}

    @property
    def settings(self) -> HealingConfig:
        return self._config().healing

    def lease_seconds(self) -> float:
        """How long a leased effect holds between two renewals (a few sample intervals)."""
        cfg = self._config()
        return cfg.healing.lease_samples * cfg.integrity.sample_interval_seconds

    def context(self, strategy: Strategy, problem: Problem, cycle: Cycle) -> RemediationContext:
        ctx = RemediationContext(
            collection=cycle.collection.name,
            collection_id=cycle.collection_id,
            table=cycle.collection.table,
            problem=problem,
            state=cycle.state,
            initial_lambda=cycle.lambda_cut,
            sql=self.sql,
            settings=self.settings,
            lease_seconds=self.lease_seconds(),
        )
        # the first renewal comes only after verification: cover its whole window (a
        # throttle's is twice its retry hint, which may be longer than the settle wait)
        ctx.lease_seconds += self._verify_window(strategy, ctx)
        return ctx

    def _verify_window(self, strategy: object, ctx: RemediationContext) -> float:
        """How long verification looks: the settle wait, or the strategy's own window."""
        own = strategy.verify_seconds(ctx) if isinstance(strategy, Verifies) else 0.0
        return max(self.settings.settle_seconds, own)

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

    # ------------------------------------------------------------------ approvals

    async def ask_approval(self, strategy: Strategy, problem: Problem, cycle: Cycle) -> str:
        cfg = self.settings
        pending = await self.journal.pending_action(cycle.collection_id, strategy.name)
        if pending is not None:
            return f"{problem.describe()}; {strategy.name} awaits approval (action {pending.id})"
        now = self.clock.now()
        ctx = self.context(strategy, problem, cycle)
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

    async def run(
        self,
        strategy: Strategy,
        problem: Problem,
        cycle: Cycle,
        monitor: Measure,
        *,
        approved: int | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> Outcome:
        cfg = self.settings
        name = cycle.collection.name
        ctx = self.context(strategy, problem, cycle)
        ctx.params.update(params or {})
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

        async def measure() -> float:
            return (await monitor.measure()).lambda_cut

        async def progress(data: Mapping[str, Any]) -> None:
            ctx.rollback_data = {**ctx.rollback_data, **data}
            await self.journal.update_action(
                action_id, "running", rollback_data=_jsonable(ctx.rollback_data)
            )

        ctx.measure, ctx.progress = measure, progress
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
        aborted: list[str] = []
        self._running[action_id] = (lost, aborted)
        unregister = self.actor.on_lost(lost.cancel)
        try:
            with lost:
                a.result = await self._execute(a)
                if a.result.metadata.get("decision"):
                    a.outcome.extra["note"] = str(a.result.metadata["decision"])
                if a.result.success:
                    await self.journal.update_action(
                        action_id, "verifying", result=_jsonable(a.result.metadata)
                    )
                    after = await self._worst_reading(a, monitor)
                    a.outcome.final_lambda = after
                    a.outcome.verified = improved(cycle.lambda_cut, after, cfg.min_improvement)
            if lost.cancelled_caught and aborted:
                a.result = RemediationResult.failed(aborted[0])
                a.log.warning("action_aborted", msg=aborted[0])
            elif lost.cancelled_caught:
                a.result = RemediationResult.failed("actor lock lost; stopped acting")
                a.log.error("actor_lost_during_action")
        except BaseException as exc:
            # cancelled (shutdown) or something unexpected: undo and journal within what is
            # left of the shutdown deadline, then let it go on
            budget = self.shutdown.budget(30.0)
            with anyio.CancelScope(shield=True), anyio.move_on_after(budget) as undo:
                why = (
                    "interrupted by shutdown"
                    if isinstance(exc, anyio.get_cancelled_exc_class())
                    else f"{type(exc).__name__}: {exc}"
                )
                a.outcome.error = why
                await self._undo(a, why, final_status="interrupted")
                await self.journal.record_outcome(self._outcome_record(a))
            if undo.cancelled_caught:
                left = (
                    f"action {action_id} ({strategy.name} on {name}) left in flight: "
                    f"no time to undo it within {budget:.1f} s; the next start rolls it back"
                )
                self.shutdown.left_behind.append(left)
                a.log.error("action_left_in_flight", msg=left)
            raise
        finally:
            unregister()
            self._running.pop(action_id, None)
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
            final = "failed" if a.result.error else "unverified"
            await self._undo(
                a,
                why,
                final_status="aborted" if aborted else final,
                rolled_back="aborted" if aborted else "rolled_back",
            )
        self.metrics.healing_duration.labels(name, strategy.name).observe(a.seconds)
        await self._record(a)
        return outcome

    async def _worst_reading(self, a: Attempt, monitor: Measure) -> float:
        """lambda_cut over the verification window, at its worst: a throttle is verified only
        once the writers it turned away have come back (its `verify_seconds`), not while they
        wait out their retry hint."""
        settle = self.settings.settle_seconds
        window = self._verify_window(a.strategy, a.ctx)
        await self.clock.sleep(settle)
        worst = (await monitor.measure()).lambda_cut
        looked, every = settle, max(1.0, window / 5)
        while looked < window:
            pause = min(every, window - looked)
            await self.clock.sleep(pause)
            looked += pause
            worst = min(worst, (await monitor.measure()).lambda_cut)
        return worst

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

    def abort(self, action_id: int, why: str) -> bool:
        """Stop an action this daemon is running; it is rolled back and journaled `aborted`."""
        running = self._running.get(action_id)
        if running is None:
            return False
        scope, reasons = running
        reasons.append(why)
        scope.cancel()
        return True

    async def _undo(
        self, a: Attempt, why: str, *, final_status: str, rolled_back: str = "rolled_back"
    ) -> None:
        """Roll back a reversible action; journal what happened, whatever happens.

        A reversible action ends `rolled_back` (or `rollback_failed`, which alerts); an
        irreversible one ends with `final_status` (failed, unverified, interrupted).
        """
        action_id, outcome = a.outcome.action_id, a.outcome
        assert action_id is not None
        status, error = final_status, why
        if a.strategy.reversible:
            await self.journal.update_action(action_id, "rolling_back", error_message=why)
            failure = await run_rollback(a.strategy, a.ctx)
            status = rolled_back if failure is None else "rollback_failed"
            if failure is not None:
                error = outcome.error = f"{why}; rollback failed: {failure}"
        elif isinstance(a.strategy, Cleans):
            # not undone, but what an interrupted run left behind is cleared away
            try:
                with anyio.fail_after(max(10.0, a.strategy.estimated_duration)):
                    cleaned = await a.strategy.cleanup(a.ctx)
            except Exception as exc:
                cleaned = f"cleanup failed: {type(exc).__name__}: {exc}"
            if cleaned:
                error = outcome.error = f"{why}; {cleaned}"
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
        elif status in ("rolled_back", "aborted"):
            a.log.warning("action_rolled_back", why=why, status=status)
        else:
            a.log.warning("action_not_reversible", status=status, why=why)

    async def _record(self, a: Attempt) -> None:
        """The outcome row, the signed audit event, the weights and the gauges."""
        cfg = self.settings
        now = self.clock.now()
        name = a.cycle.collection.name
        degraded_since = await self.journal.degraded_since(name)
        ttv = None
        if degraded_since is not None and a.outcome.verified:
            ttv = (now - degraded_since).total_seconds()
        await self.journal.record_outcome(self._outcome_record(a, ttv))
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
        alert = a.result.metadata.get("alert")
        if alert:
            # something a human must look at although the action stands (a recall canary
            # below its floor after an irreversible reindex): a signed alert, and the log
            a.log.error("healing_alert", msg=str(alert))
            await self.audit(
                action_id=a.outcome.action_id,
                status=a.outcome.status,
                strategy=a.strategy.name,
                collection=name,
                error=str(alert),
                event_type="alert",
            )
        since = now - timedelta(days=cfg.learning_window_days)
        if cfg.learning_enabled:
            stats = strategy_weights(await self.journal.outcomes_since(since))
            await self.journal.save_weights(stats)
            self._set_weights({k: v.weight for k, v in stats.items()})
        await self.export(a.cycle.collection_id, name)

    async def export(self, collection_id: int, name: str) -> None:
        """The collection's effectiveness gauges over the learning window (NaN: no attempt)."""
        since = self.clock.now() - timedelta(days=self.settings.learning_window_days)
        mine = effectiveness(await self.journal.outcomes_since(since, collection_id))
        m = self.metrics
        nan = math.nan
        m.healing_success_rate.labels(name).set(mine.overall_success_rate if mine.attempts else nan)
        m.healing_avg_improvement.labels(name).set(
            sum(s.avg_improvement * s.attempts for s in mine.strategies) / mine.attempts
            if mine.attempts
            else nan
        )
        ttv = mine.mean_time_to_verification_seconds
        m.healing_ttv.labels(name).set(nan if ttv is None else ttv)

    def _outcome_record(self, a: Attempt, ttv: float | None = None) -> OutcomeRecord:
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
                "time_to_verification_seconds": ttv,
                "backends": cycle.snapshot.activity.backends,
                "waiting": cycle.snapshot.activity.waiting,
                "memory_pct": round(memory.usage_pct, 2) if memory else None,
            },
        )


def improved(before: float, after: float, min_improvement: float) -> bool:
    """Verified only if lambda_cut rose by at least `min_improvement` (10 % by default)."""
    return after > before and after >= before * (1.0 + min_improvement)


def _jsonable(value: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in value.items():
        if isinstance(v, float) and not math.isfinite(v):
            v = None
        out[str(k)] = v
    return out
