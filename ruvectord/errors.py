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


class EndpointError(RuvectordError):
    """The metrics endpoint cannot listen on its configured address (a runtime failure)."""
