"""The one YAML configuration file: pydantic models, loading, env overrides, error messages.

Every default here comes from the self-healing design (../shared/seed) or the integrity spec;
`config/ruvectord.example.yaml` documents each key and is checked against these models by the
test suite, so the two cannot drift apart. Every number is finite (no .inf, no .nan) and has a
documented upper bound, and every rule the runtime relies on between keys is checked here, so
whatever `run` would trip over, `check-config` rejects first, naming the key.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
import socket
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Self

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from ruvectord.errors import ConfigError
from ruvectord.identifiers import parse_name, quote

DEFAULT_CONFIG_PATH = Path("/etc/ruvectord/ruvectord.yaml")
ENV_PREFIX = "RUVECTORD_"

_COLLECTION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_PUBLIC_KEY = re.compile(r"^[0-9a-fA-F]{64}$")

DAY = 86400.0
WEEK = 7 * DAY

Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
# shared by integrity.budgets and each collection's overrides
MaxQueue = Annotated[int, Field(ge=1, le=100_000)]
LagBudgetSeconds = Annotated[float, Field(gt=0, le=DAY)]
LagBudgetBytes = Annotated[int, Field(ge=1, le=2**40)]
LatencyBudgetMs = Annotated[float, Field(gt=0, le=600_000)]
HotLoadRatio = Annotated[float, Field(gt=1.0, le=1000)]
HotOpsPerSecond = Annotated[float, Field(gt=0, le=10_000_000)]
FragmentationBudget = Annotated[float, Field(gt=0, le=1.0)]
LockWaitBudgetSeconds = Annotated[float, Field(gt=0, le=3600)]
PartitionLinks = Annotated[int, Field(ge=1, le=64)]
MaxCentroids = Annotated[int, Field(ge=0, le=10_000)]
ClassifierCount = Annotated[int, Field(ge=0, le=10_000)]
Percent = Annotated[float, Field(ge=0, le=100)]
IntPercent = Annotated[int, Field(ge=0, le=100)]


class _Section(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, validate_default=True, allow_inf_nan=False
    )


class DatabaseConfig(_Section):
    dsn: str = "postgresql://ruvectord@/postgres?host=/var/run/postgresql"
    password_file: Path | None = None
    embedded: bool = False
    embedded_data_dir: Path = Path("/var/lib/ruvectord/pgdata")
    statement_timeout_seconds: Annotated[float, Field(gt=0, le=600)] = 5.0
    connect_timeout_seconds: Annotated[float, Field(gt=0, le=600)] = 10.0
    connect_retries: Annotated[int, Field(ge=0, le=100)] = 5
    pool_min_size: Annotated[int, Field(ge=1, le=100)] = 1
    pool_max_size: Annotated[int, Field(ge=1, le=100)] = 4
    migrate_on_start: bool = True

    @field_validator("dsn")
    @classmethod
    def _uri(cls, value: str) -> str:
        if not value.startswith(("postgresql://", "postgres://")):
            # never echo the value: it may hold a password
            raise ValueError("expected a URI such as postgresql://user@host:5432/dbname")
        return value

    @model_validator(mode="after")
    def _pool_sizes(self) -> Self:
        if self.pool_min_size > self.pool_max_size:
            raise ValueError(
                f"pool_min_size ({self.pool_min_size}) is greater than pool_max_size "
                f"({self.pool_max_size})"
            )
        return self


class DaemonConfig(_Section):
    state_directory: Path = Path("/var/lib/ruvectord")
    node_name: str = Field(default_factory=socket.gethostname)  # null too: see below
    shutdown_timeout_seconds: Annotated[float, Field(gt=0, le=3600)] = 15.0

    @field_validator("node_name", mode="before")
    @classmethod
    def _node_name(cls, value: Any) -> Any:
        if value is None:
            return socket.gethostname()  # null or absent: this host's name
        if isinstance(value, str):
            if not value.strip() or len(value) > 255:
                raise ValueError(f"{value!r} is not a node name (1 to 255 characters)")
            if value.startswith("<") and value.endswith(">"):
                raise ValueError(
                    f"{value!r} is a placeholder; leave node_name null to use the host name"
                )
        return value


class MetricsConfig(_Section):
    enabled: bool = True
    listen_address: str = "127.0.0.1:10937"  # see the example file for why this port

    @field_validator("listen_address")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
            raise ValueError(
                f"{value!r} is not HOST:PORT with a port in 0..65535 (0 picks a free port)"
            )
        host = host.strip("[]")
        if host not in ("", "localhost"):
            try:
                ipaddress.ip_address(host)
            except ValueError:
                raise ValueError(f"{value!r}: {host!r} is not an IP address") from None
        return value

    @property
    def host(self) -> str:
        return self.listen_address.rpartition(":")[0].strip("[]") or "0.0.0.0"

    @property
    def port(self) -> int:
        return int(self.listen_address.rpartition(":")[2])


class LoggingConfig(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


class Budgets(_Section):
    """What "healthy" means for the capacity formulas of the contracted graph."""

    max_queue: MaxQueue = 32
    lag_budget_seconds: LagBudgetSeconds = 30.0
    lag_budget_bytes: LagBudgetBytes = 256 * 1024 * 1024
    latency_budget_ms: LatencyBudgetMs = 100.0
    hot_load_ratio: HotLoadRatio = 2.0
    hot_ops_per_second: HotOpsPerSecond = 200.0
    fragmentation_budget: FragmentationBudget = 0.6
    lock_wait_budget_seconds: LockWaitBudgetSeconds = 10.0
    partition_links: PartitionLinks = 4
    max_centroids: MaxCentroids = 1000


class BudgetOverrides(_Section):
    """Per-collection budgets: any key left out takes the global value."""

    max_queue: MaxQueue | None = None
    lag_budget_seconds: LagBudgetSeconds | None = None
    lag_budget_bytes: LagBudgetBytes | None = None
    latency_budget_ms: LatencyBudgetMs | None = None
    hot_load_ratio: HotLoadRatio | None = None
    hot_ops_per_second: HotOpsPerSecond | None = None
    fragmentation_budget: FragmentationBudget | None = None
    lock_wait_budget_seconds: LockWaitBudgetSeconds | None = None
    partition_links: PartitionLinks | None = None
    max_centroids: MaxCentroids | None = None

    def apply(self, base: Budgets) -> Budgets:
        return base.model_copy(update=self.model_dump(exclude_none=True))


class IntegrityConfig(_Section):
    sample_interval_seconds: Annotated[float, Field(ge=0.1, le=3600)] = 60.0
    threshold_high: Fraction = 0.8
    threshold_low: Fraction = 0.3
    degrade_samples: Annotated[int, Field(ge=1, le=1000)] = 3
    critical_samples: Annotated[int, Field(ge=1, le=1000)] = 2
    recovery_offset: Annotated[float, Field(ge=0, le=1)] = 0.1
    recovery_hold_seconds: Annotated[float, Field(ge=0, le=DAY)] = 300.0
    cooldown_seconds: Annotated[float, Field(ge=0, le=DAY)] = 60.0
    lambda2_enabled: bool = True
    lambda2_dense_limit: Annotated[int, Field(ge=0, le=2000)] = 200
    sample_retention_days: Annotated[float, Field(gt=0, le=3650)] = 7.0
    prune_batch_size: Annotated[int, Field(ge=1, le=1_000_000)] = 5000
    # a sample's graph is written at every transition and at most this often otherwise
    # (ruvector.graph_snapshots); the latest sample's is served from memory (/status?graph=1)
    graph_snapshot_seconds: Annotated[float, Field(ge=1, le=WEEK)] = 300.0
    signing_key_file: Path | None = None
    # public keys (64 hex digits, the raw Ed25519 key) `audit verify` trusts besides this
    # daemon's own key file: those of the other daemons writing to the same database
    trusted_public_keys: tuple[str, ...] = ()
    budgets: Budgets = Budgets()

    @field_validator("trusted_public_keys")
    @classmethod
    def _hex_keys(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for key in value:
            if not _PUBLIC_KEY.match(key):
                raise ValueError(
                    f"{key!r} is not an Ed25519 public key as 64 hex digits "
                    "(`ruvectord audit key` prints this daemon's)"
                )
        return value

    @model_validator(mode="after")
    def _thresholds(self) -> Self:
        if self.threshold_low >= self.threshold_high:
            raise ValueError(
                f"threshold_low ({self.threshold_low}) must be below threshold_high "
                f"({self.threshold_high})"
            )
        if self.threshold_high + self.recovery_offset >= 1.0:
            # lambda_cut is at most 1: a bar at or above it means stress never ends
            raise ValueError(
                f"threshold_high ({self.threshold_high}) + recovery_offset "
                f"({self.recovery_offset}) must be below 1, or stress could never recover"
            )
        return self


AUDIT_FLOOR_DAYS = 30.0  # ruvector.prune_audit never deletes younger events, whatever is asked
HISTORY_FLOOR_DAYS = 7.0  # nor ruvector.prune_healing_history


class RetentionConfig(_Section):
    """How long what grows is kept (integrity_samples: integrity.sample_retention_days).

    The acting daemon prunes every `daemon` housekeeping round, `integrity.prune_batch_size`
    rows at a time. The audit trail is kept longest; its floor is also enforced in the
    database, against a daemon role that would ask for less."""

    periodic_graph_days: Annotated[float, Field(gt=0, le=3650)] = 7.0
    transition_graph_days: Annotated[float, Field(gt=0, le=3650)] = 90.0
    audit_days: Annotated[float, Field(ge=AUDIT_FLOOR_DAYS, le=36500)] = 365.0
    # finished healing actions, their outcomes, processed requests (kept at least as long as
    # healing.learning_window_days, which the strategy weights are learnt over)
    healing_history_days: Annotated[float, Field(ge=HISTORY_FLOOR_DAYS, le=3650)] = 180.0


class ClassifierConfig(_Section):
    """How the witness edges become a problem class (healing/problems.py).

    The classifier reads the capacities the cut used: a class fires when its edges carry at
    least `min_share` of the capacity missing across the cut. The seed's counts
    (hotspot_partition_links, skew_centroids, contention_dependencies) and
    fragmentation_pct disagreed with the cut -- a job on one partition, 12-30 %
    fragmentation or a 3-list skew lowered lambda but fired no class -- and are ignored with
    a warning when a file still sets them.
    """

    min_share: Annotated[float, Field(gt=0, le=1.0)] = 0.5
    memory_pressure_pct: Percent = 85.0

    @model_validator(mode="before")
    @classmethod
    def _retired(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key in _RETIRED_CLASSIFIER_KEYS & data.keys():
                data = {k: v for k, v in data.items() if k != key}
                warnings.warn(
                    f"healing.classifier.{key} is ignored: the classifier now reads the "
                    "capacities the cut used (see healing.classifier.min_share and "
                    "integrity.budgets); remove it",
                    FutureWarning,
                    stacklevel=2,
                )
        return data


_RETIRED_CLASSIFIER_KEYS = frozenset(
    {"hotspot_partition_links", "skew_centroids", "contention_dependencies", "fragmentation_pct"}
)


class ThrottleConfig(_Section):
    stress_pct: IntPercent = 50
    critical_pct: IntPercent = 90
    bulk_extra_pct: IntPercent = 10
    retry_after_seconds: Annotated[float, Field(ge=0, le=3600)] = 5.0
    install_trigger: bool = True
    # letting go (healing/brake.py): in steps, holding each level, longer holds when the load
    # comes back soon after a step or a lift
    lift_steps: Annotated[int, Field(ge=1, le=20)] = 3
    lift_hold_seconds: Annotated[float, Field(ge=0, le=DAY)] = 30.0
    lift_backoff: Annotated[float, Field(ge=1.0, le=10.0)] = 2.0
    lift_max_hold_seconds: Annotated[float, Field(ge=0, le=DAY)] = 600.0
    # a last level at 0 %, held, before the brake is lifted: a load that returns at full rate
    # as soon as it is let through puts the brake back instead of degrading again
    lift_probation: bool = True

    @model_validator(mode="after")
    def _holds(self) -> ThrottleConfig:
        if self.lift_max_hold_seconds < self.lift_hold_seconds:
            raise ValueError(
                f"lift_max_hold_seconds ({self.lift_max_hold_seconds:g}) must be at least "
                f"lift_hold_seconds ({self.lift_hold_seconds:g})"
            )
        return self


def _windows(value: tuple[str, ...]) -> tuple[str, ...]:
    from ruvectord.healing.windows import WindowError, parse  # pure, no config import

    for text in value:
        try:
            parse(text)
        except WindowError as exc:
            raise ValueError(str(exc)) from None
    return value


Interval = Annotated[float, Field(ge=0, le=30 * DAY)]
TargetCap = Annotated[int, Field(ge=1, le=1000)]
Headroom = Annotated[float, Field(ge=1.0, le=100.0)]


Windows = Annotated[tuple[str, ...], AfterValidator(_windows)]


class PauseMaintenanceConfig(_Section):
    enabled: bool = True
    # e.g. ["Sat 01:00-05:00 Europe/Berlin"]; empty: any time. Outside them it is not chosen.
    windows: Windows = ()
    min_interval_per_target_seconds: Interval = 0.0
    max_targets_per_action: TargetCap = 8  # partitions and jobs paused per action, each
    max_pause_seconds: Annotated[float, Field(ge=1, le=DAY)] = 1800.0
    cancel_autovacuum: bool = True  # cancel a running (non-wraparound) autovacuum worker
    cancel_manual_sessions: bool = False  # a person's VACUUM / REINDEX / CREATE INDEX / CLUSTER
    pause_cron_jobs: bool = True
    drain_seconds: Annotated[float, Field(ge=0, le=600)] = 10.0  # an app job's current batch


class CompactIndexesConfig(_Section):
    enabled: bool = True
    # e.g. ["Sat 01:00-05:00 Europe/Berlin"]; empty: any time. Outside them it is not chosen.
    windows: Windows = ()
    min_interval_per_target_seconds: Interval = 6 * 3600.0
    max_targets_per_action: TargetCap = 2  # indexes per action
    time_budget_seconds: Annotated[float, Field(ge=1, le=DAY)] = 1800.0
    disk_headroom_factor: Headroom = 2.0  # free disk must be this many times the index size
    # when the daemon is not on the database host it cannot see free disk: the database may
    # grow to this many bytes (0: unknown, and the strategy will not act off-host)
    disk_budget_bytes: Annotated[int, Field(ge=0, le=2**60)] = 0
    recall_floor: Fraction = 0.9  # below: flagged and alerted (a reindex is not undone)
    vacuum_first: bool = True  # a plain VACUUM of the partition before its REINDEX


class RebuildCentroidsConfig(_Section):
    enabled: bool = True
    # e.g. ["Sat 01:00-05:00 Europe/Berlin"]; empty: any time. Outside them it is not chosen.
    windows: Windows = ()
    min_interval_per_target_seconds: Interval = 24 * 3600.0
    max_targets_per_action: TargetCap = 1  # IVFFlat indexes per action
    time_budget_seconds: Annotated[float, Field(ge=1, le=DAY)] = 3600.0
    disk_headroom_factor: Headroom = 2.0
    disk_budget_bytes: Annotated[int, Field(ge=0, le=2**60)] = 0
    recall_floor: Fraction = 0.9  # below: the new index is dropped, the old one kept
    swap_lock_timeout_seconds: Annotated[float, Field(gt=0, le=60)] = 2.0


class RecallCanaryConfig(_Section):
    """Exact top-k by sequential scan vs the index's top-k over a fixed probe set."""

    probes: Annotated[int, Field(ge=1, le=1000)] = 20  # probe vectors per partition
    k: Annotated[int, Field(ge=1, le=1000)] = 10
    ivfflat_probes: Annotated[int, Field(ge=0, le=32768)] = 0  # 0: the server's setting
    hnsw_ef_search: Annotated[int, Field(ge=0, le=1000)] = 0  # 0: the server's setting


