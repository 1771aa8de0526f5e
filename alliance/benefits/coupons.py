"""Issuing coupon codes: a batch of a benefit's codes to the calling brand as its distributor, under the
contract in force between the two brands. The codes are shown once; only their digests are stored."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import insert, update
from sqlalchemy.ext.asyncio import AsyncSession

import contracts
from alliance.benefits import booking, codes
from alliance.benefits.catalogue import visible_benefit
from alliance.benefits.rules import state_refusal
from alliance.benefits.schemas import CouponBatchOut, IssuedCoupon
from alliance.core.audit import AuditContext, record_audit
from alliance.core.ids import new_id
from alliance.core.problems import Problem
from alliance.db.base import utcnow
from alliance.db.models import Benefit, Coupon, CouponBatch

__all__ = ["issue_coupons"]


async def _covering_terms(
    session: AsyncSession, benefit: Benefit, caller_id: str, now: datetime
) -> contracts.ContractTerms:
    """The contract version in force between the funding brand and the caller, if it names a funding
    split covering the benefit with the caller as distributor."""
    refusal = state_refusal(benefit.status, benefit.valid_to, now)
    if refusal is not None:
        raise refusal.problem()
    terms = await booking.terms_in_force(session, benefit.funding_brand_id, caller_id, now)
    split = terms.funding_split_for(benefit.id, benefit.funding_brand_id)
    if split is None or split.distributor_brand != caller_id:
        raise Problem(
            409,
            "benefit-not-covered",
            f"contract {terms.contract_id} v{terms.version} has no funding split for this benefit "
            "with you as distributor",
        )
    return terms


async def _insert_codes(session: AsyncSession, batch: CouponBatch, count: int) -> list[tuple[str, str]]:
    """``count`` new codes of the batch, stored as digests; returns (coupon id, code) pairs."""
    issued = [(new_id("cpn"), codes.generate_code()) for _ in range(count)]
    await session.execute(
        insert(Coupon),
        [
            {
                "id": coupon_id,
                "benefit_id": batch.benefit_id,
                "funding_brand_id": batch.funding_brand_id,
                "distributor_brand_id": batch.distributor_brand_id,
                "batch_id": batch.id,
                "code_hash": codes.code_digest(code),
                "status": "issued",
                "issued_at": batch.created_at,
            }
            for coupon_id, code in issued
        ],
    )
    await session.execute(
        update(Benefit)
        .where(Benefit.id == batch.benefit_id)
        .values(issued_count=Benefit.issued_count + count)
        .execution_options(synchronize_session=False)
    )
    return issued


async def issue_coupons(
    session: AsyncSession, ctx: AuditContext, caller_id: str, benefit_id: str, count: int
) -> CouponBatchOut:
    """Issue ``count`` codes of a benefit to the calling brand as distributor.

    The caller must be on the benefit's distributor list (otherwise the benefit does not exist for it:
    404), and a signed contract between the funding brand and the caller must be in force and name a
    funding split covering the benefit with the caller as distributor. The codes are returned once;
    only their digests are stored.
    """
    benefit, funder = await visible_benefit(session, caller_id, benefit_id)
    if funder:
        raise Problem(409, "own-benefit", "a funding brand cannot issue its own benefit's coupons to itself")
    now = utcnow()
    terms = await _covering_terms(session, benefit, caller_id, now)
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
    issued = await _insert_codes(session, batch, count)
    details = {"benefit_id": benefit.id, "count": count, "contract_id": terms.contract_id}
    record_audit(session, ctx, "coupons.issue", brand_id=caller_id, target=batch.id, details=details)
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
