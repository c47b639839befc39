"""The `ruvectord` command: run, check-config, migrate, status, audit verify, demo.

Exit codes: 0 success, 1 a runtime failure (database unreachable, verification failed),
2 bad input (config, flag, argument). Errors are one line each and never show a password.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import anyio
import asyncpg

from ruvectord import __version__
from ruvectord.config import DEFAULT_CONFIG_PATH, Config, load_config
from ruvectord.errors import ConfigError, DatabaseUnavailable, RuvectordError, UserError
from ruvectord.logs import redact, setup_logging

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # argparse echoes arguments back, and --dsn may carry a password
        super().error(redact(message))


def _parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument(
        "-c",
        "--config",
        type=Path,
        default=None,
        help=f"config file (default: $RUVECTORD_CONFIG or {DEFAULT_CONFIG_PATH})",
    )
    db = _Parser(add_help=False)
    db.add_argument("--dsn", help="connect here instead of database.dsn (postgresql://...)")

    p = _Parser(
        prog="ruvectord",
        description="Self-healing control daemon for PostgreSQL vector databases.",
    )
    p.add_argument("--version", action="version", version=f"ruvectord {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", parents=[common, db], help="run the daemon (systemd unit)")
    run.add_argument(
        "--embedded",
        type=Path,
        metavar="DIR",
        help="start a private PostgreSQL 18 with pgvector in DIR and monitor it",
    )
    sub.add_parser("check-config", parents=[common], help="validate the config file and exit")
    mig = sub.add_parser(
        "migrate",
        parents=[common, db],
        help="apply pending schema migrations (as an administrator: a superuser or a member "
        "of ruvector_owner)",
    )
    mig.add_argument(
        "--admin-dsn",
        metavar="URI",
        help="connect as this administrator for the migration (the daemon's own role cannot)",
    )
    status = sub.add_parser("status", parents=[common, db], help="integrity state per collection")
    status.add_argument("collection", nargs="?", help="one collection (default: all)")
    status.add_argument("--json", action="store_true", help="print JSON")
    audit = sub.add_parser("audit", help="audit trail commands")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True, metavar="SUBCOMMAND")
    audit_sub.add_parser(
        "verify", parents=[common, db], help="verify the signature of every integrity event"
    )
    audit_sub.add_parser(
        "key", parents=[common], help="print this daemon's public key (to pin on other nodes)"
    )
    heal = sub.add_parser("heal", help="healing actions: list, approve, reject")
    heal_sub = heal.add_subparsers(dest="heal_command", required=True, metavar="SUBCOMMAND")
    heal_sub.add_parser("list", parents=[common, db], help="recent healing actions")
    for verb in ("approve", "reject"):
        h = heal_sub.add_parser(verb, parents=[common, db], help=f"{verb} a pending action")
        h.add_argument("action_id", type=_positive_int, help="the action id (see heal list)")
        if verb == "reject":
            h.add_argument("--reason", help="why (recorded in the journal and the audit trail)")
    pause = sub.add_parser(
        "pause",
        parents=[common, db],
        help="switch healing off for every daemon on the database (lifts held throttles)",
    )
    pause.add_argument("--reason", help="why (recorded and shown in every decision line)")
    sub.add_parser("resume", parents=[common, db], help="switch healing back on")
    throttle = sub.add_parser("throttle", help="throttles in force: list, lift")
    t_sub = throttle.add_subparsers(dest="throttle_command", required=True, metavar="SUBCOMMAND")
    t_list = t_sub.add_parser("list", parents=[common, db], help="every throttle and its lease")
    t_list.add_argument("--json", action="store_true", help="print JSON")
    lift = t_sub.add_parser(
        "lift", parents=[common, db], help="take a collection's throttle off now"
    )
    lift.add_argument("collection", help="the collection (see status)")
    sub.add_parser(
        "effectiveness",
        parents=[common, db],
        help="per-strategy weight, attempts, success rate, improvement; recovery time",
    )
    demo = sub.add_parser("demo", help="a self-contained demonstration on an embedded server")
    demo.add_argument("--json", action="store_true", help="print the timeline as JSON lines")
    demo.add_argument("--data-dir", type=Path, help="keep the embedded server's data here")
    demo.add_argument("--fast", action="store_true", help="shorter phases (for CI)")
    return p


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{value} is not a positive action id")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return _dispatch(args)
    except ConfigError as exc:
        for problem in exc.problems:
            _err(problem)
        return EXIT_USAGE
    except UserError as exc:
        _err(f"error: {exc}")
        return EXIT_USAGE
    except DatabaseUnavailable as exc:
        _err(f"error: {exc}")
        return EXIT_FAILURE
    except asyncpg.InsufficientPrivilegeError as exc:
        _err(
            f"error: {exc}; this needs a role with the right membership "
            "(ruvector_operator for changes, ruvector_reader for reading): connect as one "
            "with --dsn, or GRANT it (deploy/sql/roles.sql)"
        )
        return EXIT_USAGE
    except asyncpg.PostgresError as exc:
        code = getattr(exc, "sqlstate", "")
        hint = getattr(exc, "hint", None)
        text = f"{exc}" + (f" (hint: {hint})" if hint else "")
        if code in _BAD_INPUT:
            _err(f"error: {text}")
            return EXIT_USAGE
        _err(f"error: PostgreSQL said: {text} (SQLSTATE {code})")
        return EXIT_FAILURE
    except RuvectordError as exc:
        _err(f"error: {exc}")
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        # a bug or a failure nobody foresaw: the traceback, in plain text and redacted
        _err(traceback.format_exc().rstrip())
        _err(f"error: unexpected {type(exc).__name__}: {exc}")
        return EXIT_FAILURE


def _err(line: str) -> None:
    """Every error line the CLI prints goes through the logs' redaction."""
    print(redact(line), file=sys.stderr)


