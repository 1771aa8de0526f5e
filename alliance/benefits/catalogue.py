"""The benefit catalogue: publishing a benefit, what each brand sees of it, and its lifecycle (pause,
resume, end, the distributor list). Only the funding brand changes a benefit; only it and the brands it
allows to distribute see it (to anyone else it does not exist: 404)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import case, delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

import contracts
from alliance.benefits.rules import smallest_discount
from alliance.benefits.schemas import BenefitCreate, BenefitOut
from alliance.benefits.views import DAY, benefit_out
from alliance.core.audit import AuditContext, record_audit
from alliance.core.ids import new_id
from alliance.core.problems import Problem
from alliance.db.base import utcnow
from alliance.db.models import Benefit, BenefitDistributor, BenefitTag, Brand

__all__ = [
    "create_benefit",
    "end_benefit",
    "get_benefit",
    "list_all_benefits",
    "list_benefits",
    "pause_benefit",
    "resume_benefit",
    "set_distributors",
    "visible_benefit",
]


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


async def visible_benefit(session: AsyncSession, caller_id: str, benefit_id: str) -> tuple[Benefit, bool]:
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
    benefit, funder = await visible_benefit(session, caller_id, benefit_id)
    if not funder:
        raise Problem(403, "not-funding-brand", "only the brand that funds a benefit can change it")
    return benefit


async def _out(session: AsyncSession, benefit: Benefit, funder: bool) -> BenefitOut:
    tags = (await _tags(session, [benefit.id]))[benefit.id]
    distributors = (await _distributors(session, [benefit.id]))[benefit.id] if funder else None
    return benefit_out(benefit, tags, distributors=distributors)


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
        reversal_window_seconds=data.reversal_window_days * DAY,
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
    benefit, funder = await visible_benefit(session, caller_id, benefit_id)
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
            Benefit.budget_amount - Benefit.spent_amount
            < smallest_discount(benefit.value_kind, benefit.value, benefit.min_spend),
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
