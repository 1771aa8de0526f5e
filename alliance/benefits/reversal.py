"""Reversing (refunding) a redemption: read, decide (`reversal_rules.decide_reversal`), write.

The writes, in the lock order of `alliance.benefits.booking` (redemption -> member usage -> benefit ->
month-to-date total): claim the redemption's refunded amount (``WHERE refunded_amount = <as read>``: a
concurrent reversal makes it fail, and the reversal is read and decided again), give the member's use
back once fully reversed, post the reversing ledger transaction, record the reversal, queue the
webhooks, audit, store the answer for replays, and last the hot rows: the budget given back (an
exhausted benefit with room again becomes active) and the commission total.
"""

from __future__ import annotations

from datetime import datetime

import msgspec
from sqlalchemy import and_, case, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from alliance.benefits import booking
from alliance.benefits.reversal_rules import (
    REVERSE_OPERATION,
    ReversalPlan,
    ReversalRequest,
    ReversalSnapshot,
    decide_reversal,
)
from alliance.benefits.rules import Refusal, Replay, StoredAnswer, smallest_discount
from alliance.benefits.schemas import ReversalCreate, ReversalOut
from alliance.benefits.views import redemption_out
from alliance.core import idempotency
from alliance.core.audit import AuditContext, record_audit
from alliance.core.ids import new_id
from alliance.core.problems import Problem
from alliance.db.base import utcnow
from alliance.db.models import Benefit, BenefitMemberUsage, IdempotencyRecord, Redemption, RedemptionReversal
from alliance.ledger import posting
from alliance.webhooks import service as webhooks

__all__ = ["reverse_redemption"]

_ATTEMPTS = 4
Result = idempotency.IdempotentResult[ReversalOut]


async def _snapshot(session: AsyncSession, request: ReversalRequest) -> ReversalSnapshot | None:
    redemption = await session.get(Redemption, request.redemption_id)
    if redemption is None or redemption.funding_brand_id != request.caller_id:
        return None  # another brand's redemption does not exist for the caller
    benefit = await session.get(Benefit, redemption.benefit_id)
    assert benefit is not None
    assert redemption.contract_id is not None
    assert redemption.contract_version is not None
    versions = await booking.terms_of_versions(
        booking.session_canonical(session), redemption.contract_id, [redemption.contract_version]
    )
    record = None
    if request.key is not None:
        record = (
            await session.execute(
                IdempotencyRecord.__table__.select().where(
                    IdempotencyRecord.brand_id == request.caller_id, IdempotencyRecord.key == request.key
                )
            )
        ).first()
    return ReversalSnapshot(
        redemption=redemption_out(redemption),
        member_hash=redemption.member_hash,
        reversal_window_seconds=benefit.reversal_window_seconds,
        per_member_limit=benefit.per_member_limit,
        smallest_discount=smallest_discount(benefit.value_kind, benefit.value, benefit.min_spend),
        terms=versions[0],
        stored=None
        if record is None
        else StoredAnswer(record.operation, record.fingerprint, record.status_code, bytes(record.response_body)),
    )


async def reverse_redemption(
    session: AsyncSession,
    ctx: AuditContext,
    caller_id: str,
    redemption_id: str,
    idempotency_key: str | None,
    data: ReversalCreate,
) -> Result:
    """Refund all or part of a redeemed order within the benefit's reversal window (the caller commits).
    Refusals are `Problem` s (`reversal_rules`); a retry with the same key gets the stored answer."""
    request = ReversalRequest(
        caller_id=caller_id,
        redemption_id=redemption_id,
        key=idempotency_key.strip() if idempotency_key is not None else None,
        fingerprint=idempotency.fingerprint(f"{REVERSE_OPERATION}:{redemption_id}", data),
        data=data,
        reversal_id=new_id("rvs"),
    )
    for _ in range(_ATTEMPTS):
        now = utcnow()
        decision = decide_reversal(await _snapshot(session, request), request, now)
        if isinstance(decision, Refusal):
            raise decision.problem()
        if isinstance(decision, Replay):
            body = msgspec.json.decode(decision.body, type=ReversalOut)
            return idempotency.IdempotentResult(decision.status_code, body, replayed=True)
        answer = await _write(session, ctx, decision, now)
        if answer is not None:
            return idempotency.IdempotentResult(201, answer)
        await session.rollback()  # a concurrent reversal (or this key's) won: read it, decide again
    raise Problem(409, "reversal-conflict", "other reversals of this redemption kept happening at the same time; retry")


