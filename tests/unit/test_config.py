"""Config: every malformed file gives exit code 2 and one line naming the key or the line."""

from __future__ import annotations

import math
import os
import re
import socket
import subprocess
import sys
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from annotated_types import Ge, Gt, Le, Lt
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from ruvectord import config as config_module
from ruvectord.cli import main
from ruvectord.config import CollectionConfig, Config, parse_config
from ruvectord.errors import ConfigError

EXAMPLE = Path(__file__).parents[2] / "config" / "ruvectord.example.yaml"

MALFORMED = [
    # (file text, a regex the error output must match)
    (
        "healing:\n  max_attempts_per_window: -1\n",
        r"^healing\.max_attempts_per_window: -1 is not >= 1 \(.*line 2\)$",
    ),
    (
        "healing:\n  max_attemps_per_window: 2\n",
        r"healing\.max_attemps_per_window: unknown key "
        r"\(did you mean 'max_attempts_per_window'\?\)",
    ),
    ("integrity:\n  threshold_high: high\n", r"integrity\.threshold_high: 'high' is not a number"),
    (
        "integrity:\n  threshold_low: 0.9\n",
        r"integrity: threshold_low \(0\.9\) must be below threshold_high \(0\.8\)",
    ),
    (
        "integrity:\n  budgets:\n    max_queue: 0\n",
        r"integrity\.budgets\.max_queue: 0 is not >= 1 \(.*line 3\)",
    ),
    ("logging:\n  level: loud\n", r"logging\.level: 'loud' is not one of 'debug', 'info'"),
    (
        "metrics:\n  listen_address: localhost\n",
        r"metrics\.listen_address: 'localhost' is not HOST:PORT",
    ),
    ("healing:\n  enabled: perhaps\n", r"healing\.enabled: 'perhaps' is not true or false"),
    (
        "database:\n  pool_min_size: 5\n  pool_max_size: 2\n",
        r"database: pool_min_size \(5\) is greater than pool_max_size \(2\)",
    ),
    (
        "collections:\n  - name: items\n    table: a.b.c\n    vector_column: v\n",
        r"collections\[0\]\.table: 'a\.b\.c' is not a name of the form schema\.table",
    ),
    (
        "collections:\n  - name: items\n    table: items\n",
        r"collections\[0\]\.vector_column: required key is missing \(.*line 2\)",
    ),
    (
        "collections:\n  - {name: a, table: t, vector_column: v}\n"
        "  - {name: a, table: u, vector_column: v}\n",
        r"collections: collection name 'a' appears twice",
    ),
    ("integrity: [1, 2]\n", r"^integrity: is not a mapping"),
    ("database:\n  dsn: [unterminated\n", r"line 3.*invalid YAML|:\d+:\d+: invalid YAML"),
    ("a: b: c\n", r":1:5: invalid YAML: mapping values are not allowed here"),
    ("- just\n- a list\n", r"the top level must be a mapping, not list"),
    ("healing:\n  max_auto_heal_impact: 1.5\n", r"healing\.max_auto_heal_impact: 1\.5 is not <= 1"),
    (
        "collections:\n  - name: items\n    table: t\n    vector_column: v\n"
        "    replicas: {kind: Pod, namespace: ruvector, name: r, max_replicas: 3}\n",
        r"collections\[0\]\.replicas\.kind: 'Pod' is not one of 'Deployment', 'StatefulSet' "
        r"or 'Cluster' \(.*line 5\)",
    ),
    (
        "collections:\n  - name: items\n    table: t\n    vector_column: v\n"
        "    replicas: {kind: Deployment, namespace: Ruvector, name: r, max_replicas: 5000}\n",
        r"collections\[0\]\.replicas\.namespace: 'Ruvector' is not a Kubernetes namespace"
        r"(.|\n)*collections\[0\]\.replicas\.max_replicas: 5000 is not <= 1000",
    ),
    (
        "collections:\n  - name: items\n    table: t\n    vector_column: v\n"
        "    replicas: {kind: Deployment, namespace: ruvector, name: r}\n",
        r"collections\[0\]\.replicas\.max_replicas: required key is missing",
    ),
    (
        "kubernetes:\n  request_timeout_seconds: .inf\n",
        r"^kubernetes\.request_timeout_seconds: \.inf is not a finite number \(.*line 2\)$",
    ),
    ("kubernetes:\n  kubeconfg: /x\n", r"kubernetes\.kubeconfg: unknown key \(did you mean"),
    (
        "integrity:\n  threshold_high: 0.95\n",
        r"integrity: threshold_high \(0\.95\) \+ recovery_offset \(0\.1\) must be below 1",
    ),
    (
        "database:\n  dsn: host=db user=app password=hunter2\n",
        r"^database\.dsn: expected a URI such as postgresql://user@host:5432/dbname \(.*line 2\)$",
    ),
    ("daemon:\n  node_name: <hostname>\n", r"daemon\.node_name: '<hostname>' is a placeholder"),
    (
        "healing:\n  settle_seconds: .inf\n",
        r"^healing\.settle_seconds: \.inf is not a finite number",
    ),
]


