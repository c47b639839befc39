"""Moving rows between partitions in bounded, journaled batches, and moving them back.

Shared by rebalance_partitions, drain_hot_partition and evict_cold_data. What it owns:

- reading the collection's leaf partitions and the placement value that routes to each
  (from the partition bounds in the catalog; the placement is declared, never guessed);
- `move`: batches of at most `max_rows_per_batch` rows, at most `max_rows_per_action` in all,
  at most `max_batches_per_second`. Each batch is journaled (keys, the value each row held,
  from, to) through `ctx.progress` *before* it runs and again with what it actually moved
  after, and runs as one transaction in `ruvector.placement_move` (a SECURITY DEFINER
  function: the daemon's role never touches a row itself). Between batches a fresh
  lambda_cut decides, as the design's loop does: stop early once it rose by
  `min_improvement`; undo the last batch and stop when it fell by as much;
- `undo`: every journaled batch moved back, newest first, each row only if it is still
  where the batch put it with the value it was given, so running it twice, or after a batch
  that never committed, moves nothing twice. Crash recovery calls it with the journal alone.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import anyio

from ruvectord import testpoints
from ruvectord.config import Config, PlacementConfig
from ruvectord.healing.strategy import RemediationContext, RemediationResult, Sql

LOCK_NOT_AVAILABLE = "55P03"
# a batch whose partitions stay locked by others this many times in a row ends the action
MAX_LOCK_MISSES = 5
# rollback must finish: it retries a busy batch with this back-off, this many times
UNDO_RETRIES = 40
UNDO_BACKOFF = 0.25
# an orphaned move (its daemon was killed mid-statement) is waited for this long at most
ORPHAN_WAIT = 60.0


class PlacementError(Exception):
    """The placement cannot be used as declared; the message says what to fix."""


@dataclass(frozen=True)
class Partition:
    name: str  # schema-qualified, quoted where needed (as the sampler names partitions)
    bound: str
    value: str | None  # a placement value that routes here; None: cannot receive rows
    live_rows: int
    ops: int  # cumulative operations (pg_stat_user_tables), for picking the coldest
    vector_indexes: tuple[str, ...]  # access methods of its vector indexes (hnsw, ivfflat)

    def holds(self, value: str) -> bool:
        """Whether a row with this placement value belongs here (LIST, or integer RANGE)."""
        listed = list_values(self.bound)
        if listed is not None:
            return value in listed
        lo, hi = range_bounds(self.bound)
        try:
            v = int(value)
        except ValueError:
            return False
        return (lo is None or v >= lo) and (hi is None or v < hi)


_LIST = re.compile(r"^FOR VALUES IN \((.*)\)$", re.S)
_RANGE = re.compile(r"^FOR VALUES FROM \((.*)\) TO \((.*)\)$", re.S)
_ITEM = re.compile(r"\s*('(?:[^']|'')*'|[^,]+)\s*(?:,|$)")


def _literal(text: str) -> str | None:
    text = text.strip()
    if text.upper() == "NULL":
        return None
    if text.startswith("'") and text.endswith("'"):
        return text[1:-1].replace("''", "'")
    return text


def list_values(bound: str) -> tuple[str, ...] | None:
    """The values of a LIST partition bound; None for any other bound."""
    m = _LIST.match(bound.strip())
    if m is None:
        return None
    out = [_literal(item) for item in _ITEM.findall(m.group(1))]
    return tuple(v for v in out if v is not None)


def range_bounds(bound: str) -> tuple[int | None, int | None]:
    """An integer RANGE bound as (lower inclusive, upper exclusive); None is unbounded."""
    m = _RANGE.match(bound.strip())
    if m is None:
        return (None, None)

    def one(text: str) -> int | None:
        text = text.strip()
        if text.upper() in ("MINVALUE", "MAXVALUE"):
            return None
        value = _literal(text)
        return int(value) if value is not None and re.fullmatch(r"-?\d+", value) else None

    return one(m.group(1)), one(m.group(2))


def value_for(bound: str) -> str | None:
    """A placement value that routes a row into a partition with this bound."""
    listed = list_values(bound)
    if listed is not None:
        return listed[0] if listed else None
    lo, _ = range_bounds(bound)
    return None if lo is None else str(lo)


async def partitions(sql: Sql, collection_id: int) -> list[Partition]:
    """The collection's leaf partitions (catalog and statistics views only, no lock taken)."""
    rows = await sql.fetch(
        """
        WITH RECURSIVE tree(relid) AS (
            SELECT to_regclass(format('%I.%I', c.table_schema, c.table_name))::oid
              FROM ruvector.collections c WHERE c.id = $1
            UNION
            SELECT i.inhrelid FROM pg_inherits i JOIN tree t ON i.inhparent = t.relid
        )
        SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS name,
               pg_get_expr(c.relpartbound, c.oid) AS bound,
               coalesce(s.n_live_tup, 0) AS live_rows,
               coalesce(s.n_tup_ins + s.n_tup_upd + s.n_tup_del + s.seq_scan
                        + coalesce(s.idx_scan, 0), 0) AS ops,
               ARRAY(SELECT am.amname::text FROM pg_index x
                       JOIN pg_class ic ON ic.oid = x.indexrelid
                       JOIN pg_am am ON am.oid = ic.relam
                      WHERE x.indrelid = c.oid AND am.amname IN ('hnsw', 'ivfflat')
                      ORDER BY 1) AS vector_indexes
          FROM tree JOIN pg_class c ON c.oid = tree.relid
          JOIN pg_namespace n ON n.oid = c.relnamespace
          LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
         WHERE c.relkind = 'r' AND c.relispartition
         ORDER BY c.relname
        """,
        collection_id,
    )
    out = []
    for r in rows:
        bound = str(r["bound"] or "")
        value = None if bound == "DEFAULT" else value_for(bound)
        out.append(
            Partition(
                str(r["name"]),
                bound,
                value,
                int(r["live_rows"]),
                int(r["ops"]),
                tuple(r["vector_indexes"] or ()),
            )
        )
    return out


