"""One sample's pure sensor path: snapshot + load -> graph -> lambda_cut -> state.

The monitor (monitor.py) runs this on every live sample and `ruvectord replay` runs it on the
recorded frames, so a replay decides with exactly the code the daemon decided with. Pure and
CPU-bound (the graph and the cut): the monitor calls it in a worker thread.
"""

from __future__ import annotations

from dataclasses import dataclass

from ruvectord.config import CollectionConfig, Config
from ruvectord.integrity.evaluate import IntegrityResult, evaluate
from ruvectord.integrity.graph import ContractedGraph, build
from ruvectord.integrity.hysteresis import Policy, Step, Tracker, observe
from ruvectord.integrity.snapshot import Rates, Snapshot
from ruvectord.timebase import Instant


@dataclass(frozen=True, slots=True)
class Sensed:
    graph: ContractedGraph
    result: IntegrityResult
    step: Step


def policy_from(config: Config) -> Policy:
    i = config.integrity
    return Policy(
        threshold_high=i.threshold_high,
        threshold_low=i.threshold_low,
        degrade_samples=i.degrade_samples,
        critical_samples=i.critical_samples,
        recovery_offset=i.recovery_offset,
        recovery_hold_seconds=i.recovery_hold_seconds,
        cooldown_seconds=i.cooldown_seconds,
    )


def sense(
    snapshot: Snapshot,
    load: Rates,
    tracker: Tracker,
    at: Instant,
    config: Config,
    collection: CollectionConfig,
) -> Sensed:
    """The graph, its cut and the state machine's next step for one sample taken at `at`."""
    graph, result = reading(snapshot, load, config, collection)
    return Sensed(graph, result, observe(tracker, result.lambda_cut, at, policy_from(config)))


def reading(
    snapshot: Snapshot, load: Rates, config: Config, collection: CollectionConfig
) -> tuple[ContractedGraph, IntegrityResult]:
    """The graph and its cut, without the state machine (a verification's fresh reading)."""
    i = config.integrity
    graph = build(snapshot, load, config.budgets_for(collection))
    return graph, evaluate(graph, lambda2=i.lambda2_enabled, dense_limit=i.lambda2_dense_limit)
