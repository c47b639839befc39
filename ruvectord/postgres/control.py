"""NOTIFY wake-ups for the request intake: a LISTEN connection that reconnects by itself.

Polling covers every gap (a lost connection, a notification sent while nobody listened), so
a request is never missed, only picked up later; LISTEN makes it prompt.
"""

from __future__ import annotations

from typing import Any

import anyio
import asyncpg

from ruvectord.logs import get_logger
from ruvectord.postgres.pool import Database

CHANNEL = "ruvector_healing"
log = get_logger("ruvectord.control")


class Notifications:
    def __init__(self, db: Database, channel: str = CHANNEL) -> None:
        self.db = db
        self.channel = channel
        self._wake = anyio.Event()

    def _notified(self, *_: Any) -> None:
        self._wake.set()

    async def wait(self, seconds: float) -> None:
        """Return on the next notification, or after `seconds`."""
        with anyio.move_on_after(seconds):
            await self._wake.wait()
        self._wake = anyio.Event()

    async def run(self) -> None:
        """Keep a LISTEN connection open; reconnect after a loss."""
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await self.db.connect_single(
                    settings={"application_name": "ruvectord-listen"}
                )
                gone = anyio.Event()

                def terminated(_: Any, gone: anyio.Event = gone) -> None:
                    gone.set()

                conn.add_termination_listener(terminated)
                await conn.add_listener(self.channel, self._notified)
                self._wake.set()  # anything queued while we were not listening
                while not gone.is_set():
                    with anyio.move_on_after(10.0):
                        await gone.wait()
                    if not gone.is_set():
                        # a dead peer is only noticed on I/O: ask, with a deadline
                        with anyio.fail_after(10.0):
                            await conn.fetchval("SELECT 1")
            except anyio.get_cancelled_exc_class():
                raise
            except Exception as exc:
                log.warning("listen_failed", error=f"{type(exc).__name__}: {exc}")
            finally:
                if conn is not None:
                    with anyio.CancelScope(shield=True), anyio.move_on_after(2):
                        await conn.close()
            await anyio.sleep(2.0)
