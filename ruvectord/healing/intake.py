"""Requests from SQL and the CLI, acted on by the one daemon that holds the actor lock.

The `ruvector_healing_*` functions record each request with the `session_user` that made it
(no caller can choose that) and, where that is the safe direction, take effect in the database
at once: a pause is stored, a lifted throttle's lease is expired. The acting daemon picks each
request up (woken by NOTIFY, or by polling), does what only it can do (undo held effects with
the strategy's own rollback), signs the request and its result into the audit trail, and marks
it done.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from ruvectord.healing.engine import RemediationEngine
from ruvectord.healing.journal import Audit, HealingJournal, Request
from ruvectord.logs import get_logger

log = get_logger("ruvectord.healing.intake")


class Intake:
    def __init__(
        self,
        *,
        engine: RemediationEngine,
        journal: HealingJournal,
        audit: Audit,
        node: str,
    ) -> None:
        self.engine = engine
        self.journal = journal
        self.audit = audit
        self.node = node

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
        holds = self.engine.holds
        if r.kind == "enable":
            if r.payload.get("enabled"):
                return {"healing": "resumed"}
            why = f"healing paused by {r.requested_by}"
            if r.payload.get("reason"):
                why += f": {r.payload['reason']}"
            lifted = await self.engine.exclusively("a pause", lambda: holds.release(None, why))
            return {"healing": "paused", "lifted": lifted}
        if r.kind == "lift":
            why = f"lifted by {r.requested_by}"
            lifted = await self.engine.exclusively(
                f"a lift on {r.collection}",
                lambda: holds.release(None, why, collection=r.collection, by=r.requested_by),
            )
            return {"lifted": lifted}
        if r.kind in ("approve", "reject"):
            return {"action_id": r.action_id, "decision": r.kind}  # recorded by the function
        raise ValueError(f"request kind {r.kind!r} is not handled by this ruvectord")
