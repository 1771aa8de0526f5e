"""Whether a coupon may be redeemed, and what the redemption books: one pure function.

:func:`decide_redemption` takes a snapshot of everything a redemption reads (the coupon, its benefit and
budget, whether its distributor may still hand it out, the member's uses, the contract's signed and
rejected versions, the month-to-date commission total, the answer already stored under the request's
``Idempotency-Key``), the request and the time, and answers with a `Refusal`, a `Replay` of the stored
first answer, or a `RedemptionPlan` - the discount, the contract version in force
(`contracts.version_in_force`) and the priced event. No I/O: both stores of
`alliance.benefits.redemption_store` load the same snapshot and write the same plan, so a refusal
exists once, here, whichever way the redemption runs.

The snapshot is read without locks. What a concurrent request can change between the read and the
write (the coupon taken, the member's limit reached, the budget spent, the benefit paused, the total
moved, the key used) is guarded again by the write's own conditional statements; when a guard fails,
the redemption is read and decided again, so the refusal still comes from here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime

import msgspec

import contracts
from alliance.benefits import codes
from alliance.benefits.rules import (
    Refusal,
    Replay,
    StoredAnswer,
    contract_in_force,
    discount_amount,
    member_digest,
    price,
    pricing_refusal,
    replay_or_refuse,
    smallest_discount,
    state_refusal,
)
from alliance.benefits.schemas import RedemptionCreate
from alliance.core import idempotency
from alliance.core.problems import Problem

__all__ = [
    "REDEEM_OPERATION",
    "BenefitSnapshot",
    "RedemptionPlan",
    "RedemptionRequest",
    "RedemptionSnapshot",
    "decide_redemption",
    "redemption_request",
    "reprice",
]

REDEEM_OPERATION = "redemption.create"


@dataclass(frozen=True, slots=True)
class BenefitSnapshot:
    """The benefit's rules and its budget as read."""

    id: str
    status: str
    valid_from: datetime
    valid_to: datetime
    channels: tuple[str, ...]
    currency: str
    min_spend: int
    new_customers_only: bool
    per_member_limit: int | None
    value_kind: str
    value: int
    max_discount: int | None
    budget_amount: int
    budget_count: int
    spent_amount: int
    spent_count: int


@dataclass(frozen=True, slots=True)
class RedemptionSnapshot:
    """Everything a redemption reads, for a coupon code of the funding brand (the caller)."""

    coupon_id: str
    coupon_status: str
    distributor_id: str
    benefit: BenefitSnapshot
    distributor_allowed: bool
    endpoints: tuple[tuple[str, str, tuple[str, ...]], ...]  # active webhooks: (id, brand, events)
    contract_id: str | None
    versions: tuple[contracts.ContractTerms, ...]  # fully signed, rejected ones included
    rejected: dict[int, str]  # version -> the alliance's reason
    month_to_date: int  # the caller's coupon commission total of the month under this contract
    member_uses: int  # the member's redemptions of this benefit (0 without a member token)
    stored: StoredAnswer | None  # the answer stored under the request's Idempotency-Key


@dataclass(frozen=True, slots=True)
class RedemptionRequest:
    caller_id: str
    key: str | None  # the Idempotency-Key as sent
    fingerprint: str  # of the normalised request (`redemption_fingerprint`)
    data: RedemptionCreate
    member_hash: str | None
    redemption_id: str  # the id the redemption will have


@dataclass(frozen=True, slots=True)
class RedemptionPlan:
    """A redemption decided: what to write. ``guard`` is the condition under which ``priced``'s
    commission may be added to the month-to-date total (see `alliance.benefits.rules.price`)."""

    request: RedemptionRequest
    key: str
    coupon_id: str
    benefit: BenefitSnapshot
    distributor_id: str
    endpoints: tuple[tuple[str, str, tuple[str, ...]], ...]
    discount: int
    smallest_discount: int
    terms: contracts.ContractTerms
    event: contracts.CouponRedemption
    priced: contracts.PricedEvent
    guard: tuple[str, int] | None


def redemption_request(
    caller_id: str, key: str | None, data: RedemptionCreate, redemption_id: str
) -> tuple[str, RedemptionRequest] | Refusal:
    """The request with its code normalised, and the code's digest (the coupon's lookup key), or 400
    ``malformed-coupon-code``. The Idempotency-Key fingerprint is of the normalised request, so that a
    retry with the code typed differently still matches."""
    try:
        code = codes.normalize_code(data.code)
    except codes.MalformedCode as exc:
        return Refusal(400, "malformed-coupon-code", str(exc))
    normalised = msgspec.structs.replace(data, code=code)
    member_hash = member_digest(caller_id, data.member_token) if data.member_token is not None else None
    request = RedemptionRequest(
        caller_id=caller_id,
        key=key.strip() if key is not None else None,
        fingerprint=idempotency.fingerprint(REDEEM_OPERATION, normalised),
        data=data,
        member_hash=member_hash,
        redemption_id=redemption_id,
    )
    return codes.code_digest(code), request


