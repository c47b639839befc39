"""Named points where a test can hold a real daemon still: to SIGKILL it exactly there, or to
see what a stuck loop does to the watchdog.

The chaos tests (tests/chaos/test_placement_chaos.py) and the signal tests
(tests/integration/test_signals.py) start a daemon with `RUVECTORD_TESTPOINT=<name>`; when the
daemon reaches that point it logs `testpoint_reached` and waits forever, so the kill lands
between two known steps instead of wherever a timer happens to fall. Unset (always, outside
those tests) a point costs one dictionary lookup.
"""

from __future__ import annotations

import os

import anyio

from ruvectord.logs import get_logger

log = get_logger("ruvectord.testpoints")

ENV = "RUVECTORD_TESTPOINT"


async def reach(name: str) -> None:
    if os.environ.get(ENV) != name:
        return
    log.warning("testpoint_reached", point=name, pid=os.getpid())
    await anyio.sleep_forever()
