"""A small command framework on argparse: declare a command, get a consistent CLI.

Why argparse and not click or typer: it is in the standard library (one dependency fewer on a
database host), it is what the CLI already used, and what the others would add -- subcommand
suggestions, tables, JSON -- is a few dozen lines here, done once for every command. Its
usage errors already exit 2, which is our code for bad input.

Each command declares, with `@command(...)`:
  * its path (`"heal approve"`), help line and arguments (`Arg`, as for add_argument);
  * what it needs: the config file (`config`), a `--dsn` (then a missing default config file
    is fine: the defaults and the DSN are enough), a database connection opened for it
    (`connect`), `--wait/--no-wait` and `--timeout` (`waits`), `--json` (`json`, default on);
  * a handler, `(Context) -> Output` (or a coroutine), that returns data plus a view.

Then one place turns the Output into JSON or text (`output.py`), and one place (`_failure`)
maps every exception to an exit code and one line on stderr (redacted, never a traceback for
an expected failure). Adding a command is one decorated function in a module listed in
`ruvectord/cli/__init__.py`.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import inspect
import os
import re
import sys
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, NoReturn

import anyio
import asyncpg

from ruvectord import __version__
from ruvectord.cli import exits
from ruvectord.cli.output import Output, err, progress, render_json, render_view
from ruvectord.config import DEFAULT_CONFIG_PATH, Config, load_config, parse_config
from ruvectord.errors import ConfigError, DatabaseUnavailable, RuvectordError, UserError
from ruvectord.logs import redact, setup_logging

if TYPE_CHECKING:  # the pool is imported when a command connects, not for --help
    from ruvectord.postgres.pool import Database


class SchemaNotCurrent(RuvectordError):
    """The database has no ruvector schema, or an older or newer one than this build."""


@dataclass(frozen=True)
class Arg:
    """One add_argument call: `Arg("--reason", help="why")`."""

    flags: tuple[str, ...]
    options: dict[str, Any]

    def __init__(self, *flags: str, **options: Any) -> None:
        object.__setattr__(self, "flags", flags)
        object.__setattr__(self, "options", options)


Handler = Callable[["Context"], Output | Awaitable[Output]]


@dataclass(frozen=True)
class Command:
    path: tuple[str, ...]
    help: str
    handler: Handler
    args: Sequence[Arg] = ()
    config: bool = True  # reads the config file (-c)
    dsn: bool = False  # takes --dsn; with one, the default config file may be absent
    connect: bool = False  # the framework opens the database before the handler runs
    json: bool = True  # takes --json
    waits: bool = False  # takes --wait/--no-wait and --timeout
    description: str | None = None
    config_file: bool = False  # needs a real config file, even with --dsn (run)

    @property
    def name(self) -> str:
        return " ".join(self.path)


REGISTRY: list[Command] = []
GROUPS: dict[str, str] = {}
ORDER: list[str] = []  # top-level names in help order; others follow in registration order


def group(name: str, help: str) -> None:
    """A command with subcommands (`heal`, `throttle`, `audit`)."""
    GROUPS[name] = help


def command(
    path: str,
    help: str,
    *,
    args: Sequence[Arg] = (),
    config: bool = True,
    dsn: bool = False,
    connect: bool = False,
    json: bool = True,
    waits: bool = False,
    description: str | None = None,
    config_file: bool = False,
) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        REGISTRY.append(
            Command(
                tuple(path.split()),
                help,
                handler,
                tuple(args),
                config,
                dsn or connect,
                connect,
                json,
                waits,
                description,
                config_file,
            )
        )
        return handler

    return register


# --------------------------------------------------------------------------- context


@dataclass
class Context:
    args: argparse.Namespace
    config: Config
    config_path: Path | None  # None: no file, the defaults (and --dsn)
    command: Command
    db_: Database | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def db(self) -> Database:
        assert self.db_ is not None, f"{self.command.name} did not ask for a connection"
        return self.db_

    @property
    def json(self) -> bool:
        return bool(getattr(self.args, "json", False))

    @property
    def dsn(self) -> str | None:
        value: str | None = getattr(self.args, "dsn", None)
        return value

    def note(self, line: str) -> None:
        """A remark for the human on stderr (never on stdout, so --json stays parseable)."""
        err(line)

    @asynccontextmanager
    async def database(self, dsn: str | None = None) -> AsyncIterator[Database]:
        """A small pool to the configured database (or `dsn`), closed afterwards.

        An error from a ruvector function or table that does not exist is turned into what
        to do about it: the database was never migrated, or is at another version.
        """
        from ruvectord.postgres.pool import ConnectOptions, Database, describe_target

        options = ConnectOptions.from_config(self.config.database, dsn or self.dsn)
        options = dataclasses.replace(options, min_size=1, max_size=min(options.max_size, 2))
        async with progress(f"connecting to {describe_target(options.dsn)}"):
            db = await Database.connect(options)
        try:
            yield db
        except (
            asyncpg.UndefinedFunctionError,
            asyncpg.UndefinedTableError,
            asyncpg.InvalidSchemaNameError,
        ) as exc:
            if "ruvector" not in str(exc):
                raise
            problem = await schema_problem(db)
            if problem is None:
                raise
            raise SchemaNotCurrent(problem) from None
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                await db.close()


async def schema_problem(db: Database) -> str | None:
    """What is wrong with the database's ruvector schema for this build, or None."""
    from ruvectord.postgres.migrations import HOW_TO_MIGRATE, available, schema_version

    newest = len(await anyio.to_thread.run_sync(available))
    try:
        version = await schema_version(db)
    except asyncpg.PostgresError:
        return None
    if version == 0:
        return f"the database {db.target} has no ruvector schema: {HOW_TO_MIGRATE}"
    if version < newest:
        return (
            f"the database {db.target} has ruvector schema version {version}, this ruvectord "
            f"needs {newest}: {HOW_TO_MIGRATE}"
        )
    if version > newest:
        return (
            f"the database {db.target} has ruvector schema version {version}, newer than this "
            f"ruvectord knows ({newest}): upgrade ruvectord"
        )
    return None


