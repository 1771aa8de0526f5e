"""What the redemption and reversal rules share: the shape of a refusal and of a stored answer, the
state a benefit must be in to be used, its discount arithmetic, and how contract and pricing errors
read as refusals. Pure: no I/O, no clock, no randomness.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec

import contracts
from alliance.core.problems import Problem

__all__ = [
    "Refusal",
    "Replay",
    "StoredAnswer",
    "commission_rule",
    "contract_in_force",
    "discount_amount",
    "member_digest",
    "price",
    "pricing_refusal",
    "replay_or_refuse",
    "smallest_discount",
    "state_refusal",
]


@dataclass(frozen=True, slots=True)
class Refusal:
    """A decision not to do something: the problem the caller answers with (status, type, detail)."""

    status: int
    slug: str
    detail: str
    extra: dict[str, Any] | None = None

    def problem(self) -> Problem:
        return Problem(self.status, self.slug, self.detail, extra=self.extra)


@dataclass(frozen=True, slots=True)
class StoredAnswer:
    """The idempotency record stored under the request's (brand, ``Idempotency-Key``), as read."""

    operation: str
    fingerprint: str
    status_code: int
    body: bytes


@dataclass(frozen=True, slots=True)
class Replay:
    """The first answer to this very request, given back unchanged (nothing is written again)."""

    status_code: int
    body: bytes


def replay_or_refuse(stored: StoredAnswer, operation: str, fingerprint: str) -> Replay | Refusal:
    """A stored answer for the request's key: the replay if it was this request, else 422."""
    if stored.operation != operation or stored.fingerprint != fingerprint:
        return Refusal(
            422,
            "idempotency-key-reused",
            "this Idempotency-Key was already used for a different request; use a new key for a new request",
        )
    return Replay(stored.status_code, stored.body)


def member_digest(funding_brand_id: str, member_token: str) -> str:
    """The stored form of a brand's opaque member token (never stored as given)."""
    return hashlib.sha256(f"bax-member-v1:{funding_brand_id}:{member_token}".encode()).hexdigest()


def smallest_discount(value_kind: str, value: int, min_spend: int) -> int:
    """The least a redemption of a benefit can take from the budget (for the exhausted check)."""
    if value_kind == "fixed" and min_spend >= value:
        return value
    return 1


def discount_amount(value_kind: str, value: int, max_discount: int | None, order_amount: int) -> int:
    """The discount a coupon gives on an order: never more than the order itself."""
    if value_kind == "fixed":
        return min(value, order_amount)
    amount = order_amount * value // contracts.BASIS_POINTS_PER_UNIT
    if max_discount is not None:
        amount = min(amount, max_discount)
    return amount


def state_refusal(status: str, valid_to: datetime, now: datetime) -> Refusal | None:
    """Why a benefit cannot be used (its coupons issued or redeemed) at ``now``, if it cannot. (Codes may
    be issued before the benefit's window opens; redeeming them then is refused separately.)"""
    if status == "paused":
        return Refusal(409, "benefit-paused", "the funding brand has paused this benefit")
    if status == "ended":
        return Refusal(409, "benefit-ended", "this benefit has ended")
    if status == "exhausted":
        return Refusal(409, "budget-exhausted", "this benefit's budget is used up")
    if now >= valid_to:
        return Refusal(409, "benefit-expired", f"this benefit expired at {valid_to.isoformat()}")
    return None


def contract_in_force(
    brands: tuple[str, str],
    contract_id: str | None,
    versions: Sequence[contracts.ContractTerms],
    rejected: Mapping[int, str],
    at: datetime,
) -> contracts.ContractTerms | Refusal:
    """The version of the two brands' contract that governs ``at`` (`contracts.version_in_force`, given
    the contract's fully signed versions and the alliance's rejections), or why none does."""
    if brands[0] == brands[1]:
        return Refusal(409, "no-contract-in-force", "a brand has no contract with itself")
    if contract_id is None:
        return Refusal(409, "no-contract-in-force", "these brands have no contract")
    try:
        return contracts.version_in_force(versions, at, rejected=rejected)
    except contracts.VersionRejected as exc:
        return Refusal(
            409,
            "no-contract-in-force",
            f"version {exc.version} of contract {contract_id} was rejected by the alliance: {exc.reason}",
            extra={"contract_id": contract_id, "rejected_version": exc.version},
        )
    except contracts.NoContractInForce as exc:
        return Refusal(409, "no-contract-in-force", str(exc), extra={"contract_id": contract_id})


def pricing_refusal(exc: contracts.ContractError) -> Refusal:
    """A pricing refusal with its own problem type."""
    if isinstance(exc, contracts.NoFundingSplit):
        return Refusal(409, "benefit-not-covered", str(exc))
    if isinstance(exc, contracts.OutsideAttributionWindow):
        return Refusal(409, "outside-attribution-window", str(exc))
    if isinstance(exc, contracts.CurrencyMismatch):
        return Refusal(422, "currency-mismatch", str(exc))
    if isinstance(exc, contracts.InvalidReversal):
        return Refusal(409, "invalid-reversal", str(exc))
    if isinstance(exc, contracts.NoContractInForce | contracts.OutsideContractPeriod):
        return Refusal(409, "no-contract-in-force", str(exc))
    return Refusal(422, "pricing-refused", str(exc))


def commission_rule(
    event: contracts.CouponRedemption | contracts.ReferralConversion, terms: contracts.ContractTerms
) -> tuple[contracts.CommissionRule, str, str]:
    """The commission rule that prices ``event``, its total's kind and the brand that pays it."""
    if isinstance(event, contracts.CouponRedemption):
        return terms.coupon_commission, "coupon", event.funding_brand
    return terms.referral, "referral", event.receiver_brand


def price(
    event: contracts.CouponRedemption | contracts.ReferralConversion,
    terms: contracts.ContractTerms,
    month_to_date: int,
    *,
    guarded: bool,
) -> tuple[contracts.PricedEvent, tuple[str, int] | None]:
    """Price ``event`` given the month-to-date total and, when ``guarded`` (the total was read without a
    lock), the guard under which the commission may be added to the total at write time: ``fits`` (the
    uncapped commission, any total with room for it gives that price), ``reaches`` (capped: exactly the
    total that leaves this much room), ``at-cap`` (nothing left). Raises ``contracts.ContractError`` on
    a pricing refusal."""
    rule = commission_rule(event, terms)[0]
    priced = contracts.price_event(event, terms, month_to_date=month_to_date)
    if rule.monthly_cap is None or not guarded:
        return priced, None
    uncapped = contracts.commission_amount(msgspec.structs.replace(rule, monthly_cap=None), event.order_amount)
    if uncapped == 0:
        return priced, None
    if priced.commission == uncapped:
        return priced, ("fits", rule.monthly_cap)
    if priced.commission > 0:
        return priced, ("reaches", rule.monthly_cap)
    return priced, ("at-cap", rule.monthly_cap)