async def problems(sql: Sql, collection_id: int) -> list[str]:
    """What keeps the declared placement from being used (ruvector.placement_problems)."""
    rows = await sql.fetch("SELECT p FROM ruvector.placement_problems($1) AS p", collection_id)
    return [str(r["p"]) for r in rows]


def coldest(parts: Sequence[Partition], exclude: set[str], n: int) -> list[Partition]:
    """Up to n partitions that can receive rows, the least used first (then the smallest)."""
    usable = [p for p in parts if p.value is not None and p.name not in exclude]
    return sorted(usable, key=lambda p: (p.ops, p.live_rows, p.name))[:n]


@dataclass(frozen=True)
class Leg:
    """Rows to move from one partition to another (round-robin over several targets)."""

    source: Partition
    targets: tuple[Partition, ...]
    rows: int
    older_than_epoch: float | None = None  # evict: only rows older than this


@dataclass
class MoveReport:
    moved: int = 0
    batches: int = 0
    undone_batches: int = 0
    stopped: str = ""
    lambdas: list[float] | None = None

    def metadata(self) -> dict[str, Any]:
        return {
            "rows_moved": self.moved,
            "batches": self.batches,
            "batches_undone": self.undone_batches,
            "stopped": self.stopped,
            "lambda_between_batches": [round(v, 4) for v in self.lambdas or []],
        }


def _batches(ctx: RemediationContext) -> list[dict[str, Any]]:
    return [dict(b) for b in ctx.rollback_data.get("batches", [])]


async def _journal(ctx: RemediationContext, batches: list[dict[str, Any]]) -> None:
    ctx.rollback_data = {**ctx.rollback_data, "batches": batches}
    if ctx.progress is not None:
        await ctx.progress({"batches": batches})


async def _call_move(
    sql: Sql,
    ctx: RemediationContext,
    source: str,
    target: str,
    keys: list[int],
    expect: list[str],
    new_values: list[str],
    lock_seconds: float,
    *,
    wait_for_rows: bool = False,
) -> list[int]:
    moved = await sql.fetchval(
        "SELECT ruvector.placement_move($1, $2::text::regclass, $3::text::regclass, "
        "$4::bigint[], $5::text[], $6::text[], $7, make_interval(secs => $8), $9)",
        ctx.collection_id,
        source,
        target,
        keys,
        expect,
        new_values,
        ctx.action_id,
        lock_seconds,
        wait_for_rows,
    )
    return [int(k) for k in moved or []]


