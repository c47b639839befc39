"""`ruvectord demo`: the self-contained demonstration (ruvectord/demo.py)."""

from __future__ import annotations

from pathlib import Path

from ruvectord.cli.framework import Arg, Context, command
from ruvectord.cli.output import Output


@command(
    "demo",
    "a self-contained demonstration on an embedded server",
    config=False,
    json=False,
    args=[
        Arg("--json", action="store_true", help="print the timeline as JSON lines"),
        Arg("--data-dir", type=Path, help="keep the embedded server's data here"),
        Arg("--fast", action="store_true", help="shorter phases (for CI)"),
    ],
)
def demo(ctx: Context) -> Output:
    from ruvectord.demo import run_demo

    code = run_demo(json_lines=ctx.args.json, data_dir=ctx.args.data_dir, fast=ctx.args.fast)
    return Output(exit_code=code, printed=True)
