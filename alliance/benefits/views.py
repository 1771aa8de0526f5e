"""How benefits and redemptions are shown: the response structs built from stored rows, and what a
distributing brand is told of a redemption. No I/O."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from alliance.benefits.schemas import BenefitOut, RedemptionOut
from alliance.db.base import utcnow
from alliance.db.models import Benefit, Redemption

__all__ = ["DAY", "benefit_out", "distributor_view", "redemption_out"]

DAY = 86_400


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
        reversal_window_days=benefit.reversal_window_seconds // DAY,
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