async def move(ctx: RemediationContext, cfg: PlacementConfig, legs: Sequence[Leg]) -> MoveReport:
    """Move rows leg by leg, batch by batch, journaling each batch before and after."""
    report = MoveReport(lambdas=[])
    batches = _batches(ctx)
    left = cfg.max_rows_per_action - sum(len(b["keys"]) for b in batches)
    period = 1.0 / cfg.max_batches_per_second
    better = ctx.initial_lambda * (1.0 + ctx.settings.min_improvement)
    worse = ctx.initial_lambda * (1.0 - ctx.settings.min_improvement)
    misses = 0
    for leg in legs:
        leg_left = min(leg.rows, left)
        turn = 0
        while leg_left > 0 and left > 0:
            started = time.monotonic()
            target = leg.targets[turn % len(leg.targets)]
            assert target.value is not None
            older = leg.older_than_epoch
            found = await ctx.sql.fetch(
                "SELECT key, value FROM ruvector.placement_candidates($1, $2::text::regclass, "
                "$3, CASE WHEN $4::float8 IS NULL THEN NULL ELSE to_timestamp($4::float8) END)",
                ctx.collection_id,
                leg.source.name,
                min(cfg.max_rows_per_batch, leg_left),
                older,
            )
            if not found:
                break
            keys = [int(r["key"]) for r in found]
            olds = [str(r["value"]) for r in found]
            batch: dict[str, Any] = {
                "from": leg.source.name,
                "to": target.name,
                "to_value": target.value,
                "keys": keys,
                "olds": olds,
                "state": "intent",
            }
            batches.append(batch)
            await _journal(ctx, batches)  # before: what may move
            try:
                moved = await _call_move(
                    ctx.sql,
                    ctx,
                    leg.source.name,
                    target.name,
                    keys,
                    olds,
                    [target.value] * len(keys),
                    cfg.lock_timeout_seconds,
                )
            except Exception as exc:
                if getattr(exc, "sqlstate", None) != LOCK_NOT_AVAILABLE:
                    raise
                # the partitions were busy: nothing moved; try again after a pause
                batches.pop()
                await _journal(ctx, batches)
                misses += 1
                if misses >= MAX_LOCK_MISSES:
                    report.stopped = (
                        f"{leg.source.name} or {target.name} stayed locked by other sessions "
                        f"for {misses} batches"
                    )
                    return report
                await anyio.sleep(period)
                continue
            misses = 0
            done = set(moved)
            batch["olds"] = [o for k, o in zip(keys, olds, strict=True) if k in done]
            batch["keys"] = [k for k in keys if k in done]
            batch["state"] = "done"
            await _journal(ctx, batches)  # after: what did move
            report.moved += len(moved)
            report.batches += 1
            left -= len(moved)
            leg_left -= len(keys)  # skipped (locked) rows are not retried in this action
            turn += 1
            await testpoints.reach("placement.between_batches")
            if ctx.measure is not None and moved:
                lam = await ctx.measure()
                report.lambdas = [*(report.lambdas or []), lam]
                if lam >= better and lam > ctx.initial_lambda:
                    report.stopped = f"lambda rose to {lam:.3f}"
                    return report
                if lam < worse:
                    await _undo_batch(ctx, batch)
                    batch["state"] = "undone"
                    await _journal(ctx, batches)
                    report.moved -= len(moved)
                    report.undone_batches += 1
                    report.stopped = f"lambda fell to {lam:.3f}: the last batch was moved back"
                    return report
            await anyio.sleep(max(0.0, period - (time.monotonic() - started)))
    report.stopped = report.stopped or (
        "the action's row bound was reached" if left <= 0 else "no more rows to move"
    )
    return report


async def _undo_batch(ctx: RemediationContext, batch: Mapping[str, Any]) -> int:
    """Move one batch's rows back: only those still in `to` with the value it gave them, and
    waiting for a row a writer holds rather than leaving it behind."""
    keys = [int(k) for k in batch.get("keys", [])]
    if not keys:
        return 0
    olds = [str(v) for v in batch["olds"]]
    to_value = str(batch["to_value"])
    for attempt in range(UNDO_RETRIES):
        try:
            back = await _call_move(
                ctx.sql,
                ctx,
                str(batch["to"]),
                str(batch["from"]),
                keys,
                [to_value] * len(keys),
                olds,
                1.0,
                wait_for_rows=True,
            )
        except Exception as exc:
            if getattr(exc, "sqlstate", None) != LOCK_NOT_AVAILABLE or attempt + 1 == UNDO_RETRIES:
                raise
            await anyio.sleep(UNDO_BACKOFF)
            continue
        return len(back)
    raise PlacementError(f"rows of {batch['from']} could not be moved back from {batch['to']}")


async def wait_for_orphans(ctx: RemediationContext) -> None:
    """A daemon killed in the middle of a batch leaves its statement running in the server
    (nothing tells the backend its client is gone until it writes): wait until no other
    session is moving rows of this collection, so that what it commits is undone too."""
    deadline = time.monotonic() + ORPHAN_WAIT
    while time.monotonic() < deadline:
        n = await ctx.sql.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE pid <> pg_backend_pid() "
            "AND state <> 'idle' AND query LIKE '%ruvector.placement_move(%' "
            "AND datname = current_database()"
        )
        if not n:
            return
        await anyio.sleep(0.2)
    raise PlacementError(
        f"another session has been moving rows of {ctx.collection} for {ORPHAN_WAIT:g} s"
    )


