"""A real Kubernetes API server for the tests, and the controller the tests play.

`kube_server` (session) starts etcd and the kube-apiserver v1.20 that the shared tool
(`../shared/tools/kube-apiserver`, or $RUVECTORD_KUBE_TOOL) builds and caches, on free local
ports, with RBAC authorization and static tokens for three identities: an admin
(system:masters) for the tests' own set-up, ruvectord's ServiceAccount (bound by
deploy/kubernetes/rbac.yaml, applied through the API), and a read-only user that may read
the workloads but not patch them. It builds the binary when it is missing and the tool is
there; it skips, saying how to build it, only when that is impossible.

There are no controllers, so nothing ever becomes ready by itself: `play_controller` patches
`status` through the API the way the Deployment/StatefulSet/CloudNativePG controllers would.
kubernetes_asyncio is imported inside functions: conftest imports this module in every run.
"""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from ruvectord.healing.strategies.scale_replicas import Workload
from ruvectord.kube import CNPG_GROUP, CNPG_PLURAL, CNPG_VERSION
from tests.helpers import free_port

REPO = Path(__file__).resolve().parents[1]
RBAC_YAML = REPO / "deploy" / "kubernetes" / "rbac.yaml"
NAMESPACE = "ruvector"  # the namespace deploy/kubernetes/rbac.yaml is written for
SA_USER = f"system:serviceaccount:{NAMESPACE}:ruvectord"
READONLY_USER = "ruvectord-readonly"
_TOKENS = {"admin": "admin-token", "ruvectord": "ruvectord-token", "readonly": "readonly-token"}

CLUSTER_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": f"{CNPG_PLURAL}.{CNPG_GROUP}"},
    "spec": {
        "group": CNPG_GROUP,
        "scope": "Namespaced",
        "names": {"kind": "Cluster", "listKind": "ClusterList", "plural": CNPG_PLURAL},
        "versions": [
            {
                "name": CNPG_VERSION,
                "served": True,
                "storage": True,
                "subresources": {
                    "status": {},
                    "scale": {
                        "specReplicasPath": ".spec.instances",
                        "statusReplicasPath": ".status.instances",
                    },
                },
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "x-kubernetes-preserve-unknown-fields": True,
                                "properties": {"instances": {"type": "integer", "minimum": 1}},
                            },
                            "status": {
                                "type": "object",
                                "x-kubernetes-preserve-unknown-fields": True,
                                "properties": {
                                    "instances": {"type": "integer"},
                                    "readyInstances": {"type": "integer"},
                                },
                            },
                        },
                    }
                },
            }
        ],
    },
}

CUSTOM_RESOURCES_BROKEN = (
    "this kube-apiserver build crashes on every custom resource request: Go >= 1.18 with the "
    "vendored github.com/modern-go/reflect2 v1.0.1 ('unexpected fault address' in "
    "UnsafeMapType.UnsafeIterate, modern-go/reflect2#24); build it with reflect2 v1.0.2 "
    "vendored (Debian: golang-github-modern-go-reflect2-dev) and point KUBE_CACHE at it"
)

# what the read-only identity may do: everything ruvectord reads, nothing it writes
READONLY_RULES = [
    {
        "apiGroups": ["apps"],
        "resources": ["deployments", "statefulsets", "deployments/scale", "statefulsets/scale"],
        "verbs": ["get"],
    },
    {"apiGroups": [CNPG_GROUP], "resources": ["clusters", "clusters/scale"], "verbs": ["get"]},
]


@dataclass
class KubeServer:
    url: str
    root: Path
    restart: Callable[[], None]
    # why custom resources cannot be used on this server (None: they can)
    custom_resources_broken: str | None = None

    def kubeconfig(self, identity: str) -> Path:
        """admin | ruvectord | readonly"""
        return self.root / f"kubeconfig-{identity}"


def kube_tool() -> Path:
    env = os.environ.get("RUVECTORD_KUBE_TOOL")
    return Path(env) if env else REPO.parent / "shared" / "tools" / "kube-apiserver"


def apiserver_binary() -> Path:
    return Path(os.environ.get("KUBE_CACHE", "/var/cache/kube-apiserver-debian")) / "kube-apiserver"


