"""Disputes of statement lines: a brand flags a line of its own statement; an operator rejects it or
resolves it with an adjustment, posted into the next open period and linked to the disputed month
(docs/decisions.md: closed months are never edited)."""

from __future__ import annotations

from datetime import timedelta

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

import contracts
from alliance.core.audit import AuditContext, record_audit
from alliance.core.ids import new_id
from alliance.core.problems import Problem
from alliance.db.base import utcnow
from alliance.db.models import SettlementDispute
from alliance.ledger import service as ledger
from alliance.settlement.documents import get_statement
from alliance.settlement.months import DISPUTE_KIND, check_month
from alliance.settlement.schemas import DisputeIn, DisputeOut, DisputeResolveIn, Statement

__all__ = ["list_disputes", "open_dispute", "resolve_dispute"]


def _dispute_out(d: SettlementDispute) -> DisputeOut:
    return DisputeOut(
        id=d.id,
        brand_id=d.brand_id,
        period=d.period,
        line_id=d.line_id,
        reason=d.reason,
        status=d.status,
        created_at=d.created_at,
        resolved_at=d.resolved_at,
        resolution=d.resolution,
        adjustment_transaction_id=d.adjustment_transaction_id,
    )


async def open_dispute(
    session: AsyncSession, ctx: AuditContext, brand_id: str, month: str, data: DisputeIn
) -> DisputeOut:
    """Flag one line (``line_id`` of a line or an adjustment) of the brand's own statement."""
    row = await get_statement(session, brand_id, month)
    statement = msgspec.json.decode(row.document, type=Statement)
    line_ids = {line.line_id for line in statement.lines} | {a.line_id for a in statement.adjustments}
    if data.line_id not in line_ids:
        raise Problem(422, "unknown-line", f"the statement of {month} has no line {data.line_id!r}")
    reason = data.reason.strip()
    if not 0 < len(reason) <= 2000:
        raise Problem(422, "invalid-reason", "the reason must be 1-2000 characters")
    dispute = SettlementDispute(
        id=new_id("dsp"), brand_id=brand_id, period=month, line_id=data.line_id, reason=reason, created_at=utcnow()
    )
    session.add(dispute)
    await session.flush()
    record_audit(
        session, ctx, "settlement.dispute.open", brand_id=brand_id, target=dispute.id, details={"period": month}
    )
    return _dispute_out(dispute)


async def list_disputes(session: AsyncSession, brand_id: str | None) -> list[DisputeOut]:
    query = select(SettlementDispute).order_by(SettlementDispute.created_at.desc(), SettlementDispute.id)
    if brand_id is not None:
        query = query.where(SettlementDispute.brand_id == brand_id)
    return [_dispute_out(d) for d in (await session.scalars(query)).all()]


async def resolve_dispute(
    session: AsyncSession, ctx: AuditContext, dispute_id: str, data: DisputeResolveIn
) -> DisputeOut:
    """Resolve an open dispute. ``adjust`` posts "payer owes payee amount" as a ``dispute_adjustment``
    dated at the end of the disputed month, so the ledger puts it into the next open period, where it
    shows in both brands' statements as an adjustment linked to the dispute and the disputed month."""
    dispute = await session.get(SettlementDispute, dispute_id, with_for_update=True)
    if dispute is None:
        raise Problem(404, "dispute-not-found", f"no dispute {dispute_id!r}")
    if dispute.status != "open":
        raise Problem(409, "dispute-resolved", f"dispute {dispute_id} is {dispute.status} already")
    note = data.note.strip()
    if not 0 < len(note) <= 2000:
        raise Problem(422, "invalid-note", "the note must be 1-2000 characters")
    if data.action == "adjust":
        if not (data.payer and data.payee and data.currency and data.amount):
            raise Problem(422, "invalid-adjustment", "an adjustment needs payer, payee, a positive amount and currency")
        if data.amount <= 0 or data.payer == data.payee:
            raise Problem(422, "invalid-adjustment", "the amount must be positive and payer and payee must differ")
        _, end, _ = check_month(dispute.period)
        # The four clearing postings of "payer owes payee amount", as contracts.postings_for books them.
        a, cur = data.amount, data.currency
        postings = (
            contracts.Posting(contracts.payable_account(data.payer), a, cur),
            contracts.Posting(contracts.CLEARING_ACCOUNT, -a, cur),
            contracts.Posting(contracts.CLEARING_ACCOUNT, a, cur),
            contracts.Posting(contracts.receivable_account(data.payee), -a, cur),
        )
        posted = await ledger.post_adjustment(
            session,
            ctx,
            idempotency_key=f"dispute:{dispute.id}",
            kind=DISPUTE_KIND,
            postings=postings,
            occurred_at=end - timedelta(microseconds=1),
            reference={"dispute_id": dispute.id, "disputed_period": dispute.period, "line_id": dispute.line_id},
        )
        dispute.adjustment_transaction_id = posted.id
        dispute.status = "adjusted"
    else:
        dispute.status = "rejected"
    dispute.resolution = note
    dispute.resolved_at = utcnow()
    await session.flush()
    record_audit(
        session,
        ctx,
        "settlement.dispute.resolve",
        brand_id=dispute.brand_id,
        target=dispute.id,
        details={"action": data.action, "transaction": dispute.adjustment_transaction_id},
    )
    return _dispute_out(dispute)