async def undo(ctx: RemediationContext) -> int:
    """Move every journaled batch back, newest first; returns the rows moved back."""
    batches = _batches(ctx)
    if not batches:
        return 0
    await wait_for_orphans(ctx)
    back = 0
    for i in range(len(batches) - 1, -1, -1):
        batch = batches[i]
        if batch.get("state") in ("undone", "restored"):
            continue
        back += await _undo_batch(ctx, batch)
        await testpoints.reach("placement.rollback_batch")
        batch["state"] = "restored"
        if ctx.progress is not None:
            await _journal(ctx, batches)
    return back


def estimated_duration(cfgs: Sequence[PlacementConfig]) -> float:
    """Seconds an action may take: its batches at the paced rate, a measurement each."""
    worst = 0.0
    for c in cfgs:
        n = math.ceil(c.max_rows_per_action / c.max_rows_per_batch)
        worst = max(worst, n * (1.0 / c.max_batches_per_second + c.lock_timeout_seconds + 0.1))
    return 10.0 + worst


class PlacementStrategy:
    """What the three moving strategies share: the collection's placement declaration (they
    are offered only where it exists), their bounds, their time estimate and their rollback.
    """

    name = ""
    reversible = True
    supports_dry_run = True
    lift_on_recovery = False
    leased = False

    def __init__(self, config: Callable[[], Config]) -> None:
        self._config = config

    def placement(self, collection: str) -> PlacementConfig | None:
        return next((c.placement for c in self._config().collections if c.name == collection), None)

    def applies_to(self, collection: str) -> bool:
        return self.placement(collection) is not None

    def unavailable(self, collection: str) -> str | None:
        """Why this strategy is not offered for a collection (the decision line says it)."""
        return None if self.applies_to(collection) else f"placement not declared for {collection}"

    @property
    def estimated_duration(self) -> float:
        return estimated_duration(
            [c.placement for c in self._config().collections if c.placement is not None]
        )

    async def ready(self, ctx: RemediationContext) -> tuple[PlacementConfig, list[Partition]]:
        """The declaration and the partitions; PlacementError naming what is missing."""
        cfg = self.placement(ctx.collection)
        if cfg is None:
            raise PlacementError(f"placement not declared for {ctx.collection}")
        missing = await problems(ctx.sql, ctx.collection_id)
        if missing:
            raise PlacementError("; ".join(missing))
        return cfg, await partitions(ctx.sql, ctx.collection_id)

    async def renew(self, ctx: RemediationContext) -> bool:
        return True

    async def rollback(self, ctx: RemediationContext) -> None:
        await undo(ctx)


def _named(name: str, value: str | None = None) -> Partition:
    return Partition(name, "", value, 0, 0, ())


def leg_json(leg: Leg) -> dict[str, Any]:
    return {
        "from": leg.source.name,
        "targets": [{"name": t.name, "value": t.value} for t in leg.targets],
        "rows": leg.rows,
        "older_than_epoch": leg.older_than_epoch,
    }


def rows_to_move(hot: Partition, others: Sequence[Partition], cfg: PlacementConfig) -> int:
    """Rows to take from a hot partition: its excess over the mean of the others (at least
    one batch), within the action's bound."""
    mean = sum(p.live_rows for p in others) / len(others) if others else 0.0
    excess = int(hot.live_rows - mean)
    return max(cfg.max_rows_per_batch, min(excess, cfg.max_rows_per_action))


async def result_of(
    ctx: RemediationContext, cfg: PlacementConfig, extra: Mapping[str, Any] | None = None
) -> RemediationResult:
    """Run the journaled legs and say what happened."""
    if ctx.rollback_data.get("blocked"):
        return RemediationResult.failed(str(ctx.rollback_data["blocked"]))
    legs = journaled_legs(ctx)
    if ctx.dry_run:
        return RemediationResult(
            True, 0, 0.0, {"dry_run": True, "would_move": [leg_json(leg) for leg in legs]}
        )
    await testpoints.reach("placement.after_plan")
    report = await move(ctx, cfg, legs)
    meta = {**report.metadata(), **(extra or {})}
    if report.moved == 0 and report.undone_batches == 0:
        return RemediationResult(True, 0, 0.0, {**meta, "noop": report.stopped})
    return RemediationResult(True, report.batches, 0.0, meta)


def journaled_legs(ctx: RemediationContext) -> list[Leg]:
    """The legs `plan` journaled, as partitions (names and values are all `move` needs)."""
    out = []
    for leg in ctx.rollback_data.get("legs", []):
        out.append(
            Leg(
                _named(leg["from"]),
                tuple(_named(t["name"], t["value"]) for t in leg["targets"]),
                int(leg["rows"]),
                leg.get("older_than_epoch"),
            )
        )
    return out
