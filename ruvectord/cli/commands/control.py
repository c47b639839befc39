"""The rest of the control plane, each command the CLI face of one ruvector_healing_* function:

    heal status               ruvector_healing_status()
    history                   ruvector_healing_history(collection, since, strategy, limit_)
    strategies                ruvector_healing_strategies()
    heal trigger C            ruvector_healing_trigger(C)
    heal execute C S          ruvector_healing_execute(C, S, params)
    heal abort ID             ruvector_healing_abort(ID)
    heal rollback C           ruvector_healing_rollback(C)
    config show               the settings, their values and sources (file, default, database)
    config set KEY VALUE      ruvector_healing_configure({KEY: VALUE})

Readers read the same functions SQL users call; changes go through the same functions and the
same request path to the acting daemon, so the CLI and SQL cannot disagree.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import yaml

from ruvectord.cli.framework import Arg, Context, command, group, positive_int
from ruvectord.cli.output import Column, Output, Table, fixed, plain
from ruvectord.cli.requests import request_output, wait_for
from ruvectord.errors import UserError

group("config", "settings: show (with their source), set (dynamic ones, in the database)")


@command(
    "heal status",
    "healing per collection: enabled, active action, cooldown, throttles",
    connect=True,
)
async def heal_status(ctx: Context) -> Output:
    rows = [dict(r) for r in await ctx.db.fetch("SELECT * FROM ruvector_healing_status()")]

    def throttles(r: Mapping[str, Any]) -> str:
        levels = r.get("throttles") or {}
        return (
            ", ".join(
                f"{op} {v['throttle_pct']}% until {plain(v['lease_until'])}"
                for op, v in levels.items()
            )
            or "-"
        )

    table = Table(
        [
            Column.key("COLLECTION", "collection"),
            Column(
                "HEALING", lambda r: "on" if r["enabled"] else f"off ({r['paused_by'] or 'yaml'})"
            ),
            Column.key("STATE", "state"),
            Column.number("LAMBDA", "lambda_cut", fixed(3)),
            Column(
                "ACTIVE",
                lambda r: (
                    f"{r['active_strategy']} ({r['active_action']})" if r["active_action"] else "-"
                ),
            ),
            Column.key("COOLDOWN UNTIL", "cooldown_until"),
            Column.number("PENDING", "pending_approvals"),
            Column("THROTTLES", throttles),
        ],
        rows,
        empty="no collections",
    )
    return Output({"collections": rows}, [table])


def _since(text: str) -> datetime:
    """`24h`, `30m`, `7d`, or an ISO 8601 time (with a zone, or UTC)."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if text and text[-1] in units and text[:-1].replace(".", "", 1).isdigit():
        return datetime.now(UTC) - timedelta(seconds=float(text[:-1]) * units[text[-1]])
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise UserError(
            f"--since {text!r}: expected e.g. 24h, 30m, 7d or 2026-11-25T14:00Z"
        ) from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


@command(
    "history",
    "healing actions with their outcome (ruvector_healing_history)",
    connect=True,
    args=[
        Arg("--collection", help="one collection"),
        Arg("--since", default="24h", help="24h, 30m, 7d or an ISO time (default 24h)"),
        Arg("--strategy", help="one strategy"),
        Arg("--limit", type=positive_int, default=20, metavar="N", help="at most N (default 20)"),
    ],
)
async def history(ctx: Context) -> Output:
    rows = [
        dict(r)
        for r in await ctx.db.fetch(
            "SELECT * FROM ruvector_healing_history($1, $2, $3, $4)",
            ctx.args.collection,
            _since(ctx.args.since),
            ctx.args.strategy,
            ctx.args.limit,
        )
    ]

    def lambdas(r: Mapping[str, Any]) -> str:
        final = "-" if r["final_lambda"] is None else f"{r['final_lambda']:.3f}"
        return f"{r['initial_lambda']:.3f} -> {final}"

    table = Table(
        [
            Column.number("ID", "action_id"),
            Column.key("CREATED", "created_at"),
            Column.key("COLLECTION", "collection_name"),
            Column.key("STRATEGY", "strategy_name"),
            Column.key("CLASS", "problem_class"),
            Column.key("STATUS", "status"),
            Column("LAMBDA", lambdas),
            Column("BY", lambda r: r["decided_by"] or r["actor"]),
        ],
        rows,
        empty="no healing actions in that window",
    )
    return Output({"actions": rows}, [table])


@command("strategies", "every strategy: classes, impact, approval, weight", connect=True)
async def strategies(ctx: Context) -> Output:
    rows = [dict(r) for r in await ctx.db.fetch("SELECT * FROM ruvector_healing_strategies()")]
    table = Table(
        [
            Column.key("STRATEGY", "name"),
            Column("HANDLES", lambda r: ", ".join(r["classes"])),
            Column.number("IMPACT", "impact", fixed(1)),
            Column("REVERSIBLE", lambda r: "yes" if r["reversible"] else "no"),
            Column("APPROVAL", lambda r: "needed" if r["requires_approval"] else "-"),
            Column("AUTO", lambda r: "yes" if r["enabled"] else "no"),
            Column.number("WEIGHT", "weight", fixed(2)),
        ],
        rows,
        empty="no daemon has published its strategies yet (start ruvectord once)",
    )
    return Output({"strategies": rows}, [table])


