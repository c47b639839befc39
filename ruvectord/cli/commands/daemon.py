"""The daemon and its set-up: run, check-config, migrate."""

from __future__ import annotations

from pathlib import Path

import anyio

from ruvectord.cli.framework import Arg, Context, command
from ruvectord.cli.output import Output, progress
from ruvectord.errors import ConfigError


@command(
    "run",
    "run the daemon (the systemd unit's ExecStart)",
    json=False,
    dsn=True,
    config_file=True,
    args=[
        Arg(
            "--embedded",
            type=Path,
            metavar="DIR",
            help="start a private PostgreSQL 18 with pgvector in DIR and monitor it",
        )
    ],
)
def run(ctx: Context) -> Output:
    from ruvectord.daemon import Daemon, build_healer

    assert ctx.config_path is not None  # config_file=True: never the defaults alone
    daemon = Daemon(
        ctx.config,
        config_path=ctx.config_path,
        dsn=ctx.dsn,
        embedded_dir=ctx.args.embedded,
        healer_factory=build_healer,
    )
    return Output(exit_code=anyio.run(daemon.run), printed=True)


@command(
    "check-config",
    "validate the config file (and the files run reads first) and exit",
    dsn=True,
    args=[
        Arg(
            "--online",
            action="store_true",
            help="also connect and check that each collection's table and vector column exist",
        )
    ],
)
async def check_config(ctx: Context) -> Output:
    from ruvectord.audit import read_key
    from ruvectord.doctor import inspect_collection
    from ruvectord.postgres.pool import ConnectOptions

    config = ctx.config
    ConnectOptions.from_config(config.database, ctx.dsn)  # reads database.password_file
    await anyio.to_thread.run_sync(read_key, config.signing_key_path)  # never creates it
    data: dict[str, object] = {
        "ok": True,
        "config": str(ctx.config_path) if ctx.config_path else None,
        "collections": len(config.collections),
    }
    if ctx.args.online:
        problems = []
        async with ctx.database() as db:
            for i, c in enumerate(config.collections):
                found = await inspect_collection(db, c)
                if found.problem:
                    problems.append(f"collections[{i}] ({c.name}): {found.problem} in {db.target}")
        if problems:
            raise ConfigError(problems)
        data["online"] = "every collection's table and vector column exist"
    return Output(data, ["ok"])


@command(
    "migrate",
    "apply pending schema migrations (as an administrator: a superuser or a member of "
    "ruvector_owner)",
    dsn=True,
    args=[
        Arg(
            "--admin-dsn",
            metavar="URI",
            help="connect as this administrator for the migration (the daemon's own role "
            "cannot); enough on its own, without a config file",
        )
    ],
)
async def migrate(ctx: Context) -> Output:
    from ruvectord.postgres.migrations import migrate as apply

    async with ctx.database(ctx.args.admin_dsn) as db, progress("migrating (under its lock)"):
        report = await apply(db)
    if report.applied:
        line = f"applied {', '.join(report.applied)}; schema at version {report.version}"
    else:
        line = f"nothing to do; schema at version {report.version}"
    return Output({"applied": list(report.applied), "version": report.version}, [line])
