"""The one place where a command's result becomes text: JSON, or aligned tables and lines.

A command returns an `Output`: `data`, the machine-readable result (what `--json` prints, as
one JSON document), and `view`, what a human reads, built from `Table`s and plain lines that
refer to the same data. Times carry their zone everywhere: ISO 8601 with an offset in JSON,
"2026-11-25 14:02:47 UTC" (or the local zone's offset, "+01:00") for humans.

Also here: `Progress`, the line a command shows on stderr while it waits for more than a
second, and `note`/`err`, which every stderr line goes through (redacted: never a password).
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Any, TextIO

import anyio

from ruvectord.logs import redact

Cell = Callable[[Mapping[str, Any]], str]


@dataclass(frozen=True)
class Column:
    """One table column: its header and how a row (a mapping) becomes the cell's text."""

    header: str
    cell: Cell
    right: bool = False  # numbers align right

    @classmethod
    def key(cls, header: str, key: str, fmt: Callable[[Any], str] | None = None) -> Column:
        show = fmt or plain
        return cls(header, lambda row: show(row.get(key)))

    @classmethod
    def number(cls, header: str, key: str, fmt: Callable[[Any], str] | None = None) -> Column:
        show = fmt or plain
        return cls(header, lambda row: show(row.get(key)), right=True)


@dataclass(frozen=True)
class Table:
    columns: Sequence[Column]
    rows: Sequence[Mapping[str, Any]]
    empty: str = ""  # printed instead of the table when there are no rows
    headers: bool = True


Block = Table | str


@dataclass
class Output:
    """What a command returns: data for --json, a view for humans, and the exit code."""

    data: Any = None
    view: list[Block] = field(default_factory=list)
    exit_code: int = 0
    printed: bool = False  # the command wrote its output itself (run, demo)


# --------------------------------------------------------------------------- formatting


def plain(value: Any) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, datetime):
        return when(value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def when(value: datetime | None) -> str:
    """A timestamp for humans, in the local zone, always with the zone spelled out."""
    if value is None:
        return "-"
    if value.tzinfo is None:  # timestamp without time zone: we never store those, but say so
        return value.strftime("%Y-%m-%d %H:%M:%S") + " (no zone)"
    local = value.astimezone()
    offset = local.utcoffset() or timedelta(0)
    if offset == timedelta(0):
        zone = "UTC"
    else:
        minutes = int(offset.total_seconds()) // 60
        sign = "+" if minutes >= 0 else "-"
        zone = f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
    return f"{local:%Y-%m-%d %H:%M:%S} {zone}"


def ago(value: datetime | None, now: datetime | None = None) -> str:
    """ "12 s ago", "3 min ago", "2 h ago"; "-" for None."""
    if value is None:
        return "-"
    seconds = ((now or datetime.now(UTC)) - value).total_seconds()
    if seconds < -60:
        return "in " + _span(-seconds)
    if seconds < 1:  # within a clock's skew of now
        return "just now"
    return _span(seconds) + " ago"


def _span(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} d"


def fixed(digits: int) -> Callable[[Any], str]:
    def show(value: Any) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    return show


def render_table(table: Table) -> list[str]:
    if not table.rows:
        return [table.empty] if table.empty else []
    cells = [[col.cell(row) for col in table.columns] for row in table.rows]
    grid = ([[c.header for c in table.columns]] if table.headers else []) + cells
    widths = [max(len(line[i]) for line in grid) for i in range(len(table.columns))]
    out = []
    for line in grid:
        parts = [
            text.rjust(w) if col.right else text.ljust(w)
            for text, w, col in zip(line, widths, table.columns, strict=True)
        ]
        out.append("  ".join(parts).rstrip())
    return out


def render_view(view: Sequence[Block]) -> str:
    lines: list[str] = []
    for block in view:
        if isinstance(block, Table):
            lines.extend(render_table(block))
        else:
            lines.append(block)
    return "".join(line + "\n" for line in lines)


# --------------------------------------------------------------------------- JSON


def to_json(value: Any) -> Any:
    """Plain JSON values: times as ISO 8601 with their offset, records as objects."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else None
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, Enum):
        return to_json(value.value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping) or hasattr(value, "items"):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_json(v) for v in value]
    return str(value)


def render_json(data: Any) -> str:
    return json.dumps(to_json(data), indent=2, ensure_ascii=False) + "\n"


# --------------------------------------------------------------------------- stderr


def err(line: str, stream: TextIO | None = None) -> None:
    """Every line the CLI writes to stderr goes through the logs' redaction."""
    print(redact(line), file=stream or sys.stderr, flush=True)


class Progress:
    """ "waiting for X... 3 s" on stderr, for a wait that lasts more than `delay` seconds.

    On a terminal: one line, redrawn with a spinner and the elapsed seconds, erased at the
    end. Elsewhere (a pipe, a log file): a plain line after `delay`, then one every `every`
    seconds, so a cron mail shows what the command waited for and for how long.
    """

    SPIN = "-\\|/"

    def __init__(
        self,
        label: str,
        *,
        stream: TextIO | None = None,
        delay: float = 1.0,
        every: float = 5.0,
    ) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.delay = delay
        self.every = every
        self.tty = self.stream.isatty()
        self.started = time.monotonic()
        self.shown = False

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except OSError:
            pass  # a closed stderr must not fail the command

    async def _run(self) -> None:
        await anyio.sleep(self.delay)
        tick = 0
        last_plain = -self.every
        while True:
            elapsed = time.monotonic() - self.started
            if self.tty:
                spin = self.SPIN[tick % len(self.SPIN)]
                self._write(f"\r\x1b[K{spin} {redact(self.label)}... {elapsed:.0f} s")
                self.shown = True
                tick += 1
                await anyio.sleep(0.2)
            else:
                if elapsed - last_plain >= self.every:
                    self._write(f"{redact(self.label)}... {elapsed:.0f} s\n")
                    last_plain = elapsed
                await anyio.sleep(0.5)

    @asynccontextmanager
    async def show(self) -> AsyncIterator[Progress]:
        # the body's exception is re-raised as itself, not inside the task group's
        # ExceptionGroup: callers map exceptions to exit codes by their type
        failed: BaseException | None = None
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._run)
            try:
                yield self
            except BaseException as exc:
                failed = exc
            finally:
                tg.cancel_scope.cancel()
                if self.tty and self.shown:
                    self._write("\r\x1b[K")
        if failed is not None:
            raise failed


def progress(label: str) -> AbstractAsyncContextManager[Progress]:
    """`async with progress("waiting for ..."):` around anything that may take a while."""
    return Progress(label).show()
