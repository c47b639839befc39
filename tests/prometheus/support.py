"""What the Prometheus and Grafana tests share: the files under test, Debian's prometheus
binaries (a test that needs one skips, saying how to install it), the dashboard's queries with
its variables filled in, and the alert rules with their durations shortened for a live server."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).parents[2]
RULES = ROOT / "deploy" / "prometheus" / "ruvectord.rules.yml"
EXAMPLE_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.example.yml"
RULE_TESTS = Path(__file__).with_name("rules_test.yaml")
DASHBOARD = ROOT / "deploy" / "grafana" / "ruvectord-dashboard.json"

INSTALL = (
    "Debian's prometheus package provides promtool and prometheus: "
    "apt-get install --no-install-recommends prometheus (.ci/run does that)"
)


def binary(name: str) -> str:
    """The path of `promtool` or `prometheus`; skips the test, saying how to get it, if absent."""
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"needs {name}, which is not on PATH; {INSTALL}")
    return path


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [binary("promtool"), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def load_rules() -> list[dict[str, Any]]:
    data = yaml.safe_load(RULES.read_text())
    return [rule for group in data["groups"] for rule in group["rules"]]


# --------------------------------------------------------------------------- the dashboard


@dataclass(frozen=True)
class Query:
    panel: str
    ref_id: str
    expr: str
    instant: bool


def load_dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def panels(dashboard: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel that shows data (rows' nested panels included, rows themselves not)."""
    for panel in dashboard.get("panels", []):
        if panel.get("type") == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


def queries(dashboard: Mapping[str, Any]) -> list[Query]:
    return [
        Query(p["title"], t.get("refId", "?"), t.get("expr", ""), bool(t.get("instant")))
        for p in panels(dashboard)
        for t in p.get("targets", [])
        if not t.get("hide")
    ]


# $var, ${var}, ${var:format} and the legacy [[var]], as Grafana writes them
_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")


def substitute(expr: str, values: Mapping[str, str]) -> str:
    """The query as Grafana sends it: every variable replaced; an unknown one is a KeyError."""

    def one(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2) or m.group(3)
        if name not in values:
            raise KeyError(f"no value for dashboard variable ${name} in {expr!r}")
        return values[name]

    return _VARIABLE.sub(one, expr)


# --------------------------------------------------------------------------- rules, shortened

_RANGE = re.compile(r"\[\d+[smhdwy]\]")


def shorten_rules(text: str, *, hold: str, window: str) -> str:
    """The rules file with every `for:` set to `hold` and every range window to `window`, so a
    live Prometheus shows in seconds what takes minutes or hours in production. Thresholds
    compared against values (300 s of staleness, half the approval TTL) stay as they are."""
    data = yaml.safe_load(text)
    for group in data["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = hold
            rule["expr"] = _RANGE.sub(f"[{window}]", rule["expr"])
    out: str = yaml.safe_dump(data, sort_keys=False, width=1000)
    return out
