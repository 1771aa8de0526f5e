"""The demo's synthetic member bases and its simulated clock."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from alliance.db.base import simulated_clock, utcnow
from alliance.demo.data import BRANDS, member_bases
from alliance.demo.scenario import previous_month
from privacy.normalize import normalize_batch


def test_member_bases_have_the_planned_overlaps_and_some_rejected_rows() -> None:
    data = member_bases(2000, seed=3)
    assert member_bases(2000, seed=3).rows == data.rows  # repeatable
    canonical = {}
    for brand in BRANDS:
        normalized = normalize_batch(data.rows[brand.key], "phone", region="CN")
        assert len(normalized.accepted) == 2000
        assert normalized.total > 2000  # duplicates and invalid rows were added, and are rejected
        canonical[brand.key] = set(normalized.canonicals)
    for pair, expected in data.common.items():
        a, b = sorted(pair)
        assert len(canonical[a] & canonical[b]) == expected
    assert data.common[frozenset(("bakery", "fruit"))] == 440
    assert member_bases(2000, seed=4).rows != data.rows
    with pytest.raises(ValueError, match="at least"):
        member_bases(999, seed=1)


def test_the_simulated_clock_applies_inside_its_block_only() -> None:
    at = datetime(2026, 10, 5, 9, 30, tzinfo=UTC)
    with simulated_clock(at):
        assert utcnow() == at
    assert utcnow() > at
    with pytest.raises(ValueError, match="timezone"), simulated_clock(datetime(2026, 10, 5)):
        pass


def test_the_demo_month_is_the_previous_calendar_month() -> None:
    assert previous_month(datetime(2026, 1, 15, tzinfo=UTC))[0] == "2025-12"
    month, start, end = previous_month(datetime(2026, 11, 1, 0, 0, tzinfo=UTC))
    assert (month, start, end) == ("2026-10", datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC))
