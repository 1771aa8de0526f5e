"""Benefits, coupon issuance, redemption and reversal. No HTTP objects: routes and the CLI call these,
and every change writes its audit row in the caller's transaction.

Budget policy: **checked at redemption**, not reserved at issuance. Distributors hand out far more codes
than are ever redeemed, so reserving would lock a funding brand's money in codes nobody uses; instead
the budget (money and count) is consumed by a conditional ``UPDATE benefits ... WHERE spent + this <=
budget`` in the redemption's own transaction, which the database evaluates on the latest row version
(PostgreSQL re-checks it after waiting for a concurrent writer; SQLite runs writers one at a time). The
budget can therefore never be overspent, however many redemptions race. When it is used up the benefit
becomes ``exhausted``: issuance stops, outstanding codes are refused with ``budget-exhausted``, and a
reversal that gives budget back reopens it.

Exactly-once redemption: a coupon moves from ``issued`` to ``redeemed`` only through ``UPDATE coupons
... WHERE status = 'issued'`` (one winner, the others see 0 rows and get 409), backed by the unique
``redemptions.coupon_id``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import msgspec
from sqlalchemy import BigInteger, and_, bindparam, case, delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

import contracts
from alliance.benefits import booking, codes
from alliance.benefits.schemas import (
    BenefitCreate,
    BenefitOut,
    CouponBatchOut,
    IssuedCoupon,
    RedemptionCreate,
    RedemptionOut,
    ReversalCreate,
    ReversalOut,
)
from alliance.core import idempotency
from alliance.core.audit import AuditContext, record_audit
from alliance.core.ids import new_id
from alliance.core.problems import Problem
from alliance.db.base import UTCDateTime, utcnow
from alliance.db.models import (
    Benefit,
    BenefitDistributor,
    BenefitMemberUsage,
    BenefitTag,
    Brand,
    Coupon,
    CouponBatch,
    Redemption,
    RedemptionReversal,
    WebhookEndpoint,
)
from alliance.webhooks import service as webhooks

__all__ = [
    "REDEEM_OPERATION",
    "REVERSE_OPERATION",
    "benefit_out",
    "create_benefit",
    "end_benefit",
    "get_benefit",
    "get_redemption",
    "issue_coupons",
    "list_all_benefits",
    "list_benefits",
    "list_redemptions",
    "member_digest",
    "pause_benefit",
    "redeem",
    "redemption_fingerprint",
    "redemption_out",
    "resume_benefit",
    "reverse_redemption",
    "set_distributors",
]

REDEEM_OPERATION = "redemption.create"
REVERSE_OPERATION = "redemption.reverse"
_DAY = 86_400

# Statements of the redemption hot path, built once: constructing a SQL expression and its cache key on
# every request costs more CPU than running it.
_FIND_COUPON = (
    select(
        Coupon.id,
        Coupon.status,
        Coupon.distributor_brand_id,
        Benefit,
        BenefitDistributor.brand_id,
        select(WebhookEndpoint.id)
        .where(
            WebhookEndpoint.brand_id.in_([bindparam("p_caller"), Coupon.distributor_brand_id]),
            WebhookEndpoint.status == "active",
        )
        .exists()
        .label("listening"),
    )
    .join(Benefit, Benefit.id == Coupon.benefit_id)
    .outerjoin(
        BenefitDistributor,
        and_(
            BenefitDistributor.benefit_id == Coupon.benefit_id,
            BenefitDistributor.brand_id == Coupon.distributor_brand_id,
        ),
    )
    .where(Coupon.code_hash == bindparam("p_code_hash"), Coupon.funding_brand_id == bindparam("p_caller"))
)
_CLAIM_COUPON = (
    update(Coupon)
    .where(Coupon.id == bindparam("p_id"), Coupon.status == "issued")
    .values(status="redeemed", redeemed_at=bindparam("p_now", type_=UTCDateTime()))
    .execution_options(synchronize_session=False)
)
_SPENT_COUNT = Benefit.spent_count + 1
_SPENT_AMOUNT = Benefit.spent_amount + bindparam("p_discount", type_=BigInteger())
_SPEND_BUDGET = (
    update(Benefit)
    .where(
        Benefit.id == bindparam("p_id"),
        Benefit.status == "active",
        Benefit.budget_count >= _SPENT_COUNT,
        Benefit.budget_amount >= _SPENT_AMOUNT,
    )
    .values(
        spent_count=_SPENT_COUNT,
        spent_amount=_SPENT_AMOUNT,
        status=case(
            (
                or_(
                    Benefit.budget_count <= _SPENT_COUNT,
                    Benefit.budget_amount - _SPENT_AMOUNT < bindparam("p_smallest", type_=BigInteger()),
                ),
                "exhausted",
            ),
            else_=Benefit.status,
        ),
        updated_at=bindparam("p_now", type_=UTCDateTime()),
    )
    .execution_options(synchronize_session=False)
)
_INSERT_REDEMPTION = insert(Redemption)
_REDEMPTION_COLUMNS = tuple(column.key for column in Redemption.__table__.columns)


def _row(redemption: Redemption) -> dict[str, Any]:
    return {name: getattr(redemption, name) for name in _REDEMPTION_COLUMNS}


# --- helpers ------------------------------------------------------------------------------------------


def member_digest(funding_brand_id: str, member_token: str) -> str:
    """The stored form of a brand's opaque member token (never stored as given)."""
    import hashlib

    return hashlib.sha256(f"bax-member-v1:{funding_brand_id}:{member_token}".encode()).hexdigest()


