"""Undoing an action within a bound: the one way every path runs a strategy's rollback (a
failed verification, an operator's rollback, a lease that lapsed, a takeover after a crash).

Kept apart from strategy.py, whose contract the pure decision path (decide.py, replay) reads:
this module waits on a clock.
"""

from __future__ import annotations

import anyio

from ruvectord.healing.strategy import RemediationContext, Strategy


def rollback_bound(strategy: Strategy) -> float:
    """How long an undo may take: twice the strategy's estimate, and at least 10 s."""
    return max(10.0, 2 * strategy.estimated_duration)


async def run_rollback(strategy: Strategy, ctx: RemediationContext) -> str | None:
    """The strategy's rollback within rollback_bound: None when it finished, else why not.

    Every path that undoes an action (a failed verification, an operator's rollback, a lease
    that lapsed, a takeover after a crash) runs it through here, so none can hang on it.
    """
    bound = rollback_bound(strategy)
    try:
        with anyio.move_on_after(bound) as scope:
            await strategy.rollback(ctx)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    if scope.cancelled_caught:
        return f"did not finish within {bound:g} s"
    return None
