"""The control plane's adapter: NOTIFY wake-ups, the database's dynamic settings, and what the
acting daemon publishes about itself (its settings' schema, its strategies, its effective
configuration) for the ruvector_healing_* functions to read.

Polling covers every gap in LISTEN (a lost connection, a notification sent while nobody
listened), so a request or a setting is never missed, only picked up later; LISTEN makes it
prompt.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import anyio
import asyncpg

from ruvectord.dynamic import SchemaRow, Source
from ruvectord.healing.strategy import Strategy
from ruvectord.logs import get_logger
from ruvectord.postgres.pool import Database

REQUESTS = "ruvector_healing"
SETTINGS = "ruvector_config"
log = get_logger("ruvectord.control")


class Notifications:
    """One LISTEN connection for several channels; `wait(channel, seconds)` per channel."""

    def __init__(self, db: Database, channels: Sequence[str] = (REQUESTS, SETTINGS)) -> None:
        self.db = db
        self.channels = tuple(channels)
        self._wake = {c: anyio.Event() for c in self.channels}

    def _notified(self, _conn: Any, _pid: int, channel: str, _payload: object) -> None:
        if channel in self._wake:
            self._wake[channel].set()

    async def wait(self, channel: str, seconds: float) -> None:
        """Return on the next notification on `channel`, or after `seconds`."""
        with anyio.move_on_after(seconds):
            await self._wake[channel].wait()
        self._wake[channel] = anyio.Event()

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
                for channel in self.channels:
                    await conn.add_listener(channel, self._notified)
                for event in self._wake.values():
                    event.set()  # anything queued while we were not listening
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


class ControlStore:
    def __init__(self, db: Database, node: str) -> None:
        self.db = db
        self.node = node
        self._published: tuple[Any, ...] | None = None

    async def rows(self) -> dict[str, tuple[Any, str, datetime, str | None]]:
        """The database's dynamic settings: key -> (value, who set it, when, why)."""
        rows = await self.db.fetch(
            "SELECT key, value, updated_by, updated_at, reason FROM ruvector.healing_config"
        )
        return {r["key"]: (r["value"], r["updated_by"], r["updated_at"], r["reason"]) for r in rows}

    async def publish(
        self,
        schema: Sequence[SchemaRow],
        strategies: Sequence[Strategy],
        effective: Mapping[str, Any],
        sources: Mapping[str, Source],
    ) -> bool:
        """What the SQL functions read about this (acting) daemon; written only on change."""
        state = (
            tuple(schema),
            tuple(_strategy_row(s) for s in strategies),
            tuple(effective.items()),
            tuple(sources.items()),  # a value's source may change while the value does not
        )
        if state == self._published:
            return False
        async with self.db.transaction() as conn:
            await conn.execute("DELETE FROM ruvector.config_schema")
            await conn.executemany(
                "INSERT INTO ruvector.config_schema (key, kind, minimum, minimum_exclusive, "
                "maximum, maximum_exclusive, choices) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                [
                    (
                        r.key,
                        r.kind,
                        r.minimum,
                        r.minimum_exclusive,
                        r.maximum,
                        r.maximum_exclusive,
                        list(r.choices) if r.choices is not None else None,
                    )
                    for r in schema
                ],
            )
            await conn.execute("DELETE FROM ruvector.strategies")
            await conn.executemany(
                "INSERT INTO ruvector.strategies (name, classes, impact, reversible, "
                "lift_on_recovery, leased, params, node) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                [(*_strategy_row(s), self.node) for s in strategies],
            )
            await conn.execute("DELETE FROM ruvector.effective_config")
            await conn.executemany(
                "INSERT INTO ruvector.effective_config (key, value, source, node) "
                "VALUES ($1, $2, $3, $4)",
                [(k, v, sources.get(k, "default"), self.node) for k, v in effective.items()],
            )
        self._published = state
        return True


def _strategy_row(s: Strategy) -> tuple[Any, ...]:
    params = dict(getattr(s, "manual_params", {}))
    return (
        s.name,
        sorted(k.value for k in s.handles),
        s.impact,
        s.reversible,
        s.lift_on_recovery,
        s.leased,
        params,
    )