async def _claim(session: AsyncSession, plan: ReversalPlan) -> bool:
    """Move the redemption's refunded amount on, unless another reversal did since it was read; once
    fully reversed, give the member's use back."""
    rid = plan.snapshot.redemption.id
    claimed = await session.execute(
        update(Redemption)
        .where(Redemption.id == rid, Redemption.refunded_amount == plan.refunded_before)
        .values(
            refunded_amount=plan.refunded_after,
            restored_discount=plan.restored_after,
            status="reversed" if plan.full else "partially_reversed",
        )
        .execution_options(synchronize_session=False)
    )
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        return False
    if plan.full and plan.snapshot.member_hash is not None and plan.snapshot.per_member_limit is not None:
        await session.execute(
            update(BenefitMemberUsage)
            .where(
                BenefitMemberUsage.benefit_id == plan.snapshot.redemption.benefit_id,
                BenefitMemberUsage.member_hash == plan.snapshot.member_hash,
                BenefitMemberUsage.count > 0,
            )
            .values(count=BenefitMemberUsage.count - 1)
        )
    return True


def _body(plan: ReversalPlan, transaction_id: str, now: datetime) -> ReversalOut:
    redemption = msgspec.structs.replace(
        plan.snapshot.redemption,
        refunded_amount=plan.refunded_after,
        restored_discount=plan.restored_after,
        status="reversed" if plan.full else "partially_reversed",
    )
    return ReversalOut(
        id=plan.request.reversal_id,
        redemption_id=redemption.id,
        refund_amount=plan.refund,
        restored_discount=plan.restored,
        commission_delta=plan.priced.commission,
        full=plan.full,
        reason=plan.request.data.reason,
        ledger_transaction_id=transaction_id,
        created_at=now,
        redemption=redemption,
    )


async def _record(session: AsyncSession, ctx: AuditContext, plan: ReversalPlan, body: ReversalOut) -> None:
    """The reversal row, the webhooks (the distributor is told only its part) and the audit row."""
    redemption = body.redemption
    session.add(
        RedemptionReversal(
            id=body.id,
            redemption_id=redemption.id,
            funding_brand_id=plan.request.caller_id,
            refund_amount=body.refund_amount,
            restored_discount=body.restored_discount,
            commission_delta=body.commission_delta,
            full=body.full,
            reason=body.reason,
            ledger_transaction_id=body.ledger_transaction_id,
            created_at=body.created_at,
        )
    )
    distributor = {
        "id": body.id,
        "redemption_id": redemption.id,
        "coupon_id": redemption.coupon_id,
        "benefit_id": redemption.benefit_id,
        "restored_discount": body.restored_discount,
        "commission_delta": body.commission_delta,
        "full": body.full,
        "currency": redemption.currency,
        "created_at": body.created_at,
    }
    await webhooks.enqueue(
        session, "redemption.reversed", {plan.request.caller_id: body, redemption.distributor_brand_id: distributor}
    )
    details = {"reversal_id": body.id, "refund_amount": body.refund_amount, "full": body.full}
    record_audit(
        session, ctx, "redemption.reverse", brand_id=plan.request.caller_id, target=redemption.id, details=details
    )


async def _write(session: AsyncSession, ctx: AuditContext, plan: ReversalPlan, now: datetime) -> ReversalOut | None:
    """Write a decided reversal; ``None`` when a concurrent request won a guard (the caller rolls back)."""
    if not await _claim(session, plan):
        return None
    caller, reversal_id = plan.request.caller_id, plan.request.reversal_id
    prepared = posting.prepare_priced_event(
        plan.priced,
        brand_id=caller,
        idempotency_key=f"coupon_reversal:{reversal_id}",
        occurred_at=now,
        kind="coupon_reversal",
        reference={"redemption_id": plan.snapshot.redemption.id, "reversal_id": reversal_id},
    )
    await posting.write_prepared(session, prepared)
    body = _body(plan, prepared.id, now)
    await _record(session, ctx, plan, body)
    idempotency.remember(session, caller, plan.key, REVERSE_OPERATION, plan.request.fingerprint, 201, body, reversal_id)
    try:
        await session.flush()
    except IntegrityError:  # a concurrent request with the same Idempotency-Key stored its answer first
        return None
    await _restore_budget(session, plan, now)
    priced = plan.priced
    key = booking.total_key(
        plan.snapshot.terms, priced.commission_kind, priced.commission_payer, priced.commission_month
    )
    await booking.settle(session, booking.Booking(plan.priced, prepared.id, key, None))  # never guarded
    return body


async def _restore_budget(session: AsyncSession, plan: ReversalPlan, now: datetime) -> None:
    """Give the discount (and, fully reversed, the count) back; an exhausted benefit with room again
    becomes active."""
    count = 1 if plan.full else 0
    after_count = Benefit.spent_count - count
    after_amount = Benefit.spent_amount - plan.restored
    reopened = and_(
        Benefit.status == "exhausted",
        after_count < Benefit.budget_count,
        Benefit.budget_amount - after_amount >= plan.snapshot.smallest_discount,
    )
    await session.execute(
        update(Benefit)
        .where(Benefit.id == plan.snapshot.redemption.benefit_id)
        .values(
            spent_count=after_count,
            spent_amount=after_amount,
            status=case((reopened, "active"), else_=Benefit.status),
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
