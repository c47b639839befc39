"""Requests to the acting daemon (approve, reject, lift, pause, resume, ...), and waiting.

Every `ruvector_healing_*` operator function records a request in ruvector.healing_requests
and returns its id; what is safe to do at once already happened in the database (a pause is
stored, a lifted throttle's lease expired). The acting daemon -- whoever holds the actor lock
-- picks the request up, carries out what only it can do, signs it into the audit trail and
marks it processed. `submit` calls the function and, unless --no-wait, waits for that, with a
progress line; without an acting daemon it says so at once instead of waiting.

Outcomes and exit codes: processed `done` -> 0; processed `failed` -> 1; not processed within
--timeout -> 1 (the request stays queued); no daemon holds the actor lock -> 0 with a note
(the request is recorded and is carried out when one starts); --no-wait -> 0.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import anyio

from ruvectord.cli import exits
from ruvectord.cli.framework import Context
from ruvectord.cli.output import Output, progress, when


@dataclass
class Outcome:
    request: int
    wait: str  # done, failed, timeout, no_actor, not_waited
    result: Mapping[str, Any] | None = None
    processed_by: str | None = None
    actor: Mapping[str, Any] | None = None

    @property
    def exit_code(self) -> int:
        return exits.FAILURE if self.wait in ("failed", "timeout") else exits.OK


def describe_actor(actor: Mapping[str, Any] | None) -> str:
    if actor is None:
        return "no daemon holds the actor lock"
    parts = [f"pid {actor['pid']}"]
    if actor.get("application_name"):
        parts.append(str(actor["application_name"]))
    where = actor.get("hostname") or actor.get("addr")
    if where:
        parts.append(f"from {where}")
    elif actor.get("backend_start") is not None:
        parts.append("local socket")
    if actor.get("backend_start") is not None:
        parts.append(f"since {when(actor['backend_start'])}")
    return "held by " + ", ".join(parts)


async def acting_daemon(ctx: Context) -> dict[str, Any] | None:
    from ruvectord.postgres.leader import actor_holder

    return await actor_holder(ctx.db)


async def wait_for(ctx: Context, request: int) -> Outcome:
    """Wait (per --wait/--timeout) for the acting daemon to process `request`."""
    if not getattr(ctx.args, "wait", True):
        return Outcome(request, "not_waited")
    actor = await acting_daemon(ctx)
    if actor is None:
        return Outcome(request, "no_actor")
    timeout: float = getattr(ctx.args, "timeout", 30.0)
    label = f"waiting for the acting daemon (pid {actor['pid']}) to carry out request {request}"
    async with progress(label):
        with anyio.move_on_after(timeout):
            while True:
                row = await ctx.db.fetchrow(
                    "SELECT processed_at, status, result, processed_by "
                    "FROM ruvector.healing_requests WHERE id = $1",
                    request,
                )
                if row is not None and row["processed_at"] is not None:
                    wait = "done" if row["status"] == "done" else "failed"
                    return Outcome(request, wait, row["result"], row["processed_by"], actor)
                await anyio.sleep(0.2)
    return Outcome(request, "timeout", actor=actor)


def _result_text(result: Mapping[str, Any] | None) -> str:
    if not result:
        return ""
    parts = []
    # what happened first (jsonb hands keys back by length), then the details
    first = ("healing", "settings", "decision")
    for key, value in sorted(result.items(), key=lambda kv: (kv[0] not in first, kv[0])):
        if isinstance(value, list):
            value = ", ".join(str(v) for v in value) or "nothing"
        elif isinstance(value, Mapping):
            value = ", ".join(f"{k}={json.dumps(v)}" for k, v in value.items())
        parts.append(f"{key.replace('_', ' ')} {value}")
    return "; ".join(parts)


def request_output(ctx: Context, done: str, outcome: Outcome, **data: Any) -> Output:
    """The common output of a request: what happened now, and what the daemon said."""
    lines = [f"{done} (request {outcome.request})"]
    if outcome.wait == "done":
        by = outcome.processed_by or "the acting daemon"
        text = _result_text(outcome.result)
        lines.append(f"carried out by {by}" + (f": {text}" if text else ""))
    elif outcome.wait == "failed":
        by = outcome.processed_by or "the acting daemon"
        ctx.note(f"error: {by} could not carry it out: {_result_text(outcome.result)}")
    elif outcome.wait == "timeout":
        timeout = getattr(ctx.args, "timeout", 30.0)
        ctx.note(
            f"error: the acting daemon ({describe_actor(outcome.actor)}) has not carried it "
            f"out within {timeout:g} s; it stays queued (ruvector.healing_requests id "
            f"{outcome.request}): check the daemon's log"
        )
    elif outcome.wait == "no_actor":
        ctx.note(
            "note: no daemon holds the actor lock, so nobody carries it out now; it is "
            "recorded and the next acting daemon picks it up (`ruvectord status`)"
        )
    payload = {
        **data,
        "request": outcome.request,
        "daemon": {
            "wait": outcome.wait,
            "result": outcome.result,
            "processed_by": outcome.processed_by,
            "actor": outcome.actor,
        },
    }
    return Output(payload, list(lines), outcome.exit_code)
