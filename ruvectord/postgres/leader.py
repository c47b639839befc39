"""One actor per database: a session advisory lock held on a dedicated connection.

Every daemon monitors and records samples; only the holder of this lock executes healing
actions. The lock lives as long as its connection, so a daemon that dies, hangs up or loses
the network loses it -- and the moment this daemon's lock connection drops, it stops acting
(running actions are cancelled and rolled back) until it holds the lock again. A daemon
connected to a standby never acts. Whoever takes the lock first undoes what a previous actor
left in flight (healing/journal.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import asyncpg

from ruvectord.logs import get_logger
from ruvectord.metrics import Metrics
from ruvectord.postgres.migrations import MIGRATION_LOCK_KEY
from ruvectord.postgres.pool import Database, is_connection_error

ACTOR_LOCK_KEY = MIGRATION_LOCK_KEY + 1
log = get_logger("ruvectord.actor")


class ActorLock:
    def __init__(
        self,
        db: Database,
        metrics: Metrics,
        *,
        on_acquired: Callable[[], Awaitable[None]] | None = None,
        check_interval: float = 2.0,
        key: int = ACTOR_LOCK_KEY,
    ) -> None:
        self.db = db
        self.metrics = metrics
        self.on_acquired = on_acquired
        self.check_interval = check_interval
        self.key = key
        self._held = False
        self._why_not = "has not tried to take the actor lock yet"
        self._callbacks: dict[int, Callable[[], None]] = {}
        self._next = 0
        self.changed = anyio.Event()
        self.tried = anyio.Event()  # set once the first attempt has an answer either way

    @property
    def is_actor(self) -> bool:
        return self._held

    @property
    def why_not(self) -> str:
        return self._why_not

    def on_lost(self, callback: Callable[[], None]) -> Callable[[], None]:
        self._next += 1
        token = self._next
        self._callbacks[token] = callback

        def unregister() -> None:
            self._callbacks.pop(token, None)

        return unregister

    def _lose(self, why: str, *, shutting_down: bool = False) -> None:
        was = self._held
        self._held = False
        self._why_not = why
        self.metrics.leader.set(0)
        if was:
            # letting go because we stop is the plan; losing it while running is an alarm
            report = log.info if shutting_down else log.error
            report("actor_lock_lost", reason=why, msg=f"stopped acting: {why}")
            for cb in list(self._callbacks.values()):
                cb()
        self._signal()

    def _signal(self) -> None:
        self.tried.set()
        self.changed.set()
        self.changed = anyio.Event()

    async def run(self) -> None:
        """Try to hold the lock, forever; re-take it after it is lost."""
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await self.db.connect_single(
                    settings={"application_name": "ruvectord-actor"}
                )
                if await conn.fetchval("SELECT pg_is_in_recovery()"):
                    self._lose("connected to a standby (pg_is_in_recovery() is true)")
                elif not await conn.fetchval("SELECT pg_try_advisory_lock($1)", self.key):
                    self._lose(await self._holder(conn))
                else:
                    await self._hold(conn)
            except anyio.get_cancelled_exc_class():
                self._lose("shutting down", shutting_down=True)
                raise
            except Exception as exc:
                if not is_connection_error(exc) and not isinstance(exc, asyncpg.PostgresError):
                    log.exception("actor_lock_error")
                self._lose(f"actor lock connection failed: {type(exc).__name__}: {exc}")
            finally:
                if conn is not None:
                    with anyio.CancelScope(shield=True), anyio.move_on_after(2):
                        await conn.close()
            await anyio.sleep(self.check_interval)

    async def _hold(self, conn: asyncpg.Connection) -> None:
        lost = anyio.Event()

        def terminated(_: Any) -> None:
            # asyncpg calls this as soon as the connection is gone: stop acting at once
            self._lose("the actor lock connection dropped")
            lost.set()

        conn.add_termination_listener(terminated)
        self._held = True
        self._why_not = ""
        self.metrics.leader.set(1)
        log.info("actor_lock_acquired", msg="this daemon now executes healing actions")
        self._signal()
        if self.on_acquired is not None:
            await self.on_acquired()
        while not lost.is_set():
            with anyio.move_on_after(self.check_interval):
                await lost.wait()
            if lost.is_set():
                break
            with anyio.fail_after(max(5.0, self.check_interval)):
                await conn.fetchval("SELECT 1")

    async def _holder(self, conn: asyncpg.Connection) -> str:
        row = await conn.fetchrow(HOLDER_SQL, self.key)
        if row is None:
            return "another daemon holds the actor lock"
        where = row["addr"] or "local socket"
        return f"another daemon holds the actor lock (backend pid {row['pid']}, from {where})"


# Who holds the actor lock of this database (advisory locks are per database; pg_locks lists
# every database's). pg_locks is readable by every role; the pg_stat_activity columns only by
# the session's own role and pg_read_all_stats (pg_monitor), so they may be NULL for others.
HOLDER_SQL = """
    SELECT l.pid, a.client_addr::text AS addr, a.application_name, a.usename AS role,
           a.backend_start, a.client_hostname AS hostname
      FROM pg_locks l
      LEFT JOIN pg_stat_activity a ON a.pid = l.pid
     WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
       AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
       AND ((l.classid::bigint << 32) | l.objid::bigint) = $1
"""


async def actor_holder(db: Database, key: int = ACTOR_LOCK_KEY) -> dict[str, Any] | None:
    """The backend that holds the actor lock (pid, addr, application_name, role,
    backend_start), or None when no daemon acts on this database."""
    row = await db.fetchrow(HOLDER_SQL, key)
    return None if row is None else dict(row)