# --------------------------------------------------------------------------- parser


class _Help(argparse.RawDescriptionHelpFormatter):
    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=20, width=92)


class Parser(argparse.ArgumentParser):
    """argparse, plus: did-you-mean for a mistyped command or option, redacted errors (a
    --dsn may carry a password), and Nagios' UNKNOWN for usage errors under --nagios."""

    nagios: ClassVar[bool] = False
    options_known: ClassVar[set[str]] = set()
    choices: Sequence[str] = ()

    def error(self, message: str) -> NoReturn:
        message = redact(message) + _suggestion(message, self.choices, Parser.options_known)
        if Parser.nagios:
            print(f"RUVECTOR UNKNOWN - {self.prog}: {message}")
            raise SystemExit(exits.NAGIOS_UNKNOWN)
        super().error(message)


_INVALID_CHOICE = re.compile(r"invalid choice: '?([^'\s,()]+)'?")
_UNRECOGNIZED = re.compile(r"unrecognized arguments: (.+)$")


def _suggestion(message: str, choices: Sequence[str], options: set[str]) -> str:
    m = _INVALID_CHOICE.search(message)
    if m and choices:
        close = difflib.get_close_matches(m.group(1), choices, n=1, cutoff=0.5)
        if close:
            return f"; did you mean '{close[0]}'?"
        return ""
    m = _UNRECOGNIZED.search(message)
    if m:
        first = m.group(1).split()[0].split("=", 1)[0]
        if first.startswith("-"):
            close = difflib.get_close_matches(first, sorted(options), n=1, cutoff=0.6)
            if close:
                return f"; did you mean '{close[0]}'?"
    return ""


