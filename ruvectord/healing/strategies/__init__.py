"""Built-in remediation strategies, one module each."""

from __future__ import annotations

from ruvectord.healing.strategies.throttle_ingestion import ThrottleIngestion
from ruvectord.healing.strategy import StrategyRegistry


def builtin_registry() -> StrategyRegistry:
    return StrategyRegistry([ThrottleIngestion()])
