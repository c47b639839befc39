"""Every command, registered on import; ORDER is the order of `ruvectord --help`."""

from __future__ import annotations

from ruvectord.cli import framework
from ruvectord.cli.commands import (  # noqa: F401
    audit,
    control,
    daemon,
    demo,
    doctor,
    healing,
    replay,
    status,
)

framework.ORDER[:] = [
    "run",
    "check-config",
    "migrate",
    "doctor",
    "status",
    "heal",
    "pause",
    "resume",
    "throttle",
    "history",
    "effectiveness",
    "replay",
    "strategies",
    "config",
    "audit",
    "demo",
]