class StrategiesConfig(_Section):
    pause_maintenance: PauseMaintenanceConfig = PauseMaintenanceConfig()
    compact_indexes: CompactIndexesConfig = CompactIndexesConfig()
    rebuild_centroids: RebuildCentroidsConfig = RebuildCentroidsConfig()
    recall_canary: RecallCanaryConfig = RecallCanaryConfig()

    def limits(
        self, name: str
    ) -> PauseMaintenanceConfig | CompactIndexesConfig | RebuildCentroidsConfig | None:
        """The windows and per-target limits of a strategy (None: it has none)."""
        found = getattr(self, name, None)
        if isinstance(
            found, PauseMaintenanceConfig | CompactIndexesConfig | RebuildCentroidsConfig
        ):
            return found
        return None


class HealingConfig(_Section):
    enabled: bool = True
    min_healing_interval_seconds: Annotated[float, Field(ge=0, le=WEEK)] = 300.0
    max_attempts_per_window: Annotated[int, Field(ge=1, le=100_000)] = 3
    attempt_window_seconds: Annotated[float, Field(gt=0, le=WEEK)] = 3600.0
    max_auto_heal_impact: Fraction = 0.5
    require_approval_strategies: tuple[str, ...] = ("scale_replicas",)
    approval_ttl_seconds: Annotated[float, Field(gt=0, le=WEEK)] = 3600.0
    learning_enabled: bool = True
    learning_window_days: Annotated[float, Field(gt=0, le=365)] = 30.0
    ineffective_after: Annotated[int, Field(ge=0, le=1000)] = 3
    settle_seconds: Annotated[float, Field(ge=0, le=3600)] = 10.0
    min_improvement: Annotated[float, Field(ge=0, le=10)] = 0.10
    # a brake (throttle) is a lease the acting daemon renews every sample while the collection
    # is degraded: it lapses after this many sample intervals without a renewal
    lease_samples: Annotated[int, Field(ge=1, le=100)] = 3
    classifier: ClassifierConfig = ClassifierConfig()
    throttle: ThrottleConfig = ThrottleConfig()
    strategies: StrategiesConfig = StrategiesConfig()