def _ensure_binaries() -> tuple[Path, str]:
    """The apiserver and etcd, built by the shared tool if missing; else skip, saying how."""
    binary, tool = apiserver_binary(), kube_tool()
    how = f"build it once with `{tool} build` (about 5 minutes; needs root and apt)"
    if not (binary.exists() and shutil.which("etcd")):
        if not tool.exists():
            pytest.skip(f"no kube-apiserver at {binary} and no tool at {tool} to {how[:-1]}")
        try:
            built = subprocess.run(
                [str(tool), "build"], capture_output=True, text=True, timeout=1800, check=False
            )
            failure = built.stderr.strip().splitlines()[-1:] if built.returncode else []
        except (OSError, subprocess.TimeoutExpired) as exc:
            failure = [str(exc)]
        etcd = shutil.which("etcd")
        if failure or not binary.exists() or etcd is None:
            pytest.skip(f"the Kubernetes API server could not be built ({failure}); {how}")
    etcd = shutil.which("etcd")
    assert etcd is not None
    return binary, etcd


def write_kubeconfig(path: Path, url: str, token: str) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {"name": "t", "cluster": {"server": url, "insecure-skip-tls-verify": True}}
                ],
                "users": [{"name": "u", "user": {"token": token}}],
                "contexts": [{"name": "t", "context": {"cluster": "t", "user": "u"}}],
                "current-context": "t",
            }
        )
    )
    return path


def _ready(url: str) -> bool:
    insecure = ssl.create_default_context()
    insecure.check_hostname, insecure.verify_mode = False, ssl.CERT_NONE
    request = urllib.request.Request(
        f"{url}/readyz", headers={"Authorization": f"Bearer {_TOKENS['admin']}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=2, context=insecure) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


class _Processes:
    """etcd and the apiserver, started and stopped by their Popen handles (ours only)."""

    def __init__(self, binary: Path, etcd: str, root: Path) -> None:
        self.root, self.certs = root, root / "certs"
        self.client_port, self.peer_port, self.api_port = free_port(), free_port(), free_port()
        self.url = f"https://127.0.0.1:{self.api_port}"
        self.etcd_args = [
            etcd,
            "--name=t",
            f"--data-dir={root / 'etcd'}",
            f"--listen-client-urls=http://127.0.0.1:{self.client_port}",
            f"--advertise-client-urls=http://127.0.0.1:{self.client_port}",
            f"--listen-peer-urls=http://127.0.0.1:{self.peer_port}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{self.peer_port}",
            f"--initial-cluster=t=http://127.0.0.1:{self.peer_port}",
        ]
        self.apiserver_args = [
            str(binary),
            f"--etcd-servers=http://127.0.0.1:{self.client_port}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={self.api_port}",
            "--insecure-port=0",
            f"--cert-dir={self.certs}",
            f"--token-auth-file={self.certs / 'tokens.csv'}",
            "--authorization-mode=RBAC",  # the tool's AlwaysAllow cannot say no
            "--service-account-issuer=https://kubernetes.default.svc",
            f"--service-account-key-file={self.certs / 'sa.pub'}",
            f"--service-account-signing-key-file={self.certs / 'sa.key'}",
            "--service-cluster-ip-range=10.0.0.0/24",
            "--endpoint-reconciler-type=none",
        ]
        self.etcd: subprocess.Popen[bytes] | None = None
        self.apiserver: subprocess.Popen[bytes] | None = None

    def _spawn(self, args: list[str], log: str) -> subprocess.Popen[bytes]:
        with (self.root / log).open("ab") as out:
            return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)

    def start(self) -> None:
        self.etcd = self._spawn(self.etcd_args, "etcd.log")
        self.start_apiserver()

    def start_apiserver(self) -> None:
        self.apiserver = self._spawn(self.apiserver_args, "apiserver.log")
        deadline = time.monotonic() + 90
        while not _ready(self.url):
            running = [p for p in (self.etcd, self.apiserver) if p is not None]
            exited = [str(p.args) for p in running if p.poll() is not None]
            if exited or time.monotonic() > deadline:
                tail = (self.root / "apiserver.log").read_text(errors="replace")[-2000:]
                pytest.fail(f"the Kubernetes API server did not start ({exited}):\n{tail}")
            time.sleep(0.2)

    def restart_apiserver(self) -> None:
        """After a crash (etcd keeps the data): the same server again, on the same port."""
        if self.apiserver is not None:
            _stop(self.apiserver)
        self.start_apiserver()

    def stop(self) -> None:
        for proc in (self.apiserver, self.etcd):  # the apiserver before etcd
            if proc is not None:
                _stop(proc)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="session")
