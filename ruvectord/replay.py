"""Replay: what a configuration would have decided on recorded samples, sample by sample.

Pure: given the recorded samples of one collection (their frames, integrity/frame.py, and
healing's recorded decisions, healing/decide.py), a config and a strategy registry, run the
daemon's own pure path again -- `sense` (graph, cut, state machine), `classify`, `choose` --
and compare each sample with what was recorded. The CLI (`ruvectord replay`) reads the rows
and prints the result.

What is exact and what is not:

- The state machine starts from the tracker the window's first sample found (recorded in its
  frame) and then chains its own steps; across a daemon restart (the frames' monotonic clock
  jumps) it carries its tracker over as the restarted daemon did, through wall time, and takes
  the recorded one when they agree on the state and streak, so the same config stays exact.
- Strategy selection runs on the inputs the daemon recorded when it chose. For a sample where
  the daemon did not choose (it was normal, or recovering, under the recorded config) but the
  replayed config would, the most recent recorded inputs are borrowed, aged by the time
  between. Once replay and recording part ways, the attempts in those inputs are corrected:
  an attempt the recording made and the replay did not is taken out, one the replay would
  have made is put in (so cooldowns and the attempt window follow the replay's own actions).
  Such rows are marked approximate: what an action would have done to the load, its outcome
  (the `ineffective_after` safeguard) and the targets it would have touched are not simulated.
- Where healing did not get to choose for a reason outside the config (not acting, paused by
  an operator, another action running, an approved action run), the replay says the same.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from ruvectord.config import CollectionConfig, Config
from ruvectord.healing.decide import DISABLED, Choice, Inputs, choose, recovering
from ruvectord.healing.policy import Past
from ruvectord.healing.problems import classify
from ruvectord.healing.strategy import StrategyRegistry
from ruvectord.integrity.frame import Frame, decode
from ruvectord.integrity.hysteresis import State, Tracker
from ruvectord.integrity.sense import sense
from ruvectord.timebase import Instant

# a jump of the wall-minus-monotonic offset beyond this between two frames: another process
# (a restart) or a wall-clock step; either way the monotonic readings do not chain
_TIMELINE_JUMP = 1.0

# how long after its decision an action's journal row may start (plan, journal writes)
_START_SLACK = 30.0

# gates outside the config: the replay repeats them as recorded
_RUNTIME_GATES = frozenset({"paused", "busy", "approved"})


@dataclass(frozen=True)
class Recorded:
    """One recorded sample as the database holds it."""

    sampled_at: datetime
    lambda_cut: float
    state: str
    frame: bytes | None
    decision: Mapping[str, Any] | None = None  # ruvector.healing_decisions, if any


@dataclass(frozen=True)
class Decision:
    """What healing decided on a sample, in the words replay compares."""

    kind: str  # none (normal) | gate | chosen | blocked | unrecorded
    text: str  # the strategy, or why none
    strategy: str | None = None
    problem: str | None = None  # the class, where healing classified
    approval: bool = False  # the chosen strategy waits for an operator

    @property
    def acts(self) -> str | None:
        """The strategy it runs now (an attempt in the safeguards' history), if any."""
        return self.strategy if self.kind == "chosen" and not self.approval else None

    def same(self, other: Decision) -> bool:
        return (self.kind, self.text, self.strategy) == (other.kind, other.text, other.strategy)


@dataclass(frozen=True)
class Sample:
    at: datetime
    lambda_cut: float
    state: str
    previous: str  # the state the sample found
    reason: str  # the state machine's why
    problem: str | None
    decision: Decision
    recorded_lambda: float
    recorded_state: str
    recorded_previous: str  # the state the daemon's tracker was in when it took the sample
    recorded: Decision
    approximate: bool = False  # selection ran on borrowed or corrected inputs (see above)

    @property
    def transition(self) -> str | None:
        return f"{self.previous} -> {self.state}" if self.previous != self.state else None

    @property
    def differs(self) -> tuple[str, ...]:
        out = []
        if self.lambda_cut != self.recorded_lambda:
            out.append("lambda")
        if self.state != self.recorded_state:
            out.append("state")
        if self.recorded.kind != "unrecorded":
            if self.recorded.problem is not None and self.problem != self.recorded.problem:
                out.append("class")
            if not self.decision.same(self.recorded):
                out.append("decision")
        return tuple(out)


@dataclass(frozen=True)
class Summary:
    samples: int
    differing: int
    approximate: int
    skipped: int  # samples without a frame (recorded before schema v12)
    transitions: tuple[list[tuple[datetime, str]], list[tuple[datetime, str]]]  # rec, replay
    classes: tuple[Counter[str], Counter[str]]
    actions: tuple[Counter[str], Counter[str]]


@dataclass(frozen=True)
class Replay:
    samples: list[Sample] = field(default_factory=list)
    skipped: int = 0

    def summary(self) -> Summary:
        def transitions(replayed: bool) -> list[tuple[datetime, str]]:
            out = []
            for s in self.samples:
                now = s.state if replayed else s.recorded_state
                before = s.previous if replayed else s.recorded_previous
                if now != before:
                    out.append((s.at, f"{before} -> {now}"))
            return out

        def classes(replayed: bool) -> Counter[str]:
            found = (s.problem if replayed else s.recorded.problem for s in self.samples)
            return Counter(c for c in found if c)

        def actions(replayed: bool) -> Counter[str]:
            found = (s.decision if replayed else s.recorded for s in self.samples)
            return Counter(d.strategy for d in found if d.kind == "chosen" and d.strategy)

        return Summary(
            len(self.samples),
            sum(1 for s in self.samples if s.differs),
            sum(1 for s in self.samples if s.approximate),
            self.skipped,
            (transitions(False), transitions(True)),
            (classes(False), classes(True)),
            (actions(False), actions(True)),
        )


def recorded_decision(row: Recorded) -> Decision:
    """What the daemon recorded for a sample, as a `Decision`."""
    if not State(row.state).degraded:
        return Decision("none", "-")
    d = row.decision
    if d is None:
        return Decision("unrecorded", "(not recorded)")
    if "g" in d:
        return Decision("gate", str(d["g"]), problem=d.get("c"))
    strategy, approval = d.get("s"), bool(d.get("a"))
    text = _choice_text(strategy, str(d.get("w")), approval)
    return Decision("chosen" if strategy else "blocked", text, strategy, d.get("c"), approval)


def _choice_text(strategy: str | None, why: str, approval: bool) -> str:
    if strategy is None:
        return why
    return why + ("; needs approval" if approval else "")


def replay(
    rows: Sequence[Recorded],
    config: Config,
    collection: CollectionConfig,
    registry: StrategyRegistry,
) -> Replay:
    """Replay `rows` (oldest first) under `config`; rows without a frame are skipped."""
    out: list[Sample] = []
    skipped = 0
    tracker: Tracker | None = None
    last: Frame | None = None
    borrowed: tuple[Inputs, datetime] | None = None
    # attempts where the two part ways: (when, strategy) made only by the recording, or only
    # by the replay
    only_recorded: list[tuple[datetime, str]] = []
    only_replayed: list[tuple[datetime, str]] = []
    for row in rows:
        if row.frame is None:
            skipped += 1
            continue
        frame = decode(row.frame, collection.name, row.sampled_at)
        at = frame.instant()
        tracker = frame.tracker if tracker is None or last is None else _carry(tracker, frame, last)
        sensed = sense(frame.snapshot, frame.load, tracker, at, config, collection)
        step = sensed.step
        tracker = step.tracker
        last = frame

        recorded_inputs = _inputs(row.decision)
        if recorded_inputs is not None:
            borrowed = (recorded_inputs, row.sampled_at)
        problem = None
        approximate = False
        if not step.state.degraded:
            decision = Decision("none", "-")
        else:
            found = classify(sensed.result, frame.snapshot, config.healing.classifier)
            gate = _gate(row.decision, config, sensed.result.lambda_cut)
            # classified where the engine classifies: not when it stopped before (a gate)
            # unless to run an approved action
            if gate is None or _kind(row.decision) == "approved":
                problem = found.kind.value
            if gate is not None:
                decision = Decision("gate", gate, problem=problem)
            else:
                if recorded_inputs is not None:
                    inputs = recorded_inputs
                else:
                    approximate = True
                    inputs = (
                        borrowed[0].later(_seconds(borrowed[1], row.sampled_at), row.sampled_at)
                        if borrowed is not None
                        else Inputs(row.sampled_at)
                    )
                if only_recorded or only_replayed:
                    approximate = True
                    inputs = _corrected(
                        inputs, row.sampled_at, only_recorded, only_replayed, config
                    )
                choice = choose(found, inputs, config.healing, registry, collection.name)
                decision = _decision(choice, found.kind.value)
        recorded = recorded_decision(row)
        if decision.acts != recorded.acts:
            if recorded.acts:
                only_recorded.append((row.sampled_at, recorded.acts))
            if decision.acts:
                only_replayed.append((row.sampled_at, decision.acts))
        sample = Sample(
            at=row.sampled_at,
            lambda_cut=sensed.result.lambda_cut,
            state=step.state.value,
            previous=step.previous.value,
            reason=step.reason,
            problem=problem,
            decision=decision,
            recorded_lambda=row.lambda_cut,
            recorded_state=row.state,
            recorded_previous=frame.tracker.state.value,
            recorded=recorded,
            approximate=approximate,
        )
        out.append(sample)
    return Replay(out, skipped)


def _carry(chained: Tracker, frame: Frame, last: Frame) -> Tracker:
    """The tracker the next sample finds: the replay's own, across a restart as the
    restarted daemon saw it (through wall time), or the recorded one when they agree."""
    before, now = last.instant(), frame.instant()
    jump = (now.wall.timestamp() - now.mono) - (before.wall.timestamp() - before.mono)
    if abs(jump) <= _TIMELINE_JUMP:
        return chained
    # the daemon restored its tracker from the recorded state: do the same with ours
    carried = Tracker.from_json(chained.to_json(before), Instant(now.mono, now.wall))
    recorded = frame.tracker
    if (carried.state, carried.low_streak) == (recorded.state, recorded.low_streak):
        return recorded
    return carried


def _gate(decision: Mapping[str, Any] | None, config: Config, lambda_cut: float) -> str | None:
    """Why healing would not choose on this degraded sample, before any selection."""
    # in the engine's order: switched off, recovering, then busy or an approved action
    kind = _kind(decision)
    if not config.healing.enabled:
        return DISABLED
    if kind == "paused":
        return str(decision["g"]) if decision else None
    holding = recovering(lambda_cut, config.integrity.threshold_high)
    if holding is not None:
        return holding
    if decision is not None and kind in _RUNTIME_GATES:
        return str(decision["g"])
    return None


def _kind(decision: Mapping[str, Any] | None) -> str | None:
    return None if decision is None else decision.get("k")


def _inputs(decision: Mapping[str, Any] | None) -> Inputs | None:
    if decision is None or "in" not in decision:
        return None
    return Inputs.from_json(decision["in"])


def _decision(choice: Choice, problem: str) -> Decision:
    kind = "chosen" if choice.strategy else "blocked"
    text = _choice_text(choice.strategy, choice.why, choice.approval)
    return Decision(kind, text, choice.strategy, problem, choice.approval)


def _corrected(
    inputs: Inputs,
    at: datetime,
    only_recorded: Sequence[tuple[datetime, str]],
    only_replayed: Sequence[tuple[datetime, str]],
    config: Config,
) -> Inputs:
    """The recorded attempts with the recording's own taken out and the replay's put in."""
    past = list(inputs.history.past)
    for when, strategy in only_recorded:
        since = _seconds(when, at)
        # its journal row started a little after the decision: the closest such attempt
        mine = [
            p
            for p in past
            if p.kind == "attempt"
            and p.strategy == strategy
            and since - _START_SLACK <= p.age <= since + 1.0
        ]
        if mine:
            past.remove(min(mine, key=lambda p: abs(p.age - since)))
    window = config.healing.attempt_window_seconds
    for when, strategy in only_replayed:
        since = _seconds(when, at)
        if since <= window:
            past.append(Past("attempt", strategy, since))
    history = replace(inputs.history, past=tuple(past))
    return replace(inputs, history=history)


def _seconds(earlier: datetime, later: datetime) -> float:
    return max(0.0, (later - earlier).total_seconds())
