"""Wire schemas for benefits, coupon batches, redemptions and reversals.

Money is an integer of minor units with an ISO 4217 currency; a JSON number with a fraction, a negative
amount or one above :data:`MAX_AMOUNT` is refused at the edge with a 400 problem.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

from contracts.bounds import MAX_AMOUNT

__all__ = [
    "CHANNELS",
    "MAX_AMOUNT",
    "BenefitCreate",
    "BenefitOut",
    "Channel",
    "CouponBatchOut",
    "CouponIssue",
    "DistributorsUpdate",
    "IssuedCoupon",
    "LifecycleRequest",
    "RedemptionCreate",
    "RedemptionOut",
    "ReversalCreate",
    "ReversalOut",
]

MAX_BATCH = 5_000

Channel = Literal["store", "online", "mini_program"]
CHANNELS: tuple[str, ...] = ("store", "online", "mini_program")
Amount = Annotated[int, msgspec.Meta(ge=0, le=MAX_AMOUNT)]
PositiveAmount = Annotated[int, msgspec.Meta(ge=1, le=MAX_AMOUNT)]
Currency = Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{3}$")]
BrandId = Annotated[str, msgspec.Meta(min_length=1, max_length=32)]
Tag = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[\w.-]+$")]
Text200 = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=r"\S")]
Reference = Annotated[str, msgspec.Meta(min_length=1, max_length=128, pattern=r"^[\x21-\x7e]+$")]
MemberToken = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
AwareDateTime = Annotated[datetime, msgspec.Meta(tz=True)]


class BenefitCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A benefit the calling brand funds. ``value`` is minor units off (``fixed``) or basis points off
    (``percent``, 1-10000, with ``max_discount`` required as the cap)."""

    name: Text200
    description: Annotated[str, msgspec.Meta(max_length=2000)] = ""
    tags: Annotated[list[Tag], msgspec.Meta(max_length=20)] = msgspec.field(default_factory=list)
    value_kind: Literal["fixed", "percent"]
    value: PositiveAmount
    max_discount: PositiveAmount | None = None
    min_spend: Amount = 0
    currency: Currency
    valid_from: AwareDateTime | None = None
    valid_to: AwareDateTime
    budget_amount: PositiveAmount
    budget_count: Annotated[int, msgspec.Meta(ge=1, le=10**9)]
    per_member_limit: Annotated[int, msgspec.Meta(ge=1, le=1000)] | None = None
    channels: Annotated[list[Channel], msgspec.Meta(min_length=1, max_length=3)]
    distributors: Annotated[list[BrandId], msgspec.Meta(max_length=100)] = msgspec.field(default_factory=list)
    new_customers_only: bool = False
    reversal_window_days: Annotated[int, msgspec.Meta(ge=0, le=365)] = 30


class BenefitOut(msgspec.Struct, kw_only=True):
    """A benefit as the catalogue shows it. ``distributors`` is listed for the funding brand only."""

    id: str
    funding_brand_id: str
    name: str
    description: str
    tags: list[str]
    value_kind: str
    value: int
    max_discount: int | None
    min_spend: int
    currency: str
    valid_from: datetime
    valid_to: datetime
    budget_amount: int
    budget_count: int
    remaining_amount: int
    remaining_count: int
    issued_count: int
    per_member_limit: int | None
    channels: list[str]
    new_customers_only: bool
    reversal_window_days: int
    status: str
    created_at: datetime
    updated_at: datetime
    ended_at: datetime | None = None
    distributors: list[str] | None = None


class LifecycleRequest(msgspec.Struct, forbid_unknown_fields=True):
    reason: Annotated[str, msgspec.Meta(max_length=500)] = ""


class DistributorsUpdate(msgspec.Struct, forbid_unknown_fields=True):
    """The complete new list of brands allowed to distribute (and see) the benefit."""

    distributors: Annotated[list[BrandId], msgspec.Meta(max_length=100)]


class CouponIssue(msgspec.Struct, forbid_unknown_fields=True):
    count: Annotated[int, msgspec.Meta(ge=1, le=MAX_BATCH)]


class IssuedCoupon(msgspec.Struct):
    id: str
    code: str


class CouponBatchOut(msgspec.Struct, kw_only=True):
    """The codes are in this response only: the exchange keeps nothing but their digests."""

    id: str
    benefit_id: str
    funding_brand_id: str
    distributor_brand_id: str
    count: int
    contract_id: str | None
    contract_version: int | None
    created_at: datetime
    coupons: list[IssuedCoupon]


class RedemptionCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A coupon presented at the funding brand's till or checkout.

    ``member_token`` is the funding brand's own opaque id for the member (stored hashed), required when
    the benefit has a per-member limit; ``new_customer`` is the funding brand's statement that the
    member had not bought from it before, required ``true`` for new-customers-only benefits.
    """

    code: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    order_reference: Reference
    order_amount: Amount
    currency: Currency | None = None
    channel: Channel
    store_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None = None
    member_token: MemberToken | None = None
    new_customer: bool | None = None


class RedemptionOut(msgspec.Struct, kw_only=True):
    id: str
    coupon_id: str
    benefit_id: str
    funding_brand_id: str
    distributor_brand_id: str
    order_reference: str
    order_amount: int
    discount: int
    currency: str
    channel: str
    store_id: str | None
    redeemed_at: datetime
    contract_id: str | None
    contract_version: int | None
    commission: int
    ledger_transaction_id: str | None
    refunded_amount: int
    restored_discount: int
    status: str


class ReversalCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Refund ``refund_amount`` of the order (minor units); omit it to reverse everything that remains."""

    refund_amount: PositiveAmount | None = None
    reason: Annotated[str, msgspec.Meta(max_length=500)] = ""


class ReversalOut(msgspec.Struct, kw_only=True):
    id: str
    redemption_id: str
    refund_amount: int
    restored_discount: int
    commission_delta: int
    full: bool
    reason: str
    ledger_transaction_id: str | None
    created_at: datetime
    redemption: RedemptionOut
