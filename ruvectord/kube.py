"""The Kubernetes adapter for scale_replicas: config loading, the `/scale` subresource, readiness.

It implements `ReplicaScaler` for apps/v1 Deployments and StatefulSets and CloudNativePG
`Cluster`s (postgresql.cnpg.io/v1, whose scale subresource maps to `spec.instances`). It is
the only module that uses kubernetes_asyncio, and imports it (and aiohttp) inside functions,
so a daemon without a Kubernetes target never loads them.

Every request has a timeout (`kubernetes.request_timeout_seconds`). Failures become typed
errors whose one-line message names the cause: the API URL when it is unreachable; the verb,
resource, namespace and identity when a permission is missing (and where the Role is); the
workload when it does not exist; desired against ready when readiness times out.
"""

from __future__ import annotations

import importlib
import json
import re
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import yaml

from ruvectord.config import KubernetesConfig
from ruvectord.errors import (
    KubeForbidden,
    KubernetesError,
    KubeUnreachable,
    NotReady,
    WorkloadNotFound,
)
from ruvectord.healing.strategies.scale_replicas import Workload

CNPG_GROUP, CNPG_VERSION, CNPG_PLURAL = "postgresql.cnpg.io", "v1", "clusters"
RBAC_HINT = "deploy/kubernetes/rbac.yaml"
_PLURALS = {"Deployment": "deployments.apps", "StatefulSet": "statefulsets.apps"}


def resource(workload: Workload) -> str:
    """The resource as RBAC names it: plural.group."""
    return _PLURALS.get(workload.kind, f"{CNPG_PLURAL}.{CNPG_GROUP}")


class Kube:
    """A `ReplicaScaler` on the Kubernetes API; settings are read at each call (reloads)."""

    def __init__(self, settings: Callable[[], KubernetesConfig]) -> None:
        self._settings = settings

    async def get_replicas(self, workload: Workload) -> int:
        async with self._session() as s:
            return await s.call(workload, "get", "scale", _read_scale)

    async def set_replicas(self, workload: Workload, replicas: int) -> None:
        async def patch(api: Any, w: Workload, request_timeout: float) -> int:
            return await _patch_scale(api, w, replicas, request_timeout)

        async with self._session() as s:
            await s.call(workload, "patch", "scale", patch)

    async def wait_ready(self, workload: Workload, replicas: int, within: float) -> int:
        poll = self._settings().poll_interval_seconds
        ready = 0
        async with self._session() as s:
            with anyio.move_on_after(within):
                while True:
                    ready = await s.call(workload, "get", "", _read_ready)
                    if ready >= replicas:
                        return ready
                    await anyio.sleep(poll)
        raise NotReady(
            f"{workload} not ready within {within:g} s: {ready} of {replicas} replicas ready"
        )

    @asynccontextmanager
    async def _session(self) -> AsyncIterator[_Session]:
        if "kubernetes_asyncio.client" not in sys.modules:
            # the first import reads hundreds of files (about a second): not in the event loop
            await anyio.to_thread.run_sync(_import_client)
        from kubernetes_asyncio import client

        settings = self._settings()
        configuration = await _configuration(settings.kubeconfig, settings.request_timeout_seconds)
        # one short-lived client per operation: healing actions are minutes apart, and there
        # is no connection pool to close at shutdown
        async with client.ApiClient(configuration=configuration) as api:
            yield _Session(api, configuration.host, settings)