# SQLSTATEs the ruvector_* functions raise for a bad argument (not a broken database)
_BAD_INPUT = frozenset({"22004", "22023", "42704", "55000", "P0002"})


def _config_path(args: argparse.Namespace) -> Path:
    if args.config is not None:
        return Path(args.config)
    env = os.environ.get("RUVECTORD_CONFIG")
    return Path(env) if env else DEFAULT_CONFIG_PATH


def _load(args: argparse.Namespace) -> Config:
    return load_config(_config_path(args))


def _dispatch(args: argparse.Namespace) -> int:
    cmd = args.command
    if cmd == "check-config":
        _check_files(_load(args))
        print("ok")
        return EXIT_OK
    if cmd == "demo":
        from ruvectord.demo import run_demo

        return run_demo(json_lines=args.json, data_dir=args.data_dir, fast=args.fast)
    config = _load(args)
    setup_logging(
        config.logging.level, config.logging.format, stream=sys.stderr if cmd != "run" else None
    )
    if cmd == "run":
        return _run_daemon(args, config)
    if cmd == "migrate":
        if args.admin_dsn:
            args.dsn = args.admin_dsn
        return _with_db(args, config, _migrate)
    if cmd == "status":
        return _with_db(args, config, lambda db: _status(db, config, args))
    if cmd == "audit":
        if args.audit_command == "key":
            return _audit_key(config)
        return _with_db(args, config, lambda db: _audit_verify(db, config))
    if cmd in ("pause", "resume"):
        return _with_db(args, config, lambda db: _enable(db, args, cmd == "resume"))
    if cmd == "throttle":
        return _with_db(args, config, lambda db: _throttle(db, args))
    if cmd == "heal":
        return _with_db(args, config, lambda db: _heal(db, args))
    if cmd == "effectiveness":
        return _with_db(args, config, lambda db: _effectiveness(db, config))
    raise UserError(f"unknown command {cmd!r}")  # argparse prevents this


def _check_files(config: Config) -> None:
    """What `run` reads before it connects, checked the same way and without creating it."""
    from ruvectord.audit import read_key
    from ruvectord.postgres.pool import ConnectOptions

    ConnectOptions.from_config(config.database)  # reads database.password_file
    read_key(config.signing_key_path)


def _run_daemon(args: argparse.Namespace, config: Config) -> int:
    from ruvectord.daemon import Daemon, build_healer

    daemon = Daemon(
        config,
        config_path=_config_path(args),
        dsn=args.dsn,
        embedded_dir=args.embedded,
        healer_factory=build_healer,
    )
    return anyio.run(daemon.run)


def _with_db(args: argparse.Namespace, config: Config, fn: Callable[[Any], Awaitable[int]]) -> int:
    from ruvectord.postgres.pool import ConnectOptions, Database

    async def go() -> int:
        db = await Database.connect(ConnectOptions.from_config(config.database, args.dsn))
        try:
            return await fn(db)
        finally:
            await db.close()

    return anyio.run(go)


async def _migrate(db: Any) -> int:
    from ruvectord.postgres.migrations import migrate

    report = await migrate(db)
    if report.applied:
        print(f"applied {', '.join(report.applied)}; schema at version {report.version}")
    else:
        print(f"nothing to do; schema at version {report.version}")
    return EXIT_OK


async def _status(db: Any, config: Config, args: argparse.Namespace) -> int:
    names = [args.collection] if args.collection else [c.name for c in config.collections]
    rows = []
    for name in names:
        try:
            rows.append(await db.fetchval("SELECT ruvector_integrity_status($1)", name))
        except asyncpg.UndefinedObjectError as exc:
            raise UserError(f"{exc}") from None
    if args.json:
        for row in rows:
            print(json.dumps(row, default=str))
        return EXIT_OK
    if not rows:
        print("no collections configured")
    for row in rows:
        lam = row.get("lambda_cut")
        lam_s = "-" if lam is None else f"{lam:.3f}"
        stale = " (stale: the daemon has not sampled recently)" if row.get("stale") else ""
        print(f"{row['collection']}: {row['state']}, lambda_cut {lam_s}{stale}")
        if row.get("decision"):
            print(f"  {row['decision']}")
        if row.get("collection_status") == "error":
            print(f"  error: {row.get('collection_status_detail')}")
    return EXIT_OK


