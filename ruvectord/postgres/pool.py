"""The asyncpg pool: per-statement timeouts, JSON codecs, retries on connection errors only.

A statement that fails with an SQL error is never retried (it would fail again, or worse, run
twice). Losing the connection is retried with jittered exponential backoff, for reads and for
getting a connection; a write whose outcome is unknown is retried only when the caller says it
is idempotent.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

import anyio
import asyncpg
from tenacity import (
    AsyncRetrying,
    RetryError,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

from ruvectord.config import DatabaseConfig
from ruvectord.errors import DatabaseUnavailable, UserError
from ruvectord.logs import get_logger, redact, register_dsn_secrets, register_secret

T = TypeVar("T")
log = get_logger("ruvectord.postgres")

APPLICATION_NAME = "ruvectord"


def is_connection_error(exc: BaseException) -> bool:
    """True for errors that mean "the connection is gone or never came", not SQL errors."""
    if isinstance(
        exc,
        asyncpg.PostgresConnectionError  # SQLSTATE class 08
        | asyncpg.CannotConnectNowError  # 57P03: starting up / shutting down
        | asyncpg.AdminShutdownError
        | asyncpg.CrashShutdownError
        | asyncpg.TooManyConnectionsError
        | asyncpg.ConnectionDoesNotExistError
        | ConnectionError
        | socket.gaierror
        | TimeoutError,
    ):
        return True
    if isinstance(exc, asyncpg.InterfaceError):
        return "connection is closed" in str(exc) or "pool is closing" in str(exc)
    if isinstance(exc, FileNotFoundError):
        # connect() to a Unix socket that is not there (the server is down, or its socket
        # directory is not created yet) carries no file name; a file we open does
        return exc.filename is None
    return isinstance(exc, OSError) and not isinstance(exc, PermissionError)


def describe_target(dsn: str) -> str:
    """host:port/dbname for log lines and errors, never with a password."""
    try:
        parts = urlsplit(dsn)
    except ValueError:
        return redact(dsn)
    host = parts.hostname or ""
    query = dict(p.split("=", 1) for p in parts.query.split("&") if "=" in p)
    host = host or query.get("host", "localhost")
    port = parts.port or query.get("port", 5432)
    return f"{host}:{port}{parts.path or '/'}"


@dataclass(frozen=True)
class ConnectOptions:
    dsn: str
    password: str | None
    statement_timeout: float
    connect_timeout: float
    retries: int
    min_size: int
    max_size: int

    @classmethod
    def from_config(cls, cfg: DatabaseConfig, dsn: str | None = None) -> ConnectOptions:
        password = None
        if cfg.password_file is not None:
            try:
                password = cfg.password_file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise UserError(
                    f"database.password_file: cannot read {cfg.password_file}: {exc.strerror}"
                ) from None
            register_secret(password)
        the_dsn = dsn or cfg.dsn
        register_dsn_secrets(the_dsn)
        register_secret(os.environ.get("PGPASSWORD"))  # libpq's (and asyncpg's) fallback
        if not the_dsn.startswith(("postgresql://", "postgres://")):
            raise UserError(
                "database.dsn: expected a URI such as postgresql://user@host:5432/dbname, got "
                f"{redact(the_dsn)!r}"
            )
        return cls(
            dsn=the_dsn,
            password=password,
            statement_timeout=cfg.statement_timeout_seconds,
            connect_timeout=cfg.connect_timeout_seconds,
            retries=cfg.connect_retries,
            min_size=cfg.pool_min_size,
            max_size=cfg.pool_max_size,
        )

    @property
    def server_settings(self) -> dict[str, str]:
        return {
            "application_name": APPLICATION_NAME,
            "statement_timeout": str(int(self.statement_timeout * 1000)),
            # never wait long behind a lock held by the workload we watch
            "lock_timeout": str(int(min(self.statement_timeout, 2.0) * 1000)),
            "idle_in_transaction_session_timeout": "60000",
        }


async def init_connection(conn: asyncpg.Connection) -> None:
    for typ in ("json", "jsonb"):
        await conn.set_type_codec(
            typ, encoder=json.dumps, decoder=json.loads, schema="pg_catalog", format="text"
        )


async def keep_session(conn: asyncpg.Connection) -> None:
    """What a pooled connection needs on release: nothing beyond asyncpg's own rollback of an
    open transaction, which runs before this. The pool's connections never carry session state
    (a SET, a LISTEN, a session lock or a cursor: those live on dedicated connections,
    connect_single and open_session), so asyncpg's default reset query -- a round trip to the
    server and back at every release -- would reset nothing."""


def _retrying(retries: int) -> AsyncRetrying:
    return AsyncRetrying(
        retry=retry_if_exception(is_connection_error),
        stop=stop_after_attempt(retries + 1),
        wait=wait_random_exponential(multiplier=0.2, max=5.0),
        reraise=False,
    )


class Database:
    """A pool plus the knowledge of how to use it safely."""

    def __init__(self, pool: asyncpg.Pool, options: ConnectOptions) -> None:
        self.pool = pool
        self.options = options
        self.target = describe_target(options.dsn)

    @classmethod
    async def connect(cls, options: ConnectOptions) -> Database:
        async def make() -> asyncpg.Pool:
            return await asyncpg.create_pool(
                options.dsn,
                password=options.password,
                min_size=options.min_size,
                max_size=options.max_size,
                timeout=options.connect_timeout,
                command_timeout=options.statement_timeout + 1.0,
                server_settings=options.server_settings,
                init=init_connection,
                reset=keep_session,
            )

        pool = await _with_retries(make, options, what="connect")
        return cls(pool, options)

    async def connect_single(self, *, settings: dict[str, str] | None = None) -> asyncpg.Connection:
        """A dedicated connection outside the pool (leader lock, LISTEN)."""
        opts = self.options

        async def make() -> asyncpg.Connection:
            conn = await asyncpg.connect(
                opts.dsn,
                password=opts.password,
                timeout=opts.connect_timeout,
                command_timeout=opts.statement_timeout + 1.0,
                server_settings={**opts.server_settings, **(settings or {})},
            )
            await init_connection(conn)
            return conn

        return await _with_retries(make, opts, what="connect")

    async def open_session(self, settings: Mapping[str, str]) -> Session:
        """A dedicated session for statements that must run at top level for a long time
        (REINDEX / CREATE INDEX CONCURRENTLY) or hold a session lock: `settings` (e.g.
        statement_timeout) bound it on the server, and no client-side timeout cuts it short."""
        opts = self.options

        async def make() -> asyncpg.Connection:
            conn = await asyncpg.connect(
                opts.dsn,
                password=opts.password,
                timeout=opts.connect_timeout,
                command_timeout=None,
                server_settings={
                    **opts.server_settings,
                    "application_name": f"{APPLICATION_NAME}-maintenance",
                    **settings,
                },
            )
            await init_connection(conn)
            return conn

        return Session(await _with_retries(make, opts, what="connect"))

    async def probe(self, within: float) -> str | None:
        """One try, no retries: None when the server answers `SELECT 1` within `within`
        seconds, else why not (what `ruvectord_database_up` follows)."""
        try:
            with anyio.fail_after(within):
                async with self.pool.acquire() as conn:
                    await conn.fetchval("SELECT 1")
        except TimeoutError:
            why = f"no answer within {within:g} s"
        except (FileNotFoundError, ConnectionRefusedError):
            why = "nothing listens there (is PostgreSQL running?)"
        except Exception as exc:
            if not is_connection_error(exc) and not isinstance(exc, asyncpg.PostgresError):
                raise
            why = redact(f"{type(exc).__name__}: {exc}")
        else:
            return None
        return f"{self.target}: {why}"

    async def close(self) -> None:
        await self.pool.close()

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[asyncpg.Connection]:
        async def get() -> asyncpg.Connection:
            # a pool proxy behaves as a Connection; the stubs type it separately
            proxy = await self.pool.acquire(timeout=self.options.connect_timeout)
            return cast(asyncpg.Connection, proxy)

        conn = await _with_retries(get, self.options, what="acquire")
        try:
            yield conn
        finally:
            await self.pool.release(cast(Any, conn))

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[asyncpg.Connection]:
        async with self.acquire() as conn, conn.transaction():
            yield conn

    async def _run(
        self, fn: Callable[[asyncpg.Connection], Awaitable[T]], *, idempotent: bool
    ) -> T:
        async def once() -> T:
            async with self.acquire() as conn:
                return await fn(conn)

        if not idempotent:
            return await once()
        return await _with_retries(once, self.options, what="query")

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        return await self._run(lambda c: c.fetch(sql, *args), idempotent=True)

    async def fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None:
        return await self._run(lambda c: c.fetchrow(sql, *args), idempotent=True)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        return await self._run(lambda c: c.fetchval(sql, *args), idempotent=True)

    async def execute(self, sql: str, *args: Any, idempotent: bool = False) -> str:
        return await self._run(lambda c: c.execute(sql, *args), idempotent=idempotent)


class Session:
    """One dedicated connection with the `Sql` methods (healing.strategy.Session)."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    @property
    def pid(self) -> int:
        return int(self.conn.get_server_pid())

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        return await self.conn.fetch(sql, *args)

    async def fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None:
        return await self.conn.fetchrow(sql, *args)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        return await self.conn.fetchval(sql, *args)

    async def execute(self, sql: str, *args: Any, idempotent: bool = False) -> str:
        return await self.conn.execute(sql, *args)

    async def close(self) -> None:
        if not self.conn.is_closed():
            try:
                with anyio.fail_after(5):
                    await self.conn.close()
            except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                self.conn.terminate()


async def _with_retries(
    make: Callable[[], Awaitable[T]], options: ConnectOptions, *, what: str
) -> T:
    target = describe_target(options.dsn)
    try:
        async for attempt in _retrying(options.retries):
            with attempt:
                try:
                    return await make()
                except Exception as exc:
                    if is_connection_error(exc):
                        log.warning(
                            "database_unreachable",
                            target=target,
                            operation=what,
                            attempt=attempt.retry_state.attempt_number,
                            error=redact(str(exc) or type(exc).__name__),
                        )
                    raise
    except RetryError as exc:
        last = exc.last_attempt.exception()
        detail = redact(str(last) or type(last).__name__)
        raise DatabaseUnavailable(
            f"cannot reach PostgreSQL at {target} after {options.retries + 1} attempts: {detail}"
        ) from last
    raise AssertionError("unreachable")  # pragma: no cover