def smallest_discount(value_kind: str, value: int, min_spend: int) -> int:
    """The least a redemption of a benefit can take from the budget (for the exhausted check)."""
    if value_kind == "fixed" and min_spend >= value:
        return value
    return 1


def _smallest_discount(benefit: Benefit) -> int:
    return smallest_discount(benefit.value_kind, benefit.value, benefit.min_spend)


def discount_amount(value_kind: str, value: int, max_discount: int | None, order_amount: int) -> int:
    """The discount a coupon gives on an order: never more than the order itself."""
    if value_kind == "fixed":
        return min(value, order_amount)
    amount = order_amount * value // contracts.BASIS_POINTS_PER_UNIT
    if max_discount is not None:
        amount = min(amount, max_discount)
    return amount


def discount_for(benefit: Benefit, order_amount: int) -> int:
    """The discount a coupon of ``benefit`` gives on an order: never more than the order itself."""
    return discount_amount(benefit.value_kind, benefit.value, benefit.max_discount, order_amount)


def _effective_status(benefit: Benefit, now: datetime) -> str:
    if benefit.status != "ended" and now >= benefit.valid_to:
        return "expired"
    return benefit.status


def benefit_out(
    benefit: Benefit,
    tags: Sequence[str],
    *,
    distributors: Sequence[str] | None = None,
    now: datetime | None = None,
) -> BenefitOut:
    return BenefitOut(
        id=benefit.id,
        funding_brand_id=benefit.funding_brand_id,
        name=benefit.name,
        description=benefit.description,
        tags=sorted(tags),
        value_kind=benefit.value_kind,
        value=benefit.value,
        max_discount=benefit.max_discount,
        min_spend=benefit.min_spend,
        currency=benefit.currency,
        valid_from=benefit.valid_from,
        valid_to=benefit.valid_to,
        budget_amount=benefit.budget_amount,
        budget_count=benefit.budget_count,
        remaining_amount=benefit.budget_amount - benefit.spent_amount,
        remaining_count=benefit.budget_count - benefit.spent_count,
        issued_count=benefit.issued_count,
        per_member_limit=benefit.per_member_limit,
        channels=list(benefit.channels),
        new_customers_only=benefit.new_customers_only,
        reversal_window_days=benefit.reversal_window_seconds // _DAY,
        status=_effective_status(benefit, now or utcnow()),
        created_at=benefit.created_at,
        updated_at=benefit.updated_at,
        ended_at=benefit.ended_at,
        distributors=sorted(distributors) if distributors is not None else None,
    )


def redemption_out(redemption: Redemption) -> RedemptionOut:
    return RedemptionOut(
        id=redemption.id,
        coupon_id=redemption.coupon_id,
        benefit_id=redemption.benefit_id,
        funding_brand_id=redemption.funding_brand_id,
        distributor_brand_id=redemption.distributor_brand_id,
        order_reference=redemption.order_reference,
        order_amount=redemption.order_amount,
        discount=redemption.discount,
        currency=redemption.currency,
        channel=redemption.channel,
        store_id=redemption.store_id,
        redeemed_at=redemption.redeemed_at,
        contract_id=redemption.contract_id,
        contract_version=redemption.contract_version,
        commission=redemption.commission,
        ledger_transaction_id=redemption.ledger_transaction_id,
        refunded_amount=redemption.refunded_amount,
        restored_discount=redemption.restored_discount,
        status=redemption.status,
    )


async def _tags(session: AsyncSession, benefit_ids: Sequence[str]) -> dict[str, list[str]]:
    result: dict[str, list[str]] = {benefit_id: [] for benefit_id in benefit_ids}
    if benefit_ids:
        rows = await session.execute(
            select(BenefitTag.benefit_id, BenefitTag.tag).where(BenefitTag.benefit_id.in_(list(benefit_ids)))
        )
        for benefit_id, tag in rows:
            result[benefit_id].append(tag)
    return result


async def _distributors(session: AsyncSession, benefit_ids: Sequence[str]) -> dict[str, list[str]]:
    result: dict[str, list[str]] = {benefit_id: [] for benefit_id in benefit_ids}
    if benefit_ids:
        rows = await session.execute(
            select(BenefitDistributor.benefit_id, BenefitDistributor.brand_id).where(
                BenefitDistributor.benefit_id.in_(list(benefit_ids))
            )
        )
        for benefit_id, brand_id in rows:
            result[benefit_id].append(brand_id)
    return result


async def _check_distributors(session: AsyncSession, funding_brand_id: str, distributors: Sequence[str]) -> list[str]:
    unique = sorted(set(distributors))
    if funding_brand_id in unique:
        raise Problem(422, "invalid-distributors", "a funding brand cannot distribute its own benefit")
    if unique:
        found = set(
            (await session.scalars(select(Brand.id).where(Brand.id.in_(unique), Brand.status == "active"))).all()
        )
        missing = [brand_id for brand_id in unique if brand_id not in found]
        if missing:
            raise Problem(
                422,
                "invalid-distributors",
                f"not active brands of the alliance: {', '.join(missing)}",
                extra={"brands": missing},
            )
    return unique


