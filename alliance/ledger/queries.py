"""Reading the ledger back: live balances and transactions, each brand only its own side."""

from __future__ import annotations

import base64
import binascii
import re
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, exists, func, literal, or_, select, union_all
from sqlalchemy.ext.asyncio import AsyncSession

import contracts
from alliance.core.problems import Problem
from alliance.db.base import utcnow
from alliance.db.models import LedgerAccount, LedgerPosting, LedgerTransaction
from alliance.ledger import quarantine
from alliance.ledger.schemas import (
    AccountBalance,
    BalancesOut,
    NetPosition,
    PostingOut,
    TransactionOut,
    TransactionPage,
)

__all__ = ["balances_out", "get_transaction", "list_transactions", "live_balances"]

_MONTH = re.compile(r"\d{4}-(0[1-9]|1[0-2])")


# --- reading: balances ------------------------------------------------------------------------------


async def live_balances(session: AsyncSession, brand_id: str | None) -> list[AccountBalance]:
    """Exact balances now: the sealed balance of each account plus its postings not sealed yet (except
    those of transactions held or excluded in the ledger quarantine: they may never count).

    One statement, hence one snapshot: a sealer committing meanwhile can neither double-count nor drop
    a posting. ``brand_id`` None: every account (operator view).
    """
    sealed = select(LedgerAccount.account, LedgerAccount.currency, LedgerAccount.balance.label("amount"))
    pending = (
        select(LedgerPosting.account, LedgerPosting.currency, LedgerPosting.amount.label("amount"))
        .join(LedgerTransaction, LedgerTransaction.id == LedgerPosting.transaction_id)
        .where(LedgerTransaction.seq.is_(None), quarantine.not_held(LedgerTransaction.id))
    )
    if brand_id is not None:
        sealed = sealed.where(LedgerAccount.brand_id == brand_id)
        pending = pending.where(LedgerPosting.brand_id == brand_id)
    both = union_all(sealed, pending).subquery()
    rows = (
        await session.execute(
            select(both.c.account, both.c.currency, func.sum(both.c.amount))
            .group_by(both.c.account, both.c.currency)
            .order_by(both.c.account, both.c.currency)
        )
    ).all()
    return [AccountBalance(account=r[0], currency=r[1], balance=int(r[2])) for r in rows]


def balances_out(brand_id: str, accounts: list[AccountBalance]) -> BalancesOut:
    """A brand's balances plus its net position per currency (positive: the alliance owes the brand)."""
    net: dict[str, int] = defaultdict(int)
    for account in accounts:
        if contracts.parse_brand_account(account.account) is not None:
            net[account.currency] -= account.balance
    return BalancesOut(
        brand_id=brand_id,
        accounts=accounts,
        net=[NetPosition(currency=c, net=n) for c, n in sorted(net.items())],
        as_of=utcnow(),
    )


# --- reading: transactions --------------------------------------------------------------------------


async def _views(
    session: AsyncSession, rows: Sequence[LedgerTransaction], brand_id: str | None
) -> list[TransactionOut]:
    postings: dict[str, list[LedgerPosting]] = defaultdict(list)
    if rows:
        posting_query = (
            select(LedgerPosting)
            .where(LedgerPosting.transaction_id.in_([r.id for r in rows]))
            .order_by(LedgerPosting.transaction_id, LedgerPosting.line)
        )
        if brand_id is not None:
            posting_query = posting_query.where(LedgerPosting.brand_id == brand_id)
        for posting in (await session.scalars(posting_query)).all():
            postings[posting.transaction_id].append(posting)
    operator = brand_id is None
    return [
        TransactionOut(
            id=r.id,
            kind=r.kind,
            occurred_at=r.occurred_at,
            posted_at=r.posted_at,
            period=r.period,
            reference=dict(r.reference),
            postings=[PostingOut(account=p.account, amount=p.amount, currency=p.currency) for p in postings[r.id]],
            sealed=r.seq is not None,
            hash=r.hash,
            idempotency_key=r.idempotency_key if operator or r.idempotency_scope == brand_id else None,
            brand_id=r.brand_id if operator else None,
            seq=r.seq if operator else None,
            prev_hash=r.prev_hash if operator else None,
        )
        for r in rows
    ]