def _audit_key(config: Config) -> int:
    from ruvectord.audit import pinned_keys

    path = config.signing_key_path
    keys = pinned_keys(path, ())
    if not keys:
        raise UserError(f"no signing key at {path} (integrity.signing_key_file)")
    for signer_id, public in keys.items():
        print(f"{public.hex()}  (signer {signer_id}, {path})")
    return EXIT_OK


async def _audit_verify(db: Any, config: Config) -> int:
    from ruvectord.audit import pinned_keys
    from ruvectord.postgres.audit_trail import verify_events

    path = config.signing_key_path
    trusted = await anyio.to_thread.run_sync(
        pinned_keys, path, config.integrity.trusted_public_keys
    )
    if not trusted:
        raise UserError(
            f"no pinned key to verify against: {path} is missing and "
            "integrity.trusted_public_keys is empty (audit verify never trusts keys found in "
            "the database itself)"
        )
    report = await verify_events(db, trusted)
    for bad in report.failures:
        print(
            f"event {bad.id} ({bad.collection}, {bad.event_type}, {bad.created_at}): {bad.problem}"
        )
    print(
        f"{report.checked} event(s) checked against {len(trusted)} pinned key(s), "
        f"{len(report.failures)} failed"
    )
    return EXIT_OK if not report.failures else EXIT_FAILURE


async def _enable(db: Any, args: argparse.Namespace, enabled: bool) -> int:
    request = await db.fetchval(
        "SELECT ruvector_healing_enable($1, $2)", enabled, getattr(args, "reason", None)
    )
    if enabled:
        print(f"healing resumed for every daemon on {db.target} (request {request})")
    else:
        print(
            f"healing paused for every daemon on {db.target} (request {request}); the acting "
            "daemon lifts what it holds, and a brake without its daemon lapses with its lease"
        )
    return EXIT_OK


async def _throttle(db: Any, args: argparse.Namespace) -> int:
    if args.throttle_command == "lift":
        request = await db.fetchval("SELECT ruvector_healing_throttle_lift($1)", args.collection)
        print(
            f"throttles on {args.collection} lifted now (request {request}); the acting daemon "
            "journals it and will not renew them"
        )
        return EXIT_OK
    rows = await db.fetch("SELECT * FROM ruvector_healing_throttles()")
    if args.json:
        for r in rows:
            print(json.dumps(dict(r), default=str))
        return EXIT_OK
    if not rows:
        print("no throttles")
    for r in rows:
        state = "in force" if r["in_force"] else "lapsed"
        print(
            f"{r['collection']:<16} {r['operation']:<12} {r['throttle_pct']:>3}%  "
            f"retry {r['retry_after_seconds']:g} s  action {r['action_id'] or '-'}  "
            f"{state} until {r['expires_at']:%Y-%m-%d %H:%M:%S %Z}"
        )
    return EXIT_OK


async def _heal(db: Any, args: argparse.Namespace) -> int:
    from ruvectord.postgres.actions import HealingStore

    store = HealingStore(db)
    if args.heal_command == "list":
        rows = await store.list_actions()
        if not rows:
            print("no healing actions yet")
        for r in rows:
            final = "-" if r["final_lambda"] is None else f"{r['final_lambda']:.3f}"
            line = (
                f"{r['id']:>6}  {r['created_at']:%Y-%m-%d %H:%M:%S}  {r['collection']:<16} "
                f"{r['strategy_name']:<20} {r['status']:<16} lambda "
                f"{r['initial_lambda']:.3f} -> {final}"
            )
            if r["status"] == "pending_approval" and r["expires_at"]:
                line += f"  (expires {r['expires_at']:%H:%M:%S})"
            print(line)
            if r["error_message"]:
                print(f"        {r['error_message']}")
        return EXIT_OK
    if args.heal_command == "approve":
        request = await db.fetchval("SELECT ruvector_healing_approve($1)", args.action_id)
        print(f"action {args.action_id} approved (request {request})")
    else:
        request = await db.fetchval(
            "SELECT ruvector_healing_reject($1, $2)", args.action_id, args.reason
        )
        print(f"action {args.action_id} rejected (request {request})")
    return EXIT_OK


async def _effectiveness(db: Any, config: Config) -> int:
    from datetime import UTC, datetime, timedelta

    from ruvectord.healing.learning import effectiveness
    from ruvectord.postgres.actions import HealingStore

    store = HealingStore(db)
    since = datetime.now(UTC) - timedelta(days=config.healing.learning_window_days)
    report = effectiveness(await store.outcomes_since(since), await store.load_weights())
    for line in report.lines():
        print(line)
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
