"""The `ruvectord` command line: the daemon (`run`), its checks and the operator's commands.

`ruvectord.cli:main` is the console script; `python -m ruvectord.cli` runs the same. The
framework (commands, parsing, exit codes, errors) is `framework.py`, output (JSON, tables,
times, progress) `output.py`, exit codes `exits.py`; the commands live in `commands/`, one
module per area, each registering itself with `@command(...)` when imported below.
"""

from __future__ import annotations

from ruvectord.cli import commands as _commands  # noqa: F401  (registers every command)
from ruvectord.cli.framework import main

__all__ = ["main"]
