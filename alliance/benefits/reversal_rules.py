"""Whether a redemption may be reversed (refunded in full or in part), and what the reversal books: one
pure function, :func:`decide_reversal`, from a snapshot of what the reversal reads.

A reversal refunds part or all of what remains of the order, within the benefit's reversal window. It
is priced by the contract version that priced the redemption, in proportion to the refunded part and
cumulatively (`contracts.price_reversal`), and gives the same proportion of the discount back to the
budget - and, once the order is fully reversed, the count and the member's use too. The coupon stays
used; nothing is reversed twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import contracts
from alliance.benefits.rules import Refusal, Replay, StoredAnswer, pricing_refusal, replay_or_refuse
from alliance.benefits.schemas import RedemptionOut, ReversalCreate
from alliance.core import idempotency
from alliance.core.problems import Problem

__all__ = ["REVERSE_OPERATION", "ReversalPlan", "ReversalRequest", "ReversalSnapshot", "decide_reversal"]

REVERSE_OPERATION = "redemption.reverse"
_DAY = 86_400


@dataclass(frozen=True, slots=True)
class ReversalSnapshot:
    """The redemption to reverse (the caller's own), its benefit's reversal rules, the contract version
    that priced it, and the answer stored under the request's ``Idempotency-Key``."""

    redemption: RedemptionOut
    member_hash: str | None
    reversal_window_seconds: int
    per_member_limit: int | None
    smallest_discount: int
    terms: contracts.ContractTerms
    stored: StoredAnswer | None


@dataclass(frozen=True, slots=True)
class ReversalRequest:
    caller_id: str
    redemption_id: str
    key: str | None
    fingerprint: str
    data: ReversalCreate
    reversal_id: str


@dataclass(frozen=True, slots=True)
class ReversalPlan:
    """A reversal decided: ``refunded_before`` is the guard (no other reversal happened meanwhile)."""

    request: ReversalRequest
    key: str
    snapshot: ReversalSnapshot
    refund: int
    refunded_before: int
    refunded_after: int
    full: bool
    restored_after: int  # the discount given back so far, this reversal included
    restored: int  # given back by this reversal
    priced: contracts.PricedEvent


def _part(amount: int, numerator: int, denominator: int) -> int:
    return amount * numerator // denominator


def _refund_refusal(snapshot: ReversalSnapshot, refund_amount: int | None, now: datetime) -> Refusal | int:
    """The amount to refund, or why not: the window, what remains of the order."""
    redemption = snapshot.redemption
    if now > redemption.redeemed_at + timedelta(seconds=snapshot.reversal_window_seconds):
        return Refusal(
            409,
            "reversal-window-closed",
            f"redemptions of this benefit can be reversed for {snapshot.reversal_window_seconds // _DAY} day(s)",
        )
    remaining = redemption.order_amount - redemption.refunded_amount
    if remaining <= 0:
        return Refusal(409, "already-reversed", "this redemption is already fully reversed")
    refund = remaining if refund_amount is None else refund_amount
    if refund > remaining:
        return Refusal(
            422,
            "refund-exceeds-remaining",
            f"at most {remaining} minor units of this order remain to refund",
            extra={"remaining": remaining},
        )
    return refund


def _original(redemption: RedemptionOut) -> contracts.CouponRedemption:
    return contracts.CouponRedemption(
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


def decide_reversal(
    snapshot: ReversalSnapshot | None, request: ReversalRequest, now: datetime
) -> Refusal | Replay | ReversalPlan:
    """Decide a reversal. ``snapshot`` is ``None`` when the caller funds no redemption of that id."""
    if snapshot is None:
        return Refusal(404, "redemption-not-found", f"no redemption {request.redemption_id!r} for this brand")
    try:
        key = idempotency.require_key(request.key)
    except Problem as exc:
        return Refusal(exc.status, exc.slug, exc.detail or exc.slug)
    if snapshot.stored is not None:
        return replay_or_refuse(snapshot.stored, REVERSE_OPERATION, request.fingerprint)
    refund = _refund_refusal(snapshot, request.data.refund_amount, now)
    if isinstance(refund, Refusal):
        return refund
    redemption = snapshot.redemption
    before = redemption.refunded_amount
    after = before + refund
    restored_after = _part(redemption.discount, after, redemption.order_amount)
    event = contracts.Reversal(
        event_id=request.reversal_id,
        occurred_at=now,
        original=_original(redemption),
        original_commission=redemption.commission,
        refund_amount=refund,
        already_refunded=before,
    )
    try:
        priced = contracts.price_reversal(event, snapshot.terms)
    except contracts.ContractError as exc:
        return pricing_refusal(exc)
    return ReversalPlan(
        request=request,
        key=key,
        snapshot=snapshot,
        refund=refund,
        refunded_before=before,
        refunded_after=after,
        full=after == redemption.order_amount,
        restored_after=restored_after,
        restored=restored_after - _part(redemption.discount, before, redemption.order_amount),
        priced=priced,
    )
