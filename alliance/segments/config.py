"""Private-matching settings, read from ``ALLIANCE_PSI_*`` environment variables.

Kept beside the matching code (like the webhook settings) so the domain can be tuned on its own; read
at call time (cheap, and tests change the environment). A bad value raises :class:`SettingsError`
naming the variable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import msgspec

from alliance.core.settings import SettingsError

__all__ = ["HARD_MAX_SEGMENT_ITEMS", "PsiSettings", "load_psi_settings"]

_PREFIX = "ALLIANCE_PSI_"
HARD_MAX_SEGMENT_ITEMS = 50_000_000
"""Upper bound of ``max_segment_items`` (1.6 GB of points); the upload route's body limit is sized from it."""


class PsiSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    # Segments smaller than this cannot be matched (small sets are re-identifiable). DESIGN.md §3.
    min_segment_size: int = 1000
    # A re-match with the same counterparty (same key epoch) must change by at least this many members.
    min_member_change: int = 50
    # Largest segment a brand may declare.
    max_segment_items: int = 20_000_000
    # Intersections of sets up to this many items each are counted in memory; larger ones by a SQL join.
    memory_join_limit: int = 5_000_000
    # A match not finished this long after it was requested expires (seconds).
    match_ttl_seconds: int = 86_400
    # Epsilon (milli) charged per released count when the governing terms enable differential privacy.
    release_epsilon_milli: int = 500
    # A match stuck in `computing` this long (a crashed worker) is computed again on the next read.
    compute_retry_seconds: int = 600

    def __post_init__(self) -> None:
        if not 1 <= self.min_segment_size <= 10_000_000:
            raise SettingsError("ALLIANCE_PSI_MIN_SEGMENT_SIZE must be between 1 and 10000000")
        if not 0 <= self.min_member_change <= 1_000_000:
            raise SettingsError("ALLIANCE_PSI_MIN_MEMBER_CHANGE must be between 0 and 1000000")
        if not 1 <= self.max_segment_items <= HARD_MAX_SEGMENT_ITEMS:
            raise SettingsError(f"ALLIANCE_PSI_MAX_SEGMENT_ITEMS must be between 1 and {HARD_MAX_SEGMENT_ITEMS}")
        if not 0 <= self.memory_join_limit <= 100_000_000:
            raise SettingsError("ALLIANCE_PSI_MEMORY_JOIN_LIMIT must be between 0 and 100000000")
        if not 60 <= self.match_ttl_seconds <= 30 * 86_400:
            raise SettingsError("ALLIANCE_PSI_MATCH_TTL_SECONDS must be between 60 and 2592000")
        if not 1 <= self.release_epsilon_milli <= 1_000_000:
            raise SettingsError("ALLIANCE_PSI_RELEASE_EPSILON_MILLI must be between 1 and 1000000")
        if not 1 <= self.compute_retry_seconds <= 86_400:
            raise SettingsError("ALLIANCE_PSI_COMPUTE_RETRY_SECONDS must be between 1 and 86400")


def load_psi_settings(environ: Mapping[str, str] | None = None) -> PsiSettings:
    """Read the settings now."""
    env = os.environ if environ is None else environ
    raw = {name: env[_PREFIX + name.upper()] for name in PsiSettings.__struct_fields__ if _PREFIX + name.upper() in env}
    try:
        return msgspec.convert(raw, PsiSettings, strict=False)
    except msgspec.ValidationError as exc:
        message = str(exc)
        if " - at `$." in message:
            text, _, path = message.partition(" - at `$.")
            message = f"{_PREFIX}{path.rstrip('`').upper()}: {text}"
        raise SettingsError(message) from None
