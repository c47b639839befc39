"""The brake that does not oscillate (healing/brake.py), and strategies that answer only the
causes they can act on: throttling is not an answer to a stalled replay."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ruvectord.healing.brake import Lifting, LiftPolicy, Memory, begin, next_move, remember
from ruvectord.healing.problems import ReplicationLag
from ruvectord.healing.strategies import builtin_registry

POLICY = LiftPolicy(steps=3, hold_seconds=30, backoff=2, max_hold_seconds=100)


def walk(lifting: Lifting, samples: list[tuple[float, float]]) -> list[str]:
    """(seconds later, lambda) per sample -> the kinds of moves made."""
    now, kinds = lifting.since, []
    for later, value in samples:
        now += later
        lifting, move = next_move(lifting, POLICY, now=now, lambda_cut=value, warn_below=0.8)
        kinds.append(f"{move.kind} {move.fraction:.2f}")
    return kinds


def test_a_brake_is_let_go_in_steps_with_a_hold_between() -> None:
    start = begin(POLICY, 0.0, None)
    assert start == Lifting(0, 0.0, 30)
    assert walk(start, [(10, 1.0), (20, 1.0), (29, 1.0), (1, 1.0), (30, 1.0)]) == [
        "hold 1.00",
        "step 0.67",
        "hold 0.67",
        "step 0.33",
        "lift 0.00",
    ]


def test_the_load_coming_back_steps_up_and_doubles_the_hold() -> None:
    start = begin(POLICY, 0.0, None)
    lifting, move = next_move(start, POLICY, now=30, lambda_cut=1.0, warn_below=0.8)
    assert move.kind == "step"
    lifting, move = next_move(lifting, POLICY, now=35, lambda_cut=0.6, warn_below=0.8)
    assert (move.kind, move.fraction, lifting.hold, lifting.relapses) == ("relapse", 1.0, 60, 1)
    assert "back to 100% of the brake, holding 60 s" in move.why
    # held 59 s: still holding; the next relapse is capped at max_hold_seconds
    lifting, move = next_move(lifting, POLICY, now=94, lambda_cut=1.0, warn_below=0.8)
    assert move.kind == "hold"
    lifting, move = next_move(lifting, POLICY, now=95, lambda_cut=1.0, warn_below=0.8)
    assert move.kind == "step"
    lifting, move = next_move(lifting, POLICY, now=96, lambda_cut=0.5, warn_below=0.8)
    assert (move.kind, lifting.hold) == ("relapse", 100)


def test_a_dip_at_the_full_level_restarts_the_hold() -> None:
    lifting, move = next_move(Lifting(0, 0, 30), POLICY, now=25, lambda_cut=0.7, warn_below=0.8)
    assert (move.kind, move.fraction, lifting.since) == ("hold", 1.0, 25)


def test_a_fault_back_soon_after_a_let_go_gets_a_longer_hold_and_a_quiet_spell_forgets() -> None:
    memory = remember(Lifting(2, 0, 30), 100.0)
    assert memory == Memory(30, 100.0)
    assert begin(POLICY, 150.0, memory).hold == 60  # back within four holds
    assert begin(POLICY, 221.0, memory).hold == 30  # quiet for more than that


def test_one_step_lifts_at_once() -> None:
    policy = LiftPolicy(steps=1, hold_seconds=0)
    _, move = next_move(begin(policy, 0, None), policy, now=0, lambda_cut=1.0, warn_below=0.8)
    assert move.kind == "lift"


@given(
    steps=st.integers(1, 10),
    samples=st.lists(
        st.tuples(st.floats(0, 200), st.floats(0, 1, allow_nan=False)), min_size=1, max_size=60
    ),
)
def test_never_more_than_the_full_level_never_below_zero_holds_bounded(
    steps: int, samples: list[tuple[float, float]]
) -> None:
    policy = LiftPolicy(steps=steps, hold_seconds=10, backoff=3, max_hold_seconds=50)
    lifting, now = begin(policy, 0, None), 0.0
    for later, value in samples:
        now += later
        lifting, move = next_move(lifting, policy, now=now, lambda_cut=value, warn_below=0.8)
        assert 0.0 <= move.fraction <= 1.0
        assert 10 <= lifting.hold <= 50
        if move.kind == "lift":
            break
        # below the bar it never steps down
        assert not (value < 0.8 and move.kind == "step")


def test_a_stalled_replay_gets_no_throttle_but_a_plain_answer() -> None:
    registry = builtin_registry()
    stalled = ReplicationLag((7,), ("standby1",), 40.0, 64 << 20, unapplied_bytes=60 << 20)
    assert stalled.replay_stalled
    assert "received but not replayed" in stalled.describe()
    chosen = registry.select(stalled, 1.0)
    assert chosen.strategy is None
    assert chosen.reason.startswith("no safe automatic action (throttle_ingestion cannot help:")
    assert "the replica holds the WAL but does not replay it" in chosen.reason

    # WAL the replica has not received yet: the primary outruns it, slowing writes helps
    outrun = ReplicationLag((7,), ("standby1",), 40.0, 64 << 20, unapplied_bytes=1 << 20)
    assert not outrun.replay_stalled
    picked = registry.select(outrun, 1.0).strategy
    assert picked is not None and picked.name == "throttle_ingestion"


def test_no_lag_bytes_is_not_a_stall() -> None:
    assert not ReplicationLag((), (), 1.0, 0).replay_stalled


PROBATION = LiftPolicy(steps=3, hold_seconds=30, backoff=2, max_hold_seconds=100, probation=True)


def test_on_probation_the_last_level_is_zero_held_before_the_lift() -> None:
    lifting, kinds, now = begin(PROBATION, 0.0, None), [], 0.0
    for _ in range(4):
        now += 30
        lifting, move = next_move(lifting, PROBATION, now=now, lambda_cut=1.0, warn_below=0.8)
        kinds.append(f"{move.kind} {move.fraction:.2f}")
    assert kinds == ["step 0.67", "step 0.33", "step 0.00", "lift 0.00"]


def test_a_load_back_on_probation_puts_the_full_brake_back_and_one_episode_stays_one() -> None:
    """The adversarial load: back at full rate whenever it is let through, for as long as the
    fault lasts. On probation its first sample below the bar brings back the full level (not
    one step: nothing was holding it back), so the state machine never counts three."""
    lifting, now = begin(PROBATION, 0.0, None), 0.0
    lows, lifted = 0, False
    for _ in range(400):  # 400 samples of 5 s while the fault lasts
        now += 5
        # the load is held back at any level above 0 %, and back in full at 0 %
        back = lifting.step >= PROBATION.steps
        lifting, move = next_move(
            lifting, PROBATION, now=now, lambda_cut=0.5 if back else 1.0, warn_below=0.8
        )
        lows = lows + 1 if back else 0
        assert lows < 3  # never three samples in a row below the bar: no new episode
        assert move.kind != "lift"
        if back:
            assert (move.kind, move.fraction) == ("relapse", 1.0)
    assert lifting.hold == 100 and not lifted
    # the fault ends: the brake is let go in full, after at most four maximal holds
    for _ in range(100):
        now += 5
        lifting, move = next_move(lifting, PROBATION, now=now, lambda_cut=1.0, warn_below=0.8)
        if move.kind == "lift":
            lifted = True
            break
    assert lifted


def test_probation_is_off_for_a_policy_built_by_hand_and_on_from_the_config() -> None:
    from ruvectord.config import ThrottleConfig

    assert POLICY.last == 3 and PROBATION.last == 4
    assert LiftPolicy.from_config(ThrottleConfig()).probation
    assert not LiftPolicy.from_config(ThrottleConfig(lift_probation=False)).probation
