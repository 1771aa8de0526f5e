"""The period rule: which period (``YYYY-MM``) a ledger transaction posts into.

A transaction posts into the UTC month it occurred in, unless that month is closed; then into the
period after the last closed one (months close in order, so that is the next open period): late events
become adjustments of the next open period, never edits of a closed month (``docs/ledger.md``). The
monthly close is the hook: it inserts a `LedgerPeriod` row with ``status='closed'`` and ``next_period``.

The rule is this one SQL expression. Writers evaluate it inside their INSERT (so it cannot race a
close), and :func:`open_period_for` evaluates it alone for callers that need to know in advance.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

import contracts
from alliance.db.models import LedgerPeriod

__all__ = ["open_period_for", "period_of"]


def period_of(month: ColumnElement[Any] | str) -> ColumnElement[Any]:
    """SQL for "the open period a transaction of ``month`` posts into": the month itself unless it is
    closed, else the period after the last closed one."""
    later_closed = select(func.max(LedgerPeriod.next_period)).where(
        LedgerPeriod.period >= month, LedgerPeriod.status == "closed"
    )
    return func.coalesce(later_closed.scalar_subquery(), month)


async def open_period_for(session: AsyncSession, occurred_at: datetime) -> str:
    """The period (``YYYY-MM``) a transaction that occurred at ``occurred_at`` posts into right now."""
    period = await session.scalar(select(period_of(contracts.month_of(occurred_at.astimezone(UTC)))))
    return str(period)
