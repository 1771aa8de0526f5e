"""A month of the ledger added up in SQL, one GROUP BY per question: totals per brand account, gross
flows between pairs of brands, and the adjustments (late events and dispute resolutions) the month took
in. Read by the close (`alliance.settlement.statements.build_statements`), nothing written.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

import contracts
from alliance.db.models import LedgerPosting, LedgerTransaction
from alliance.settlement.months import DISPUTE_KIND

__all__ = ["LedgerMonth", "aggregate"]


@dataclass(frozen=True, slots=True)
class LedgerMonth:
    """The month's ledger, added up.

    * ``brands``: (brand, account, currency, is adjustment, amount, postings) per brand account;
    * ``pairs``: (payer, payee, currency, kind, amount, count) of regular (non-adjustment) flows;
    * ``adjustments``: (transaction, kind, occurred at, brand, currency, amount) per adjustment;
    * ``dispute_refs``: the reference of each dispute adjustment, by transaction id;
    * ``clearing``: the clearing account's total per currency; ``transactions``: how many.
    """

    brands: list[tuple[str, str, str, int, int, int]]
    pairs: list[tuple[str, str, str, str, int, int]]
    adjustments: Sequence[Any]
    dispute_refs: dict[str, Any]
    clearing: dict[str, int]
    transactions: int


def _is_adjustment(start: datetime) -> Any:
    t = LedgerTransaction
    return or_(t.occurred_at < start, t.kind == DISPUTE_KIND)


def _legs(month: str, start: datetime) -> Any:
    """The period's postings joined to their transactions, each payable leg with its partner leg."""
    t, p = LedgerTransaction, LedgerPosting
    adjustment = case((_is_adjustment(start), 1), else_=0)
    # ONE pass over the period's postings (joined to their transactions) answers both questions: the
    # totals per account, and the gross flows between pairs. Pricing books "X owes Y a" as payable(X)
    # +a at line n and receivable(Y) -a at line n+3 (contracts.postings_for; reversals flip the signs),
    # so the window function reads each payable leg's partner three lines on - in primary-key order,
    # which a merge join of the two primary keys delivers without sorting.
    return (
        select(
            p.brand_id,
            p.account,
            p.currency,
            p.amount,
            t.kind,
            adjustment.label("adjustment"),
            func.lead(p.brand_id, 3).over(partition_by=p.transaction_id, order_by=p.line).label("partner"),
            func.lead(p.account, 3).over(partition_by=p.transaction_id, order_by=p.line).label("partner_account"),
            func.lead(p.amount, 3).over(partition_by=p.transaction_id, order_by=p.line).label("partner_amount"),
            func.lead(p.currency, 3).over(partition_by=p.transaction_id, order_by=p.line).label("partner_currency"),
        )
        .join(t, t.id == p.transaction_id)
        .where(t.period == month, t.seq.is_not(None))  # sealed: not a transaction excluded from the chain
        .subquery()
    )


async def _grouped(session: AsyncSession, month: str, start: datetime) -> Sequence[Any]:
    """(brand, account, currency, adjustment, kind, payee, sum, count) groups of the month's legs."""
    legs = _legs(month, start)
    payee = case(
        (
            and_(
                legs.c.account.like("brand:%:payable"),
                legs.c.partner_account.like("brand:%:receivable"),
                legs.c.partner_amount == -legs.c.amount,
                legs.c.partner_currency == legs.c.currency,
            ),
            legs.c.partner,
        ),
        else_=None,
    ).label("payee")
    return (
        await session.execute(
            select(
                legs.c.brand_id,
                legs.c.account,
                legs.c.currency,
                legs.c.adjustment,
                legs.c.kind,
                payee,
                func.sum(legs.c.amount),
                func.count(),
            ).group_by(legs.c.brand_id, legs.c.account, legs.c.currency, legs.c.adjustment, legs.c.kind, payee)
        )
    ).all()


def _fold(
    grouped: Sequence[Any],
) -> tuple[list[tuple[str, str, str, int, int, int]], list[tuple[str, str, str, str, int, int]], dict[str, int]]:
    """Brand account rows, pair flow rows and clearing totals from the grouped legs."""
    accounts: dict[tuple[str | None, str, str, int], list[int]] = defaultdict(lambda: [0, 0])
    pair_totals: dict[tuple[str, str, str, str], list[int]] = defaultdict(lambda: [0, 0])
    clearing_totals: dict[str, int] = defaultdict(int)
    for brand_id, account, currency, is_adjustment, kind, partner, amount, count in grouped:
        account_total = accounts[(brand_id, account, currency, int(is_adjustment))]
        account_total[0] += int(amount)
        account_total[1] += int(count)
        if account == contracts.CLEARING_ACCOUNT:
            clearing_totals[currency] += int(amount)
        if partner is not None and not is_adjustment:
            pair_total = pair_totals[(brand_id, partner, currency, kind)]
            pair_total[0] += int(amount)
            pair_total[1] += int(count)
    brand_rows = [(b, acc, cur, adj, total[0], total[1]) for (b, acc, cur, adj), total in accounts.items() if b]
    pair_rows = [(payer, payee_, cur, kind, v[0], v[1]) for (payer, payee_, cur, kind), v in pair_totals.items()]
    return brand_rows, pair_rows, dict(clearing_totals)


async def aggregate(session: AsyncSession, month: str, start: datetime) -> LedgerMonth:
    """The month's ledger added up (see :class:`LedgerMonth`)."""
    t, p = LedgerTransaction, LedgerPosting
    brand_rows, pair_rows, clearing = _fold(await _grouped(session, month, start))
    adjustment_rows = (
        await session.execute(
            select(t.id, t.kind, t.occurred_at, p.brand_id, p.currency, func.sum(p.amount))
            .join(p, p.transaction_id == t.id)
            .where(t.period == month, _is_adjustment(start), p.brand_id.is_not(None))
            .group_by(t.id, t.kind, t.occurred_at, p.brand_id, p.currency)
        )
    ).all()
    dispute_refs = {
        row[0]: row[1]
        for row in (
            await session.execute(
                select(t.id, t.reference).where(t.period == month, t.kind == DISPUTE_KIND, t.seq.is_not(None))
            )
        ).all()
    }
    transactions = await session.scalar(
        select(func.count()).select_from(t).where(t.period == month, t.seq.is_not(None))
    )
    return LedgerMonth(
        brands=brand_rows,
        pairs=pair_rows,
        adjustments=adjustment_rows,
        dispute_refs=dispute_refs,
        clearing=clearing,
        transactions=int(transactions or 0),
    )
