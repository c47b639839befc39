"""Healing: heal list|approve|reject, pause, resume, throttle list|lift, effectiveness.

The changes go through the `ruvector_healing_*` SQL functions (ruvector_operator), which
record who asked; the CLI then waits for the acting daemon to carry the request out
(`ruvectord/cli/requests.py`).
"""

from __future__ import annotations

from typing import Any

from ruvectord.cli.framework import Arg, Context, command, group, positive_int
from ruvectord.cli.output import Column, Output, Table, fixed, plain, when
from ruvectord.cli.requests import request_output, wait_for

group("heal", "healing: status, list, approve, reject, trigger, execute, abort, rollback")
group("throttle", "throttles in force: list, lift")


def _lambdas(row: Any) -> str:
    final = "-" if row.get("final_lambda") is None else f"{row['final_lambda']:.3f}"
    start = "-" if row.get("initial_lambda") is None else f"{row['initial_lambda']:.3f}"
    return f"{start} -> {final}"


def _note(row: Any) -> str:
    if row.get("status") == "pending_approval" and row.get("expires_at"):
        return f"expires {when(row['expires_at'])}"
    return plain(row.get("error_message")) if row.get("error_message") else ""


@command(
    "heal list",
    "recent healing actions, newest first",
    connect=True,
    args=[
        Arg(
            "--limit",
            type=positive_int,
            default=20,
            metavar="N",
            help="how many (default 20)",
        )
    ],
)
async def heal_list(ctx: Context) -> Output:
    from ruvectord.postgres.actions import HealingStore

    rows = [dict(r) for r in await HealingStore(ctx.db).list_actions(ctx.args.limit)]
    table = Table(
        [
            Column.number("ID", "id"),
            Column.key("CREATED", "created_at"),
            Column.key("COLLECTION", "collection"),
            Column.key("STRATEGY", "strategy_name"),
            Column.key("STATUS", "status"),
            Column("LAMBDA", _lambdas),
            Column("NOTE", _note),
        ],
        rows,
        empty="no healing actions yet",
    )
    return Output({"actions": rows}, [table])


def _decide(verb: str) -> Any:
    async def decide(ctx: Context) -> Output:
        action = ctx.args.action_id
        if verb == "approve":
            request = await ctx.db.fetchval("SELECT ruvector_healing_approve($1)", action)
        else:
            request = await ctx.db.fetchval(
                "SELECT ruvector_healing_reject($1, $2)", action, ctx.args.reason
            )
        outcome = await wait_for(ctx, request)
        past = "approved" if verb == "approve" else "rejected"
        return request_output(ctx, f"action {action} {past}", outcome, action_id=action)

    return decide


_ACTION_ID = Arg("action_id", type=positive_int, help="the action id (see heal list)")
command(
    "heal approve",
    "approve a pending action (waits for the acting daemon to take it up)",
    connect=True,
    waits=True,
    args=[_ACTION_ID],
)(_decide("approve"))
command(
    "heal reject",
    "reject a pending action",
    connect=True,
    waits=True,
    args=[_ACTION_ID, Arg("--reason", help="why (recorded in the journal and the audit trail)")],
)(_decide("reject"))


@command(
    "pause",
    "switch healing off for every daemon on the database (lifts held throttles)",
    connect=True,
    waits=True,
    args=[Arg("--reason", help="why (recorded and shown in every decision line)")],
)
async def pause(ctx: Context) -> Output:
    request = await ctx.db.fetchval("SELECT ruvector_healing_enable(false, $1)", ctx.args.reason)
    outcome = await wait_for(ctx, request)
    return request_output(
        ctx,
        f"healing paused for every daemon on {ctx.db.target}; the acting daemon lifts what it "
        "holds, and a brake without its daemon lapses with its lease",
        outcome,
        paused=True,
    )


@command("resume", "switch healing back on", connect=True, waits=True)
async def resume(ctx: Context) -> Output:
    request = await ctx.db.fetchval("SELECT ruvector_healing_enable(true, NULL)")
    outcome = await wait_for(ctx, request)
    return request_output(
        ctx, f"healing resumed for every daemon on {ctx.db.target}", outcome, paused=False
    )


@command("throttle list", "every throttle and its lease", connect=True)
async def throttle_list(ctx: Context) -> Output:
    rows = [dict(r) for r in await ctx.db.fetch("SELECT * FROM ruvector_healing_throttles()")]
    table = Table(
        [
            Column.key("COLLECTION", "collection"),
            Column.key("OPERATION", "operation"),
            Column.number("THROTTLE", "throttle_pct", lambda v: f"{v}%"),
            Column.number("RETRY", "retry_after_seconds", lambda v: f"{v:g} s"),
            Column.number("ACTION", "action_id"),
            Column("LEASE", lambda r: "in force" if r["in_force"] else "lapsed"),
            Column.key("EXPIRES", "expires_at"),
        ],
        rows,
        empty="no throttles",
    )
    return Output({"throttles": rows}, [table])


@command(
    "throttle lift",
    "take a collection's throttle off now",
    connect=True,
    waits=True,
    args=[Arg("collection", help="the collection (see status)")],
)
async def throttle_lift(ctx: Context) -> Output:
    name = ctx.args.collection
    request = await ctx.db.fetchval("SELECT ruvector_healing_throttle_lift($1)", name)
    outcome = await wait_for(ctx, request)
    return request_output(
        ctx,
        f"throttles on {name} lifted now; the acting daemon journals it and will not renew them",
        outcome,
        collection=name,
    )


@command(
    "effectiveness",
    "per strategy: weight, attempts, success, gain; time to verification and to recovery",
    connect=True,
)
async def effectiveness(ctx: Context) -> Output:
    rows = [dict(r) for r in await ctx.db.fetch("SELECT * FROM ruvector_healing_effectiveness()")]
    strategies = [r for r in rows if r["strategy"] != "overall"]
    overall = next((r for r in rows if r["strategy"] == "overall"), None)

    def seconds(value: Any) -> str:
        return "-" if value is None else f"{value:.1f} s"

    table = Table(
        [
            Column.key("STRATEGY", "strategy"),
            Column.number("WEIGHT", "weight", fixed(2)),
            Column.number("ATTEMPTS", "attempts"),
            Column.number("SUCCESS", "success_rate", lambda v: f"{v:.0%}"),
            Column.number("AVG GAIN", "avg_improvement", lambda v: f"{v:+.1%}"),
            Column.number("TO VERIFY", "mean_time_to_verification_seconds", seconds),
            Column.number("TO RECOVER", "mean_time_to_recovery_seconds", seconds),
        ],
        strategies,
        empty="no healing attempts in the learning window",
    )
    lines: list[Any] = [table]
    if overall is not None:
        lines.append(
            f"overall: {overall['attempts']} attempt(s), {overall['success_rate']:.0%} verified, "
            f"mean time to verification {seconds(overall['mean_time_to_verification_seconds'])}, "
            f"mean time to recovery (degraded -> normal) "
            f"{seconds(overall['mean_time_to_recovery_seconds'])}"
        )
    return Output({"strategies": strategies, "overall": overall}, lines)
