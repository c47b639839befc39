"""`ruvectord status`: integrity per collection, the acting daemon, and an exit code that
says how healthy it all is (usable from cron and as a Nagios plugin with --nagios).

Health, per collection, worst first:
  critical  unknown to the database (no daemon registered it), in error (its table is
            missing, ...), stale (no sample for three intervals: is a daemon running?), or
            integrity critical
  degraded  integrity stress
  ok        normal and sampled recently
and for the database: degraded when no daemon holds the actor lock (nothing can heal), or
when there is no collection at all (none configured, none registered).
Exit codes: 0 ok, 3 degraded, 4 critical; with --nagios 0 OK, 1 WARNING, 2 CRITICAL,
3 UNKNOWN, and one line of text with performance data.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from enum import IntEnum
from typing import Any

import asyncpg

from ruvectord.cli import exits
from ruvectord.cli.framework import Arg, Context, command
from ruvectord.cli.output import Block, Column, Output, Table, ago, fixed, when
from ruvectord.cli.requests import describe_actor
from ruvectord.errors import UserError


class Health(IntEnum):
    OK = 0
    DEGRADED = 1
    CRITICAL = 2

    @property
    def exit_code(self) -> int:
        return (exits.OK, exits.DEGRADED, exits.CRITICAL)[self]

    @property
    def nagios(self) -> tuple[int, str]:
        return (
            (exits.NAGIOS_OK, "OK"),
            (exits.NAGIOS_WARNING, "WARNING"),
            (exits.NAGIOS_CRITICAL, "CRITICAL"),
        )[self]


def _time(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


def assess(row: Mapping[str, Any], now: datetime | None = None) -> tuple[Health, str, str | None]:
    """One collection's health, a word for it, and unless ok, why (in words an operator
    acts on)."""
    if not row.get("known", True):
        return (
            Health.CRITICAL,
            "unknown",
            (
                "unknown to the database: no daemon has registered it (has ruvectord started "
                "with this configuration?)"
            ),
        )
    if row.get("collection_status") == "error":
        detail = row.get("collection_status_detail") or "unknown"
        return Health.CRITICAL, "in error", f"error: {detail}"
    if row.get("stale"):
        last = _time(row.get("last_sample_at"))
        since = (
            "never sampled" if last is None else f"no sample since {when(last)} ({ago(last, now)})"
        )
        return Health.CRITICAL, "stale", f"stale: {since}; is ruvectord running?"
    if row.get("state") == "critical":
        return Health.CRITICAL, "critical", "integrity critical"
    if row.get("state") == "stress":
        return Health.DEGRADED, "in stress", "integrity stress"
    return Health.OK, "normal", None


def _throttles(row: Mapping[str, Any]) -> str:
    throttles = row.get("throttles") or {}
    return ", ".join(f"{op} {pct}%" for op, pct in sorted(throttles.items())) or "-"


def _sampled(row: Mapping[str, Any], now: datetime | None) -> str:
    last = _time(row.get("last_sample_at"))
    return "-" if last is None else f"{when(last)} ({ago(last, now)})"


@command(
    "status",
    "integrity per collection, the acting daemon; exit code = health (0 ok, 3, 4)",
    connect=True,
    args=[
        Arg("collection", nargs="?", help="one collection (default: all)"),
        Arg(
            "--nagios",
            action="store_true",
            help="a Nagios/Icinga plugin: one line with perfdata; exit 0 OK, 1 WARNING, "
            "2 CRITICAL, 3 UNKNOWN",
        ),
    ],
    description="Integrity per collection (state, lambda_cut, last sample, throttles, the "
    "last decision), whether a daemon holds the actor lock, and whether healing is paused. "
    "Exit code: 0 healthy; 3 degraded (a collection in stress, no acting daemon, or no "
    "collection at all); 4 critical (a collection critical, in error, stale or unknown to the "
    "database). With --dsn and no config file: the collections the database knows.",
)
async def status(ctx: Context) -> Output:
    db = ctx.db
    names: list[str]
    if ctx.args.collection:
        names = [ctx.args.collection]
    elif ctx.config.collections:
        names = [c.name for c in ctx.config.collections]
    else:
        names = [
            r["name"]
            for r in await db.fetch(
                "SELECT name FROM ruvector.collections WHERE configured ORDER BY name"
            )
        ]
    now: datetime = await db.fetchval("SELECT now()")  # ages by the database's clock
    rows: list[dict[str, Any]] = []
    for name in names:
        try:
            row = dict(await db.fetchval("SELECT ruvector_integrity_status($1)", name))
        except asyncpg.UndefinedObjectError as exc:
            if ctx.args.collection:
                hint = getattr(exc, "hint", None)
                raise UserError(str(exc.args[0]) + (f" ({hint})" if hint else "")) from None
            row = {"collection": name, "known": False, "state": None}
        health, summary, problem = assess(row, now)
        row["health"] = health.name.lower()
        row["summary"] = summary
        row["problem"] = problem
        rows.append(row)

    from ruvectord.postgres.leader import actor_holder

    actor = await actor_holder(db)
    # healing.enabled: the database's override (ruvectord pause / resume, or
    # ruvector_healing_configure), else what the acting daemon runs with (its config file)
    switch = await db.fetchrow(
        """
        SELECT h.value AS override, h.updated_by, h.updated_at, h.reason,
               e.value AS effective, e.source
          FROM (SELECT 'healing.enabled'::text AS key) k
          LEFT JOIN ruvector.healing_config h ON h.key = k.key
          LEFT JOIN ruvector.effective_config e ON e.key = k.key
        """
    )
    pending = await db.fetchval(
        "SELECT count(*) FROM ruvector.healing_actions a JOIN ruvector.collections c "
        "ON c.id = a.collection_id WHERE a.status = 'pending_approval' AND c.name = ANY($1)",
        names,
    )
    problems = [f"{r['collection']}: {r['problem']}" for r in rows if r["problem"]]
    health = max((Health[r["health"].upper()] for r in rows), default=Health.OK)
    if not rows:  # nothing watched: a daemon that never ran here, or an empty config
        health = Health.DEGRADED
        problems.append(
            "no collections: none configured, and none registered in the database (has "
            "ruvectord run here?)"
        )
    elif actor is None:
        health = max(health, Health.DEGRADED)
        problems.append("no daemon holds the actor lock: nothing heals")
    assert switch is not None
    paused = switch["override"] is False
    healing = {
        "enabled": not paused and switch["effective"] is not False,
        "paused": paused,  # by an operator, in the database
        "reason": switch["reason"] if paused else None,
        "changed_by": switch["updated_by"] if paused else None,
        "changed_at": switch["updated_at"] if paused else None,
        "disabled_in": switch["source"] if switch["effective"] is False and not paused else None,
    }
    data = {
        "checked_at": now,
        "health": health.name.lower(),
        "exit_code": health.exit_code,
        "problems": problems,
        "collections": rows,
        "actor": actor,
        "healing": healing,
        "pending_approvals": pending,
    }
    if ctx.args.nagios:
        code, word = health.nagios
        line = _nagios_line(word, rows, actor, problems)
        return Output(data, [line], code)
    short = [f"{r['collection']} {r['summary']}" for r in rows if r["health"] != "ok"]
    if not rows:
        short.append("no collections")
    elif actor is None:
        short.append("no acting daemon")
    view = _view(rows, now, actor, healing, pending, health, short)
    return Output(data, view, health.exit_code)


def _view(
    rows: list[dict[str, Any]],
    now: datetime,
    actor: Mapping[str, Any] | None,
    healing: Mapping[str, Any],
    pending: int,
    health: Health,
    short: list[str],
) -> list[Block]:
    table = Table(
        [
            Column.key("COLLECTION", "collection"),
            Column.key("STATE", "state"),
            Column.number("LAMBDA", "lambda_cut", fixed(3)),
            Column("LAST SAMPLE", lambda r: _sampled(r, now)),
            Column("THROTTLES", _throttles),
            Column("HEALTH", lambda r: str(r["health"]).upper() if r["health"] != "ok" else "ok"),
        ],
        rows,
        empty="no collections (none configured, and none registered in the database)",
    )
    view: list[Block] = [table]
    notes = []
    for r in rows:
        if r.get("problem") and r["summary"] in ("unknown", "in error", "stale"):
            notes.append(f"{r['collection']}: {r['problem']}")
        decision = r.get("decision")
        if decision:
            prefix = f"{r['collection']}: "
            notes.append(decision if decision.startswith(prefix) else prefix + decision)
    if notes:
        view += ["", *notes]
    view.append("")
    facts: list[dict[str, str]] = [{"k": "actor lock", "v": describe_actor(actor)}]
    if actor is None:
        facts[0]["v"] = (
            "no daemon holds it: nothing heals (is ruvectord running? its log says why it "
            "does not act)"
        )
    if healing["paused"]:
        why = f": {healing['reason']}" if healing.get("reason") else ""
        facts.append(
            {
                "k": "healing",
                "v": f"PAUSED by {healing['changed_by']} at {when(healing['changed_at'])}{why} "
                "(ruvectord resume)",
            }
        )
    elif not healing["enabled"]:
        facts.append(
            {
                "k": "healing",
                "v": "DISABLED in the acting daemon's configuration (healing.enabled: false, "
                f"from its {healing['disabled_in']})",
            }
        )
    else:
        facts.append({"k": "healing", "v": "enabled"})
    if pending:
        facts.append(
            {"k": "approvals", "v": f"{pending} action(s) pending approval (ruvectord heal list)"}
        )
    summary = "ok" if health is Health.OK else f"{health.name} (exit {health.exit_code})"
    if short:
        summary += ": " + ", ".join(short)
    facts.append({"k": "health", "v": summary})
    view.append(
        Table(
            [Column("", lambda r: str(r["k"]) + ":"), Column("", lambda r: str(r["v"]))],
            facts,
            headers=False,
        )
    )
    return view


def _nagios_line(
    word: str,
    rows: list[dict[str, Any]],
    actor: Mapping[str, Any] | None,
    problems: list[str],
) -> str:
    if problems:
        text = "; ".join(problems)
    else:
        n = len(rows)
        text = f"{n} collection{'s' if n != 1 else ''} normal"
        if actor is not None:
            text += f", daemon pid {actor['pid']} acting"
    perf = []
    for r in rows:
        label = str(r["collection"]).replace("'", "_")
        lam = r.get("lambda_cut")
        policy = r.get("policy") or {}
        if lam is not None:
            high, low = policy.get("threshold_high", 0.8), policy.get("threshold_low", 0.3)
            perf.append(f"'{label}_lambda_cut'={lam:.4f};{high:g}:;{low:g}:;0;1")
        state = {"normal": 0, "stress": 1, "critical": 2}.get(str(r.get("state")))
        if state is not None:
            perf.append(f"'{label}_state'={state};1;2;0;2")
    line = f"RUVECTOR {word} - {text}"
    return line + (" | " + " ".join(perf) if perf else "")