class KubernetesConfig(_Section):
    """How to reach the Kubernetes API (used only when a collection has a `replicas` target)."""

    kubeconfig: Path | None = None  # None: in-cluster (the pod's service account)
    request_timeout_seconds: Annotated[float, Field(gt=0, le=300, allow_inf_nan=False)] = 10.0
    poll_interval_seconds: Annotated[float, Field(ge=0.05, le=60, allow_inf_nan=False)] = 2.0


_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(
    r"^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)


class ReplicaTarget(_Section):
    """The Kubernetes workload scale_replicas may scale for a collection."""

    kind: Literal["Deployment", "StatefulSet", "Cluster"]  # Cluster: CloudNativePG
    namespace: str
    name: str
    max_replicas: Annotated[int, Field(ge=1, le=1000)]
    ready_timeout_seconds: Annotated[float, Field(gt=0, le=1800, allow_inf_nan=False)] = 300.0

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str) -> str:
        if not _DNS_LABEL.match(value):
            raise ValueError(
                f"{value!r} is not a Kubernetes namespace (lower-case letters, digits and -, "
                "at most 63)"
            )
        return value

    @field_validator("name")
    @classmethod
    def _object_name(cls, value: str) -> str:
        if not _DNS_SUBDOMAIN.match(value):
            raise ValueError(
                f"{value!r} is not a Kubernetes object name (lower-case letters, digits, - and ., "
                "at most 253)"
            )
        return value


