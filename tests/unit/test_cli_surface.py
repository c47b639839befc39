"""The CLI's surface without a database: suggestions, help, exit-code documentation, tables,
times with their zone, JSON, the progress line."""

from __future__ import annotations

import io
import json
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import anyio
import pytest

from ruvectord.cli import main
from ruvectord.cli.framework import REGISTRY
from ruvectord.cli.output import (
    Column,
    Output,
    Progress,
    Table,
    ago,
    render_json,
    render_view,
    when,
)

ROOT = Path(__file__).parents[2]


def _usage_error(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(list(argv))
    out, err = capsys.readouterr()
    assert isinstance(exc.value.code, int)
    return exc.value.code, out, err


@pytest.mark.parametrize(
    ("argv", "suggestion"),
    [
        (["stauts"], "did you mean 'status'?"),
        (["doctr"], "did you mean 'doctor'?"),
        (["heal", "aprove", "1"], "did you mean 'approve'?"),
        (["throttle", "lsit"], "did you mean 'list'?"),
        (["status", "--jsn"], "did you mean '--json'?"),
        (["heal", "list", "--limt", "3"], "did you mean '--limit'?"),
    ],
)
def test_a_mistyped_command_or_option_gets_a_suggestion(
    capsys: pytest.CaptureFixture[str], argv: list[str], suggestion: str
) -> None:
    code, _, err = _usage_error(capsys, *argv)
    assert code == 2
    assert err.rstrip().endswith(suggestion), err
    assert "Traceback" not in err


def test_nothing_close_suggests_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _usage_error(capsys, "xyzzy")
    assert code == 2 and "did you mean" not in err and "invalid choice: 'xyzzy'" in err


def test_a_usage_error_under_nagios_is_unknown_on_stdout(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = _usage_error(capsys, "status", "--nagios", "--bogus")
    assert code == 3
    assert out.startswith("RUVECTOR UNKNOWN - ruvectord: unrecognized arguments: --bogus")


def test_usage_errors_never_echo_a_password(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _usage_error(
        capsys, "status", "--dsn", "postgresql://u:s3cr3t-pw@h/db", "x", "y"
    )
    assert code == 2 and "s3cr3t-pw" not in err


def test_help_documents_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _usage_error(capsys, "--help")
    assert code == 0
    assert "exit codes:" in out
    for line in (
        "0  success",
        "1  runtime failure",
        "2  bad input",
        "3  status: degraded",
        "4  status: critical",
        "status --nagios: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN",
    ):
        assert line in out, line
    readme = (ROOT / "README.md").read_text()
    for line in ("| 3 | degraded", "| 4 | critical", "`status --nagios`"):
        assert line in readme, line


def test_every_command_that_prints_has_json_and_the_readme_lists_it() -> None:
    readme = (ROOT / "README.md").read_text()
    for cmd in REGISTRY:
        if cmd.name not in ("run", "demo"):
            assert cmd.json, cmd.name
        assert f"ruvectord {cmd.name}" in readme, cmd.name


def test_tables_are_aligned_with_headers() -> None:
    rows = [{"id": 7, "name": "items", "lam": 0.5}, {"id": 1234, "name": "a", "lam": None}]
    table = Table(
        [Column.number("ID", "id"), Column.key("NAME", "name"), Column.number("LAMBDA", "lam")],
        rows,
    )
    assert render_view([table, "done"]) == (
        "  ID  NAME   LAMBDA\n   7  items     0.5\n1234  a           -\ndone\n"
    )
    assert render_view([Table([Column.key("X", "x")], [], empty="nothing yet")]) == "nothing yet\n"


@pytest.fixture
def zone() -> Iterator[None]:
    before = os.environ.get("TZ")
    yield
    if before is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = before
    time.tzset()


@pytest.mark.usefixtures("zone")
def test_times_always_say_their_zone() -> None:
    at = datetime(2026, 11, 25, 14, 2, 47, tzinfo=UTC)
    os.environ["TZ"] = "UTC"
    time.tzset()
    assert when(at) == "2026-11-25 14:02:47 UTC"
    os.environ["TZ"] = "XYZ-2"  # POSIX for UTC+2
    time.tzset()
    assert when(at) == "2026-11-25 16:02:47 +02:00"
    os.environ["TZ"] = "ABC+3:30"
    time.tzset()
    assert when(at) == "2026-11-25 10:32:47 -03:30"
    assert when(None) == "-"
    assert ago(at - timedelta(seconds=12), at) == "12 s ago"
    assert ago(at - timedelta(hours=1), at) == "60 min ago"
    assert ago(at + timedelta(seconds=0.5), at) == "just now"
    # JSON: ISO 8601 with the offset
    doc = json.loads(render_json({"at": at.astimezone(timezone(timedelta(hours=1)))}))
    assert doc == {"at": "2026-11-25T15:02:47+01:00"}


def test_json_is_one_document_of_plain_values() -> None:
    out = Output({"rows": [{"n": float("nan"), "p": Path("/x"), "b": b"\x01"}]})
    assert json.loads(render_json(out.data)) == {"rows": [{"n": None, "p": "/x", "b": "01"}]}


def test_progress_on_a_pipe_is_a_plain_line_after_the_delay() -> None:
    async def go(seconds: float) -> str:
        stream = io.StringIO()
        async with Progress("waiting for the acting daemon", stream=stream, delay=0.1).show():
            await anyio.sleep(seconds)
        return stream.getvalue()

    assert anyio.run(go, 0.02) == ""  # quick: nothing shown
    assert anyio.run(go, 0.3) == "waiting for the acting daemon... 0 s\n"


def test_progress_keeps_the_exception_type() -> None:
    async def go() -> None:
        async with Progress("x", stream=io.StringIO()).show():
            raise KeyError("boom")

    with pytest.raises(KeyError):
        anyio.run(go)
