"""Per-strategy limits (windows, min interval per target, enabled) in the pure policy and in
selection, and the maintenance strategies' pure pieces: no database."""

from __future__ import annotations

from datetime import UTC, datetime

from ruvectord.config import HealingConfig, parse_config
from ruvectord.healing.maintenance import Disk, disk_refusal
from ruvectord.healing.policy import History, Touched, limits, longest_interval
from ruvectord.healing.problems import CentroidSkew, IndexFragmentation, MaintenanceContention
from ruvectord.healing.strategies import builtin_registry
from ruvectord.healing.strategies.rebuild_centroids import lists_for

FRAG = IndexFragmentation((1, 2), ("public.a_idx", "public.b_idx"), 45.0)
MONDAY_NOON = datetime(2026, 1, 5, 12, tzinfo=UTC)


def _healing(text: str) -> HealingConfig:
    return parse_config(text, env={}).healing


def test_windows_close_a_strategy_and_say_when_it_opens() -> None:
    cfg = _healing(
        "healing:\n  strategies:\n    compact_indexes:\n"
        "      windows: ['Sat 01:00-05:00 Europe/Berlin']\n"
    )
    closed = limits(History(), cfg.strategies, MONDAY_NOON)
    assert closed.closed["compact_indexes"] == (
        "compact_indexes is outside its maintenance windows (Sat 01:00-05:00 Europe/Berlin); "
        "next opens Sat 2026-01-10 00:00 UTC"
    )
    sat = datetime(2026, 1, 10, 0, 30, tzinfo=UTC)  # 01:30 in Berlin
    assert "compact_indexes" not in limits(History(), cfg.strategies, sat).closed
    selection = builtin_registry().select(FRAG, 0.5, limits=closed)
    assert selection.strategy is None
    assert selection.reason.startswith("compact_indexes is outside its maintenance windows")


def test_a_disabled_strategy_is_never_chosen() -> None:
    cfg = _healing("healing:\n  strategies:\n    pause_maintenance: {enabled: false}\n")
    bounds = limits(History(), cfg.strategies, MONDAY_NOON)
    chosen = builtin_registry().select(
        MaintenanceContention(("vacuum",), (1,), 2), 0.5, limits=bounds
    )
    assert chosen.strategy is None
    assert chosen.reason == (
        "pause_maintenance is disabled (healing.strategies.pause_maintenance.enabled: false)"
    )


def test_min_interval_per_target_rests_a_target_and_skips_when_all_rest() -> None:
    cfg = HealingConfig()  # compact_indexes: 6 h per target
    assert longest_interval(cfg.strategies) == 24 * 3600  # rebuild_centroids'
    one = History(touched=(Touched("compact_indexes", "public.a_idx", 3600.0),))
    bounds = limits(one, cfg.strategies, MONDAY_NOON)
    assert bounds.resting_for("compact_indexes") == {"public.a_idx": 5 * 3600.0}
    chosen = builtin_registry().select(FRAG, 0.5, limits=bounds)
    assert chosen.strategy is not None and chosen.strategy.name == "compact_indexes"
    both = History(
        touched=(
            Touched("compact_indexes", "public.a_idx", 3600.0),
            Touched("compact_indexes", "public.b_idx", 7 * 3600.0),  # past its interval
            Touched("compact_indexes", "public.b_idx", 100.0),
            Touched("rebuild_centroids", "public.a_idx", 10.0),  # another strategy's
        )
    )
    bounds = limits(both, cfg.strategies, MONDAY_NOON)
    assert bounds.resting_for("compact_indexes") == {
        "public.a_idx": 5 * 3600.0,
        "public.b_idx": 6 * 3600.0 - 100.0,
    }
    chosen = builtin_registry().select(FRAG, 0.5, limits=bounds)
    assert chosen.strategy is None
    assert chosen.reason == (
        "compact_indexes: every target acted on within its min interval "
        "(public.a_idx for 18000 s, public.b_idx for 21500 s)"
    )


def test_the_impact_cap_still_comes_first_and_skips_are_reported() -> None:
    bounds = limits(History(), HealingConfig().strategies, MONDAY_NOON)
    assert "exceeds impact 0.4" in builtin_registry().select(FRAG, 0.4, limits=bounds).reason
    skew = builtin_registry().select(CentroidSkew((1,), 3.0), 0.5, limits=bounds)
    assert skew.strategy is not None and skew.strategy.name == "rebuild_centroids"


def test_lists_follow_pgvector_guidance() -> None:
    assert lists_for(0) == 1
    assert lists_for(8000) == 8
    assert lists_for(1_000_000) == 1000
    assert lists_for(4_000_000) == 2000  # sqrt above a million rows
    assert lists_for(10**12) == 32768


def test_free_disk_must_cover_the_headroom() -> None:
    assert disk_refusal(Disk(3000, "statvfs(/d)"), 1000, 2.0, "ix") is None
    assert disk_refusal(Disk(1999, "statvfs(/d)"), 1000, 2.0, "ix") == (
        "ix: free disk 1999 bytes < 2 x 1000 bytes (statvfs(/d))"
    )
    unknown = Disk(None, "free disk unknown (not on the database host) and disk_budget_bytes is 0")
    assert disk_refusal(unknown, 1, 1.0, "ix") == f"ix: {unknown.how}"
