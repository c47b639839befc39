"""`ruvectord doctor`: the preflight (ruvectord/doctor.py), one line per check."""

from __future__ import annotations

from typing import Any

from ruvectord.cli import exits
from ruvectord.cli.framework import Context, command
from ruvectord.cli.output import Column, Output, Table, progress


@command(
    "doctor",
    "check everything run relies on: database, schema, collections, privileges, port, key",
    dsn=True,
    description="An online preflight against the configured database, one line per check "
    "(ok, warn or FAIL, and what to do); exits 1 if any check fails. Run it on the daemon's "
    "host as the daemon's user: it checks the role the daemon connects as (database.dsn, or "
    "--dsn), binds the metrics port and reads the signing key the way `run` would, and "
    "creates nothing.",
)
async def doctor(ctx: Context) -> Output:
    from ruvectord.doctor import run_checks

    async with progress("running the checks"):
        report = await run_checks(ctx.config, config_source=ctx.config_path, dsn=ctx.dsn)
    rows: list[dict[str, Any]] = [
        {"result": c.level.value, "check": c.what, "detail": c.detail} for c in report.checks
    ]
    table = Table(
        [
            Column("RESULT", lambda r: str(r["result"]).ljust(4)),  # ok, warn, FAIL
            Column.key("CHECK", "check"),
            Column.key("DETAIL", "detail"),
        ],
        rows,
        headers=False,
    )
    summary = (
        f"{report.failed} check(s) failed, {report.warnings} warning(s)"
        if report.failed
        else f"all {len(rows)} checks passed"
        + (f", {report.warnings} warning(s)" if report.warnings else "")
    )
    data = {
        "ok": report.failed == 0,
        "checks": rows,
        "failed": report.failed,
        "warnings": report.warnings,
    }
    return Output(data, [table, summary], exits.FAILURE if report.failed else exits.OK)
