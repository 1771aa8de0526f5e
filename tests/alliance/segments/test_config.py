"""Matching settings: read from ALLIANCE_PSI_* variables, bad values named."""

from __future__ import annotations

import pytest

from alliance.core.settings import SettingsError
from alliance.segments.config import load_psi_settings


def test_defaults_and_overrides() -> None:
    assert load_psi_settings({}).min_segment_size == 1000
    settings = load_psi_settings({"ALLIANCE_PSI_MIN_SEGMENT_SIZE": "50", "ALLIANCE_PSI_MEMORY_JOIN_LIMIT": "0"})
    assert (settings.min_segment_size, settings.memory_join_limit) == (50, 0)


@pytest.mark.parametrize(
    ("name", "value"),
    [("MIN_SEGMENT_SIZE", "0"), ("MAX_SEGMENT_ITEMS", "60000000"), ("MATCH_TTL_SECONDS", "soon")],
)
def test_bad_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=f"ALLIANCE_PSI_{name}"):
        load_psi_settings({f"ALLIANCE_PSI_{name}": value})
