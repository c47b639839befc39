"""Config: every malformed file gives exit code 2 and one line naming the key or the line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from ruvectord.cli import main
from ruvectord.config import Config, parse_config
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
        r"collections\[0\]\.table: 'a\.b\.c' is not a table name of the form schema\.table",
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
    path.write_text("collections:\n  - {name: items, table: items, vector_column: embedding}\n")
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
    example["daemon"]["node_name"] = Config().daemon.node_name  # shown as <hostname>
    assert parse_config(yaml.safe_dump(example)) == Config()

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
