"""Months and times as settlement writes them: ``YYYY-MM`` periods in UTC and RFC 3339 instants."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from alliance.core.problems import Problem

__all__ = ["DISPUTE_KIND", "check_month", "rfc3339"]

DISPUTE_KIND = "dispute_adjustment"
_MONTH = re.compile(r"\d{4}-(0[1-9]|1[0-2])")


def check_month(month: str) -> tuple[datetime, datetime, str]:
    """``(start, end, next month)`` of ``YYYY-MM`` in UTC; 400 ``invalid-period`` otherwise."""
    if not _MONTH.fullmatch(month):
        raise Problem(400, "invalid-period", "the month must be YYYY-MM")
    year, mon = int(month[:4]), int(month[5:])
    start = datetime(year, mon, 1, tzinfo=UTC)
    end = datetime(year + mon // 12, mon % 12 + 1, 1, tzinfo=UTC)
    return start, end, f"{end.year:04d}-{end.month:02d}"


def rfc3339(at: datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SS[.ffffff]Z`` - the form statements carry (fixed, so they re-run identically)."""
    text_ = at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return text_ + (f".{at.microsecond:06d}" if at.microsecond else "") + "Z"