_COLLECTION = Arg("collection", help="the collection (see status)")


@command(
    "heal trigger",
    "sample a collection and heal it now, with every safeguard",
    connect=True,
    waits=True,
    args=[_COLLECTION],
)
async def heal_trigger(ctx: Context) -> Output:
    name = ctx.args.collection
    request = await ctx.db.fetchval("SELECT ruvector_healing_trigger($1)", name)
    outcome = await wait_for(ctx, request)
    return request_output(ctx, f"healing triggered on {name}", outcome, collection=name)


def _param(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise UserError(f"--param {text!r}: expected KEY=VALUE, e.g. max_moves=100")
    try:
        return key, yaml.safe_load(value)
    except yaml.YAMLError:
        return key, value


@command(
    "heal execute",
    "run one strategy now (skips the cooldown; --force-impact passes the impact cap)",
    connect=True,
    waits=True,
    args=[
        _COLLECTION,
        Arg("strategy", help="the strategy (see strategies)"),
        Arg(
            "--param",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="a strategy parameter (repeatable)",
        ),
        Arg("--dry-run", action="store_true", help="plan and say what it would do; change nothing"),
        Arg(
            "--force-impact",
            action="store_true",
            help="run it even above healing.max_auto_heal_impact",
        ),
    ],
)
async def heal_execute(ctx: Context) -> Output:
    params = dict(_param(p) for p in ctx.args.param)
    if ctx.args.dry_run:
        params["dry_run"] = True
    if ctx.args.force_impact:
        params["force_impact"] = True
    name, strategy = ctx.args.collection, ctx.args.strategy
    request = await ctx.db.fetchval(
        "SELECT ruvector_healing_execute($1, $2, $3)", name, strategy, params
    )
    outcome = await wait_for(ctx, request)
    return request_output(
        ctx, f"{strategy} on {name} requested", outcome, collection=name, strategy=strategy
    )


@command(
    "heal abort",
    "stop a pending, approved or running action (a running one is rolled back)",
    connect=True,
    waits=True,
    args=[Arg("action_id", type=positive_int, help="the action id (see heal list)")],
)
async def heal_abort(ctx: Context) -> Output:
    action = ctx.args.action_id
    request = await ctx.db.fetchval("SELECT ruvector_healing_abort($1)", action)
    outcome = await wait_for(ctx, request)
    return request_output(ctx, f"action {action} aborted", outcome, action_id=action)


@command(
    "heal rollback",
    "roll back the collection's last reversible action in force",
    connect=True,
    waits=True,
    args=[_COLLECTION],
)
async def heal_rollback(ctx: Context) -> Output:
    name = ctx.args.collection
    request = await ctx.db.fetchval("SELECT ruvector_healing_rollback($1)", name)
    outcome = await wait_for(ctx, request)
    return request_output(ctx, f"rollback on {name} requested", outcome, collection=name)


@command(
    "config show",
    "every setting, its value and where it comes from (default, yaml, database)",
    dsn=True,
    args=[Arg("--offline", action="store_true", help="the file alone, without the database")],
)
async def config_show(ctx: Context) -> Output:
    from ruvectord import dynamic
    from ruvectord.logs import redact

    overrides: dict[str, Any] = {}
    if not ctx.args.offline:
        from ruvectord.postgres.pool import ConnectOptions, Database

        db = await Database.connect(ConnectOptions.from_config(ctx.config.database, ctx.dsn))
        try:
            found = await db.fetch("SELECT key, value FROM ruvector.healing_config")
        finally:
            await db.close()
        overrides = {r["key"]: r["value"] for r in found}
    effective = dynamic.effective(ctx.config, overrides)
    sources = dynamic.sources(ctx.config, overrides)
    rows = [
        {
            "key": key,
            "value": value,
            "source": sources.get(key, "default"),
            "dynamic": dynamic.is_dynamic(key),
        }
        for key, value in sorted(dynamic.values(effective).items())
    ]
    table = Table(
        [
            Column.key("SETTING", "key"),
            Column("VALUE", lambda r: redact(json.dumps(r["value"]))),
            Column.key("SOURCE", "source"),
            Column("", lambda r: "dynamic" if r["dynamic"] else "static"),
        ],
        rows,
    )
    for r in rows:  # never a password in any output
        if isinstance(r["value"], str):
            r["value"] = redact(r["value"])
    return Output({"settings": rows}, [table])


@command(
    "config set",
    "change a dynamic setting in the database (every daemon applies it on its next cycle)",
    connect=True,
    waits=True,
    args=[
        Arg("key", help="e.g. healing.min_healing_interval_seconds (a bare key: healing.*)"),
        Arg("value", help="a YAML/JSON value: 300, false, [a, b], null (null: back to the file)"),
        Arg("--reason", help="why (recorded with the setting and in the audit trail)"),
    ],
)
async def config_set(ctx: Context) -> Output:
    try:
        value = yaml.safe_load(ctx.args.value)
    except yaml.YAMLError:
        value = ctx.args.value
    key = ctx.args.key
    request = await ctx.db.fetchval(
        "SELECT ruvector_healing_configure($1, $2)", {key: value}, ctx.args.reason
    )
    outcome = await wait_for(ctx, request)
    return request_output(ctx, f"{key} set to {json.dumps(value)}", outcome, key=key, value=value)
