"""The ledger's quarantine: committed transactions the sealer could not seal, held out of the chain.

One transaction must never stop sealing for the whole alliance. Before it folds a transaction into the
sealed balances the sealer asks :func:`seal_refusal` (a pure rule: every amount and every resulting
balance within `contracts.bounds`, postings balanced per currency); a refused transaction - or one whose
sealing fails in the database on its own - is *held* here with the reason, and every other transaction
keeps sealing. An operator then resolves it (``alliance ledger quarantine``): *release* lets the sealer
try it again (after the cause is fixed), *exclude* keeps it recorded but never sealed, so it counts in no
balance and no statement. A month with held transactions cannot be closed.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from prometheus_client import Gauge
from sqlalchemy import ColumnElement, Table, exists, func, insert, literal_column, select, update
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.ext.asyncio import AsyncSession

from alliance.core.audit import AuditContext, record_audit
from alliance.core.problems import Problem
from alliance.db.base import utcnow
from alliance.db.models import LedgerQuarantine
from alliance.ledger.chain import ChainPosting
from contracts.bounds import MAX_AMOUNT, MAX_TOTAL, amount_in_bounds, total_in_bounds

__all__ = [
    "HELD_GAUGE",
    "Resolution",
    "held_count",
    "hold",
    "list_quarantine",
    "not_held",
    "resolve",
    "seal_refusal",
]

log = logging.getLogger("alliance.ledger.quarantine")

Resolution = Literal["release", "exclude"]

HELD_GAUGE = Gauge(
    "alliance_ledger_quarantined_transactions",
    "Ledger transactions held out of the chain because they could not be sealed (alert when above 0)",
)

_REASON_MAX = 500
_q: Table = LedgerQuarantine.__table__  # type: ignore[assignment]


def seal_refusal(postings: Sequence[ChainPosting], balances: Mapping[tuple[str, str], int]) -> str | None:
    """Why a transaction cannot be sealed onto ``balances`` (sealed balances by (account, currency),
    including the transactions sealed before it in this batch), or ``None`` when it can."""
    per_currency: dict[str, int] = defaultdict(int)
    per_account: dict[tuple[str, str], int] = defaultdict(int)
    for leg in postings:
        if not amount_in_bounds(leg.amount):
            return f"posting line {leg.line} amount {leg.amount} is outside the bound of +/-{MAX_AMOUNT}"
        per_currency[leg.currency] += leg.amount
        per_account[(leg.account, leg.currency)] += leg.amount
    for currency, total in sorted(per_currency.items()):
        if total != 0:
            return f"postings do not balance in {currency} (sum {total})"
    for (account, currency), delta in sorted(per_account.items()):
        after = balances.get((account, currency), 0) + delta
        if not total_in_bounds(after):
            return f"would take {account} to {after} {currency}, past the bound of +/-{MAX_TOTAL}"
    return None


def not_held(transaction_id: Any) -> ColumnElement[bool]:
    """The sealer's filter: the transaction is not held or excluded (released ones are sealed again)."""
    return ~exists().where(_q.c.transaction_id == transaction_id, _q.c.status != "released")


NOT_HELD_SQL = str(
    not_held(literal_column("t.id")).compile(
        dialect=asyncpg_dialect(),  # type: ignore[no-untyped-call]
        compile_kwargs={"literal_binds": True},
    )
)
"""`not_held` compiled to SQL text for the sealer's asyncpg store (``t`` is ``ledger_transactions``)."""


async def hold(session: AsyncSession, held: Sequence[tuple[str, str, str]]) -> None:
    """Hold ``(transaction id, period, reason)`` rows in the caller's transaction (the sealer's)."""
    if not held:
        return
    now = utcnow()
    for transaction_id, _, reason in held:
        log.warning("ledger transaction %s quarantined, not sealed: %s", transaction_id, reason)
    await session.execute(_q.delete().where(_q.c.transaction_id.in_([h[0] for h in held])))  # released before
    await session.execute(
        insert(_q),
        [
            {
                "transaction_id": transaction_id,
                "period": period,
                "reason": reason[:_REASON_MAX],
                "status": "held",
                "quarantined_at": now,
            }
            for transaction_id, period, reason in held
        ],
    )


async def held_count(session: AsyncSession, period: str | None = None) -> int:
    """How many transactions are held (in ``period``, if given); also sets the metric when unfiltered."""
    query = select(func.count()).select_from(_q).where(_q.c.status == "held")
    if period is not None:
        query = query.where(_q.c.period == period)
    count = int(await session.scalar(query) or 0)
    if period is None:
        HELD_GAUGE.set(count)
    return count


async def list_quarantine(
    session: AsyncSession, status: str | None = None, transaction_id: str | None = None
) -> list[LedgerQuarantine]:
    """Quarantine rows, newest first (``status`` filters: held, released, excluded)."""
    query = select(LedgerQuarantine).order_by(LedgerQuarantine.quarantined_at.desc())
    if status is not None:
        query = query.where(LedgerQuarantine.status == status)
    if transaction_id is not None:
        query = query.where(LedgerQuarantine.transaction_id == transaction_id)
    return list((await session.scalars(query)).all())


async def resolve(session: AsyncSession, ctx: AuditContext, transaction_id: str, action: Resolution) -> None:
    """Release a held transaction (the sealer tries it again) or exclude it for good; audited."""
    row = await session.get(LedgerQuarantine, transaction_id)
    if row is None:
        raise Problem(404, "not-quarantined", f"transaction {transaction_id} is not in the ledger quarantine")
    if row.status != "held":
        raise Problem(409, "quarantine-resolved", f"transaction {transaction_id} is already {row.status}")
    status = "released" if action == "release" else "excluded"
    await session.execute(
        update(_q)
        .where(_q.c.transaction_id == transaction_id)
        .values(status=status, resolved_at=utcnow(), resolved_by=ctx.actor)
    )
    record_audit(
        session,
        ctx,
        f"ledger.quarantine.{action}",
        target=transaction_id,
        details={"reason": row.reason, "period": row.period},
    )
    await session.flush()
