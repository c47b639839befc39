"""scale_replicas and the Kubernetes adapter on a real API server (etcd + kube-apiserver, RBAC).

The tests play the controllers (nothing else runs in that cluster): a background task patches
`status` through the API so that readiness is real. ruvectord talks to the server as its own
ServiceAccount, with exactly the Role in deploy/kubernetes/rbac.yaml; the missing-permission
tests use a read-only identity. Engine tests use the real Postgres journal and a ManualClock.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from ruvectord.clock import ManualClock
from ruvectord.config import Config
from ruvectord.daemon import Daemon, build_healer
from ruvectord.errors import KubeForbidden, KubernetesError, KubeUnreachable, WorkloadNotFound
from ruvectord.healing.engine import RemediationEngine
from ruvectord.healing.problems import HotspotCongestion
from ruvectord.healing.strategies import builtin_registry
from ruvectord.healing.strategies.scale_replicas import ScaleReplicas, Workload, next_count
from ruvectord.healing.strategy import RemediationContext
from ruvectord.integrity.hysteresis import State
from ruvectord.kube import Kube
from ruvectord.metrics import Metrics
from ruvectord.postgres.actions import HealingStore
from ruvectord.postgres.pool import Database
from ruvectord.postgres.store import Store
from tests.helpers import free_port, harness, make_config
from tests.integration.test_engine import FakeActor, FakeMonitor, Rig
from tests.kube import (
    NAMESPACE,
    READONLY_USER,
    KubeServer,
    admin,
    create_workload,
    play_controller,
    spec_replicas,
    unique,
    write_kubeconfig,
)

REPO = Path(__file__).resolve().parents[2]
# the first test in a session may build the API server (minutes): only the test body is timed
kube_test = pytest.mark.timeout(120, func_only=True)


def kube_config(
    kubeconfig: Path, workload: Workload | None = None, *, max_replicas: int = 6, ready: float = 10
) -> Config:
    collection: dict[str, Any] = {
        "name": "items",
        "table": "public.items",
        "vector_column": "embedding",
    }
    if workload is not None:
        collection["replicas"] = {
            "kind": workload.kind,
            "namespace": workload.namespace,
            "name": workload.name,
            "max_replicas": max_replicas,
            "ready_timeout_seconds": ready,
        }
    return Config.model_validate(
        {
            "kubernetes": {
                "kubeconfig": str(kubeconfig),
                "request_timeout_seconds": 5,
                "poll_interval_seconds": 0.1,
            },
            "collections": [collection],
        }
    )


class NoSql:
    """scale_replicas never touches the database; this says so if it ever tries."""

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        raise AssertionError(sql)

    async def fetchrow(self, sql: str, *args: Any) -> Any:
        raise AssertionError(sql)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        raise AssertionError(sql)

    async def execute(self, sql: str, *args: Any, idempotent: bool = False) -> str:
        raise AssertionError(sql)


def context(config: Config) -> RemediationContext:
    return RemediationContext(
        collection="items",
        collection_id=1,
        table="public.items",
        problem=HotspotCongestion((1,), ("public.items_p3",), 4.0),
        state=State.STRESS,
        initial_lambda=0.4,
        sql=NoSql(),
        settings=config.healing,
    )


def strategy(config: Config) -> ScaleReplicas:
    return ScaleReplicas(Kube(lambda: config.kubernetes), lambda: config)


# ------------------------------------------------------------------ the strategy, per kind


@kube_test
@pytest.mark.parametrize(
    ("kind", "start", "scaled"), [("Deployment", 2, 3), ("StatefulSet", 3, 5), ("Cluster", 1, 2)]
)
async def test_scale_up_wait_ready_and_roll_back_each_kind(
    kube_cluster: KubeServer, kind: str, start: int, scaled: int
) -> None:
    if kind == "Cluster" and kube_cluster.custom_resources_broken:
        pytest.skip(kube_cluster.custom_resources_broken)
    async with admin(kube_cluster) as api:
        w = await create_workload(api, kind, unique(kind.lower()), start)
        config = kube_config(kube_cluster.kubeconfig("ruvectord"), w)
        s, ctx = strategy(config), context(config)
        ctx.rollback_data = await s.plan(ctx)
        assert ctx.rollback_data == {
            "workload": {"kind": kind, "namespace": NAMESPACE, "name": w.name},
            "previous_replicas": start,
            "target_replicas": scaled,
            "max_replicas": 6,
        }
        async with anyio.create_task_group() as tg:
            tg.start_soon(play_controller, kube_cluster, w)
            result = await s.execute(ctx)
            tg.cancel_scope.cancel()
        assert result.success, result.error
        assert result.metadata["new_replicas"] == scaled
        assert result.metadata["ready"] >= scaled
        assert await spec_replicas(api, w) == scaled
        await s.rollback(ctx)
        assert await spec_replicas(api, w) == start


@kube_test
async def test_readiness_timeout_is_a_failed_result_and_rollback_restores(
    kube_cluster: KubeServer,
) -> None:
    async with admin(kube_cluster) as api:
        w = await create_workload(api, "Deployment", unique("stuck"), 2)
        config = kube_config(kube_cluster.kubeconfig("ruvectord"), w, ready=1)
        s, ctx = strategy(config), context(config)
        ctx.rollback_data = await s.plan(ctx)
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: play_controller(kube_cluster, w, stuck_at=2))
            with anyio.fail_after(10):
                result = await s.execute(ctx)
            tg.cancel_scope.cancel()
        assert not result.success
        assert result.error == (
            f"Deployment {NAMESPACE}/{w.name} not ready within 1 s: 2 of 3 replicas ready"
        )
        assert await spec_replicas(api, w) == 3
        await s.rollback(ctx)
        assert await spec_replicas(api, w) == 2


@kube_test
async def test_at_the_cap_execute_is_a_noop(kube_cluster: KubeServer) -> None:
    async with admin(kube_cluster) as api:
        w = await create_workload(api, "Deployment", unique("capped"), 4)
        config = kube_config(kube_cluster.kubeconfig("ruvectord"), w, max_replicas=4)
        s, ctx = strategy(config), context(config)
        ctx.rollback_data = await s.plan(ctx)
        result = await s.execute(ctx)
        assert result.success and result.actions_taken == 0
        assert result.metadata["noop"] == (
            f"Deployment {NAMESPACE}/{w.name} already runs 4 replica(s), the cap is 4"
        )
        assert await spec_replicas(api, w) == 4


def test_next_count_is_plus_half_rounded_up_capped_and_never_down() -> None:
    assert [next_count(n, 100) for n in (1, 2, 3, 4, 5)] == [2, 3, 5, 6, 8]
    assert next_count(5, 6) == 6
    assert next_count(8, 6) == 8  # above the cap already: never a scale-down
    assert next_count(0, 6) == 0  # stopped on purpose: not started by healing


# ------------------------------------------------------------------ adapter errors


@kube_test
async def test_adapter_errors_name_the_cause(kube_cluster: KubeServer, tmp_path: Path) -> None:
    ruvectord = Kube(lambda: kube_config(kube_cluster.kubeconfig("ruvectord")).kubernetes)
    missing = Workload("Deployment", NAMESPACE, "no-such-reader")
    with pytest.raises(WorkloadNotFound, match=r"^Deployment ruvector/no-such-reader not found"):
        await ruvectord.get_replicas(missing)
    # the Role is namespaced: another namespace is forbidden, and the message says who and what
    elsewhere = Workload("StatefulSet", "default", "reader")
    with pytest.raises(KubeForbidden) as forbidden:
        await ruvectord.get_replicas(elsewhere)
    assert str(forbidden.value) == (
        'Kubernetes forbids "system:serviceaccount:ruvector:ruvectord" to get '
        "statefulsets.apps/scale in namespace default (for StatefulSet default/reader): "
        "bind the Role in deploy/kubernetes/rbac.yaml to it"
    )
    closed = f"https://127.0.0.1:{free_port()}"
    nowhere = await anyio.to_thread.run_sync(write_kubeconfig, tmp_path / "kubeconfig", closed, "t")
    unreachable = Kube(lambda: kube_config(nowhere).kubernetes)
    with pytest.raises(KubeUnreachable, match=f"^the Kubernetes API at {closed} is unreachable"):
        await unreachable.get_replicas(missing)


async def test_config_problems_name_the_file_or_in_cluster(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = Workload("Deployment", NAMESPACE, "reader")
    absent = tmp_path / "absent"
    with pytest.raises(KubernetesError, match=f"^kubernetes.kubeconfig {absent}: file not found$"):
        await Kube(lambda: kube_config(absent).kubernetes).get_replicas(w)
    broken = tmp_path / "broken"
    await anyio.Path(broken).write_text("apiVersion: v1\nclusters: []\n")
    with pytest.raises(KubernetesError, match=f"^cannot load the Kubernetes kubeconfig {broken}"):
        await Kube(lambda: kube_config(broken).kubernetes).get_replicas(w)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    in_cluster = Config().kubernetes
    with pytest.raises(
        KubernetesError,
        match=r"^cannot load the Kubernetes in-cluster config: .*\(outside a pod, set "
        r"kubernetes\.kubeconfig\)$",
    ):
        await Kube(lambda: in_cluster).get_replicas(w)


# ------------------------------------------------------------------ through the engine


@pytest.fixture
async def kube_rig(db: Database, dsn: str, state_dir: Path) -> AsyncIterator[Callable[..., Any]]:
    """An engine with the built-in registry (scale_replicas included) on the real journal."""

    async def make(kubeconfig: Path, w: Workload, *, max_replicas: int = 6, **healing: Any) -> Rig:
        base = make_config(
            dsn,
            state_dir,
            healing={"min_healing_interval_seconds": 0, "settle_seconds": 10, **healing},
            kubernetes={
                "kubeconfig": str(kubeconfig),
                "request_timeout_seconds": 5,
                "poll_interval_seconds": 0.1,
            },
        )
        data = base.model_dump(mode="json")
        data["collections"][0]["replicas"] = {
            "kind": w.kind,
            "namespace": w.namespace,
            "name": w.name,
            "max_replicas": max_replicas,
            "ready_timeout_seconds": 10,
        }
        config = Config.model_validate(data)
        ids = await Store(db).sync_collections(config)
        audits: list[dict[str, Any]] = []

        async def audit(**fields: Any) -> None:
            audits.append(fields)

        clock, actor, monitor = ManualClock(), FakeActor(), FakeMonitor()
        engine = RemediationEngine(
            config=lambda: config,
            registry=builtin_registry(kube=Kube(lambda: config.kubernetes), config=lambda: config),
            journal=HealingStore(db),
            sql=db,
            clock=clock,
            metrics=Metrics(),
            actor=actor,
            audit=audit,
            node="test",
        )
        return Rig(
            engine, HealingStore(db), db, clock, actor, monitor, config, ids["items"], audits
        )

    yield make


@kube_test
async def test_engine_asks_approval_then_scales_verifies_and_rolls_back(
    kube_cluster: KubeServer, kube_rig: Callable[..., Any]
) -> None:
    async with admin(kube_cluster) as api:
        w = await create_workload(api, "Deployment", unique("reader"), 2)
        rig: Rig = await kube_rig(kube_cluster.kubeconfig("ruvectord"), w)
        async with anyio.create_task_group() as tg:
            tg.start_soon(play_controller, kube_cluster, w)

            # refused without approval: a pending action, nothing scaled
            said = await rig.heal()
            assert said is not None and "scale_replicas needs approval" in said, said
            assert "ruvectord heal approve 1" in said
            assert await rig.statuses() == ["pending_approval"]
            assert await spec_replicas(api, w) == 2

            # approved: scaled, ready, verified (the measure reports a better lambda)
            await rig.db.fetchval("SELECT ruvector_healing_approve(1)")
            said = await rig.heal()
            assert said is not None and said.startswith(
                "approved scale_replicas (action 1) verified"
            ), said
            assert await spec_replicas(api, w) == 3
            assert await rig.statuses() == ["succeeded"]
            row = await rig.db.fetchrow(
                "SELECT rollback_data, result FROM ruvector.healing_actions WHERE id = 1"
            )
            assert row is not None
            assert row["rollback_data"]["previous_replicas"] == 2
            assert row["result"]["new_replicas"] == 3 and row["result"]["ready"] == 3

            # a second scale-up (3 -> 5) that does not help is rolled back to 3
            said = await rig.heal()
            assert said is not None and "needs approval: ruvectord heal approve 2" in said, said
            await rig.db.fetchval("SELECT ruvector_healing_approve(2)")
            rig.monitor.after = 0.1
            said = await rig.heal()
            assert said is not None and "(action 2) rolled_back" in said, said
            assert await spec_replicas(api, w) == 3
            assert await rig.statuses() == ["succeeded", "rolled_back"]
            tg.cancel_scope.cancel()
        # not lifted on recovery: the capacity stays once verified
        assert await rig.heal(state=State.NORMAL) is None
        assert await spec_replicas(api, w) == 3


@kube_test
async def test_engine_unreachable_api_is_a_clear_failed_outcome(
    kube_rig: Callable[..., Any], tmp_path: Path
) -> None:
    closed = f"https://127.0.0.1:{free_port()}"
    nowhere = await anyio.to_thread.run_sync(write_kubeconfig, tmp_path / "kubeconfig", closed, "t")
    w = Workload("Deployment", NAMESPACE, "reader")
    rig: Rig = await kube_rig(nowhere, w, require_approval_strategies=[])
    said = await rig.heal()
    assert said is not None, said
    assert f"scale_replicas failed: plan failed: the Kubernetes API at {closed} is unreachable" in (
        said
    )
    assert await rig.statuses() == []  # nothing was journaled as running: nothing changed
    # with approval required (the default), it cannot even be proposed, and says why
    rig2: Rig = await kube_rig(nowhere, w)
    said = await rig2.heal()
    assert said is not None and "scale_replicas cannot be planned: the Kubernetes API at" in said


@kube_test
async def test_engine_missing_patch_permission_is_a_clear_failed_outcome(
    kube_cluster: KubeServer, kube_rig: Callable[..., Any]
) -> None:
    async with admin(kube_cluster) as api:
        w = await create_workload(api, "Deployment", unique("guarded"), 2)
        rig: Rig = await kube_rig(
            kube_cluster.kubeconfig("readonly"), w, require_approval_strategies=[]
        )
        said = await rig.heal()
        expected = (
            f'Kubernetes forbids "{READONLY_USER}" to patch deployments.apps/scale in namespace '
            f"{NAMESPACE} (for Deployment {NAMESPACE}/{w.name}): bind the Role in "
            "deploy/kubernetes/rbac.yaml to it"
        )
        assert said is not None and f"scale_replicas (action 1) rolled_back: {expected}" in said
        # the rollback needed no permission: the count never changed, so nothing was patched
        assert await rig.statuses() == ["rolled_back"]
        assert await spec_replicas(api, w) == 2
        error = await rig.db.fetchval("SELECT error_message FROM ruvector.healing_outcomes")
        assert error == expected


# ------------------------------------------------------------------ wiring


def test_scale_replicas_is_registered_only_with_an_adapter_and_only_where_targeted() -> None:
    assert "scale_replicas" not in builtin_registry().names
    config = kube_config(Path("/nonexistent"), Workload("Deployment", NAMESPACE, "reader"))
    registry = builtin_registry(kube=Kube(lambda: config.kubernetes), config=lambda: config)
    without = builtin_registry(config=lambda: config).names
    assert set(registry.names) - set(without) == {"scale_replicas"}
    hot = HotspotCongestion((1,), ("public.items_p3",), 4.0)
    chosen = registry.select(hot, 0.5, collection="items")
    assert chosen.strategy is not None and chosen.strategy.name == "scale_replicas"
    # a collection without a replicas target never gets it
    other = registry.select(hot, 0.5, collection="logs")
    assert other.strategy is not None and other.strategy.name == "throttle_ingestion"


async def test_the_daemon_wires_scale_replicas_only_with_a_kubernetes_target(
    db: Database, dsn: str, state_dir: Path
) -> None:
    async def registry_for(config: Config) -> list[str]:
        h = await harness(db, config)
        daemon = Daemon(config)
        daemon.db, daemon.store, daemon.rt = db, h.store, h.runtime
        engine = await build_healer(daemon)
        assert isinstance(engine, RemediationEngine)
        return engine.registry.names

    plain = make_config(dsn, state_dir)
    without = await registry_for(plain)
    assert "scale_replicas" not in without
    data = plain.model_dump(mode="json")
    data["collections"][0]["replicas"] = {
        "kind": "StatefulSet",
        "namespace": NAMESPACE,
        "name": "reader",
        "max_replicas": 4,
    }
    targeted = Config.model_validate(data)
    assert set(await registry_for(targeted)) - set(without) == {"scale_replicas"}


def test_kubernetes_asyncio_is_imported_only_where_kubernetes_is_used() -> None:
    probe = (
        "import sys, ruvectord.daemon, ruvectord.cli, ruvectord.kube, "
        "ruvectord.healing.strategies.scale_replicas; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('kubernetes_asyncio', 'aiohttp')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]", done.stdout
