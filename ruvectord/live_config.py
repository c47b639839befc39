"""The configuration a daemon runs with: its YAML file, with the database's dynamic settings on
top (ruvectord/dynamic.py), re-merged whenever they change and applied on the next cycle.

Every daemon on a database applies the same overrides; a merge that the models refuse (a row
written by hand, a rule that joins two settings) is logged and ignored, and the daemon keeps
running on the last good configuration. The acting daemon also publishes what the SQL side
needs to validate and report: the settings' schema, its strategies, its effective values.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import asyncpg

from ruvectord import dynamic
from ruvectord.config import Config
from ruvectord.errors import ConfigError
from ruvectord.healing.journal import Pause
from ruvectord.healing.strategy import Strategy
from ruvectord.logs import get_logger
from ruvectord.postgres.control import ControlStore

log = get_logger("ruvectord.config")


class LiveConfig:
    def __init__(
        self,
        local: Config,
        store: ControlStore,
        *,
        on_change: Callable[[Config], Awaitable[None]],
    ) -> None:
        self.local = local
        self.store = store
        self.on_change = on_change
        self.effective = local
        self.overrides: dict[str, Any] = {}
        self.pause: Pause | None = None
        self.rejected: list[str] = []  # why the database's settings are not applied, if so

    async def set_local(self, local: Config) -> None:
        """A new YAML file (SIGHUP): merged with the same overrides."""
        self.local = local
        await self._apply(self.overrides, force=True)

    async def refresh(self) -> bool:
        """Read the database's settings; apply them if they changed. True if applied."""
        try:
            rows = await self.store.rows()
        except (asyncpg.UndefinedTableError, asyncpg.UndefinedColumnError):
            return False  # a schema older than the control plane: nothing dynamic yet
        overrides = {key: value for key, (value, *_) in rows.items()}
        enabled = rows.get("healing.enabled")
        self.pause = (
            Pause(by=enabled[1], at=enabled[2], reason=enabled[3])
            if enabled is not None and enabled[0] is False
            else None
        )
        return await self._apply(overrides)

    async def _apply(self, overrides: dict[str, Any], *, force: bool = False) -> bool:
        if overrides == self.overrides and not force and not self.rejected:
            return False
        try:
            merged = dynamic.effective(self.local, overrides)
        except ConfigError as exc:
            if exc.problems != self.rejected:
                log.error(
                    "dynamic_settings_rejected",
                    errors=exc.problems,
                    msg="the database's settings do not make a valid configuration; "
                    "running on the last good one",
                )
            self.rejected = exc.problems
            self.overrides = overrides
            return False
        before = dynamic.values(self.effective)
        changed = {k for k, v in dynamic.values(merged).items() if before.get(k) != v}
        self.effective, self.overrides, self.rejected = merged, overrides, []
        if changed or force:
            names = ", ".join(sorted(changed)) or "none changed"
            log.info(
                "dynamic_settings_applied",
                changed=sorted(changed),
                msg=f"applied the configuration ({names})",
            )
            await self.on_change(merged)
        return True

    async def run(self, wait: Callable[[float], Awaitable[None]], poll_seconds: float) -> None:
        """Forever: re-read the settings on NOTIFY, or every `poll_seconds`."""
        while True:
            await wait(poll_seconds)
            try:
                await self.refresh()
            except (asyncpg.PostgresError, OSError) as exc:
                log.warning("dynamic_settings_unread", error=str(exc))

    async def publish(self, strategies: Sequence[Strategy]) -> None:
        """What the SQL functions read about this (acting) daemon; only when it changed."""
        # only the dynamic settings: the static ones hold the DSN and paths, not for readers
        dynamic_values = {
            k: v for k, v in dynamic.values(self.effective).items() if dynamic.is_dynamic(k)
        }
        await self.store.publish(
            dynamic.schema(),
            strategies,
            dynamic_values,
            dynamic.sources(self.local, self.overrides),
        )
