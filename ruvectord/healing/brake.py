"""How a brake lets go without making the system oscillate. Pure: times are passed in.

Lifting a throttle at once, the moment integrity is normal again, brings back the very load
that degraded it: writers that were turned away retry together, lambda falls, the throttle
returns -- seven transitions in 1.6 minutes in issue 9's measurement. So a brake is let go in
`lift_steps` equal steps (50 -> 34 -> 17 -> 0 % with three), each level held
`lift_hold_seconds`. A sample below `threshold_high` while stepping (the load coming back,
before the state machine has counted enough of them to degrade) steps it back up one level
and multiplies the hold by `lift_backoff`, up to `lift_max_hold_seconds`; so does a new
degradation soon after the last step, the next time the brake is let go. A brake that holds
through every step is lifted, and after a quiet spell the holds shrink back to the base.

With `probation` (`healing.throttle.lift_probation`, on by default), the last step is to 0 %,
held like the others before the brake is lifted: the writers are let through in full while
the action still holds the brake, so a load that comes back at full rate the moment it is
allowed (the adversarial case, measured in bench/oscillation.py) puts the brake back to its
full level on the first sample below `threshold_high`, before the state machine counts a new
degradation. Without it, that load is seen only after the lift, as a new episode.

The fraction a move applies is of the brake's full level (1.0: as the action set it).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from ruvectord.config import ThrottleConfig


@dataclass(frozen=True, slots=True)
class LiftPolicy:
    steps: int = 3
    hold_seconds: float = 30.0
    backoff: float = 2.0
    max_hold_seconds: float = 600.0
    probation: bool = False  # a last level at 0 %, held, before the brake is lifted

    @classmethod
    def from_config(cls, t: ThrottleConfig) -> LiftPolicy:
        return cls(
            t.lift_steps,
            t.lift_hold_seconds,
            t.lift_backoff,
            t.lift_max_hold_seconds,
            t.lift_probation,
        )

    @property
    def last(self) -> int:
        """The step after which the brake is lifted: `steps`, or one more (0 %) on probation."""
        return self.steps + 1 if self.probation else self.steps

    def fraction(self, step: int) -> float:
        return max(0.0, (self.steps - step) / self.steps)

    def longer(self, hold: float) -> float:
        return min(self.max_hold_seconds, max(hold, self.hold_seconds) * self.backoff)


@dataclass(frozen=True, slots=True)
class Lifting:
    """A brake being let go: how many steps down it is, since when, and how long to hold."""

    step: int
    since: float  # monotonic seconds: when the current level began
    hold: float
    relapses: int = 0


@dataclass(frozen=True, slots=True)
class Move:
    kind: Literal["hold", "step", "lift", "relapse"]
    fraction: float  # of the full level, to apply now (hold: the level in force)
    why: str


@dataclass(frozen=True, slots=True)
class Memory:
    """What the last let-go of a collection's brake taught: its hold, and when it ended."""

    hold: float
    ended: float  # monotonic seconds


def begin(policy: LiftPolicy, now: float, memory: Memory | None) -> Lifting:
    """Integrity is normal again: start letting go, holding the full level first.

    A fault that came back within a few holds of the last let-go gets a longer hold; after a
    quiet spell (four of those holds) the hold is the base again."""
    hold = policy.hold_seconds
    if memory is not None and now - memory.ended < 4 * max(memory.hold, policy.hold_seconds):
        hold = policy.longer(memory.hold)
    return Lifting(0, now, hold)


def next_move(
    lifting: Lifting, policy: LiftPolicy, *, now: float, lambda_cut: float, warn_below: float
) -> tuple[Lifting, Move]:
    """The next move while integrity is normal and the brake is being let go."""
    if lambda_cut < warn_below:
        if lifting.step == 0:
            # still at the full level: the hold starts again from here
            return replace(lifting, since=now), Move(
                "hold", 1.0, f"lambda {lambda_cut:.3f} < {warn_below:g}: holding the full level"
            )
        # on probation (nothing held back any more) the load came back in full: the brake
        # goes back to its full level; otherwise one level up
        step = 0 if lifting.step >= policy.steps else lifting.step - 1
        hold = policy.longer(lifting.hold)
        back = Lifting(step, now, hold, lifting.relapses + 1)
        return back, Move(
            "relapse",
            policy.fraction(step),
            f"lambda {lambda_cut:.3f} < {warn_below:g} after a step down: back to "
            f"{policy.fraction(step):.0%} of the brake, holding {hold:.0f} s",
        )
    held = now - lifting.since
    if held < lifting.hold:
        return lifting, Move(
            "hold",
            policy.fraction(lifting.step),
            f"holding {policy.fraction(lifting.step):.0%} of the brake "
            f"({held:.0f} of {lifting.hold:.0f} s)",
        )
    step = lifting.step + 1
    if step >= policy.last:
        return replace(lifting, step=step, since=now), Move(
            "lift", 0.0, f"integrity stayed normal through {policy.last} step(s)"
        )
    if step >= policy.steps:
        return replace(lifting, step=step, since=now), Move(
            "step",
            0.0,
            f"stepping down to 0% of the brake after {held:.0f} s normal, on probation for "
            f"{lifting.hold:.0f} s",
        )
    return replace(lifting, step=step, since=now), Move(
        "step",
        policy.fraction(step),
        f"stepping down to {policy.fraction(step):.0%} of the brake after {held:.0f} s normal",
    )


def remember(lifting: Lifting, now: float) -> Memory:
    """The let-go ended (lifted, or degraded again midway): what the next one starts from."""
    return Memory(lifting.hold, now)
