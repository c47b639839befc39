"""The watchdog's rule (a loop that stops finishing cycles stops the pings) and the STATUS line
(what it says about acting, degraded collections, failures, the database and the last sample)."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta

from ruvectord.health import Facts, Progress, status_line
from ruvectord.metrics import Metrics

NOW = datetime(2026, 11, 25, 14, 2, 3, tzinfo=UTC)


def test_a_loop_is_stalled_only_past_its_allowance() -> None:
    p = Progress()
    p.register("items", interval=10, sample_bound=15, now=0)
    # one interval plus the sample's own bound (25 s) is longer than two intervals (20 s)
    assert p.allowance("items") == 25
    assert p.stalled(25) == []
    assert p.stalled(26) == ["items has not finished a cycle for 26 s (limit 25 s)"]
    p.finished("items", 26)  # a failed cycle counts as much as a good one
    assert p.stalled(50) == []


def test_a_short_sample_bound_leaves_two_intervals() -> None:
    p = Progress()
    p.register("items", interval=60, sample_bound=15, now=0)
    assert p.allowance("items") == 120


def test_the_interval_follows_the_dynamic_setting() -> None:
    p = Progress()
    p.register("items", interval=10, sample_bound=5, now=0)
    p.finished("items", 1, interval=1)
    assert p.allowance("items") == 6
    assert p.stalled(8) != []


def test_healing_extends_the_allowance_by_its_bound_until_it_ends() -> None:
    p = Progress(healing_bound=300)
    p.register("items", interval=10, sample_bound=5, now=0)
    p.healing("items", 12)
    assert p.stalled(200) == []  # a rebuild may take minutes, bounded by its own timeouts
    assert p.stalled(313) == ["items has not finished a cycle for 313 s (limit 312 s)"]
    p.healed("items")
    assert p.allowance("items") == 20


def test_only_the_stuck_loop_is_named_and_a_forgotten_one_is_not() -> None:
    p = Progress()
    p.register("a", interval=1, sample_bound=5, now=0)
    p.register("b", interval=1, sample_bound=5, now=0)
    p.register("c", interval=1, sample_bound=5, now=0)
    p.finished("a", 9)
    p.forget("c")
    assert [s.split()[0] for s in p.stalled(10)] == ["b"]


def test_no_loop_is_never_stalled() -> None:
    assert Progress().stalled(1e9) == []


def test_status_says_whether_it_acts() -> None:
    last = NOW - timedelta(seconds=4)
    assert status_line(Facts(3, True, last_sample=last), NOW) == (
        "acting on 3 collections; last sample 14:01:59 UTC"
    )
    why = "another daemon holds the actor lock (backend pid 4242, from local socket)"
    assert status_line(Facts(1, False, why, last_sample=last), NOW) == (
        f"monitoring 1 collection, not acting: {why}; last sample 14:01:59 UTC"
    )
    assert status_line(Facts(2, True, healing_enabled=False), NOW) == (
        "monitoring 2 collections, not acting: healing is disabled; no sample yet"
    )
    assert status_line(Facts(2, None), NOW).startswith(
        "monitoring 2 collections (started without healing)"
    )


def test_status_names_what_is_wrong() -> None:
    facts = Facts(
        6,
        True,
        degraded=tuple((f"c{i}", "stress") for i in range(6)),
        failing=(("ghost", "table public.ghost does not exist"),),
        last_sample=NOW - timedelta(days=1),
        database_down_since=NOW - timedelta(seconds=30),
        stalled=("items has not finished a cycle for 31 s (limit 25 s)",),
    )
    line = status_line(facts, NOW)
    assert line == (
        "acting on 6 collections; database unreachable since 14:01:33 UTC; "
        "stuck: items has not finished a cycle for 31 s (limit 25 s); "
        "degraded: c0 stress, c1 stress, c2 stress, c3 stress and 2 more; "
        "sampling fails: ghost (table public.ghost does not exist); "
        "last sample 2026-11-24 14:02:03 UTC"
    )


def test_every_series_of_a_collection_exists_from_the_start() -> None:
    m = Metrics()
    m.declare_collection("items", ["throttle_ingestion"])
    text = m.render().decode()
    for reason in ("collection", "database", "timeout", "internal"):
        assert (
            f'ruvector_integrity_sample_errors_total{{collection="items",reason="{reason}"}} 0.0'
            in text
        )
    for name in (
        "ruvector_healing_time_to_recovery_seconds",
        "ruvector_healing_time_to_verification_seconds",
        "ruvector_healing_success_rate",
    ):
        # not known yet: NaN, never a 0 that reads as "recovered instantly" or "always fails"
        value = re.search(rf'^{name}{{collection="items"}} (\S+)$', text, re.M)
        assert value is not None and math.isnan(float(value.group(1))), name
    m.transitions.labels("items", "normal", "stress").inc()
    m.sample_duration.labels("items").observe(0.1)
    m.forget_collection("items", ["throttle_ingestion"])
    assert 'collection="items"' not in m.render().decode()