def _order_refusal(benefit: BenefitSnapshot, data: RedemptionCreate) -> Refusal | None:
    """What the order itself must satisfy: channel, currency, minimum spend, the new-customer rule and a
    member token where uses are limited per member."""
    if data.channel not in benefit.channels:
        return Refusal(422, "channel-not-allowed", f"this benefit is for {', '.join(benefit.channels)} only")
    if data.currency is not None and data.currency != benefit.currency:
        return Refusal(422, "currency-mismatch", f"this benefit is in {benefit.currency}")
    if data.order_amount < benefit.min_spend:
        return Refusal(
            422,
            "below-minimum-spend",
            f"the order must be at least {benefit.min_spend} minor units of {benefit.currency}",
            extra={"min_spend": benefit.min_spend},
        )
    if benefit.new_customers_only and data.new_customer is not True:
        return Refusal(409, "new-customers-only", "this benefit is for new customers only (send new_customer: true)")
    if benefit.per_member_limit is not None and data.member_token is None:
        return Refusal(422, "member-token-required", "this benefit has a per-member limit: send member_token")
    return None


def _coupon_refusal(snapshot: RedemptionSnapshot, now: datetime) -> Refusal | None:
    """The coupon unused, its benefit usable now, its distributor still allowed."""
    if snapshot.coupon_status != "issued":
        return Refusal(409, "coupon-already-redeemed", "this coupon has already been redeemed")
    benefit = snapshot.benefit
    refusal = state_refusal(benefit.status, benefit.valid_to, now)
    if refusal is not None:
        return refusal
    if now < benefit.valid_from:
        return Refusal(409, "benefit-not-yet-valid", f"this benefit is valid from {benefit.valid_from.isoformat()}")
    if not snapshot.distributor_allowed:
        return Refusal(409, "distributor-not-allowed", "the brand that issued this coupon may no longer distribute it")
    return None


def _limit_refusal(snapshot: RedemptionSnapshot, discount: int) -> Refusal | None:
    """The member's limit and the budget (money and count)."""
    benefit = snapshot.benefit
    if benefit.per_member_limit is not None and snapshot.member_uses >= benefit.per_member_limit:
        return Refusal(
            409,
            "member-limit-reached",
            f"this member has used this benefit {benefit.per_member_limit} time(s), the limit",
        )
    if discount <= 0:
        return Refusal(422, "zero-discount", "the coupon gives no discount on this order")
    if benefit.spent_count + 1 > benefit.budget_count or benefit.spent_amount + discount > benefit.budget_amount:
        return Refusal(409, "budget-exhausted", "this benefit's remaining budget cannot pay for this discount")
    return None


def decide_redemption(
    snapshot: RedemptionSnapshot | None, request: RedemptionRequest, now: datetime
) -> Refusal | Replay | RedemptionPlan:
    """Decide a redemption (see the module docstring). ``snapshot`` is ``None`` when the code names no
    coupon of a benefit the caller funds."""
    if snapshot is None:
        return Refusal(404, "coupon-not-found", "no such coupon code for a benefit this brand funds")
    try:
        key = idempotency.require_key(request.key)
    except Problem as exc:
        return Refusal(exc.status, exc.slug, exc.detail or exc.slug)
    if snapshot.stored is not None:
        return replay_or_refuse(snapshot.stored, REDEEM_OPERATION, request.fingerprint)
    data, benefit = request.data, snapshot.benefit
    discount = discount_amount(benefit.value_kind, benefit.value, benefit.max_discount, data.order_amount)
    refusal = _coupon_refusal(snapshot, now) or _order_refusal(benefit, data) or _limit_refusal(snapshot, discount)
    if refusal is not None:
        return refusal
    brands = (request.caller_id, snapshot.distributor_id)
    terms = contract_in_force(brands, snapshot.contract_id, snapshot.versions, snapshot.rejected, now)
    if isinstance(terms, Refusal):
        return terms
    event = contracts.CouponRedemption(
        event_id=request.redemption_id,
        occurred_at=now,
        benefit_id=benefit.id,
        funding_brand=request.caller_id,
        distributor_brand=snapshot.distributor_id,
        redeemer_brand=request.caller_id,
        face_value=discount,
        order_amount=data.order_amount,
        currency=benefit.currency,
    )
    try:
        priced, guard = price(event, terms, snapshot.month_to_date, guarded=True)
    except contracts.ContractError as exc:
        return pricing_refusal(exc)
    return RedemptionPlan(
        request=request,
        key=key,
        coupon_id=snapshot.coupon_id,
        benefit=benefit,
        distributor_id=snapshot.distributor_id,
        endpoints=snapshot.endpoints,
        discount=discount,
        smallest_discount=smallest_discount(benefit.value_kind, benefit.value, benefit.min_spend),
        terms=terms,
        event=event,
        priced=priced,
        guard=guard,
    )


def reprice(plan: RedemptionPlan, month_to_date: int) -> RedemptionPlan:
    """The plan priced again from a month-to-date total read under a lock: exact, so unguarded. (Caps
    only lower a commission; a redemption priced once is never refused by a later total.)"""
    priced, _ = price(plan.event, plan.terms, month_to_date, guarded=False)
    return dataclasses.replace(plan, priced=priced, guard=None)