def build_parser(commands: Sequence[Command]) -> Parser:
    p = Parser(
        prog="ruvectord",
        description="Self-healing control daemon for PostgreSQL vector databases.",
        epilog=exits.EPILOG,
        formatter_class=_Help,
    )
    p.add_argument("--version", action="version", version=f"ruvectord {__version__}")
    top = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    groups: dict[str, argparse._SubParsersAction[Parser]] = {}
    top_names: list[str] = []
    group_names: dict[str, list[str]] = {}

    def rank(cmd: Command) -> int:
        return ORDER.index(cmd.path[0]) if cmd.path[0] in ORDER else len(ORDER)

    for cmd in sorted(commands, key=rank):
        if len(cmd.path) == 1:
            sub = top.add_parser(
                cmd.path[0], help=cmd.help, description=cmd.description, formatter_class=_Help
            )
            top_names.append(cmd.path[0])
        else:
            head, leaf = cmd.path
            if head not in groups:
                gp = top.add_parser(head, help=GROUPS.get(head, ""), formatter_class=_Help)
                top_names.append(head)
                groups[head] = gp.add_subparsers(
                    dest=f"{head}_command", required=True, metavar="SUBCOMMAND"
                )
                group_names[head] = []
                gp.choices = group_names[head]
            sub = groups[head].add_parser(
                leaf, help=cmd.help, description=cmd.description, formatter_class=_Help
            )
            group_names[head].append(leaf)
        _add_common(sub, cmd)
        for a in cmd.args:
            sub.add_argument(*a.flags, **a.options)
        sub.set_defaults(_command=cmd)
        for action in sub._actions:
            Parser.options_known.update(o for o in action.option_strings if o.startswith("--"))
    p.choices = top_names
    return p


def _add_common(sub: argparse.ArgumentParser, cmd: Command) -> None:
    if cmd.config:
        sub.add_argument(
            "-c",
            "--config",
            type=Path,
            default=None,
            help=f"config file (default: $RUVECTORD_CONFIG or {DEFAULT_CONFIG_PATH}"
            + ("; optional with --dsn)" if cmd.dsn and not cmd.config_file else ")"),
        )
    if cmd.dsn:
        sub.add_argument(
            "--dsn",
            metavar="URI",
            help="connect here instead of database.dsn (postgresql://...); enough on its own, "
            "without a config file",
        )
    if cmd.json:
        sub.add_argument(
            "--json", action="store_true", help="print one JSON document instead of tables"
        )
    if cmd.waits:
        sub.add_argument(
            "--wait",
            action=argparse.BooleanOptionalAction,
            default=True,
            help="wait until the acting daemon has carried the request out (default: wait)",
        )
        sub.add_argument(
            "--timeout",
            type=_seconds,
            default=30.0,
            metavar="SECONDS",
            help="how long to wait for the acting daemon (default 30)",
        )


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and 3600 seconds")
    return value


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{value} is not a positive number")
    return value


# --------------------------------------------------------------------------- running


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    Parser.nagios = "--nagios" in argv
    parser = build_parser(REGISTRY)
    args = parser.parse_args(argv)
    cmd: Command = args._command
    try:
        try:
            out = _execute(cmd, args)
            return _emit(out, args)
        except BaseException as exc:
            code, lines, stdout = _failure(exc, nagios=bool(getattr(args, "nagios", False)))
            for line in stdout:
                print(redact(line), flush=True)
            for line in lines:
                err(line)
            return code
    except BrokenPipeError:
        return _broken_pipe()


def _broken_pipe() -> int:
    # whoever read our stdout has gone (`| head -1`): say nothing, and keep the interpreter
    # from complaining when it flushes stdout on the way out
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    return exits.BROKEN_PIPE


def _emit(out: Output, args: argparse.Namespace) -> int:
    if not out.printed:
        text = render_json(out.data) if getattr(args, "json", False) else render_view(out.view)
        # line by line: one huge write to a pipe whose reader has gone can end as a partial
        # write that the io layer never reports; small writes fail with EPIPE, as they should
        for line in text.splitlines(keepends=True):
            sys.stdout.write(line)
        sys.stdout.flush()
    return out.exit_code


def config_path(args: argparse.Namespace) -> tuple[Path, bool]:
    """The config file to read, and whether the user named it (-c or $RUVECTORD_CONFIG)."""
    if getattr(args, "config", None) is not None:
        return Path(args.config), True
    env = os.environ.get("RUVECTORD_CONFIG")
    if env:
        return Path(env), True
    return DEFAULT_CONFIG_PATH, False


def _load(cmd: Command, args: argparse.Namespace) -> tuple[Config, Path | None]:
    path, named = config_path(args)
    given_dsn = getattr(args, "dsn", None) or getattr(args, "admin_dsn", None)
    if cmd.dsn and given_dsn and not named and not cmd.config_file:
        # a DBA on another host: --dsn alone is enough; the defaults fill in the rest
        try:
            exists = path.exists()
            readable = exists and os.access(path, os.R_OK)
        except OSError:
            exists = readable = False
        if not exists:
            return parse_config("", source="(defaults)"), None
        if not readable:
            err(f"note: cannot read {path}; using the defaults with --dsn")
            return parse_config("", source="(defaults)"), None
    return load_config(path), path


