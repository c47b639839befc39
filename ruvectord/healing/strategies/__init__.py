"""Built-in remediation strategies, one module each."""

from __future__ import annotations

from collections.abc import Callable

from ruvectord.config import Config
from ruvectord.healing.strategies.compact_indexes import CompactIndexes
from ruvectord.healing.strategies.drain_hot_partition import DrainHotPartition
from ruvectord.healing.strategies.evict_cold_data import EvictColdData
from ruvectord.healing.strategies.pause_maintenance import PauseMaintenance
from ruvectord.healing.strategies.rebalance_partitions import RebalancePartitions
from ruvectord.healing.strategies.rebuild_centroids import RebuildCentroids
from ruvectord.healing.strategies.scale_replicas import ReplicaScaler, ScaleReplicas
from ruvectord.healing.strategies.throttle_ingestion import ThrottleIngestion
from ruvectord.healing.strategy import Strategy, StrategyRegistry


def builtin_registry(
    *, kube: ReplicaScaler | None = None, config: Callable[[], Config] | None = None
) -> StrategyRegistry:
    """The built-in strategies; scale_replicas only with a Kubernetes adapter (and the config
    that names each collection's workload). The config, when given, sizes the maintenance
    strategies' timeouts (their budgets) and brings the strategies that move rows (each is
    offered only for collections that declared their placement); each action reads its
    settings from its context."""
    strategies: list[Strategy] = [
        ThrottleIngestion(),
        PauseMaintenance(config),
        CompactIndexes(config),
        RebuildCentroids(config),
    ]
    if config is not None:
        strategies += [
            RebalancePartitions(config),
            DrainHotPartition(config),
            EvictColdData(config),
        ]
    if kube is not None:
        if config is None:
            raise ValueError("scale_replicas needs the config along with the Kubernetes adapter")
        strategies.append(ScaleReplicas(kube, config))
    return StrategyRegistry(strategies)
