"""Requests from SQL and the CLI, acted on by the one daemon that holds the actor lock.

The `ruvector_healing_*` functions validate each request, record it with the `session_user`
that made it (no caller can choose that) and, where that is the safe direction, take effect in
the database at once: a setting is stored, a lifted throttle's lease is expired, a pending
action is approved, rejected or aborted. The acting daemon picks each request up (woken by
NOTIFY, or by polling) and does what only it can do -- sample and heal now, run a strategy,
stop a running action, roll one back, undo held effects with the strategy's own rollback --
through the engine, with every safeguard that applies; then it signs the request and its
result into the audit trail and marks it done.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from ruvectord.healing.engine import RemediationEngine
from ruvectord.healing.executor import Measure
from ruvectord.healing.journal import Audit, HealingJournal, Request
from ruvectord.integrity.monitor import Cycle
from ruvectord.logs import get_logger

log = get_logger("ruvectord.healing.intake")


class Monitored(Measure, Protocol):
    """What the intake needs of a collection's monitor."""

    @property
    def last(self) -> Cycle | None: ...

    async def cycle_safely(self) -> Cycle | None: ...


class Intake:
    def __init__(
        self,
        *,
        engine: RemediationEngine,
        journal: HealingJournal,
        audit: Audit,
        node: str,
        monitor: Callable[[str], Monitored | None],
        decision: Callable[[str], str | None],
    ) -> None:
        self.engine = engine
        self.journal = journal
        self.audit = audit
        self.node = node
        self.monitor = monitor
        self.decision = decision

    async def run(self, wait: Callable[[float], Awaitable[None]], poll_seconds: float) -> None:
        """Forever: wait for a notification (or the poll interval), then process, if acting."""
        while True:
            await wait(poll_seconds)
            if self.engine.actor.is_actor:
                await self.process()

    async def process(self) -> int:
        """Handle every pending request, oldest first; returns how many were handled."""
        handled = 0
        for request in await self.journal.pending_requests():
            try:
                status, result = "done", await self._apply(request)
            except Exception as exc:  # a bad request must not stop the others
                log.exception("request_failed", request_id=request.id, kind=request.kind)
                status, result = "failed", {"error": f"{type(exc).__name__}: {exc}"}
            await self.audit(
                event_type="manual_override",
                collection=request.collection or "*",
                request_id=request.id,
                kind=request.kind,
                requested_by=request.requested_by,
                requested_at=request.requested_at.isoformat(),
                action_id=request.action_id,
                payload=request.payload,
                status=status,
                result=result,
            )
            await self.journal.finish_request(request.id, status, result, self.node)
            log.info(
                "request_processed",
                request_id=request.id,
                kind=request.kind,
                requested_by=request.requested_by,
                status=status,
                msg=f"{request.kind} by {request.requested_by}: {status} {result}",
            )
            handled += 1
        return handled

    async def _apply(self, r: Request) -> dict[str, Any]:
        engine, holds = self.engine, self.engine.holds
        if r.kind == "configure":
            # stored by the function; every daemon applies it on its next cycle, and an
            # operator's pause lets go of what is held, here and now
            settings = r.payload.get("settings", {})
            if settings.get("healing.enabled") is False:
                why = f"healing paused by {r.requested_by}"
                if r.payload.get("reason"):
                    why += f": {r.payload['reason']}"
                lifted = await engine.exclusively("a pause", lambda: holds.release(None, why))
                return {"settings": settings, "lifted": lifted}
            return {"settings": settings}
        if r.kind == "lift":
            why = f"lifted by {r.requested_by}"
            lifted = await engine.exclusively(
                f"a lift on {r.collection}",
                lambda: holds.release(None, why, collection=r.collection, by=r.requested_by),
            )
            return {"lifted": lifted}
        if r.kind in ("approve", "reject"):
            return {"action_id": r.action_id, "decision": r.kind}  # recorded by the function
        if r.kind == "abort":
            if r.payload.get("was") in ("pending_approval", "approved"):
                return {"action_id": r.action_id, "aborted": "before it ran"}
            assert r.action_id is not None
            stopped = engine.executor.abort(r.action_id, f"aborted by {r.requested_by}")
            return {"action_id": r.action_id, "stopped": stopped}
        if r.kind == "rollback":
            assert r.action_id is not None
            return {"decision": await engine.rollback(r.action_id, r.requested_by)}
        monitor = self.monitor(r.collection or "")
        if monitor is None:
            raise ValueError(f"collection {r.collection!r} is not watched by this daemon")
        if r.kind == "trigger":
            await monitor.cycle_safely()
            return {"decision": self.decision(r.collection or "")}
        if r.kind == "execute":
            cycle = monitor.last
            if cycle is None:
                raise ValueError(f"collection {r.collection!r} has not been sampled yet")
            line = await engine.execute(
                cycle,
                monitor,
                str(r.payload["strategy"]),
                r.payload.get("params", {}),
                r.requested_by,
            )
            return {"decision": line}
        raise ValueError(f"request kind {r.kind!r} is not handled by this ruvectord")
