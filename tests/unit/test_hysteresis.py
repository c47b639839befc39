"""The state machine's rules, exactly: sample counts, holds, cooldowns, persistence."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ruvectord.integrity.hysteresis import Policy, State, Tracker, observe
from ruvectord.timebase import Instant

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def at(seconds: float, wall_offset: float = 0.0) -> Instant:
    """`seconds` into the test on the monotonic clock; the wall clock may be off by an offset."""
    return Instant(seconds, T0 + timedelta(seconds=seconds + wall_offset))


POLICY = Policy()  # the spec's defaults: 0.8 / 0.3, N=3, M=2, offset 0.1, H=300 s, cooldown 60 s


def run(
    values: list[float], policy: Policy = POLICY, step: float = 60.0, tracker: Tracker | None = None
) -> list[State]:
    t = tracker or Tracker()
    states = []
    for i, v in enumerate(values):
        s = observe(t, v, at(step * (i + 1)), policy)
        t = s.tracker
        states.append(s.state)
    return states


def first_change(states: list[State], start: State = State.NORMAL) -> int | None:
    prev = start
    for i, s in enumerate(states):
        if s is not prev:
            return i + 1
        prev = s
    return None


@given(n=st.integers(1, 10), low=st.floats(0.0, 0.7999))
def test_normal_to_stress_after_exactly_n_low_samples(n: int, low: float) -> None:
    policy = Policy(degrade_samples=n, cooldown_seconds=0)
    states = run([low] * (n + 2), policy)
    assert first_change(states) == n
    assert states[n - 1] is State.STRESS


@given(n=st.integers(2, 8), breaker=st.floats(0.8, 1.0))
def test_a_healthy_sample_restarts_the_streak(n: int, breaker: float) -> None:
    policy = Policy(degrade_samples=n, cooldown_seconds=0)
    values = [0.5] * (n - 1) + [breaker] + [0.5] * (n - 1)
    assert all(s is State.NORMAL for s in run(values, policy))
    assert run([*values, 0.5], policy)[-1] is State.STRESS


@given(n=st.integers(1, 6), m=st.integers(1, 6))
def test_stress_to_critical_after_exactly_m_more_samples(n: int, m: int) -> None:
    policy = Policy(degrade_samples=n, critical_samples=m, cooldown_seconds=0)
    states = run([0.1] * (n + m + 2), policy)
    assert states.index(State.STRESS) == n - 1
    assert states.index(State.CRITICAL) == n + m - 1


def test_between_thresholds_stress_never_goes_critical() -> None:
    states = run([0.5] * 50, Policy(cooldown_seconds=0))
    assert set(states[3:]) == {State.STRESS}


@given(hold=st.integers(1, 20), step=st.integers(1, 120))
def test_recovery_needs_the_hold_and_restarts_when_lambda_falls_back(hold: int, step: int) -> None:
    policy = Policy(recovery_hold_seconds=hold * 10.0, cooldown_seconds=0)
    start = Tracker(State.STRESS, 0, None, 0.0, T0)
    # above the bar (0.9): recovers once the hold has lasted `hold*10` seconds
    samples_needed = -(-hold * 10 // step) + 1  # the first sample starts the hold
    states = run([0.95] * (samples_needed + 1), policy, step, start)
    assert first_change(states, State.STRESS) == samples_needed
    # falling to 0.85 (above T_high, below the bar) restarts the hold
    values = [0.95] * (samples_needed - 1) + [0.85] + [0.95] * (samples_needed - 1)
    states = run(values, policy, step, start)
    assert all(s is State.STRESS for s in states)


def test_critical_recovers_to_stress_then_normal_with_holds() -> None:
    policy = Policy(recovery_hold_seconds=300, cooldown_seconds=60)
    start = Tracker(State.CRITICAL, 0, None, 0.0, T0)
    states = run([0.95] * 20, policy, 60.0, start)
    # hold starts at t=60 and is met at t=360 (sample 6); the next hold starts at sample 7
    assert states.index(State.STRESS) == 5
    assert states.index(State.NORMAL) == 11


@given(
    values=st.lists(st.floats(0.75, 0.95), min_size=10, max_size=200),
    step=st.sampled_from([1.0, 5.0, 10.0, 30.0]),
)
@settings(max_examples=200)
def test_oscillation_gives_at_most_one_transition_per_cooldown(
    values: list[float], step: float
) -> None:
    policy = Policy(degrade_samples=1, recovery_hold_seconds=0, cooldown_seconds=60)
    t = Tracker()
    changes: list[float] = []
    for i, v in enumerate(values):
        s = observe(t, v, at(step * i), policy)
        if s.changed:
            changes.append(step * i)
        t = s.tracker
    for a, b in itertools.pairwise(changes):
        assert b - a >= 60


def test_a_transition_due_in_cooldown_happens_when_it_ends_if_still_due() -> None:
    policy = Policy(degrade_samples=1, critical_samples=1, cooldown_seconds=60)
    states = run([0.5, 0.1, 0.1, 0.1], policy, step=25.0)
    # t=25 stress; t=50 and t=75 are inside the cooldown; t=100 critical
    assert states == [State.STRESS, State.STRESS, State.STRESS, State.CRITICAL]
    # but not if the condition went away meanwhile
    states = run([0.5, 0.1, 0.5, 0.5], policy, step=25.0)
    assert states == [State.STRESS] * 4


def test_tracker_round_trips_through_json() -> None:
    now = at(100)
    t = Tracker(State.CRITICAL, 2, 90.0, 95.0, now.wall_of(95.0))
    assert Tracker.from_json(t.to_json(now), now) == t
    # a new process: another monotonic origin, the same ages
    later = Instant(7.0, now.wall + timedelta(seconds=3))
    moved = Tracker.from_json(t.to_json(now), later)
    assert (moved.hold_since, moved.last_transition) == (later.mono - 13.0, later.mono - 8.0)
    assert Tracker.from_json({}, now) == Tracker()


def test_a_backward_wall_clock_jump_freezes_nothing() -> None:
    """Once, a one-hour step back left "normal waits for the cooldown (3559 s left)"."""
    policy = Policy(recovery_hold_seconds=30, cooldown_seconds=60)
    t = Tracker(State.STRESS, 0, None, 0.0, T0)
    states = []
    for i in range(1, 20):
        # from sample 3 on, the wall clock reads an hour earlier than before
        s = observe(t, 0.95, at(10.0 * i, -3600.0 if i >= 3 else 0.0), policy)
        states.append(s.state)
        t = s.tracker
    # the hold starts at 10 s and is met at 40 s, the cooldown (60 s) lets it move at 60 s
    assert states.index(State.NORMAL) == 5
    assert "waits for the cooldown (3" not in s.reason


def test_a_forward_wall_clock_jump_fires_nothing() -> None:
    policy = Policy(recovery_hold_seconds=300, cooldown_seconds=60)
    t = Tracker(State.STRESS, 0, None, 0.0, T0)
    s = observe(t, 0.95, at(10.0), policy)
    # two seconds later on the monotonic clock, a day later on the wall clock
    s = observe(s.tracker, 0.95, at(12.0, 86400.0), policy)
    assert s.state is State.STRESS and "held 2 s of 300 s" in s.reason


def test_policy_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="thresholds"):
        Policy(threshold_low=0.9, threshold_high=0.8)
    with pytest.raises(ValueError, match="must be >= 1"):
        Policy(degrade_samples=0)


def test_reasons_say_why() -> None:
    s = observe(Tracker(), 0.41, at(0), POLICY)
    assert s.reason == "lambda 0.410 < 0.8 for 1 sample(s), stress after 3"
    s = observe(Tracker(State.NORMAL, 2), 0.41, at(0), POLICY)
    assert s.changed and s.reason == "lambda 0.410 < 0.8 for 3 sample(s)"