async def _visible(session: AsyncSession, caller_id: str, benefit_id: str) -> tuple[Benefit, bool]:
    """The benefit and whether the caller funds it. Only the funding brand and the brands it allows to
    distribute can see a benefit; to anyone else it answers 404 exactly like a missing one."""
    benefit = await session.get(Benefit, benefit_id)
    if benefit is not None:
        if benefit.funding_brand_id == caller_id:
            return benefit, True
        allowed = await session.scalar(
            select(BenefitDistributor.brand_id).where(
                BenefitDistributor.benefit_id == benefit_id, BenefitDistributor.brand_id == caller_id
            )
        )
        if allowed is not None:
            return benefit, False
    raise Problem(404, "benefit-not-found", f"no benefit {benefit_id!r} visible to this brand")


async def _funded(session: AsyncSession, caller_id: str, benefit_id: str) -> Benefit:
    benefit, funder = await _visible(session, caller_id, benefit_id)
    if not funder:
        raise Problem(403, "not-funding-brand", "only the brand that funds a benefit can change it")
    return benefit


async def _out(session: AsyncSession, benefit: Benefit, funder: bool) -> BenefitOut:
    tags = (await _tags(session, [benefit.id]))[benefit.id]
    distributors = (await _distributors(session, [benefit.id]))[benefit.id] if funder else None
    return benefit_out(benefit, tags, distributors=distributors)


# --- benefits -----------------------------------------------------------------------------------------


async def create_benefit(session: AsyncSession, ctx: AuditContext, brand_id: str, data: BenefitCreate) -> BenefitOut:
    """Publish a benefit funded by ``brand_id``. Refuses (422) values that could never be honoured."""
    try:
        contracts.validate_currency(data.currency)
    except contracts.UnknownCurrency:
        raise Problem(422, "unknown-currency", f"{data.currency!r} is not an active ISO 4217 currency") from None
    now = utcnow()
    valid_from = data.valid_from or now
    if data.valid_to <= valid_from:
        raise Problem(422, "invalid-benefit", "valid_to must be after valid_from")
    if data.valid_to <= now:
        raise Problem(422, "invalid-benefit", "valid_to is in the past")
    if data.value_kind == "percent":
        if data.value > contracts.BASIS_POINTS_PER_UNIT:
            raise Problem(422, "invalid-benefit", "a percentage value is in basis points: at most 10000 (100 %)")
        if data.max_discount is None:
            raise Problem(422, "invalid-benefit", "a percentage benefit needs max_discount (its cap, minor units)")
    elif data.max_discount is not None:
        raise Problem(422, "invalid-benefit", "max_discount applies to percentage benefits only")
    distributors = await _check_distributors(session, brand_id, data.distributors)
    benefit = Benefit(
        id=new_id("ben"),
        funding_brand_id=brand_id,
        name=data.name.strip(),
        description=data.description,
        value_kind=data.value_kind,
        value=data.value,
        max_discount=data.max_discount,
        min_spend=data.min_spend,
        currency=data.currency,
        valid_from=valid_from,
        valid_to=data.valid_to,
        budget_amount=data.budget_amount,
        budget_count=data.budget_count,
        spent_amount=0,
        spent_count=0,
        issued_count=0,
        per_member_limit=data.per_member_limit,
        channels=sorted(set(data.channels)),
        new_customers_only=data.new_customers_only,
        reversal_window_seconds=data.reversal_window_days * _DAY,
        status="active",
        created_at=now,
        updated_at=now,
    )
    session.add(benefit)
    await session.flush()
    tags = sorted(set(data.tags))
    session.add_all([BenefitTag(benefit_id=benefit.id, tag=tag) for tag in tags])
    session.add_all([BenefitDistributor(benefit_id=benefit.id, brand_id=b) for b in distributors])
    record_audit(
        session,
        ctx,
        "benefit.create",
        brand_id=brand_id,
        target=benefit.id,
        details={"name": benefit.name, "budget_amount": data.budget_amount, "budget_count": data.budget_count},
    )
    await session.flush()
    return benefit_out(benefit, tags, distributors=distributors, now=now)


