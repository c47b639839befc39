"""The actor lock's log lines: losing the lock while running is an error, letting go of it
because the daemon stops is not."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
import structlog

from ruvectord.logs import setup_logging
from ruvectord.metrics import Metrics
from ruvectord.postgres.leader import ActorLock
from ruvectord.postgres.pool import Database


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    out = io.StringIO()
    setup_logging("info", "json", stream=out)
    yield out
    structlog.reset_defaults()
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.captureWarnings(False)


def _lost(out: io.StringIO) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    return [line for line in lines if line["event"] == "actor_lock_lost"]


async def _until(lock: ActorLock, acting: bool) -> None:
    with anyio.fail_after(15):
        while lock.is_actor != acting:
            await lock.changed.wait()


async def test_losing_the_lock_is_an_error_and_letting_go_at_shutdown_is_not(
    db: Database, captured: io.StringIO
) -> None:
    lock = ActorLock(db, Metrics(), check_interval=0.1)
    async with anyio.create_task_group() as tg:
        tg.start_soon(lock.run)
        await _until(lock, True)
        # someone kills the lock's session: the daemon must stop acting, and say so loudly
        await db.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = 'ruvectord-actor' AND datname = current_database()"
        )
        await _until(lock, False)
        await _until(lock, True)  # it takes the lock again
        tg.cancel_scope.cancel()  # and the daemon shuts down
    lost = _lost(captured)
    assert [line["level"] for line in lost] == ["error", "info"], lost
    # which of the two notices the dead session first is a race; both name the connection
    assert "actor lock connection" in lost[0]["reason"]
    assert lost[1]["reason"] == "shutting down"