async def get_transaction(session: AsyncSession, transaction_id: str, brand_id: str | None) -> TransactionOut:
    """One transaction as ``brand_id`` may see it (404 if it does not touch the brand's accounts)."""
    query = _filtered(
        select(LedgerTransaction).where(LedgerTransaction.id == transaction_id),
        brand_id=brand_id,
        kind=None,
        period=None,
        currency=None,
        occurred_from=None,
        occurred_to=None,
    )
    row = await session.scalar(query)
    if row is None:
        raise Problem(404, "transaction-not-found", f"no ledger transaction {transaction_id!r}")
    return (await _views(session, [row], brand_id))[0]


def _encode_cursor(posted_at: datetime, tx_id: str) -> str:
    return base64.urlsafe_b64encode(f"{posted_at.isoformat()}|{tx_id}".encode()).decode("ascii").rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("utf-8")
        at_text, tx_id = raw.split("|", 1)
        at = datetime.fromisoformat(at_text)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise Problem(400, "invalid-cursor", "the cursor is not one this API returned") from None
    if at.utcoffset() is None:
        raise Problem(400, "invalid-cursor", "the cursor is not one this API returned")
    return at, tx_id


def _filtered(
    query: Select[Any],
    *,
    brand_id: str | None,
    kind: str | None,
    period: str | None,
    currency: str | None,
    occurred_from: datetime | None,
    occurred_to: datetime | None,
) -> Select[Any]:
    t = LedgerTransaction
    if brand_id is not None:
        own = [LedgerPosting.transaction_id == t.id, LedgerPosting.brand_id == brand_id]
        if currency is not None:
            own.append(LedgerPosting.currency == currency)
        query = query.where(exists(select(literal(1)).where(and_(*own))))
    elif currency is not None:
        query = query.where(
            exists(select(literal(1)).where(LedgerPosting.transaction_id == t.id, LedgerPosting.currency == currency))
        )
    if kind is not None:
        query = query.where(t.kind == kind)
    if period is not None:
        if not _MONTH.fullmatch(period):
            raise Problem(400, "invalid-period", "period must be YYYY-MM")
        query = query.where(t.period == period)
    if occurred_from is not None:
        query = query.where(t.occurred_at >= occurred_from)
    if occurred_to is not None:
        query = query.where(t.occurred_at < occurred_to)
    return query


async def list_transactions(
    session: AsyncSession,
    *,
    brand_id: str | None,
    kind: str | None = None,
    period: str | None = None,
    currency: str | None = None,
    occurred_from: datetime | None = None,
    occurred_to: datetime | None = None,
    limit: int = 100,
    cursor: str | None = None,
) -> TransactionPage:
    """Transactions newest first (by ``posted_at``, then id), ``limit`` per page; pass ``next_cursor``
    back as ``cursor`` for the next page.

    For a brand (``brand_id`` set): only transactions that touch its accounts, and of each only its own
    postings; the chain position and the other side stay hidden. ``brand_id`` None: everything, with
    ``seq`` and ``prev_hash`` (operator view).
    """
    t = LedgerTransaction
    query = select(t).order_by(t.posted_at.desc(), t.id.desc()).limit(limit + 1)
    query = _filtered(
        query,
        brand_id=brand_id,
        kind=kind,
        period=period,
        currency=currency,
        occurred_from=occurred_from,
        occurred_to=occurred_to,
    )
    if cursor:
        at, tx_id = _decode_cursor(cursor)
        query = query.where(or_(t.posted_at < at, and_(t.posted_at == at, t.id < tx_id)))
    rows = list((await session.scalars(query)).all())
    more = len(rows) > limit
    rows = rows[:limit]
    items = await _views(session, rows, brand_id)
    return TransactionPage(
        items=items, next_cursor=_encode_cursor(rows[-1].posted_at, rows[-1].id) if more and rows else None
    )