async def list_benefits(
    session: AsyncSession,
    caller_id: str,
    *,
    brand: str | None = None,
    tag: str | None = None,
    status: str | None = None,
    role: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> list[BenefitOut]:
    """The catalogue as the caller sees it: benefits it funds and benefits it may distribute, newest
    first. ``brand`` filters by funding brand, ``role`` by ``funded`` / ``distributable``, ``status`` by
    the effective status (``expired`` once ``valid_to`` has passed)."""
    now = utcnow()
    distributable = select(BenefitDistributor.benefit_id).where(BenefitDistributor.brand_id == caller_id)
    if role == "funded":
        query = select(Benefit).where(Benefit.funding_brand_id == caller_id)
    elif role == "distributable":
        query = select(Benefit).where(Benefit.id.in_(distributable))
    else:
        query = select(Benefit).where(or_(Benefit.funding_brand_id == caller_id, Benefit.id.in_(distributable)))
    if brand is not None:
        query = query.where(Benefit.funding_brand_id == brand)
    if tag is not None:
        query = query.where(Benefit.id.in_(select(BenefitTag.benefit_id).where(BenefitTag.tag == tag)))
    if status == "expired":
        query = query.where(Benefit.status != "ended", Benefit.valid_to <= now)
    elif status == "ended":
        query = query.where(Benefit.status == "ended")
    elif status is not None:
        query = query.where(Benefit.status == status, Benefit.valid_to > now)
    query = query.order_by(Benefit.created_at.desc(), Benefit.id.desc()).limit(limit).offset(offset)
    benefits = (await session.scalars(query)).all()
    ids = [b.id for b in benefits]
    tags = await _tags(session, ids)
    funded = [b.id for b in benefits if b.funding_brand_id == caller_id]
    distributors = await _distributors(session, funded)
    return [
        benefit_out(
            b, tags[b.id], distributors=distributors.get(b.id) if b.funding_brand_id == caller_id else None, now=now
        )
        for b in benefits
    ]


async def list_all_benefits(
    session: AsyncSession, *, brand: str | None = None, status: str | None = None, limit: int = 500
) -> list[BenefitOut]:
    """Every benefit of the alliance, newest first: the operator's view (CLI, console)."""
    query = select(Benefit)
    if brand is not None:
        query = query.where(Benefit.funding_brand_id == brand)
    if status is not None:
        query = query.where(Benefit.status == status)
    benefits = (await session.scalars(query.order_by(Benefit.created_at.desc(), Benefit.id.desc()).limit(limit))).all()
    ids = [b.id for b in benefits]
    tags, distributors = await _tags(session, ids), await _distributors(session, ids)
    return [benefit_out(b, tags[b.id], distributors=distributors[b.id]) for b in benefits]


async def get_benefit(session: AsyncSession, caller_id: str, benefit_id: str) -> BenefitOut:
    benefit, funder = await _visible(session, caller_id, benefit_id)
    return await _out(session, benefit, funder)


async def pause_benefit(
    session: AsyncSession, ctx: AuditContext, caller_id: str, benefit_id: str, reason: str = ""
) -> BenefitOut:
    """Stop issuance and redemption until resumed (outstanding codes stay valid for later)."""
    benefit = await _funded(session, caller_id, benefit_id)
    if benefit.status == "ended":
        raise Problem(409, "benefit-ended", "an ended benefit cannot be paused")
    if benefit.status != "paused":
        await session.execute(
            update(Benefit)
            .where(Benefit.id == benefit.id, Benefit.status != "ended")
            .values(status="paused", updated_at=utcnow())
        )
        record_audit(session, ctx, "benefit.pause", brand_id=caller_id, target=benefit.id, details={"reason": reason})
        await session.refresh(benefit)
    return await _out(session, benefit, True)


async def resume_benefit(
    session: AsyncSession, ctx: AuditContext, caller_id: str, benefit_id: str, reason: str = ""
) -> BenefitOut:
    """Resume a paused benefit: ``active`` again, or ``exhausted`` if its budget is used up."""
    benefit = await _funded(session, caller_id, benefit_id)
    if benefit.status == "ended":
        raise Problem(409, "benefit-ended", "an ended benefit cannot be resumed; publish a new one")
    if benefit.status == "paused":
        exhausted = or_(
            Benefit.spent_count >= Benefit.budget_count,
            Benefit.budget_amount - Benefit.spent_amount < _smallest_discount(benefit),
        )
        await session.execute(
            update(Benefit)
            .where(Benefit.id == benefit.id, Benefit.status == "paused")
            .values(status=case((exhausted, "exhausted"), else_="active"), updated_at=utcnow())
        )
        record_audit(session, ctx, "benefit.resume", brand_id=caller_id, target=benefit.id, details={"reason": reason})
        await session.refresh(benefit)
    return await _out(session, benefit, True)


async def end_benefit(
    session: AsyncSession, ctx: AuditContext, caller_id: str, benefit_id: str, reason: str = ""
) -> BenefitOut:
    """End a benefit for good: no more issuance or redemption. Reversals of past redemptions still work."""
    benefit = await _funded(session, caller_id, benefit_id)
    if benefit.status != "ended":
        now = utcnow()
        await session.execute(
            update(Benefit).where(Benefit.id == benefit.id).values(status="ended", ended_at=now, updated_at=now)
        )
        record_audit(session, ctx, "benefit.end", brand_id=caller_id, target=benefit.id, details={"reason": reason})
        await session.refresh(benefit)
    return await _out(session, benefit, True)


async def set_distributors(
    session: AsyncSession, ctx: AuditContext, caller_id: str, benefit_id: str, distributors: Sequence[str]
) -> BenefitOut:
    """Replace the list of brands allowed to distribute the benefit. Codes already issued to a brand
    that is removed can no longer be redeemed (``distributor-not-allowed``)."""
    benefit = await _funded(session, caller_id, benefit_id)
    if benefit.status == "ended":
        raise Problem(409, "benefit-ended", "an ended benefit cannot be changed")
    wanted = await _check_distributors(session, caller_id, distributors)
    await session.execute(delete(BenefitDistributor).where(BenefitDistributor.benefit_id == benefit.id))
    session.add_all([BenefitDistributor(benefit_id=benefit.id, brand_id=b) for b in wanted])
    await session.execute(update(Benefit).where(Benefit.id == benefit.id).values(updated_at=utcnow()))
    record_audit(
        session, ctx, "benefit.distributors", brand_id=caller_id, target=benefit.id, details={"distributors": wanted}
    )
    await session.flush()
    await session.refresh(benefit)
    return await _out(session, benefit, True)


def _refuse_state(benefit: Benefit, now: datetime) -> None:
    """409 with a precise type when the benefit cannot be used now."""
    if benefit.status == "paused":
        raise Problem(409, "benefit-paused", "the funding brand has paused this benefit")
    if benefit.status == "ended":
        raise Problem(409, "benefit-ended", "this benefit has ended")
    if benefit.status == "exhausted":
        raise Problem(409, "budget-exhausted", "this benefit's budget is used up")
    if now >= benefit.valid_to:
        raise Problem(409, "benefit-expired", f"this benefit expired at {benefit.valid_to.isoformat()}")


# --- coupons ------------------------------------------------------------------------------------------


async def issue_coupons(
    session: AsyncSession, ctx: AuditContext, caller_id: str, benefit_id: str, count: int
) -> CouponBatchOut:
    """Issue ``count`` codes of a benefit to the calling brand as distributor.

    The caller must be on the benefit's distributor list (otherwise the benefit does not exist for it:
    404), and a signed contract between the funding brand and the caller must be in force and name a
    funding split covering the benefit with the caller as distributor. The codes are returned once;
    only their digests are stored.
    """
    benefit, funder = await _visible(session, caller_id, benefit_id)
    if funder:
        raise Problem(409, "own-benefit", "a funding brand cannot issue its own benefit's coupons to itself")
    now = utcnow()
    _refuse_state(benefit, now)
    terms = await booking.terms_in_force(session, benefit.funding_brand_id, caller_id, now)
    split = terms.funding_split_for(benefit.id, benefit.funding_brand_id)
    if split is None or split.distributor_brand != caller_id:
        raise Problem(
            409,
            "benefit-not-covered",
            f"contract {terms.contract_id} v{terms.version} has no funding split for this benefit "
            "with you as distributor",
        )
    batch = CouponBatch(
        id=new_id("cbt"),
        benefit_id=benefit.id,
        funding_brand_id=benefit.funding_brand_id,
        distributor_brand_id=caller_id,
        count=count,
        contract_id=terms.contract_id,
        contract_version=terms.version,
        created_at=now,
    )
    session.add(batch)
    await session.flush()
    issued = [(new_id("cpn"), codes.generate_code()) for _ in range(count)]
    await session.execute(
        insert(Coupon),
        [
            {
                "id": coupon_id,
                "benefit_id": benefit.id,
                "funding_brand_id": benefit.funding_brand_id,
                "distributor_brand_id": caller_id,
                "batch_id": batch.id,
                "code_hash": codes.code_digest(code),
                "status": "issued",
                "issued_at": now,
            }
            for coupon_id, code in issued
        ],
    )
    await session.execute(
        update(Benefit)
        .where(Benefit.id == benefit.id)
        .values(issued_count=Benefit.issued_count + count)
        .execution_options(synchronize_session=False)
    )
    record_audit(
        session,
        ctx,
        "coupons.issue",
        brand_id=caller_id,
        target=batch.id,
        details={"benefit_id": benefit.id, "count": count, "contract_id": terms.contract_id},
    )
    return CouponBatchOut(
        id=batch.id,
        benefit_id=benefit.id,
        funding_brand_id=benefit.funding_brand_id,
        distributor_brand_id=caller_id,
        count=count,
        contract_id=terms.contract_id,
        contract_version=terms.version,
        created_at=now,
        coupons=[IssuedCoupon(id=coupon_id, code=codes.display(code)) for coupon_id, code in issued],
    )


# --- redemption ---------------------------------------------------------------------------------------


async def _replay_or(
    session: AsyncSession, brand_id: str, key: str, operation: str, print_: str, problem: Problem, body_type: Any
) -> Any:
    """After losing a race: the winner's stored answer if it was this very request, else ``problem``."""
    replay = await idempotency.lookup(session, brand_id, key, operation, print_, body_type)
    if replay is not None:
        return replay
    raise problem


def redemption_fingerprint(data: RedemptionCreate) -> tuple[str, str]:
    """The normalised code and the Idempotency-Key fingerprint of a redemption request - one definition
    for both paths (`redeem_pg` and :func:`redeem`), so that a retry answered by the other path still
    matches. Raises `codes.MalformedCode`."""
    code = codes.normalize_code(data.code)
    return code, idempotency.fingerprint(REDEEM_OPERATION, msgspec.structs.replace(data, code=code))


async def redeem(
    session: AsyncSession, ctx: AuditContext, caller_id: str, idempotency_key: str | None, data: RedemptionCreate
) -> idempotency.IdempotentResult[RedemptionOut]:
    """Redeem a coupon code at its funding brand (the caller), exactly once.

    Checks, each with its own problem type: the code's form (400 ``malformed-coupon-code``) and
    existence for this funding brand (404 ``coupon-not-found``), that it is unused (409
    ``coupon-already-redeemed``), the benefit's state and window, its distributor still allowed,
    channel, currency, minimum spend, new-customer rule, per-member limit and budget. On success the
    contract's pricing posts the ledger transaction in this same database transaction, and the
    response is stored under the ``Idempotency-Key`` for replays.
    """
    try:
        code, print_ = redemption_fingerprint(data)
    except codes.MalformedCode as exc:
        raise Problem(400, "malformed-coupon-code", str(exc)) from None
    try:
        return await _redeem(session, ctx, caller_id, idempotency_key, print_, code, data, lock_totals=False)
    except booking.TotalsContended:
        # The month's commission total moved under the optimistic price: redo it with the total locked.
        await session.rollback()
    return await _redeem(session, ctx, caller_id, idempotency_key, print_, code, data, lock_totals=True)


async def _redeem(
    session: AsyncSession,
    ctx: AuditContext,
    caller_id: str,
    idempotency_key: str | None,
    print_: str,
    code: str,
    data: RedemptionCreate,
    *,
    lock_totals: bool,
) -> idempotency.IdempotentResult[RedemptionOut]:
    # No idempotency lookup up front (the hot path saves a round trip): a replay finds its coupon
    # already redeemed and gets the stored answer there, and a key reused for another coupon collides
    # on the unique (brand, key) when the answer is stored.
    row = (await session.execute(_FIND_COUPON, {"p_code_hash": codes.code_digest(code), "p_caller": caller_id})).first()
    if row is None:
        raise Problem(404, "coupon-not-found", "no such coupon code for a benefit this brand funds")
    key = idempotency.require_key(idempotency_key)
    coupon_id, coupon_status, distributor_id, benefit, still_allowed, has_webhooks = row
    if coupon_status != "issued":
        return await _replay_or(  # type: ignore[no-any-return]
            session,
            caller_id,
            key,
            REDEEM_OPERATION,
            print_,
            Problem(409, "coupon-already-redeemed", "this coupon has already been redeemed"),
            RedemptionOut,
        )
    now = utcnow()
    _refuse_state(benefit, now)
    if now < benefit.valid_from:
        raise Problem(409, "benefit-not-yet-valid", f"this benefit is valid from {benefit.valid_from.isoformat()}")
    if still_allowed is None:
        raise Problem(409, "distributor-not-allowed", "the brand that issued this coupon may no longer distribute it")
    if data.channel not in benefit.channels:
        raise Problem(422, "channel-not-allowed", f"this benefit is for {', '.join(benefit.channels)} only")
    if data.currency is not None and data.currency != benefit.currency:
        raise Problem(422, "currency-mismatch", f"this benefit is in {benefit.currency}")
    if data.order_amount < benefit.min_spend:
        raise Problem(
            422,
            "below-minimum-spend",
            f"the order must be at least {benefit.min_spend} minor units of {benefit.currency}",
            extra={"min_spend": benefit.min_spend},
        )
    if benefit.new_customers_only and data.new_customer is not True:
        raise Problem(409, "new-customers-only", "this benefit is for new customers only (send new_customer: true)")
    if benefit.per_member_limit is not None and data.member_token is None:
        raise Problem(422, "member-token-required", "this benefit has a per-member limit: send member_token")
    discount = discount_for(benefit, data.order_amount)
    if discount <= 0:
        raise Problem(422, "zero-discount", "the coupon gives no discount on this order")
    terms = await booking.terms_in_force(session, benefit.funding_brand_id, distributor_id, now)
    member_hash = member_digest(caller_id, data.member_token) if data.member_token is not None else None

    # Writes, in the lock order of alliance.benefits.booking: coupon -> member -> benefit -> totals -> ledger.
    won = await session.execute(_CLAIM_COUPON, {"p_id": coupon_id, "p_now": now})
    if won.rowcount != 1:  # type: ignore[attr-defined]
        return await _replay_or(  # type: ignore[no-any-return]
            session,
            caller_id,
            key,
            REDEEM_OPERATION,
            print_,
            Problem(409, "coupon-already-redeemed", "this coupon has already been redeemed"),
            RedemptionOut,
        )
    if benefit.per_member_limit is not None and member_hash is not None:
        usage = booking.dialect_insert(session, BenefitMemberUsage).values(
            benefit_id=benefit.id, member_hash=member_hash, count=1
        )
        usage = usage.on_conflict_do_update(
            index_elements=["benefit_id", "member_hash"],
            set_={"count": BenefitMemberUsage.count + 1},
            where=BenefitMemberUsage.count < benefit.per_member_limit,
        ).returning(BenefitMemberUsage.count)
        if (await session.execute(usage)).first() is None:
            raise Problem(
                409,
                "member-limit-reached",
                f"this member has used this benefit {benefit.per_member_limit} time(s), the limit",
            )
    if lock_totals:  # keep the lock order: benefit before the month-to-date total
        await _spend_budget(session, benefit, discount, now)

    redemption = Redemption(
        id=new_id("rdm"),
        coupon_id=coupon_id,
        benefit_id=benefit.id,
        funding_brand_id=caller_id,
        distributor_brand_id=distributor_id,
        order_reference=data.order_reference,
        order_amount=data.order_amount,
        discount=discount,
        currency=benefit.currency,
        channel=data.channel,
        store_id=data.store_id,
        member_hash=member_hash,
        redeemed_at=now,
        contract_id=terms.contract_id,
        contract_version=terms.version,
        commission=0,
        refunded_amount=0,
        restored_discount=0,
        status="redeemed",
    )
    event = contracts.CouponRedemption(
        event_id=redemption.id,
        occurred_at=now,
        benefit_id=benefit.id,
        funding_brand=caller_id,
        distributor_brand=distributor_id,
        redeemer_brand=caller_id,
        face_value=discount,
        order_amount=data.order_amount,
        currency=benefit.currency,
    )
    booked = await booking.book(
        session,
        event,
        terms,
        brand_id=caller_id,
        kind="coupon_redemption",
        reference={"redemption_id": redemption.id, "benefit_id": benefit.id, "coupon_id": coupon_id},
        lock_totals=lock_totals,
    )
    redemption.commission = booked.priced.commission
    redemption.ledger_transaction_id = booked.transaction_id
    body = redemption_out(redemption)
    if has_webhooks:
        await enqueue_redemption_events(session, caller_id, distributor_id, body)
    record_audit(
        session,
        ctx,
        "redemption.create",
        brand_id=caller_id,
        target=redemption.id,
        details={"coupon_id": coupon_id, "benefit_id": benefit.id, "discount": discount, "currency": benefit.currency},
    )
    try:
        # Core INSERTs of prepared statements: the unit of work costs more than the row on this path.
        await session.execute(_INSERT_REDEMPTION, _row(redemption))
        await idempotency.store(session, caller_id, key, REDEEM_OPERATION, print_, 201, body, redemption.id)
        await session.flush()  # the audit row
    except IntegrityError:
        # A concurrent request with the same Idempotency-Key won; answer as it did.
        await session.rollback()
        return await _replay_or(  # type: ignore[no-any-return]
            session,
            caller_id,
            key,
            REDEEM_OPERATION,
            print_,
            Problem(409, "conflict", "a concurrent request changed this coupon; retry"),
            RedemptionOut,
        )
    # The hot rows last, so their locks are held only until the commit that follows.
    if not lock_totals:
        await _spend_budget(session, benefit, discount, now)
    await booking.settle(session, booked)
    return idempotency.IdempotentResult(201, body)


async def enqueue_redemption_events(
    session: AsyncSession, funding_brand_id: str, distributor_id: str, body: RedemptionOut
) -> None:
    """``redemption.created`` to the funding brand (the full redemption) and the distributor (its view)."""
    await webhooks.enqueue(
        session, "redemption.created", {funding_brand_id: body, distributor_id: distributor_view(body)}
    )


def distributor_view(body: RedemptionOut) -> dict[str, Any]:
    """What the distributing brand is told about a redemption of its coupon (no order details)."""
    return {
        "id": body.id,
        "coupon_id": body.coupon_id,
        "benefit_id": body.benefit_id,
        "funding_brand_id": body.funding_brand_id,
        "discount": body.discount,
        "currency": body.currency,
        "commission": body.commission,
        "redeemed_at": body.redeemed_at,
        "status": body.status,
    }


async def _spend_budget(session: AsyncSession, benefit: Benefit, discount: int, now: datetime) -> None:
    """Take ``discount`` and one count from the budget, or refuse; marks the benefit exhausted when
    what is left cannot pay for another redemption."""
    result = await session.execute(
        _SPEND_BUDGET,
        {"p_id": benefit.id, "p_discount": discount, "p_smallest": _smallest_discount(benefit), "p_now": now},
    )
    if result.rowcount == 1:  # type: ignore[attr-defined]
        return
    status = await session.scalar(select(Benefit.status).where(Benefit.id == benefit.id))
    if status == "paused":
        raise Problem(409, "benefit-paused", "the funding brand has paused this benefit")
    if status == "ended":
        raise Problem(409, "benefit-ended", "this benefit has ended")
    raise Problem(409, "budget-exhausted", "this benefit's remaining budget cannot pay for this discount")


async def _own_redemption(session: AsyncSession, caller_id: str, redemption_id: str) -> Redemption:
    redemption = await session.get(Redemption, redemption_id)
    if redemption is None or redemption.funding_brand_id != caller_id:
        raise Problem(404, "redemption-not-found", f"no redemption {redemption_id!r} for this brand")
    return redemption


async def get_redemption(session: AsyncSession, caller_id: str, redemption_id: str) -> RedemptionOut:
    return redemption_out(await _own_redemption(session, caller_id, redemption_id))


async def list_redemptions(
    session: AsyncSession,
    caller_id: str,
    *,
    benefit_id: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> list[RedemptionOut]:
    """The caller's redemptions as funding brand, newest first."""
    query = select(Redemption).where(Redemption.funding_brand_id == caller_id)
    if benefit_id is not None:
        query = query.where(Redemption.benefit_id == benefit_id)
    query = query.order_by(Redemption.redeemed_at.desc(), Redemption.id.desc()).limit(limit).offset(offset)
    return [redemption_out(r) for r in (await session.scalars(query)).all()]


# --- reversal -----------------------------------------------------------------------------------------


def _part(amount: int, numerator: int, denominator: int) -> int:
    return amount * numerator // denominator


async def reverse_redemption(
    session: AsyncSession,
    ctx: AuditContext,
    caller_id: str,
    redemption_id: str,
    idempotency_key: str | None,
    data: ReversalCreate,
) -> idempotency.IdempotentResult[ReversalOut]:
    """Refund all or part of a redeemed order within the benefit's reversal window.

    Posts reversing ledger entries (priced by the contract version that priced the redemption, in
    proportion to the refunded part, cumulatively), gives the same proportion of the discount back to
    the benefit's budget and, once fully reversed, the count and the member's use too. The coupon stays
    used. Partial refunds add up; nothing is reversed twice.
    """
    redemption = await _own_redemption(session, caller_id, redemption_id)
    key = idempotency.require_key(idempotency_key)
    print_ = idempotency.fingerprint(f"{REVERSE_OPERATION}:{redemption_id}", data)
    replay = await idempotency.lookup(session, caller_id, key, REVERSE_OPERATION, print_, ReversalOut)
    if replay is not None:
        return replay
    benefit = await session.get(Benefit, redemption.benefit_id)
    assert benefit is not None
    now = utcnow()
    if now > redemption.redeemed_at + timedelta(seconds=benefit.reversal_window_seconds):
        raise Problem(
            409,
            "reversal-window-closed",
            f"redemptions of this benefit can be reversed for {benefit.reversal_window_seconds // _DAY} day(s)",
        )
    before = redemption.refunded_amount
    remaining = redemption.order_amount - before
    if remaining <= 0:
        raise Problem(409, "already-reversed", "this redemption is already fully reversed")
    refund = remaining if data.refund_amount is None else data.refund_amount
    if refund > remaining:
        raise Problem(
            422,
            "refund-exceeds-remaining",
            f"at most {remaining} minor units of this order remain to refund",
            extra={"remaining": remaining},
        )
    after = before + refund
    full = after == redemption.order_amount
    restored_before = _part(redemption.discount, before, redemption.order_amount)
    restored_after = _part(redemption.discount, after, redemption.order_amount)
    restored = restored_after - restored_before

    claimed = await session.execute(
        update(Redemption)
        .where(Redemption.id == redemption.id, Redemption.refunded_amount == before)
        .values(
            refunded_amount=after,
            restored_discount=restored_after,
            status="reversed" if full else "partially_reversed",
        )
        .execution_options(synchronize_session=False)
    )
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        return await _replay_or(  # type: ignore[no-any-return]
            session,
            caller_id,
            key,
            REVERSE_OPERATION,
            print_,
            Problem(409, "reversal-conflict", "another reversal of this redemption happened at the same time; retry"),
            ReversalOut,
        )
    if full and redemption.member_hash is not None and benefit.per_member_limit is not None:
        await session.execute(
            update(BenefitMemberUsage)
            .where(
                BenefitMemberUsage.benefit_id == benefit.id,
                BenefitMemberUsage.member_hash == redemption.member_hash,
                BenefitMemberUsage.count > 0,
            )
            .values(count=BenefitMemberUsage.count - 1)
        )
    reversal_id = new_id("rvs")
    assert redemption.contract_id is not None
    assert redemption.contract_version is not None
    terms = await booking.terms_version(session, redemption.contract_id, redemption.contract_version)
    original = contracts.CouponRedemption(
        event_id=redemption.id,
        occurred_at=redemption.redeemed_at,
        benefit_id=redemption.benefit_id,
        funding_brand=redemption.funding_brand_id,
        distributor_brand=redemption.distributor_brand_id,
        redeemer_brand=redemption.funding_brand_id,
        face_value=redemption.discount,
        order_amount=redemption.order_amount,
        currency=redemption.currency,
    )
    event = contracts.Reversal(
        event_id=reversal_id,
        occurred_at=now,
        original=original,
        original_commission=redemption.commission,
        refund_amount=refund,
        already_refunded=before,
    )
    booked = await booking.book(
        session,
        event,
        terms,
        brand_id=caller_id,
        kind="coupon_reversal",
        reference={"redemption_id": redemption.id, "reversal_id": reversal_id},
    )
    priced, transaction_id = booked.priced, booked.transaction_id
    reversal = RedemptionReversal(
        id=reversal_id,
        redemption_id=redemption.id,
        funding_brand_id=caller_id,
        refund_amount=refund,
        restored_discount=restored,
        commission_delta=priced.commission,
        full=full,
        reason=data.reason,
        ledger_transaction_id=transaction_id,
        created_at=now,
    )
    session.add(reversal)
    await session.flush()
    await session.refresh(redemption)
    body = ReversalOut(
        id=reversal.id,
        redemption_id=redemption.id,
        refund_amount=refund,
        restored_discount=restored,
        commission_delta=priced.commission,
        full=full,
        reason=data.reason,
        ledger_transaction_id=transaction_id,
        created_at=now,
        redemption=redemption_out(redemption),
    )
    await webhooks.enqueue(
        session,
        "redemption.reversed",
        {
            caller_id: body,
            redemption.distributor_brand_id: {
                "id": reversal.id,
                "redemption_id": redemption.id,
                "coupon_id": redemption.coupon_id,
                "benefit_id": redemption.benefit_id,
                "restored_discount": restored,
                "commission_delta": priced.commission,
                "full": full,
                "currency": redemption.currency,
                "created_at": now,
            },
        },
    )
    record_audit(
        session,
        ctx,
        "redemption.reverse",
        brand_id=caller_id,
        target=redemption.id,
        details={"reversal_id": reversal.id, "refund_amount": refund, "full": full},
    )
    idempotency.remember(session, caller_id, key, REVERSE_OPERATION, print_, 201, body, reversal.id)
    try:
        await session.flush()
    except IntegrityError:
        await session.rollback()
        return await _replay_or(  # type: ignore[no-any-return]
            session,
            caller_id,
            key,
            REVERSE_OPERATION,
            print_,
            Problem(409, "reversal-conflict", "a concurrent request reversed this redemption; retry"),
            ReversalOut,
        )
    await _restore_budget(session, benefit, restored, 1 if full else 0, now)
    await booking.settle(session, booked)  # a reversal's (negative) commission is never guarded
    return idempotency.IdempotentResult(201, body)


async def _restore_budget(session: AsyncSession, benefit: Benefit, amount: int, count: int, now: datetime) -> None:
    """Give budget back; an exhausted benefit with room again becomes active."""
    after_count = Benefit.spent_count - count
    after_amount = Benefit.spent_amount - amount
    reopened = and_(
        Benefit.status == "exhausted",
        after_count < Benefit.budget_count,
        Benefit.budget_amount - after_amount >= _smallest_discount(benefit),
    )
    await session.execute(
        update(Benefit)
        .where(Benefit.id == benefit.id)
        .values(
            spent_count=after_count,
            spent_amount=after_amount,
            status=case((reopened, "active"), else_=Benefit.status),
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
