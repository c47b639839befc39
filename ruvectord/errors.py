"""Typed errors a user can cause; the CLI maps every `UserError` to exit code 2."""

from __future__ import annotations


class RuvectordError(Exception):
    """Base of every error ruvectord raises on purpose."""


class UserError(RuvectordError):
    """Bad input from the operator: config, CLI argument, SQL argument, missing object."""


class ConfigError(UserError):
    """The configuration file is missing, unparsable or invalid; one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class DatabaseUnavailable(RuvectordError):
    """The database could not be reached within the configured retries."""


class CollectionError(UserError):
    """A configured collection cannot be monitored (missing table, column, ...)."""

    def __init__(self, collection: str, reason: str) -> None:
        self.collection = collection
        self.reason = reason
        super().__init__(f"collection {collection!r}: {reason}")


class KubernetesError(RuvectordError):
    """A Kubernetes API call failed; the message says what, where and what to do."""


class KubeUnreachable(KubernetesError):
    """The API server did not answer (connection refused, DNS, TLS, timeout)."""


class KubeForbidden(KubernetesError):
    """The API server rejected the credentials (401) or the role lacks a verb (403)."""


class WorkloadNotFound(KubernetesError):
    """The configured workload (or its resource type) does not exist."""


class NotReady(KubernetesError):
    """The workload did not report enough ready replicas within the timeout."""


class EndpointError(RuvectordError):
    """The metrics endpoint cannot listen on its configured address (a runtime failure)."""
