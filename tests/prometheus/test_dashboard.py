"""The Grafana dashboard in deploy/grafana: a plain JSON model with a data source and a
collection variable, a query and a unit on every panel, lambda's 0.8 / 0.3 thresholds, and
every query valid PromQL (promtool parses them here; the scrape test runs them on a live
Prometheus and wants data from each)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.prometheus.support import load_dashboard, panels, promtool, queries, substitute

DS = {"type": "prometheus", "uid": "${datasource}"}
VALUES = {"job": "ruvectord", "collection": ".*", "__rate_interval": "1m", "__range": "6h"}


def _variables() -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in load_dashboard()["templating"]["list"]}


def test_the_model_has_a_datasource_a_job_and_a_collection_variable() -> None:
    board = load_dashboard()
    assert 36 <= board["schemaVersion"] <= 41
    assert board["uid"] and board["title"]
    v = _variables()
    assert v["datasource"]["type"] == "datasource" and v["datasource"]["query"] == "prometheus"
    assert v["job"]["query"]["query"] == "label_values(ruvectord_info, job)"
    coll = v["collection"]
    assert coll["query"]["query"].startswith("label_values(") and '$job"' in coll["definition"]
    assert coll["multi"] and coll["includeAll"] and coll["allValue"] == ".*"
    for var in (v["job"], coll):
        assert var["datasource"] == DS


def test_every_panel_has_a_query_a_unit_and_its_own_place() -> None:
    seen: set[tuple[int, int]] = set()
    ids, titles = [], []
    for p in panels(load_dashboard()):
        ids.append(p["id"])
        titles.append(p["title"])
        assert p["datasource"] == DS, p["title"]
        assert p.get("description"), p["title"]
        assert p["targets"], f"{p['title']} has no query"
        for t in p["targets"]:
            assert t["expr"].strip() and t["datasource"] == DS, (p["title"], t)
            assert t.get("legendFormat"), (p["title"], t["refId"])
        assert p["fieldConfig"]["defaults"].get("unit"), f"{p['title']} has no unit"
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24, p["title"]
        cells = {
            (x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])
        }
        assert not cells & seen, f"{p['title']} overlaps another panel"
        seen |= cells
    assert len(set(ids)) == len(ids) and len(set(titles)) == len(titles)


def test_every_query_selects_the_database_and_the_collections() -> None:
    for q in queries(load_dashboard()):
        assert 'job="$job"' in q.expr, q
        if "ruvector_" in q.expr:
            assert 'collection=~"$collection"' in q.expr, q
        substitute(q.expr, VALUES)  # no variable the dashboard does not define


def _panel_using(metric: str, kind: str | None = None) -> dict[str, Any]:
    found = [
        p
        for p in panels(load_dashboard())
        if any(metric in t["expr"] for t in p["targets"]) and kind in (None, p["type"])
    ]
    assert found, f"no {kind or ''} panel shows {metric}"
    return found[0]


def test_the_panels_the_issue_asks_for() -> None:
    lam = _panel_using("ruvector_integrity_lambda_cut", "timeseries")
    d = lam["fieldConfig"]["defaults"]
    assert [s["value"] for s in d["thresholds"]["steps"]] == [None, 0.3, 0.8]
    assert (d["min"], d["max"]) == (0, 1)
    assert d["custom"]["thresholdsStyle"]["mode"] != "off"  # the bars are drawn
    assert "by (collection)" in lam["targets"][0]["expr"]

    state = _panel_using("ruvector_integrity_state", "state-timeline")
    texts = state["fieldConfig"]["defaults"]["mappings"][0]["options"]
    assert {k: v["text"] for k, v in texts.items()} == {
        "0": "normal",
        "1": "stress",
        "2": "critical",
    }

    healing = _panel_using("ruvector_healing_attempts_total", "timeseries")
    exprs = " ".join(t["expr"] for t in healing["targets"])
    assert "ruvector_healing_success_total" in exprs and "by (collection, strategy)" in exprs
    outcomes = _panel_using("ruvector_healing_success_total", "bargauge")
    assert all("by (strategy)" in t["expr"] for t in outcomes["targets"])

    units = {
        ("ruvector_healing_throttle_pct", "timeseries"): "percent",
        ("ruvector_healing_time_to_recovery_seconds", "timeseries"): "s",
        ("ruvector_healing_time_to_verification_seconds", "timeseries"): "s",
        ("ruvector_integrity_sample_duration_seconds_bucket", "timeseries"): "s",
        ("ruvector_healing_success_rate", "stat"): "percentunit",
    }
    for (metric, kind), unit in units.items():
        assert _panel_using(metric, kind)["fieldConfig"]["defaults"]["unit"] == unit, metric


def test_promtool_parses_every_query(tmp_path: Path) -> None:
    """Each query, its variables filled in, as a recording rule: promtool parses them all."""
    rules = [
        {"record": f"dashboard:query_{i}", "expr": substitute(q.expr, VALUES)}
        for i, q in enumerate(queries(load_dashboard()))
    ]
    path = tmp_path / "dashboard.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    done = promtool("check", "rules", path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(rules)} rules found" in done.stdout