def _execute(cmd: Command, args: argparse.Namespace) -> Output:
    if not cmd.config:
        ctx = Context(args, Config(), None, cmd)
        return _call(ctx)
    config, path = _load(cmd, args)
    setup_logging(
        config.logging.level,
        config.logging.format,
        stream=None if cmd.path == ("run",) else sys.stderr,
    )
    ctx = Context(args, config, path, cmd)
    return _call(ctx)


def _call(ctx: Context) -> Output:
    handler = ctx.command.handler
    if not ctx.command.connect and not inspect.iscoroutinefunction(handler):
        result = handler(ctx)
        assert isinstance(result, Output)
        return result

    async def go() -> Output:
        if ctx.command.connect:
            async with ctx.database() as db:
                ctx.db_ = db
                return await _await(handler(ctx))
        return await _await(handler(ctx))

    return anyio.run(go)


async def _await(result: Output | Awaitable[Output]) -> Output:
    if isinstance(result, Output):
        return result
    return await result


# SQLSTATEs the ruvector_* functions raise for a bad argument (not a broken database)
_BAD_INPUT = frozenset({"22004", "22023", "42704", "55000", "P0002"})


def _failure(exc: BaseException, *, nagios: bool) -> tuple[int, list[str], list[str]]:
    """(exit code, lines for stderr, lines for stdout) for anything a command raised."""
    if isinstance(exc, BrokenPipeError):
        raise exc
    code, lines = _classify(exc)
    if nagios and code not in (exits.INTERRUPTED,):
        first = lines[-1].removeprefix("error: ") if lines else type(exc).__name__
        return exits.NAGIOS_UNKNOWN, [], [f"RUVECTOR UNKNOWN - {first}"]
    return code, lines, []


def pg_message(exc: asyncpg.PostgresError) -> str:
    """PostgreSQL's message, detail and hint on one line (str() spreads them over three)."""
    text = str(exc.args[0]) if exc.args else type(exc).__name__
    detail = getattr(exc, "detail", None)
    hint = getattr(exc, "hint", None)
    if detail:
        text += f"; {detail}"
    if hint:
        text += f" (hint: {hint})"
    return text.replace("\n", " ")


def _classify(exc: BaseException) -> tuple[int, list[str]]:
    if isinstance(exc, ConfigError):
        return exits.USAGE, list(exc.problems)
    if isinstance(exc, UserError):
        return exits.USAGE, [f"error: {exc}"]
    if isinstance(exc, DatabaseUnavailable | SchemaNotCurrent):
        return exits.FAILURE, [f"error: {exc}"]
    if isinstance(exc, asyncpg.InsufficientPrivilegeError):
        return exits.USAGE, [
            f"error: {pg_message(exc)}; this needs a role with the right membership "
            "(ruvector_operator for changes, ruvector_reader for reading): connect as one "
            "with --dsn, or GRANT it (deploy/sql/roles.sql)"
        ]
    if isinstance(exc, asyncpg.PostgresError):
        sqlstate = getattr(exc, "sqlstate", "") or ""
        text = pg_message(exc)
        if sqlstate in _BAD_INPUT:
            return exits.USAGE, [f"error: {text}"]
        return exits.FAILURE, [f"error: PostgreSQL said: {text} (SQLSTATE {sqlstate})"]
    if isinstance(exc, RuvectordError):
        return exits.FAILURE, [f"error: {exc}"]
    if isinstance(exc, KeyboardInterrupt):
        return exits.INTERRUPTED, []
    if isinstance(exc, BrokenPipeError):
        return exits.BROKEN_PIPE, []
    if isinstance(exc, SystemExit):
        code = exc.code if isinstance(exc.code, int) else exits.FAILURE
        return code, []
    # a bug or a failure nobody foresaw: the traceback, in plain text and redacted
    tb = "".join(traceback.format_exception(exc)).rstrip()
    return exits.FAILURE, [tb, f"error: unexpected {type(exc).__name__}: {exc}"]
