"""IVFFlat list occupancy read from the index's own pages, without the application's help.

pgvector (src/ivfflat.h) keeps an IVFFlat index as a meta page (block 0: magic number,
dimensions, list count), a chain of list pages from block 1 (one item per list: the first
and the insert page of its entry chain, then its centre) and, per list, a chain of entry
pages linked by the `nextblkno` of their special space. A list's size is the number of line
pointers on its chain's pages (pd_lower), dead entries included until VACUUM removes them.

Reading pages takes what PostgreSQL reserves for superusers: pageinspect's page functions
check for a superuser in C, and `pg_read_binary_file` (EXECUTE revoked from PUBLIC) reads
any file of the data directory. So this runs only where the daemon's role may call
`pg_read_binary_file` -- a superuser (the embedded server, the demo), or a role an
administrator granted EXECUTE on it, knowing it then reads every relation's files. Anywhere
else `readable` is false and the sampler uses ruvector.centroid_stats, as before.

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
_PAGE_ID = 0xFF84
_INVALID = 0xFFFFFFFF


def _u16(b: str, off: str) -> str:
    """A little-endian uint16 at byte `off` of bytea `b`, in SQL."""
    return f"(get_byte({b}, ({off})::int) | (get_byte({b}, ({off})::int + 1) << 8))::bigint"


def _u32(b: str, off: str) -> str:
    o = f"({off})::int"
    return (
        f"((get_byte({b}, {o}) | (get_byte({b}, {o} + 1) << 8)"
        f" | (get_byte({b}, {o} + 2) << 16))::bigint"
        f" | (get_byte({b}, {o} + 3)::bigint << 24))"
    )


def _read(block: str, offset: str, length: str) -> str:
    """Bytes of block `block` of the relation (rel r in scope), from its segment file."""
    return (
        f"pg_read_binary_file(r.path || CASE WHEN {block} >= r.seg "
        f"THEN '.' || ({block} / r.seg)::text ELSE '' END, "
        f"({block} % r.seg) * r.bs + {offset}, {length}, true)"
    )


QUERY = f"""
WITH RECURSIVE
rel AS (
    SELECT pg_relation_filepath($1::oid::regclass) AS path,
           current_setting('block_size')::bigint AS bs,
           pg_size_bytes(current_setting('segment_size'))
               / current_setting('block_size')::bigint AS seg
),
list_pages(n, page) AS (
    SELECT 1, {_read("1::bigint", "0", "r.bs")} FROM rel r
    UNION ALL
    SELECT lp.n + 1, {_read("nx.blk", "0", "r.bs")}
      FROM list_pages lp, rel r,
           LATERAL (SELECT {_u32("lp.page", "r.bs::int - 8")} AS blk) nx
     WHERE length(lp.page) = r.bs AND nx.blk <> {_INVALID} AND lp.n < 4096
),
items AS (
    SELECT lp.n, i, lp.page, {_u32("lp.page", "24 + 4 * i")} AS word
      FROM list_pages lp, rel r,
           LATERAL generate_series(0, ({_u16("lp.page", "12")} - 24) / 4 - 1) AS i
     WHERE length(lp.page) = r.bs
),
lists AS (
    SELECT (row_number() OVER (ORDER BY n, i) - 1)::int AS list,
           {_u32("page", "(word & 32767)::int")} AS start_page
      FROM items
     WHERE (word >> 15) & 3 = 1  -- LP_NORMAL
),
walk(list, blk, depth) AS (
    SELECT l.list, l.start_page, 1 FROM lists l WHERE l.start_page <> {_INVALID}
    UNION ALL
    SELECT w.list, nx.blk, w.depth + 1
      FROM walk w, rel r,
           LATERAL (SELECT {_read("w.blk", "r.bs - 8", "4")} AS s) sp,
           LATERAL (SELECT CASE WHEN length(sp.s) = 4 THEN {_u32("sp.s", "0")} END AS blk) nx
     WHERE nx.blk IS NOT NULL AND nx.blk <> {_INVALID} AND w.depth < $2
),
pages AS (
    SELECT w.list, w.depth,
           {_read("w.blk", "12", "2")} AS lower,
           {_read("w.blk", "r.bs - 2", "2")} AS page_id
      FROM walk w, rel r
),
per_list AS (
    SELECT l.list,
           coalesce(sum(({_u16("p.lower", "0")} - 24) / 4)
                    FILTER (WHERE length(p.lower) = 2), 0)::bigint AS entries
      FROM lists l LEFT JOIN pages p ON p.list = l.list
     GROUP BY l.list
)
SELECT (SELECT pg_read_binary_file(r.path, 0, 40, true) FROM rel r) AS meta,
       (SELECT count(*) FROM lists) AS lists,
       (SELECT count(*) FROM pages) AS walked,
       (SELECT coalesce(max(depth), 0) FROM pages) AS deepest,
       (SELECT count(*) FROM pages
         WHERE coalesce(length(lower), 0) < 2 OR coalesce(length(page_id), 0) < 2
            OR {_u16("page_id", "0")} <> {_PAGE_ID}) AS bad_pages,
       coalesce((SELECT array_agg(entries ORDER BY list) FROM per_list), '{{}}') AS counts
"""


@dataclass(frozen=True, slots=True)
class IvfLists:
    """One IVFFlat index's list sizes, in list order, as its pages say."""

    counts: tuple[int, ...]
    pages: int  # entry pages walked


class IvfReadError(Exception):
    """The pages did not make a consistent index (not written out yet, or not IVFFlat)."""


async def readable(conn: asyncpg.Connection) -> bool:
    """Whether this session may read relation files (see the module docstring)."""
    return bool(
        await conn.fetchval(
            "SELECT has_function_privilege('pg_read_binary_file(text, bigint, bigint, boolean)',"
            " 'EXECUTE')"
        )
    )


async def read_lists(conn: asyncpg.Connection, index_oid: int, max_pages: int) -> IvfLists:
    row = await conn.fetchrow(QUERY, index_oid, max_pages)
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
