"""What the maintenance strategies share: errors that say what is missing, free disk, the
recall canary, and a bounded dedicated session.

The canary compares, for a fixed set of probe vectors per partition (sampled once and stored
in ruvector.probe_vectors), the index's top-k against the exact top-k of a sequential scan,
by distance: the share of the index's rows no farther than the exact k-th. It reads rows of
the collection, which the daemon's role never may: it runs inside SECURITY DEFINER functions
of ruvector_owner, and only if the DBA let that role read the collection tables
(deploy/sql/roles.sql -v canary=on). Without that, it is "unavailable", and says why.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import anyio

from ruvectord.config import RecallCanaryConfig
from ruvectord.healing.strategy import RemediationContext, Session, Sessions, Sql

INSUFFICIENT_PRIVILEGE = "42501"


class CannotAct(Exception):
    """A strategy cannot act here; the message names exactly what is missing."""


def sqlstate(exc: BaseException) -> str | None:
    state = getattr(exc, "sqlstate", None)
    return state if isinstance(state, str) else None


def why(exc: BaseException, missing: str = "") -> str:
    """An error in words; a missing privilege also says which grant would give it."""
    text = f"{type(exc).__name__}: {exc}"
    if sqlstate(exc) == INSUFFICIENT_PRIVILEGE and missing:
        text += f" ({missing})"
    return text


async def open_session(ctx: RemediationContext, settings: Mapping[str, str]) -> Session:
    if not isinstance(ctx.sql, Sessions):
        raise CannotAct("this database adapter cannot open a dedicated session")
    return await ctx.sql.open_session(settings)


def seconds_setting(seconds: float) -> str:
    return f"{max(1, int(seconds * 1000))}ms"


# ----------------------------------------------------------------------------- disk


@dataclass(frozen=True)
class Disk:
    free_bytes: int | None  # None: cannot tell
    how: str  # where the number comes from, or why there is none


async def free_disk(sql: Sql, tablespace: str | None, budget_bytes: int) -> Disk:
    """Free space where a new copy of an index would go.

    PostgreSQL cannot tell free disk. When the daemon runs on the database host (a Unix
    socket or a loopback connection, and the data directory or tablespace path exists here),
    the file system says (statvfs). Elsewhere the only bound is a configured budget for the
    database's size (`disk_budget_bytes`) minus pg_database_size(); without one, unknown.
    """
    row = await sql.fetchrow(
        "SELECT coalesce(host(inet_server_addr()), 'local') AS addr, "
        "current_setting('data_directory', true) AS datadir, "
        "pg_database_size(current_database()) AS dbsize, "
        "(SELECT pg_tablespace_location(oid) FROM pg_tablespace WHERE spcname = $1) AS tsdir",
        tablespace,
    )
    assert row is not None
    path = row["tsdir"] or row["datadir"]
    local = row["addr"] in ("local", "127.0.0.1", "::1")
    if local and path:

        def statvfs() -> int | None:
            try:
                st = os.statvfs(path)
            except OSError:
                return None
            return st.f_bavail * st.f_frsize

        free = await anyio.to_thread.run_sync(statvfs)
        if free is not None:
            return Disk(free, f"statvfs({path})")
    if budget_bytes > 0:
        return Disk(
            max(0, budget_bytes - int(row["dbsize"])),
            f"disk_budget_bytes {budget_bytes} - pg_database_size {row['dbsize']}",
        )
    where = "not on the database host" if not local else f"cannot stat {path or 'the data dir'}"
    return Disk(None, f"free disk unknown ({where}) and disk_budget_bytes is 0")


def disk_refusal(disk: Disk, need: int, factor: float, what: str) -> str | None:
    if disk.free_bytes is None:
        return f"{what}: {disk.how}"
    if disk.free_bytes < need * factor:
        return f"{what}: free disk {disk.free_bytes} bytes < {factor:g} x {need} bytes ({disk.how})"
    return None


# ----------------------------------------------------------------------------- canary

CANARY_GRANT = (
    "the recall canary reads probe vectors as ruvector_owner: "
    "psql -v tables=... -v canary=on -f deploy/sql/roles.sql"
)


@dataclass(frozen=True)
class Recall:
    value: float | None
    note: str = ""

    def to_json(self) -> float | str:
        return round(self.value, 4) if self.value is not None else f"unavailable: {self.note}"


async def canary_kth(
    sql: Sql, collection_id: int, index: str, cfg: RecallCanaryConfig
) -> list[float] | None:
    """Sample the partition's probes once, then the exact k-th distance of each."""
    part = await sql.fetchval(
        "SELECT indrelid::regclass::text FROM pg_index WHERE indexrelid = $1::regclass", index
    )
    await sql.fetchval(
        "SELECT ruvector.sample_probes($1, $2::regclass, $3)", collection_id, part, cfg.probes
    )
    kth: list[float] | None = await sql.fetchval(
        "SELECT ruvector.canary_exact($1, $2::regclass, $3)", collection_id, index, cfg.k
    )
    return kth


async def recall(sql: Sql, collection_id: int, index: str, cfg: RecallCanaryConfig) -> Recall:
    """The index's recall against exact search on the probe set, or why it is unavailable."""
    try:
        kth = await canary_kth(sql, collection_id, index, cfg)
        value: float | None = await sql.fetchval(
            "SELECT ruvector.canary_index($1, $2::regclass, $3, $4, $5, $6)",
            collection_id,
            index,
            cfg.k,
            kth,
            cfg.ivfflat_probes,
            cfg.hnsw_ef_search,
        )
    except Exception as exc:
        return Recall(None, why(exc, CANARY_GRANT))
    if value is None:
        return Recall(None, "no probe vectors (an empty partition)")
    return Recall(value)


def jsonable(rows: list[Any]) -> list[dict[str, Any]]:
    return [dict(r) for r in rows]