def kube_server() -> Iterator[KubeServer]:
    binary, etcd = _ensure_binaries()
    root = Path(tempfile.mkdtemp(prefix="ruvectord-kube-"))
    procs = _Processes(binary, etcd, root)
    procs.certs.mkdir()
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (procs.certs / "sa.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    (procs.certs / "sa.pub").write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    groups = f"system:serviceaccounts,system:serviceaccounts:{NAMESPACE}"
    (procs.certs / "tokens.csv").write_text(
        f"{_TOKENS['admin']},admin,admin,system:masters\n"
        f'{_TOKENS["ruvectord"]},{SA_USER},ruvectord,"{groups}"\n'
        f"{_TOKENS['readonly']},{READONLY_USER},readonly\n"
    )
    try:
        procs.start()
        for identity, token in _TOKENS.items():
            write_kubeconfig(root / f"kubeconfig-{identity}", procs.url, token)
        yield KubeServer(procs.url, root, procs.restart_apiserver)
    finally:
        procs.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
async def kube_cluster(kube_server: KubeServer) -> AsyncIterator[KubeServer]:
    """The server with the namespace, deploy/kubernetes/rbac.yaml (bound to ruvectord's
    ServiceAccount), a read-only Role for the read-only user, and the CNPG Cluster CRD."""
    import aiohttp
    from kubernetes_asyncio import client

    docs = list(yaml.safe_load_all(await anyio.Path(RBAC_YAML).read_text()))
    async with admin(kube_server) as api:
        # Any: these calls take plain dicts as bodies, which the stubs do not say
        core: Any = client.CoreV1Api(api)
        rbac: Any = client.RbacAuthorizationV1Api(api)
        crds: Any = client.ApiextensionsV1Api(api)
        await core.create_namespace({"metadata": {"name": NAMESPACE}})
        for doc in docs:
            assert doc["metadata"]["namespace"] == NAMESPACE, doc
            create = {
                "ServiceAccount": core.create_namespaced_service_account,
                "Role": rbac.create_namespaced_role,
                "RoleBinding": rbac.create_namespaced_role_binding,
            }[doc["kind"]]
            await create(NAMESPACE, doc)
        await rbac.create_namespaced_role(
            NAMESPACE, {"metadata": {"name": "readonly"}, "rules": READONLY_RULES}
        )
        await rbac.create_namespaced_role_binding(
            NAMESPACE,
            {
                "metadata": {"name": "readonly"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "Role",
                    "name": "readonly",
                },
                "subjects": [
                    {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": READONLY_USER}
                ],
            },
        )
        await crds.create_custom_resource_definition(CLUSTER_CRD)
        custom = client.CustomObjectsApi(api)
        with anyio.fail_after(30):  # until the new resource type is served
            while True:
                try:
                    await custom.list_namespaced_custom_object(
                        CNPG_GROUP, CNPG_VERSION, NAMESPACE, CNPG_PLURAL, _request_timeout=5
                    )
                    break
                except client.ApiException as exc:
                    if exc.status != 404:
                        raise
                    await anyio.sleep(0.2)
        try:
            probe = await create_workload(api, "Cluster", "probe", 1)
            await custom.delete_namespaced_custom_object(
                CNPG_GROUP, CNPG_VERSION, NAMESPACE, CNPG_PLURAL, probe.name
            )
        except aiohttp.ClientError:
            try:  # the known fault kills the server; anything else it survives is a failure
                await client.CoreV1Api(api).list_namespace(_request_timeout=3)
            except aiohttp.ClientError:
                pass
            else:
                raise
            # the server died on a custom resource; bring it back for everything else
            await anyio.to_thread.run_sync(kube_server.restart)
            kube_server.custom_resources_broken = CUSTOM_RESOURCES_BROKEN
    yield kube_server


@asynccontextmanager
async def admin(server: KubeServer) -> AsyncIterator[Any]:
    """An API client with the admin token, for the tests' own set-up and checks."""
    from kubernetes_asyncio import client

    configuration = client.Configuration(
        host=server.url, api_key={"BearerToken": f"Bearer {_TOKENS['admin']}"}
    )
    configuration.verify_ssl = False
    async with client.ApiClient(configuration=configuration) as api:
        yield api


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def create_workload(api: Any, kind: str, name: str, replicas: int) -> Workload:
    """A Deployment, a StatefulSet or a CNPG Cluster with `replicas`, none of them ready."""
    from kubernetes_asyncio import client

    if kind == "Cluster":
        body = {
            "apiVersion": f"{CNPG_GROUP}/{CNPG_VERSION}",
            "kind": "Cluster",
            "metadata": {"name": name},
            "spec": {"instances": replicas, "storage": {"size": "1Gi"}},
        }
        await client.CustomObjectsApi(api).create_namespaced_custom_object(
            CNPG_GROUP, CNPG_VERSION, NAMESPACE, CNPG_PLURAL, body
        )
        return Workload(kind, NAMESPACE, name)
    spec: dict[str, Any] = {
        "replicas": replicas,
        "selector": {"matchLabels": {"app": name}},
        "template": {
            "metadata": {"labels": {"app": name}},
            "spec": {"containers": [{"name": "reader", "image": "registry.k8s.io/pause:3.9"}]},
        },
    }
    apps: Any = client.AppsV1Api(api)  # dict bodies
    if kind == "Deployment":
        await apps.create_namespaced_deployment(
            NAMESPACE, {"metadata": {"name": name}, "spec": spec}
        )
    else:
        spec["serviceName"] = name
        await apps.create_namespaced_stateful_set(
            NAMESPACE, {"metadata": {"name": name}, "spec": spec}
        )
    return Workload(kind, NAMESPACE, name)


async def spec_replicas(api: Any, w: Workload) -> int:
    """The desired count, read straight from the object (not through the code under test)."""
    from kubernetes_asyncio import client

    if w.kind == "Cluster":
        obj = await client.CustomObjectsApi(api).get_namespaced_custom_object(
            CNPG_GROUP, CNPG_VERSION, w.namespace, CNPG_PLURAL, w.name
        )
        return int(obj["spec"]["instances"])
    apps = client.AppsV1Api(api)
    read = (
        apps.read_namespaced_deployment
        if w.kind == "Deployment"
        else apps.read_namespaced_stateful_set
    )
    return int((await read(w.name, w.namespace)).spec.replicas)


async def set_ready(api: Any, w: Workload, desired: int, ready: int) -> None:
    """Report `ready` replicas in `status`, as the workload's controller would."""
    from kubernetes_asyncio import client

    if w.kind == "Cluster":
        status = {"instances": desired, "readyInstances": ready}
        await client.CustomObjectsApi(api).patch_namespaced_custom_object_status(
            CNPG_GROUP,
            CNPG_VERSION,
            w.namespace,
            CNPG_PLURAL,
            w.name,
            [{"op": "add", "path": "/status", "value": status}],
        )
        return
    apps = client.AppsV1Api(api)
    patch = (
        apps.patch_namespaced_deployment_status
        if w.kind == "Deployment"
        else apps.patch_namespaced_stateful_set_status
    )
    await patch(w.name, w.namespace, {"status": {"replicas": desired, "readyReplicas": ready}})


async def play_controller(
    server: KubeServer, w: Workload, *, stuck_at: int | None = None, every: float = 0.1
) -> None:
    """Until cancelled: make status follow spec (all replicas ready), or never report more
    than `stuck_at` ready (pods that never start)."""
    async with admin(server) as api:
        reported: tuple[int, int] | None = None
        while True:
            desired = await spec_replicas(api, w)
            ready = desired if stuck_at is None else min(desired, stuck_at)
            if reported != (desired, ready):
                await set_ready(api, w, desired, ready)
                reported = (desired, ready)
            await anyio.sleep(every)
