"""`ruvectord replay`: what a configuration would have decided on a collection's recorded samples.

Reads the window's samples with their replay frames and healing's recorded decisions, runs the
daemon's own pure path on them (ruvectord/replay.py) under the config given with -c (or the
defaults, with --dsn alone) and prints, sample by sample, what it decides and where that
differs from the recording, then a summary: transitions, classes, actions.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio

from ruvectord.cli.framework import Arg, Context, command
from ruvectord.cli.output import Column, Output, Table, when
from ruvectord.config import CollectionConfig, Config
from ruvectord.errors import RuvectordError, UserError
from ruvectord.healing.strategies.scale_replicas import Workload
from ruvectord.integrity.frame import FrameError
from ruvectord.replay import Recorded, Replay, Sample, replay

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_TIMES = "an ISO 8601 time (2026-11-25T14:00Z), now, or a time ago: 1h, 30m, 7d (or --from=-1h)"


def moment(flag: str, text: str, now: datetime) -> datetime:
    """`now`, `-1h` / `1h` (ago), `30m`, `7d`, `90s`, or ISO 8601 (without a zone: UTC)."""
    t = text.strip()
    if t == "now":
        return now
    ago = t.removeprefix("-")
    if ago and ago[-1] in _UNITS and ago[:-1].replace(".", "", 1).isdigit():
        return now - timedelta(seconds=float(ago[:-1]) * _UNITS[ago[-1]])
    try:
        at = datetime.fromisoformat(t)
    except ValueError:
        raise UserError(f"{flag} {text!r}: expected {_TIMES}") from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


class _NoKube:
    """scale_replicas is offered for the collections that name a workload, as in the daemon;
    a replay only selects, so Kubernetes is never called."""

    async def get_replicas(self, workload: Workload) -> int:
        raise RuntimeError("replay does not act")

    async def set_replicas(self, workload: Workload, replicas: int) -> None:
        raise RuntimeError("replay does not act")

    async def wait_ready(self, workload: Workload, replicas: int, within: float) -> int:
        raise RuntimeError("replay does not act")


@command(
    "replay",
    "what a config would have decided on a collection's recorded samples, sample by sample",
    connect=True,
    description=(
        "Runs the daemon's own decisions (graph, cut, state machine, classifier, strategy "
        "selection) again on the samples recorded between --from and --to, under the config "
        "given with -c (its integrity and healing settings; the defaults with --dsn alone), "
        "and says where they differ from what was recorded."
    ),
    args=[
        Arg("--collection", required=True, help="the collection (see status)"),
        Arg("--from", dest="start", required=True, metavar="TIME", help=f"from: {_TIMES}"),
        Arg("--to", dest="end", default="now", metavar="TIME", help="until (default now)"),
    ],
)
async def replay_command(ctx: Context) -> Output:
    now = datetime.now(UTC)
    start = moment("--from", ctx.args.start, now)
    end = moment("--to", ctx.args.end, now)
    if start > end:
        raise UserError(f"--from {when(start)} is after --to {when(end)}")
    name = ctx.args.collection
    row = await ctx.db.fetchrow(
        "SELECT id, name, table_schema, table_name, vector_column, tenant_column, budgets "
        "FROM ruvector.collections WHERE name = $1",
        name,
    )
    if row is None:
        known = [r["name"] for r in await ctx.db.fetch("SELECT name FROM ruvector.collections")]
        raise UserError(
            f"unknown collection {name!r} (known: {', '.join(sorted(known)) or 'none'})"
        )
    rows = await ctx.db.fetch(
        """
        SELECT s.sampled_at, s.lambda_cut, s.state, s.frame, d.decision
          FROM ruvector.integrity_samples s
          LEFT JOIN ruvector.healing_decisions d
                 ON d.collection_id = s.collection_id AND d.sampled_at = s.sampled_at
         WHERE s.collection_id = $1 AND s.sampled_at BETWEEN $2 AND $3
         ORDER BY s.sampled_at, s.id
        """,
        row["id"],
        start,
        end,
    )
    window = f"between {when(start)} and {when(end)}"
    if not rows:
        raise UserError(f"no samples of {name} recorded {window}")
    if all(r["frame"] is None for r in rows):
        raise UserError(
            f"no replay frames recorded for {name} {window}: its {len(rows)} sample(s) were "
            "recorded before schema v12 (or by an older ruvectord); replay needs samples "
            "recorded since"
        )
    config = ctx.config
    collection = _collection(config, row)
    recorded = [
        Recorded(r["sampled_at"], r["lambda_cut"], r["state"], r["frame"], r["decision"])
        for r in rows
    ]
    from ruvectord.healing.strategies import builtin_registry

    registry = builtin_registry(
        kube=_NoKube() if config.has_kubernetes_targets else None, config=lambda: config
    )

    def run() -> Replay:  # CPU-bound: the graph and the cut of every sample
        return replay(recorded, config, collection, registry)

    try:
        done = await anyio.to_thread.run_sync(run)
    except FrameError as exc:
        raise RuvectordError(f"{name}: {exc}") from None
    source = str(ctx.config_path) if ctx.config_path is not None else "(defaults)"
    return _output(done, name, start, end, source)


def _collection(config: Config, row: Any) -> CollectionConfig:
    """The config's own entry for the collection (its budgets, placement, replicas), else
    what the database knows of it (the budgets it was registered with)."""
    for c in config.collections:
        if c.name == row["name"]:
            return c
    return CollectionConfig.model_validate(
        {
            "name": row["name"],
            "table": f"{row['table_schema']}.{row['table_name']}",
            "vector_column": row["vector_column"],
            "tenant_column": row["tenant_column"],
            "budgets": dict(row["budgets"] or {}),
        }
    )


def _state(s: Sample) -> str:
    return s.transition or s.state


def _diff(s: Sample) -> str:
    said = []
    for what in s.differs:
        if what == "lambda":
            said.append(f"lambda (recorded {s.recorded_lambda:.3f})")
        elif what == "state":
            said.append(f"state (recorded {s.recorded_state})")
        elif what == "class":
            said.append(f"class (recorded {s.recorded.problem})")
        else:
            said.append(f"decision (recorded: {_short(s.recorded.text)})")
    return "; ".join(said)


def _short(text: str, width: int = 60) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def _sample(s: Sample) -> dict[str, Any]:
    return {
        "sampled_at": s.at,
        "lambda_cut": s.lambda_cut,
        "state": s.state,
        "transition": s.transition,
        "reason": s.reason,
        "problem_class": s.problem,
        "decision": s.decision.kind,
        "strategy": s.decision.strategy,
        "why": s.decision.text,
        "approximate": s.approximate,
        "differs": list(s.differs),
        "recorded": {
            "lambda_cut": s.recorded_lambda,
            "state": s.recorded_state,
            "problem_class": s.recorded.problem,
            "decision": s.recorded.kind,
            "strategy": s.recorded.strategy,
            "why": s.recorded.text,
        },
    }


def _counts(c: Counter[str]) -> str:
    return ", ".join(f"{k} x{n}" for k, n in sorted(c.items())) or "none"


def _output(done: Replay, name: str, start: datetime, end: datetime, source: str) -> Output:
    summary = done.summary()
    (rec_t, rep_t), (rec_c, rep_c), (rec_a, rep_a) = (
        summary.transitions,
        summary.classes,
        summary.actions,
    )
    rows = [_sample(s) for s in done.samples]
    by_row = dict(zip(map(id, rows), done.samples, strict=True))

    def cell(f: Any) -> Any:
        return lambda r: f(by_row[id(r)])

    table = Table(
        [
            Column.key("TIME", "sampled_at"),
            Column.number("LAMBDA", "lambda_cut", lambda v: f"{v:.3f}"),
            Column("STATE", cell(_state)),
            Column.key("CLASS", "problem_class"),
            Column(
                "DECISION",
                cell(lambda s: _short(s.decision.text) + (" (approx.)" if s.approximate else "")),
            ),
            Column("DIFFERS", cell(lambda s: _diff(s) or "-")),
        ],
        rows,
    )

    def moves(found: list[tuple[datetime, str]]) -> str:
        return ", ".join(f"{t} at {when(at)}" for at, t in found) or "none"

    lines: list[Any] = [
        f"replay of {name} {when(start)} .. {when(end)} under {source}",
        table,
        f"samples: {summary.samples} replayed, {summary.differing} differ from the recording"
        + (
            f", {summary.approximate} approximate (selection on corrected or borrowed inputs)"
            if summary.approximate
            else ""
        )
        + (f", {summary.skipped} without a frame skipped" if summary.skipped else ""),
        f"transitions: recorded {len(rec_t)} ({moves(rec_t)}); replayed {len(rep_t)} "
        f"({moves(rep_t)})",
        f"classes (samples): recorded {_counts(rec_c)}; replayed {_counts(rep_c)}",
        f"actions chosen: recorded {_counts(rec_a)}; replayed {_counts(rep_a)}",
    ]
    data = {
        "collection": name,
        "from": start,
        "to": end,
        "config": source,
        "samples": rows,
        "summary": {
            "samples": summary.samples,
            "differing": summary.differing,
            "approximate": summary.approximate,
            "skipped_without_frame": summary.skipped,
            "transitions": {
                "recorded": [{"at": at, "transition": t} for at, t in rec_t],
                "replayed": [{"at": at, "transition": t} for at, t in rep_t],
            },
            "classes": {"recorded": dict(rec_c), "replayed": dict(rep_c)},
            "actions": {"recorded": dict(rec_a), "replayed": dict(rep_a)},
        },
    }
    return Output(data, lines)
