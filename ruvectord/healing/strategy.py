"""The strategy contract, what a strategy is given and returns, and the registry that picks one.

A strategy acts in three steps so that a crash can always be undone: `plan` reads the current
state and returns the rollback data (journaled *before* anything changes), `execute` applies
the change, `rollback` restores exactly what `plan` saw. Strategies reach the database only
through the `Sql` protocol they are handed.

A *leased* strategy's effect (a throttle) holds only until a deadline the acting daemon keeps
renewing while the collection is degraded; if the daemon dies, the effect lapses by itself.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from ruvectord.config import HealingConfig
from ruvectord.healing.problems import Problem, ProblemKind
from ruvectord.integrity.hysteresis import State


class Sql(Protocol):
    """The slice of the database adapter a strategy may use (values always as parameters)."""

    async def fetch(self, sql: str, *args: Any) -> list[Any]: ...

    async def fetchrow(self, sql: str, *args: Any) -> Any: ...

    async def fetchval(self, sql: str, *args: Any) -> Any: ...

    async def execute(self, sql: str, *args: Any, idempotent: bool = False) -> str: ...


class Session(Sql, Protocol):
    """A dedicated database session: top-level statements (REINDEX / CREATE INDEX
    CONCURRENTLY cannot run in a function or a transaction block) and session locks."""

    @property
    def pid(self) -> int: ...

    async def close(self) -> None: ...


@runtime_checkable
class Sessions(Protocol):
    """An `Sql` that can also open dedicated sessions (the daemon's Database can)."""

    async def open_session(self, settings: Mapping[str, str]) -> Session: ...


@dataclass
class RemediationContext:
    collection: str
    collection_id: int
    table: str  # schema-qualified
    problem: Problem
    state: State
    initial_lambda: float
    sql: Sql
    settings: HealingConfig
    params: dict[str, Any] = field(default_factory=dict)
    rollback_data: dict[str, Any] = field(default_factory=dict)
    action_id: int | None = None
    dry_run: bool = False
    # a leased effect must be renewed within this many seconds or it lapses (fails open)
    lease_seconds: float = 0.0
    # a fresh lambda_cut of the collection, for strategies that act in steps and check
    # between them (None outside an executing action)
    measure: Callable[[], Awaitable[float]] | None = None
    # journal progress before going on: merges into rollback_data and writes it to the
    # action's row, so crash recovery undoes exactly what was done (None outside an action)
    progress: Callable[[Mapping[str, Any]], Awaitable[None]] | None = None


@dataclass(frozen=True)
class RemediationResult:
    success: bool
    actions_taken: int = 0
    improvement: float = 0.0  # the strategy's own estimate; the engine measures the real one
    metadata: Mapping[str, Any] = field(default_factory=dict)
    error: str | None = None

    @classmethod
    def failed(cls, error: str, **metadata: Any) -> RemediationResult:
        return cls(False, 0, 0.0, metadata, error)

    @classmethod
    def noop(cls, why: str) -> RemediationResult:
        return cls(True, 0, 0.0, {"noop": why})


class Strategy(Protocol):
    name: str
    handles: frozenset[ProblemKind]
    impact: float  # 0..1, higher is more disruptive
    reversible: bool
    supports_dry_run: bool
    # undone (by its own rollback) once the collection is back to normal: a throttle is a
    # brake for the incident, not a new permanent limit
    lift_on_recovery: bool
    # its effect is a lease that lapses unless renewed (see `renew`)
    leased: bool

    # read-only, so a strategy may derive it from the config (scale_replicas: its readiness
    # timeout)
    @property
    def estimated_duration(self) -> float:
        """Seconds; the engine times out at twice this."""
        ...

    async def plan(self, ctx: RemediationContext) -> dict[str, Any]:
        """Read what `rollback` will need; returns the rollback data. Changes nothing."""
        ...

    async def execute(self, ctx: RemediationContext) -> RemediationResult: ...

    async def rollback(self, ctx: RemediationContext) -> None: ...

    async def renew(self, ctx: RemediationContext) -> bool:
        """Extend a leased effect by `ctx.lease_seconds`; False once it has lapsed or was
        lifted by someone else (then the engine rolls it back and journals it lifted).
        Strategies that are not leased return True."""
        ...


@runtime_checkable
class Cleans(Protocol):
    """An irreversible strategy that can still clear away what an interrupted run left
    (compact_indexes: the invalid *_ccnew index of a cancelled REINDEX CONCURRENTLY). Called
    after a failed or interrupted action, and by crash recovery; returns what it did."""

    async def cleanup(self, ctx: RemediationContext) -> str: ...


@runtime_checkable
class Steps(Protocol):
    """A leased brake that can be let go in steps (healing/brake.py): set its effect to
    `fraction` of the level the action set (1.0: full), renewing the lease. False when the
    lease already lapsed or an operator lifted it (then the whole effect is lifted)."""

    async def step(self, ctx: RemediationContext, fraction: float) -> bool: ...


@runtime_checkable
class Answers(Protocol):
    """A strategy that handles a class only for some causes: None when it can act on this
    problem, else why not (throttling cannot make a stalled replay apply WAL)."""

    def cannot_act(self, problem: Problem) -> str | None: ...


@runtime_checkable
class Verifies(Protocol):
    """A strategy whose effect needs a longer look than `settle_seconds` to verify: a
    throttle's writers come back after their retry hint, and a verification that ends before
    they do measures only their waiting."""

    def verify_seconds(self, ctx: RemediationContext) -> float: ...


@runtime_checkable
class Scoped(Protocol):
    """A strategy that applies only to some collections (scale_replicas: those with a target)."""

    def applies_to(self, collection: str) -> bool: ...


@runtime_checkable
class Targeted(Protocol):
    """A strategy whose targets (index or partition names) follow from the problem alone, so
    selection can skip it when every one of them is resting (min interval per target)."""

    def targets(self, problem: Problem) -> tuple[str, ...]: ...


class Limited(Protocol):
    """Per-strategy limits at this instant (healing.policy.Limits)."""

    @property
    def closed(self) -> Mapping[str, str]: ...

    @property
    def resting(self) -> Mapping[str, Mapping[str, float]]: ...


@runtime_checkable
class Explained(Protocol):
    """A scoped strategy that can say why it is not offered for a collection (the decision
    line carries it: "placement not declared for items")."""

    def unavailable(self, collection: str) -> str | None: ...


@dataclass(frozen=True)
class Selection:
    strategy: Strategy | None
    reason: str
    candidates: tuple[str, ...] = ()
    # strategies for the problem left out for this collection, with why ("not offered: ...")
    notes: tuple[str, ...] = ()


class StrategyRegistry:
    def __init__(self, strategies: Iterable[Strategy] = ()) -> None:
        self._strategies: dict[str, Strategy] = {}
        self.weights: dict[str, float] = {}
        for s in strategies:
            self.register(s)

    def register(self, strategy: Strategy) -> None:
        if strategy.name in self._strategies:
            raise ValueError(f"strategy {strategy.name!r} is registered twice")
        if not 0.0 <= strategy.impact <= 1.0:
            raise ValueError(f"strategy {strategy.name!r}: impact {strategy.impact} not in 0..1")
        self._strategies[strategy.name] = strategy

    def get(self, name: str) -> Strategy | None:
        return self._strategies.get(name)

    @property
    def names(self) -> list[str]:
        return sorted(self._strategies)

    @property
    def strategies(self) -> list[Strategy]:
        return [self._strategies[n] for n in self.names]

    def weight(self, name: str) -> float:
        return self.weights.get(name, 1.0)

    def select(
        self,
        problem: Problem,
        max_impact: float,
        held_off: Mapping[str, float] | None = None,
        *,
        collection: str | None = None,
        limits: Limited | None = None,
        weights: Mapping[str, float] | None = None,
    ) -> Selection:
        """Among strategies for the problem's class within the impact cap, the highest learned
        weight wins (default 1.0); ties go to the lower impact, then the name. A strategy a
        human rejected recently (`held_off`: name -> seconds left) is not proposed again. With
        a collection, strategies that do not apply to it are left out. With `limits`, a
        strategy that is disabled, outside its windows, or whose every target is resting is
        skipped, and the reason says so. `weights`, when given, stand in for the learned ones
        (a replay selects with the weights recorded at the time)."""
        learned = self.weights if weights is None else weights

        def weight(name: str) -> float:
            return learned.get(name, 1.0)

        handling = [
            s
            for s in self._strategies.values()
            if problem.kind in s.handles
            and (collection is None or not isinstance(s, Scoped) or s.applies_to(collection))
        ]
        notes = self._left_out(problem, collection)
        refused = [
            (s, why)
            for s in handling
            if isinstance(s, Answers) and (why := s.cannot_act(problem)) is not None
        ]
        if refused:
            out = {s.name for s, _ in refused}
            handling = [s for s in handling if s.name not in out]
            if not handling:
                whys = "; ".join(f"{s.name} cannot help: {why}" for s, why in refused)
                return Selection(None, f"no safe automatic action ({whys})", notes=notes)
            notes += tuple(f"{s.name} left out: {why}" for s, why in refused)
        if not handling:
            return Selection(None, f"no strategy handles {problem.kind.value}", notes=notes)
        allowed = [s for s in handling if s.impact <= max_impact]
        if not allowed:
            over = ", ".join(f"{s.name} ({s.impact:g})" for s in handling)
            return Selection(
                None,
                f"every strategy for {problem.kind.value} exceeds impact {max_impact:g}: {over}",
                notes=notes,
            )
        held = held_off or {}
        if all(s.name in held for s in allowed):
            waits = ", ".join(f"{s.name} for {held[s.name]:.0f} s" for s in allowed)
            return Selection(None, f"rejected by an operator, held off: {waits}", notes=notes)
        allowed = [s for s in allowed if s.name not in held]
        skipped: list[str] = []
        if limits is not None:
            kept = []
            for s in allowed:
                why = limits.closed.get(s.name) or _all_resting(s, problem, limits)
                if why:
                    skipped.append(why)
                else:
                    kept.append(s)
            if not kept:
                return Selection(None, "; ".join(skipped), notes=notes)
            allowed = kept
        allowed.sort(key=lambda s: (-weight(s.name), s.impact, s.name))
        best = allowed[0]
        also = f"; skipped: {'; '.join(skipped)}" if skipped else ""
        return Selection(
            best,
            f"{best.name} (weight {weight(best.name):.2f}, impact {best.impact:g}){also}",
            tuple(s.name for s in allowed),
            notes,
        )

    def _left_out(self, problem: Problem, collection: str | None) -> tuple[str, ...]:
        """ "not offered: a, b (why)" for strategies of this class that explain their absence."""
        if collection is None:
            return ()
        why: dict[str, list[str]] = {}
        for s in self.strategies:
            if problem.kind in s.handles and isinstance(s, Explained):
                reason = s.unavailable(collection)
                if reason:
                    why.setdefault(reason, []).append(s.name)
        return tuple(f"not offered: {', '.join(names)} ({r})" for r, names in why.items())


def _all_resting(strategy: Strategy, problem: Problem, limits: Limited) -> str | None:
    if not isinstance(strategy, Targeted):
        return None
    targets = strategy.targets(problem)
    resting = limits.resting.get(strategy.name, {})
    if not targets or not all(t in resting for t in targets):
        return None
    waits = ", ".join(f"{t} for {resting[t]:.0f} s" for t in targets)
    return f"{strategy.name}: every target acted on within its min interval ({waits})"