@dataclass
class _Session:
    api: Any
    host: str
    settings: KubernetesConfig

    async def call(
        self,
        workload: Workload,
        verb: str,
        subresource: str,
        request: Callable[[Any, Workload, float], Awaitable[int]],
    ) -> int:
        import aiohttp
        from kubernetes_asyncio.client.exceptions import ApiException

        timeout = self.settings.request_timeout_seconds
        try:
            # the client's own timeout, and ours around it in case it hangs elsewhere
            with anyio.fail_after(timeout + 1):
                return await request(self.api, workload, timeout)
        except ApiException as exc:
            raise self._api_error(exc, workload, verb, subresource) from None
        except TimeoutError:
            raise KubeUnreachable(
                f"the Kubernetes API at {self.host} did not answer within {timeout:g} s "
                f"({verb} {workload})"
            ) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise KubeUnreachable(
                f"the Kubernetes API at {self.host} is unreachable: {exc or type(exc).__name__}"
            ) from None

    def _api_error(
        self, exc: Any, workload: Workload, verb: str, subresource: str
    ) -> KubernetesError:
        status, message = int(exc.status or 0), _status_message(exc)
        what = resource(workload) + (f"/{subresource}" if subresource else "")
        if status == 403:
            user = re.search(r'User "([^"]+)"', message)
            who = f'"{user.group(1)}"' if user else "ruvectord's Kubernetes identity"
            extra = "" if user else f" ({message})"
            return KubeForbidden(
                f"Kubernetes forbids {who} to {verb} {what} in namespace {workload.namespace} "
                f"(for {workload}): bind the Role in {RBAC_HINT} to it{extra}"
            )
        if status == 401:
            source = self.settings.kubeconfig or "the in-cluster service account token"
            return KubeForbidden(
                f"the Kubernetes API at {self.host} rejected ruvectord's credentials (401 "
                f"Unauthorized) on {verb} {what}: check the token from {source}"
            )
        if status == 404:
            hint = ""
            if workload.kind == "Cluster" and "could not find the requested resource" in message:
                hint = " (the Cluster resource type is missing: is CloudNativePG installed?)"
            return WorkloadNotFound(
                f"{workload} not found{hint}: check collections[].replicas in the config"
            )
        return KubernetesError(
            f"Kubernetes refused {verb} {what} for {workload}: {status} {exc.reason}: {message}"
        )


def _status_message(exc: Any) -> str:
    """The `message` of the API's Status body, else the raw body."""
    body = exc.body
    if isinstance(body, bytes):
        body = body.decode(errors="replace")
    try:
        status = json.loads(body)
    except (TypeError, ValueError):
        return str(body or exc.reason or "")
    return str(status.get("message", body)) if isinstance(status, dict) else str(body)


# --------------------------------------------------------------------------- config


async def _configuration(kubeconfig: Path | None, load_timeout: float) -> Any:
    """A client configuration from the kubeconfig file, or in-cluster when there is none."""
    from kubernetes_asyncio import client
    from kubernetes_asyncio.config import ConfigException
    from kubernetes_asyncio.config.kube_config import KubeConfigLoader

    configuration = client.Configuration()
    try:
        if kubeconfig is None:
            # reads the service account's token and CA files: in a worker thread
            await anyio.to_thread.run_sync(_load_incluster, configuration)
            return configuration
        data = await anyio.to_thread.run_sync(_read_kubeconfig, kubeconfig)
        loader = KubeConfigLoader(config_dict=data, config_base_path=str(kubeconfig.parent))
        # an exec credential plugin may run here; bound it like every other call
        with anyio.fail_after(load_timeout):
            await loader.load_and_set(configuration)
    # the loader reports a malformed kubeconfig as ConfigException, KeyError or a failed assert
    except (ConfigException, AssertionError, KeyError, TypeError, ValueError) as exc:
        where = f"kubeconfig {kubeconfig}" if kubeconfig else "in-cluster config"
        hint = "" if kubeconfig else " (outside a pod, set kubernetes.kubeconfig)"
        why = str(exc) or type(exc).__name__
        raise KubernetesError(f"cannot load the Kubernetes {where}: {why}{hint}") from None
    except TimeoutError:
        raise KubernetesError(
            f"loading the kubeconfig {kubeconfig} took longer than {load_timeout:g} s"
        ) from None
    return configuration