class ColdTier(_Section):
    """Where evict_cold_data puts rows nobody has written or read for a while."""

    # the placement value of the cold partition (its own partition, created by the DBA
    # without an HNSW index, so cold rows cost no index memory; searches still find them)
    value: str
    # a timestamptz column the application sets when it writes (or reads) a row
    age_column: str
    min_age_seconds: Annotated[float, Field(ge=60, le=3650 * DAY)] = 30 * DAY

    @field_validator("value", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("age_column")
    @classmethod
    def _column(cls, value: str) -> str:
        return quote(parse_name(value, parts=1)[0])

    @property
    def age_attname(self) -> str:
        return parse_name(self.age_column, parts=1)[0]


class PlacementConfig(_Section):
    """A collection's opt-in to the strategies that move rows (rebalance_partitions,
    drain_hot_partition, evict_cold_data): the column they may change, and their bounds.

    The column is the LIST or RANGE partition key -- a placement key such as `shard`, never
    business data; the key column names each row (unique across the collection, an integer).
    `check-config --online` and the strategies' plan validate both against the real table.
    """

    column: str
    key_column: str = "id"
    max_rows_per_batch: Annotated[int, Field(ge=1, le=10_000)] = 100
    max_rows_per_action: Annotated[int, Field(ge=1, le=100_000)] = 2_000
    max_batches_per_second: Annotated[float, Field(gt=0, le=1000)] = 5.0
    # a batch waits at most this long for its two partitions' locks, else it is skipped
    lock_timeout_seconds: Annotated[float, Field(gt=0, le=10)] = 0.2
    # how long drain_hot_partition routes new writes away (renewed while degraded)
    drain_seconds: Annotated[float, Field(ge=1, le=DAY)] = 600.0
    cold: ColdTier | None = None

    @field_validator("column", "key_column")
    @classmethod
    def _column(cls, value: str) -> str:
        return quote(parse_name(value, parts=1)[0])

    @property
    def attname(self) -> str:
        return parse_name(self.column, parts=1)[0]

    @property
    def key_attname(self) -> str:
        return parse_name(self.key_column, parts=1)[0]

    @model_validator(mode="after")
    def _bounds(self) -> Self:
        if self.max_rows_per_batch > self.max_rows_per_action:
            raise ValueError(
                f"max_rows_per_batch ({self.max_rows_per_batch}) is greater than "
                f"max_rows_per_action ({self.max_rows_per_action})"
            )
        if self.attname == self.key_attname:
            raise ValueError(f"column and key_column are both {self.column}")
        return self


class TenantsConfig(_Section):
    """Per-tenant integrity of a collection with a tenant column (integrity/tenants.py)."""

    # the busiest tenants get a lambda, a state and metric series of their own; the rest (and
    # tenants that share a partition) are one aggregate, "(other)": bounded cardinality
    top: Annotated[int, Field(ge=1, le=100)] = 10


class CollectionConfig(_Section):
    name: str
    table: str
    vector_column: str
    # the LIST partition key that names each row's tenant: per-tenant integrity (README
    # "Multi-tenant collections")
    tenant_column: str | None = None
    tenants: TenantsConfig = TenantsConfig()
    budgets: BudgetOverrides = BudgetOverrides()
    replicas: ReplicaTarget | None = None  # scale_replicas' Kubernetes workload
    placement: PlacementConfig | None = None  # the strategies that move rows

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _COLLECTION_NAME.match(value):
            raise ValueError(
                f"{value!r} is not a collection name (letters, digits, _ . -; at most 63)"
            )
        return value

    @field_validator("table")
    @classmethod
    def _table(cls, value: str) -> str:
        """PostgreSQL's rules (ruvectord/identifiers.py); kept in its canonical written form,
        e.g. `public.items` or `public."Items"`."""
        parts = parse_name(value, parts=2)
        if len(parts) == 1:
            parts = ("public", *parts)
        return ".".join(quote(p) for p in parts)

    @field_validator("vector_column", "tenant_column")
    @classmethod
    def _column(cls, value: str | None) -> str | None:
        if value is None:
            return None
        return quote(parse_name(value, parts=1)[0])

    @model_validator(mode="after")
    def _tenants(self) -> Self:
        # a non-default tenants block without a column is a mistake; the defaults written out
        # (a dumped or copied config) are not
        if self.tenant_column is None and self.tenants != TenantsConfig():
            raise ValueError("tenants needs tenant_column (the column naming each row's tenant)")
        if self.placement is not None and self.placement.column == self.tenant_column:
            # moving a row would hand it to another tenant: business data, never placement
            raise ValueError(
                f"placement.column {self.placement.column} is the tenant_column: the moving "
                "strategies change that column, which would move rows between tenants"
            )
        return self

    @property
    def schema_name(self) -> str:
        """The schema exactly as the catalog spells it (pg_namespace.nspname)."""
        return parse_name(self.table, parts=2)[0]

    @property
    def table_name(self) -> str:
        """The table exactly as the catalog spells it (pg_class.relname)."""
        return parse_name(self.table, parts=2)[1]

    @property
    def vector_attname(self) -> str:
        return parse_name(self.vector_column, parts=1)[0]

    @property
    def tenant_attname(self) -> str | None:
        return None if self.tenant_column is None else parse_name(self.tenant_column, parts=1)[0]


class Config(_Section):
    database: DatabaseConfig = DatabaseConfig()
    daemon: DaemonConfig = DaemonConfig()
    metrics: MetricsConfig = MetricsConfig()
    logging: LoggingConfig = LoggingConfig()
    integrity: IntegrityConfig = IntegrityConfig()
    retention: RetentionConfig = RetentionConfig()
    healing: HealingConfig = HealingConfig()
    kubernetes: KubernetesConfig = KubernetesConfig()
    collections: tuple[CollectionConfig, ...] = ()

    @field_validator("collections")
    @classmethod
    def _unique(cls, value: tuple[CollectionConfig, ...]) -> tuple[CollectionConfig, ...]:
        seen: set[str] = set()
        for c in value:
            if c.name in seen:
                raise ValueError(f"collection name {c.name!r} appears twice")
            seen.add(c.name)
        return value

    @property
    def signing_key_path(self) -> Path:
        return self.integrity.signing_key_file or self.daemon.state_directory / "signing.key"

    @property
    def has_kubernetes_targets(self) -> bool:
        return any(c.replicas is not None for c in self.collections)

    def budgets_for(self, collection: CollectionConfig) -> Budgets:
        return collection.budgets.apply(self.integrity.budgets)

    def collection(self, name: str) -> CollectionConfig:
        for c in self.collections:
            if c.name == name:
                return c
        known = ", ".join(c.name for c in self.collections) or "none configured"
        raise ConfigError([f"unknown collection {name!r} (known: {known})"])


# --------------------------------------------------------------------------- loading


def load_config(
    path: Path | str | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Read, merge env overrides into, and validate the config file.

    Raises `ConfigError` whose `problems` are one line per problem, each naming the YAML path
    (and line when known), the bad value and the rule.
    """
    path = Path(path) if path is not None else DEFAULT_CONFIG_PATH
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{path}: config file not found"]) from None
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read config file: {exc.strerror}"]) from None
    return parse_config(text, source=str(path), env=env, overrides=overrides)


def parse_config(
    text: str,
    *,
    source: str = "<config>",
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        raise ConfigError([f"{where}: invalid YAML: {exc.problem}"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"{source}: invalid YAML: {exc}"]) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([f"{source}: the top level must be a mapping, not {type(data).__name__}"])
    lines = _line_numbers(node)
    origins: dict[tuple[str, ...], str] = {}
    problems: list[str] = []
    for key, raw in sorted((env if env is not None else os.environ).items()):
        # only RUVECTORD_<SECTION>__<KEY> is an override; RUVECTORD_CONFIG and any other
        # variable that merely shares the prefix is none of our business
        if not key.startswith(ENV_PREFIX) or "__" not in key[len(ENV_PREFIX) :]:
            continue
        keypath = tuple(p.lower() for p in key[len(ENV_PREFIX) :].split("__"))
        if not all(keypath):
            problems.append(f"env {key}: empty key segment (use RUVECTORD_SECTION__KEY)")
            continue
        try:
            value = yaml.safe_load(raw) if raw.strip() else raw
        except yaml.YAMLError:
            value = raw
        if not _set_path(data, keypath, value):
            problems.append(f"env {key}: {'.'.join(keypath[:-1])} is not a mapping")
            continue
        origins[keypath] = f"env {key}"
    for dotted, value in (overrides or {}).items():
        keypath = tuple(dotted.split("."))
        _set_path(data, keypath, value)
        origins[keypath] = "command line"
    if problems:
        raise ConfigError(problems)
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(
            [_describe(err, lines, origins, source) for err in exc.errors(include_url=False)]
        ) from None


def describe_errors(exc: ValidationError, origin: str) -> list[str]:
    """One line per problem, worded as for the YAML file, saying where the values came from."""
    return [
        f"{_describe(err, {}, {}, origin)} (from {origin})" for err in exc.errors(include_url=False)
    ]


def _set_path(data: dict[str, Any], keypath: tuple[str, ...], value: Any) -> bool:
    cursor: Any = data
    for part in keypath[:-1]:
        nxt = cursor.get(part)
        if nxt is None:
            nxt = cursor[part] = {}
        if not isinstance(nxt, dict):
            return False
        cursor = nxt
    cursor[keypath[-1]] = value
    return True


def _line_numbers(node: yaml.Node | None) -> dict[tuple[str | int, ...], int]:
    lines: dict[tuple[str | int, ...], int] = {}

    def walk(n: yaml.Node, path: tuple[str | int, ...]) -> None:
        lines[path] = n.start_mark.line + 1
        if isinstance(n, yaml.MappingNode):
            for k, v in n.value:
                key = k.value if isinstance(k, yaml.ScalarNode) else str(k)
                lines[(*path, key)] = k.start_mark.line + 1
                walk(v, (*path, key))
                lines[(*path, key)] = k.start_mark.line + 1
        elif isinstance(n, yaml.SequenceNode):
            for i, item in enumerate(n.value):
                walk(item, (*path, i))

    if node is not None:
        walk(node, ())
    return lines


def _dotted(loc: tuple[str | int, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


_RULES: dict[str, Callable[[dict[str, Any]], str]] = {
    "greater_than_equal": lambda ctx: f"is not >= {ctx['ge']}",
    "greater_than": lambda ctx: f"is not > {ctx['gt']}",
    "less_than_equal": lambda ctx: f"is not <= {ctx['le']}",
    "less_than": lambda ctx: f"is not < {ctx['lt']}",
    "int_parsing": lambda ctx: "is not an integer",
    "int_type": lambda ctx: "is not an integer",
    "int_from_float": lambda ctx: "is not a whole number",
    "float_parsing": lambda ctx: "is not a number",
    "float_type": lambda ctx: "is not a number",
    "finite_number": lambda ctx: "is not a finite number",
    "bool_parsing": lambda ctx: "is not true or false",
    "bool_type": lambda ctx: "is not true or false",
    "string_type": lambda ctx: "is not a string",
    "literal_error": lambda ctx: f"is not one of {ctx['expected']}",
    "model_type": lambda ctx: "is not a mapping",
    "model_attributes_type": lambda ctx: "is not a mapping",
    "dict_type": lambda ctx: "is not a mapping",
    "tuple_type": lambda ctx: "is not a list",
    "list_type": lambda ctx: "is not a list",
    "path_type": lambda ctx: "is not a path",
}


def _describe(
    err: Any,
    lines: dict[tuple[str | int, ...], int],
    origins: dict[tuple[str, ...], str],
    source: str,
) -> str:
    loc: tuple[str | int, ...] = tuple(err["loc"])
    etype: str = err["type"]
    value = err.get("input")
    if etype == "extra_forbidden":
        key = str(loc[-1])
        parent = _model_at(loc[:-1])
        hint = ""
        if parent is not None:
            close = difflib.get_close_matches(key, list(parent.model_fields), n=1)
            if close:
                hint = f" (did you mean {close[0]!r}?)"
        rule = f"unknown key{hint}"
        text = f"{_dotted(loc)}: {rule}"
    elif etype == "missing":
        text = f"{_dotted(loc)}: required key is missing"
    else:
        describe = _RULES.get(etype)
        ctx = err.get("ctx") or {}
        if describe is not None:
            rule = describe(ctx)
        elif etype == "value_error":
            rule = str(ctx.get("error", err["msg"]))
        else:
            rule = err["msg"][0].lower() + err["msg"][1:]
        # validators of ours already quote the value in their message
        shown = "" if etype == "value_error" else _show(value)
        text = f"{_dotted(loc)}: {shown + ' ' if shown else ''}{rule}"
    str_loc = tuple(str(p) for p in loc)
    for n in range(len(str_loc), 0, -1):
        if str_loc[:n] in origins:
            return f"{text} (from {origins[str_loc[:n]]})"
    for n in range(len(loc), -1, -1):
        if loc[:n] in lines:
            return f"{text} ({source}, line {lines[loc[:n]]})"
    return text


def _show(value: Any) -> str:
    if isinstance(value, dict | list | tuple):
        return ""
    if isinstance(value, str):
        return repr(value)
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def _model_at(loc: tuple[str | int, ...]) -> type[BaseModel] | None:
    model: type[BaseModel] = Config
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        if field is None:
            return None
        ann = field.annotation
        candidates = [ann, *getattr(ann, "__args__", ())]
        nxt = next(
            (c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None
        )
        if nxt is None:
            return None
        model = nxt
    return model
