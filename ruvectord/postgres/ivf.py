"""IVFFlat list occupancy read from the index's own pages, without the application's help.

pgvector (src/ivfflat.h) keeps an IVFFlat index as a meta page (block 0: magic number,
dimensions, list count), a chain of list pages from block 1 (one item per list: the first
and the insert page of its entry chain, then its centre) and, per list, a chain of entry
pages linked by the `nextblkno` of their special space. A list's size is the number of line
pointers on its chain's pages (pd_lower), dead entries included until VACUUM removes them.

Reading pages takes what PostgreSQL reserves for superusers: pageinspect's page functions
check for a superuser in C, and `pg_read_binary_file` reads any file of the data directory.
So the walk lives in `ruvector.ivf_list_sizes` (migration 0005), a SECURITY DEFINER function
owned by ruvector_owner that accepts only an IVFFlat index of a configured collection and
returns only counts; the daemon's role may call it and nothing more. It works once an
administrator has let ruvector_owner execute `pg_read_binary_file` (deploy/sql/roles.sql
`-v ivf_pages=on`); anywhere else `readable` is false and the sampler uses
ruvector.centroid_stats, as before.

What it reads: the meta page's 12 bytes, the list pages, and for every entry page only the
item count in its header and the 8 bytes of its special space -- never an entry, so no
vector leaves the server. It reads the relation's files, not shared buffers: what it sees
is the index as of its last write-out (at the latest the last checkpoint), which is fresh
enough for list skew, a drift of hours. It takes no lock; a page that is not written out
yet (all zeros) makes the whole reading void rather than half right. One statement, under
the session's statement timeout, skipped for indexes above `max_pages`.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

_MAGIC = 0x14FF1A7


@dataclass(frozen=True, slots=True)
class IvfLists:
    """One IVFFlat index's list sizes, in list order, as its pages say."""

    counts: tuple[int, ...]
    pages: int  # entry pages walked


class IvfReadError(Exception):
    """The pages did not make a consistent index (not written out yet, or not IVFFlat)."""


async def readable(conn: asyncpg.Connection) -> bool:
    """Whether the pages can be read here (see the module docstring)."""
    return bool(
        await conn.fetchval(
            "SELECT has_function_privilege('ruvector.ivf_list_sizes(bigint, integer)', "
            "'EXECUTE') AND has_function_privilege('ruvector_owner', "
            "'pg_catalog.pg_read_binary_file(text, bigint, bigint, boolean)', 'EXECUTE')"
        )
    )


async def read_lists(conn: asyncpg.Connection, index_oid: int, max_pages: int) -> IvfLists:
    row = await conn.fetchrow("SELECT * FROM ruvector.ivf_list_sizes($1, $2)", index_oid, max_pages)
    if row is None or row["meta"] is None or len(row["meta"]) < 36:
        raise IvfReadError("no meta page")
    meta: bytes = row["meta"]
    magic = int.from_bytes(meta[24:28], "little")
    lists = int.from_bytes(meta[34:36], "little")
    if magic != _MAGIC:
        raise IvfReadError("not an IVFFlat meta page (not written out yet?)")
    if row["lists"] != lists:
        raise IvfReadError(f"meta page says {lists} lists, the list pages hold {row['lists']}")
    if row["bad_pages"]:
        raise IvfReadError(f"{row['bad_pages']} entry page(s) not written out yet")
    if row["deepest"] >= max_pages:
        raise IvfReadError(f"a list chain is longer than {max_pages} pages")
    return IvfLists(tuple(int(c) for c in row["counts"]), int(row["walked"]))