@pytest.mark.parametrize(("text", "expected"), MALFORMED)
def test_malformed_config_exits_2_naming_the_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, expected: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    assert main(["check-config", "-c", str(path)]) == 2
    err = capsys.readouterr().err
    assert re.search(expected, err, re.MULTILINE), err
    assert "hunter2" not in err


def test_missing_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", "-c", str(tmp_path / "nope.yaml")]) == 2
    assert "nope.yaml: config file not found" in capsys.readouterr().err


def test_run_refuses_an_invalid_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("integrity:\n  degrade_samples: 0\n")
    assert main(["run", "-c", str(path)]) == 2
    assert "integrity.degrade_samples: 0 is not >= 1" in capsys.readouterr().err


def test_valid_config_prints_ok(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "good.yaml"
    path.write_text(
        f"daemon: {{state_directory: {tmp_path}}}\n"
        "collections:\n  - {name: items, table: items, vector_column: embedding}\n"
    )
    assert main(["check-config", "-c", str(path)]) == 0
    assert capsys.readouterr().out == "ok\n"
    cfg = parse_config(path.read_text())
    assert cfg.collections[0].table == "public.items"


def test_several_problems_are_all_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config("healing:\n  max_attempts_per_window: 0\n  settle_seconds: -2\nfoo: 1\n")
    assert len(exc.value.problems) == 3


def test_env_overrides_nested_keys_and_are_validated() -> None:
    cfg = parse_config(
        "integrity:\n  budgets:\n    max_queue: 8\n",
        env={
            "RUVECTORD_INTEGRITY__BUDGETS__MAX_QUEUE": "64",
            "RUVECTORD_HEALING__ENABLED": "false",
        },
    )
    assert cfg.integrity.budgets.max_queue == 64
    assert cfg.healing.enabled is False
    with pytest.raises(ConfigError) as exc:
        parse_config("", env={"RUVECTORD_HEALING__MAX_ATTEMPTS_PER_WINDOW": "-3"})
    assert exc.value.problems == [
        "healing.max_attempts_per_window: -3 is not >= 1 "
        "(from env RUVECTORD_HEALING__MAX_ATTEMPTS_PER_WINDOW)"
    ]
    with pytest.raises(ConfigError, match=r"healing\.bogus: unknown key"):
        parse_config("", env={"RUVECTORD_HEALING__BOGUS": "1"})


def test_collection_budgets_override_only_what_they_name() -> None:
    cfg = parse_config(
        "integrity:\n  budgets: {max_queue: 10, hot_load_ratio: 3}\n"
        "collections:\n  - {name: a, table: t, vector_column: v, budgets: {max_queue: 99}}\n"
    )
    b = cfg.budgets_for(cfg.collections[0])
    assert (b.max_queue, b.hot_load_ratio) == (99, 3.0)


def test_example_config_documents_every_key_with_its_default() -> None:
    """The example file is the documentation: it must list every key, at its default."""
    example = yaml.safe_load(EXAMPLE.read_text())
    loaded = parse_config(yaml.safe_dump(example), env={})
    assert loaded == Config()
    assert loaded.daemon.node_name == socket.gethostname()  # node_name: null is the host name

    def keys(model: type[BaseModel], prefix: str = "") -> set[str]:
        out: set[str] = set()
        for name, field in model.model_fields.items():
            ann = field.annotation
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                out |= keys(ann, f"{prefix}{name}.")
            else:
                out.add(prefix + name)
        return out

    def present(data: dict[str, object], prefix: str = "") -> set[str]:
        out: set[str] = set()
        for k, v in data.items():
            if isinstance(v, dict) and v:
                out |= present(v, f"{prefix}{k}.")
            else:
                out.add(prefix + k)
        return out

    assert keys(Config) - present(example) == set()


# --------------------------------------------------------------------------- numeric bounds

Path_ = tuple[str | int, ...]
# what a collection needs besides the key under test
A_COLLECTION: dict[str, Any] = {"name": "items", "table": "public.items", "vector_column": "v"}


def _constraints(field: FieldInfo) -> list[Any]:
    found = list(field.metadata)
    for arg in typing.get_args(field.annotation):  # X | None keeps X's Annotated metadata
        for extra in typing.get_args(arg)[1:]:
            found.extend(extra.metadata if isinstance(extra, FieldInfo) else [extra])
    return found


def _uppers(constraints: list[Any]) -> list[float]:
    bounds: list[Any] = [c.le for c in constraints if isinstance(c, Le)]
    bounds += [c.lt for c in constraints if isinstance(c, Lt)]
    return [float(b) for b in bounds]


def _scalar(field: FieldInfo) -> type | None:
    ann = field.annotation
    union = typing.get_origin(ann) in (typing.Union, types.UnionType)
    args = typing.get_args(ann) if union else (ann,)
    kinds = {typing.get_args(a)[0] if typing.get_origin(a) else a for a in args} - {type(None)}
    for kind in (bool, int, float):  # bool is an int: keep it out
        if kinds == {kind}:
            return kind if kind is not bool else None
    return None


def _walk(model: type[BaseModel], path: Path_, seen: set[type]) -> Iterator[tuple[Path_, Any]]:
    seen.add(model)
    for name, field in model.model_fields.items():
        ann = field.annotation
        optional = [a for a in typing.get_args(ann) if a is not type(None)]
        if len(optional) == 1 and isinstance(optional[0], type):  # an optional section
            ann = optional[0]
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            yield from _walk(ann, (*path, name), seen)
        elif typing.get_origin(ann) is tuple and typing.get_args(ann)[0] is CollectionConfig:
            yield from _walk(CollectionConfig, (*path, name, 0), seen)
        elif _scalar(field) is not None:
            yield (*path, name), field


NUMERIC = sorted(_walk(Config, (), set()), key=lambda item: str(item[0]))


def _dotted(path: Path_) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")


def _config_with(path: Path_, value: Any) -> str:
    data: dict[str, Any] = {}
    cursor = data
    if path[0] == "collections":  # collections[0].budgets.<key>
        data["collections"] = [dict(A_COLLECTION)]
        cursor, path = data["collections"][0], path[2:]
        if path[0] == "replicas":  # a target needs its required keys around the one tested
            cursor["replicas"] = {
                "kind": "Deployment",
                "namespace": "n",
                "name": "r",
                "max_replicas": 3,
            }
    for part in path[:-1]:
        cursor = cursor.setdefault(str(part), {})
    cursor[str(path[-1])] = value
    return yaml.safe_dump(data)


def test_every_model_is_walked() -> None:
    seen: set[type] = set()
    list(_walk(Config, (), seen))
    models = {
        obj
        for obj in vars(config_module).values()
        if isinstance(obj, type)
        and issubclass(obj, BaseModel)
        and obj.__module__ == config_module.__name__
        and obj.model_fields
    }
    assert models - seen == set()
    assert len(NUMERIC) > 50


@pytest.mark.parametrize(("path", "field"), NUMERIC, ids=[_dotted(p) for p, _ in NUMERIC])
def test_every_number_is_finite_and_bounded(path: Path_, field: FieldInfo) -> None:
    constraints = _constraints(field)
    upper = _uppers(constraints)
    assert upper and all(math.isfinite(u) for u in upper), f"{_dotted(path)} has no upper bound"
    assert any(isinstance(c, Ge | Gt) for c in constraints), f"{_dotted(path)}: no lower bound"
    huge: Any = 10**30 if _scalar(field) is int else 1e300
    key = re.escape(_dotted(path))
    for bad in (math.inf, -math.inf, math.nan, huge):
        with pytest.raises(ConfigError) as exc:
            parse_config(_config_with(path, bad), env={})
        assert any(re.match(rf"{key}: ", p) for p in exc.value.problems), exc.value.problems


def test_the_example_documents_every_bound() -> None:
    """Each numeric key's comment in the example file gives its range, matching the model."""
    lines = EXAMPLE.read_text().splitlines()
    node = yaml.compose(EXAMPLE.read_text())
    assert isinstance(node, yaml.MappingNode)

    def line_of(path: Path_) -> str:
        cursor: yaml.Node = node
        for part in path:
            assert isinstance(cursor, yaml.MappingNode)
            key_node, cursor = next((k, v) for k, v in cursor.value if k.value == part)
        return str(lines[key_node.start_mark.line])

    documented = [(p, f) for p, f in NUMERIC if p[0] != "collections"]
    for path, field in documented:
        line = line_of(path)
        match = re.search(r"#\s*[\[(]\s*(-?[\d.]+),\s*([\d.]+)[\])]", line)
        assert match, f"{_dotted(path)}: no [min, max] in its comment: {line!r}"
        upper = _uppers(_constraints(field))
        assert upper and float(match.group(2)) == upper[0], (line, upper)


def test_check_config_rejects_what_run_would_trip_over(tmp_path: Path) -> None:
    """`1e9` days once passed check-config and overflowed timedelta when the daemon started."""
    path = tmp_path / "ruvectord.yaml"
    for text, expected in (
        ("integrity:\n  sample_retention_days: 1e9\n", "integrity.sample_retention_days: "),
        ("healing:\n  attempt_window_seconds: .inf\n", "healing.attempt_window_seconds: "),
    ):
        path.write_text(text)
        done = subprocess.run(
            [sys.executable, "-m", "ruvectord.cli", "check-config", "-c", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
            env={k: v for k, v in os.environ.items() if not k.startswith("RUVECTORD_")},
        )
        assert done.returncode == 2, done
        assert done.stderr.startswith(expected) and len(done.stderr.splitlines()) == 1, done.stderr


def test_only_section_key_variables_are_overrides(tmp_path: Path) -> None:
    """RUVECTORD_<SECTION>__<KEY> is an override; RUVECTORD_FOO or RUVECTORD_CONFIG is not."""
    cfg = parse_config(
        "",
        env={
            "RUVECTORD_CONFIG": "/etc/other.yaml",
            "RUVECTORD_FOO": "1",
            "RUVECTORD_LOG_LEVEL": "debug",
            "RUVECTORD_HEALING__ENABLED": "false",
        },
    )
    assert cfg == parse_config("healing: {enabled: false}", env={})
    path = tmp_path / "ruvectord.yaml"
    path.write_text(f"daemon: {{state_directory: {tmp_path}}}\n")
    env = {**os.environ, "RUVECTORD_FOO": "1", "RUVECTORD_VERSION": "x"}
    done = subprocess.run(
        [sys.executable, "-m", "ruvectord.cli", "check-config", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert (done.returncode, done.stdout) == (0, "ok\n"), done.stderr


def test_check_config_also_checks_the_files_run_reads_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An empty signing key or a missing password file stops `run`; check-config says so."""
    state = tmp_path / "state"
    state.mkdir()
    path = tmp_path / "ruvectord.yaml"
    path.write_text(f"daemon: {{state_directory: {state}}}\n")
    assert main(["check-config", "-c", str(path)]) == 0
    (state / "signing.key").write_bytes(b"")
    os.chmod(state / "signing.key", 0o600)
    assert main(["check-config", "-c", str(path)]) == 2
    assert capsys.readouterr().err.startswith(
        f"error: signing key {state / 'signing.key'}: the file is empty"
    )
    (state / "signing.key").unlink()
    path.write_text(
        f"daemon: {{state_directory: {state}}}\n"
        f"database: {{password_file: {tmp_path / 'missing'}}}\n"
    )
    assert main(["check-config", "-c", str(path)]) == 2
    assert capsys.readouterr().err == (
        f"error: database.password_file: cannot read {tmp_path / 'missing'}: "
        "No such file or directory\n"
    )
    assert not (state / "signing.key").exists()  # checked, never created
