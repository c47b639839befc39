"""Dynamic configuration: the settings the database may change while every daemon runs.

As Patroni separates dynamic from local settings: thresholds, bounds, approval lists and
windows (`healing.*`, the hysteresis part of `integrity.*`, `integrity.budgets.*`) may be set
with `ruvector_healing_configure` (or `ruvectord config set`); they are stored in
ruvector.healing_config and every daemon applies them on its next cycle, over its YAML file.
Everything else -- the DSN, listen addresses, the state directory, the collections -- is
static: YAML only, and a restart. Pure: the models in, the schema and the merged config out.
"""

from __future__ import annotations

import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import UnionType
from typing import Any, Literal

from annotated_types import Ge, Gt, Le, Lt
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from ruvectord.config import Config, describe_errors
from ruvectord.errors import ConfigError

STATIC_UNDER = (
    "integrity.sample_interval_seconds",
    "integrity.lambda2",
    "integrity.sample_",
    "integrity.prune_",
    "integrity.graph_",
    "integrity.signing_",
    "integrity.trusted_",
)


def is_dynamic(key: str) -> bool:
    if key.startswith("healing."):
        return True
    if key.startswith("integrity."):
        return not key.startswith(STATIC_UNDER)
    return False


Kind = Literal["bool", "int", "float", "text", "text_list", "static"]


@dataclass(frozen=True, slots=True)
class SchemaRow:
    """One setting as ruvector.config_schema holds it (what configure may set, and how)."""

    key: str
    kind: Kind
    minimum: float | None = None
    minimum_exclusive: bool = False
    maximum: float | None = None
    maximum_exclusive: bool = False
    choices: tuple[str, ...] | None = None


def schema(model: type[BaseModel] = Config) -> list[SchemaRow]:
    """Every leaf setting of the models, dynamic ones with their kind and bounds."""
    return sorted(_walk(model, ""), key=lambda r: r.key)


def _walk(model: type[BaseModel], prefix: str) -> Iterator[SchemaRow]:
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        section = _section(field.annotation)
        if section is not None:
            yield from _walk(section, key + ".")
            continue
        if not is_dynamic(key):
            yield SchemaRow(key, "static")
            continue
        yield _row(key, field)


def _section(annotation: Any) -> type[BaseModel] | None:
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, UnionType) and len(args) == 1:
        annotation = args[0]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _row(key: str, field: FieldInfo) -> SchemaRow:
    ann = field.annotation
    args = [a for a in typing.get_args(ann) if a is not type(None)]
    if typing.get_origin(ann) in (typing.Union, UnionType) and len(args) == 1:
        ann = args[0]
    if typing.get_origin(ann) is Literal:
        return SchemaRow(key, "text", choices=tuple(str(a) for a in typing.get_args(ann)))
    if typing.get_origin(ann) is tuple:
        return SchemaRow(key, "text_list")
    base = typing.get_args(ann)[0] if typing.get_origin(ann) is typing.Annotated else ann
    kinds: dict[Any, Kind] = {bool: "bool", int: "int", float: "float", str: "text"}
    kind = kinds.get(base, "static")
    lo = hi = None
    lo_x = hi_x = False
    for c in _constraints(field):
        if isinstance(c, Ge):
            lo = float(c.ge)  # type: ignore[arg-type]
        elif isinstance(c, Gt):
            lo, lo_x = float(c.gt), True  # type: ignore[arg-type]
        elif isinstance(c, Le):
            hi = float(c.le)  # type: ignore[arg-type]
        elif isinstance(c, Lt):
            hi, hi_x = float(c.lt), True  # type: ignore[arg-type]
    return SchemaRow(key, kind, lo, lo_x, hi, hi_x)


def _constraints(field: FieldInfo) -> list[Any]:
    found: list[Any] = list(field.metadata)
    for arg in typing.get_args(field.annotation):
        for extra in typing.get_args(arg)[1:]:
            found.extend(extra.metadata if isinstance(extra, FieldInfo) else [extra])
    return found


# --------------------------------------------------------------------------- merging


Source = Literal["default", "yaml", "database"]


def effective(local: Config, overrides: Mapping[str, Any]) -> Config:
    """The local (YAML, environment) config with the database's dynamic overrides on top.

    Raises ConfigError, worded as for the YAML file, when the merge is not valid; a static
    key among the overrides is ignored (configure refuses those; a row written by hand is
    not obeyed).
    """
    data = local.model_dump(mode="json", exclude_unset=True)
    for key, value in overrides.items():
        if not is_dynamic(key):
            continue
        cursor = data
        parts = key.split(".")
        for part in parts[:-1]:
            nxt = cursor.get(part)
            if not isinstance(nxt, dict):
                nxt = cursor[part] = {}
            cursor = nxt
        cursor[parts[-1]] = value
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(describe_errors(exc, "ruvector_healing_configure")) from None


def values(config: Config) -> dict[str, Any]:
    """Every leaf setting as a dotted key and its JSON value (collections left out)."""
    out: dict[str, Any] = {}

    def walk(data: Mapping[str, Any], prefix: str) -> None:
        for k, v in data.items():
            if isinstance(v, dict):
                walk(v, f"{prefix}{k}.")
            elif prefix or k != "collections":
                out[f"{prefix}{k}"] = v

    walk(config.model_dump(mode="json"), "")
    return out


def sources(local: Config, overrides: Mapping[str, Any]) -> dict[str, Source]:
    """Where each setting's value comes from: the database, the local file, or the default."""
    local_keys = set(_set_keys(local, ""))
    out: dict[str, Source] = {}
    for key in values(local):
        if key in overrides and is_dynamic(key):
            out[key] = "database"
        elif key in local_keys:
            out[key] = "yaml"
        else:
            out[key] = "default"
    return out


def _set_keys(model: BaseModel, prefix: str) -> Iterator[str]:
    for name in model.model_fields_set:
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            yield from _set_keys(value, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}"
