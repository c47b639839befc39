"""scale_replicas: add read capacity by scaling a Kubernetes workload, and scale it back.

The design's ScaleReadReplicas: for HotspotCongestion (reads), scale the collection's
configured workload (a Deployment, a StatefulSet
or a CloudNativePG `Cluster`) through its `/scale` subresource by +50 %, capped at
`max_replicas`, and wait until the new replicas are ready. It needs approval by default
(`healing.require_approval_strategies`). Not for ReplicationLag: a new replica must replay the
same WAL, and does not make a lagging one catch up.

`plan` reads the current count; the rollback data is that count, the target and the workload
itself (so a rollback after a config reload or a crash still finds it). `execute` changes only
the replica count; `rollback` puts the previous count back unless it is already there.

The Kubernetes API is reached only through the `ReplicaScaler` it is given (ruvectord/kube.py
in the daemon), so this module never imports a Kubernetes client.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from ruvectord.config import Config, ReplicaTarget
from ruvectord.errors import KubernetesError
from ruvectord.healing.problems import ProblemKind
from ruvectord.healing.strategy import RemediationContext, RemediationResult

# when no collection has a target any more (a reload removed it) but an action is rolled back
_DEFAULT_READY_TIMEOUT = 300.0


@dataclass(frozen=True)
class Workload:
    kind: str  # Deployment | StatefulSet | Cluster
    namespace: str
    name: str

    @classmethod
    def of(cls, target: ReplicaTarget) -> Workload:
        return cls(target.kind, target.namespace, target.name)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Workload:
        return cls(str(data["kind"]), str(data["namespace"]), str(data["name"]))

    def to_json(self) -> dict[str, str]:
        return {"kind": self.kind, "namespace": self.namespace, "name": self.name}

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"


class ReplicaScaler(Protocol):
    """What scale_replicas needs from Kubernetes. Errors are `KubernetesError`s whose message
    names the cause (unreachable API, missing permission, missing workload, not ready)."""

    async def get_replicas(self, workload: Workload) -> int:
        """The desired replica count (spec) of the workload's scale subresource."""
        ...

    async def set_replicas(self, workload: Workload, replicas: int) -> None: ...

    async def wait_ready(self, workload: Workload, replicas: int, within: float) -> int:
        """Wait up to `within` seconds until at least `replicas` are ready; returns how many
        are. Raises `NotReady`."""
        ...


def next_count(current: int, max_replicas: int) -> int:
    """+50 % rounded up, capped; never below the current count (a cap under the current count
    must not turn a scale-up into a scale-down) and never up from zero (someone stopped it)."""
    if current <= 0:
        return current
    return max(current, min((current * 3 + 1) // 2, max_replicas))


class ScaleReplicas:
    name = "scale_replicas"
    handles = frozenset({ProblemKind.HOTSPOT_CONGESTION})
    impact = 0.2  # low: it adds capacity and touches no data
    reversible = True
    supports_dry_run = True
    lift_on_recovery = False  # the capacity stays once verified; a human scales it down
    leased = False

    def __init__(self, scaler: ReplicaScaler, config: Callable[[], Config]) -> None:
        self.scaler = scaler
        self._config = config

    @property
    def estimated_duration(self) -> float:
        # the engine times out at twice this, so our own readiness timeout (with its clear
        # message) always fires first
        cfg = self._config()
        ready = max(
            (c.replicas.ready_timeout_seconds for c in cfg.collections if c.replicas),
            default=_DEFAULT_READY_TIMEOUT,
        )
        return ready + 3 * cfg.kubernetes.request_timeout_seconds

    def target(self, collection: str) -> ReplicaTarget | None:
        return next((c.replicas for c in self._config().collections if c.name == collection), None)

    def applies_to(self, collection: str) -> bool:
        return self.target(collection) is not None

    async def plan(self, ctx: RemediationContext) -> dict[str, Any]:
        target = self.target(ctx.collection)
        if target is None:
            raise KubernetesError(
                f"collection {ctx.collection!r} has no replicas target "
                "(collections[].replicas in the config)"
            )
        workload = Workload.of(target)
        current = await self.scaler.get_replicas(workload)
        return {
            "workload": workload.to_json(),
            "previous_replicas": current,
            "target_replicas": next_count(current, target.max_replicas),
            "max_replicas": target.max_replicas,
        }

    async def execute(self, ctx: RemediationContext) -> RemediationResult:
        data = ctx.rollback_data
        workload = Workload.from_json(data["workload"])
        previous, new = int(data["previous_replicas"]), int(data["target_replicas"])
        facts = {"workload": str(workload), "previous_replicas": previous}
        if new <= previous:
            why = (
                f"{workload} is scaled to zero; not starting it"
                if previous <= 0
                else f"{workload} already runs {previous} replica(s), the cap is "
                f"{data['max_replicas']}"
            )
            return RemediationResult(True, 0, 0.0, {**facts, "noop": why})
        if ctx.dry_run:
            return RemediationResult(True, 0, 0.0, {**facts, "dry_run": True, "would_set": new})
        target = self.target(ctx.collection)
        timeout = target.ready_timeout_seconds if target else _DEFAULT_READY_TIMEOUT
        try:
            await self.scaler.set_replicas(workload, new)
            ready = await self.scaler.wait_ready(workload, new, timeout)
        except KubernetesError as exc:
            # a failed result, not an exception: the engine rolls back and journals the cause
            return RemediationResult.failed(str(exc), **facts, new_replicas=new)
        return RemediationResult(True, 1, 0.0, {**facts, "new_replicas": new, "ready": ready})

    async def renew(self, ctx: RemediationContext) -> bool:
        return True

    async def rollback(self, ctx: RemediationContext) -> None:
        data = ctx.rollback_data
        workload = Workload.from_json(data["workload"])
        previous = int(data["previous_replicas"])
        # nothing to undo when the patch never landed (e.g. it was forbidden): do not need a
        # permission to put back what is already there
        if await self.scaler.get_replicas(workload) != previous:
            await self.scaler.set_replicas(workload, previous)