def _import_client() -> None:
    for module in ("aiohttp", "kubernetes_asyncio.client", "kubernetes_asyncio.config"):
        importlib.import_module(module)


def _load_incluster(configuration: Any) -> None:
    from kubernetes_asyncio.config.incluster_config import (
        SERVICE_CERT_FILENAME,
        SERVICE_TOKEN_FILENAME,
        InClusterConfigLoader,
    )

    # no refresh hook: it would re-read the token file inside the event loop; every operation
    # loads a fresh configuration instead, and a projected token outlives one operation
    InClusterConfigLoader(
        SERVICE_TOKEN_FILENAME, SERVICE_CERT_FILENAME, try_refresh_token=False
    ).load_and_set(configuration)


def _read_kubeconfig(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise KubernetesError(f"kubernetes.kubeconfig {path}: file not found") from None
    except OSError as exc:
        raise KubernetesError(f"kubernetes.kubeconfig {path}: cannot read: {exc}") from None
    except yaml.YAMLError as exc:
        raise KubernetesError(f"kubernetes.kubeconfig {path}: invalid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise KubernetesError(f"kubernetes.kubeconfig {path}: not a kubeconfig mapping")
    return data


# --------------------------------------------------------------------------- requests


async def _read_scale(api: Any, w: Workload, request_timeout: float) -> int:
    from kubernetes_asyncio import client

    if w.kind == "Cluster":
        scale = await client.CustomObjectsApi(api).get_namespaced_custom_object_scale(
            CNPG_GROUP,
            CNPG_VERSION,
            w.namespace,
            CNPG_PLURAL,
            w.name,
            _request_timeout=request_timeout,
        )
        return int((scale.get("spec") or {}).get("replicas") or 0)
    apps = client.AppsV1Api(api)
    read = (
        apps.read_namespaced_deployment_scale
        if w.kind == "Deployment"
        else apps.read_namespaced_stateful_set_scale
    )
    scale = await read(w.name, w.namespace, _request_timeout=request_timeout)
    return int(scale.spec.replicas or 0)


async def _patch_scale(api: Any, w: Workload, replicas: int, request_timeout: float) -> int:
    from kubernetes_asyncio import client

    # a JSON patch (a list body): the client picks its content type for every kind, where a
    # dict body would be sent to a custom object's scale as a JSON patch and be refused
    body = [{"op": "replace", "path": "/spec/replicas", "value": replicas}]
    if w.kind == "Cluster":
        await client.CustomObjectsApi(api).patch_namespaced_custom_object_scale(
            CNPG_GROUP,
            CNPG_VERSION,
            w.namespace,
            CNPG_PLURAL,
            w.name,
            body,
            _request_timeout=request_timeout,
        )
        return replicas
    apps = client.AppsV1Api(api)
    patch = (
        apps.patch_namespaced_deployment_scale
        if w.kind == "Deployment"
        else apps.patch_namespaced_stateful_set_scale
    )
    await patch(w.name, w.namespace, body, _request_timeout=request_timeout)
    return replicas


async def _read_ready(api: Any, w: Workload, request_timeout: float) -> int:
    """Ready replicas: status.readyReplicas, or status.readyInstances for a CNPG Cluster."""
    from kubernetes_asyncio import client

    if w.kind == "Cluster":
        obj = await client.CustomObjectsApi(api).get_namespaced_custom_object(
            CNPG_GROUP,
            CNPG_VERSION,
            w.namespace,
            CNPG_PLURAL,
            w.name,
            _request_timeout=request_timeout,
        )
        return int((obj.get("status") or {}).get("readyInstances") or 0)
    apps = client.AppsV1Api(api)
    read = (
        apps.read_namespaced_deployment
        if w.kind == "Deployment"
        else apps.read_namespaced_stateful_set
    )
    obj = await read(w.name, w.namespace, _request_timeout=request_timeout)
    return int((obj.status and obj.status.ready_replicas) or 0)
