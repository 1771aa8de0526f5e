"""Benefits (published by a funding brand), the coupons issued to distributing brands, redemptions,
reversals, and the counters that keep budgets, per-member limits and monthly commission caps exact.

Exactly-once and never-overspent are enforced by the database, not by reads in Python:

* one redemption per coupon: ``redemptions.coupon_id`` is unique, and a coupon moves from ``issued``
  to ``redeemed`` only through a conditional ``UPDATE ... WHERE status = 'issued'``;
* budgets: ``benefits.spent_amount`` / ``spent_count`` grow only through a conditional ``UPDATE`` that
  re-checks the budget in its ``WHERE`` clause;
* per-member limits: ``benefit_member_usage`` grows through ``INSERT ... ON CONFLICT DO UPDATE ...
  WHERE count < limit``;
* idempotency keys: ``idempotency_records`` is unique per (brand, key).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from alliance.db.base import Base, UTCDateTime, utcnow

__all__ = [
    "Benefit",
    "BenefitDistributor",
    "BenefitMemberUsage",
    "BenefitTag",
    "CommissionMonthTotal",
    "Coupon",
    "CouponBatch",
    "IdempotencyRecord",
    "Redemption",
    "RedemptionReversal",
]

_BIGINT = BigInteger().with_variant(Integer, "sqlite")


class Benefit(Base):
    """A discount a funding brand pays for and lets partner brands hand out as coupons.

    ``value_kind`` is ``fixed`` (``value`` minor units off) or ``percent`` (``value`` basis points off,
    at most ``max_discount`` minor units). ``status`` is ``active``, ``paused``, ``exhausted`` (the money
    or count budget is used up; a reversal can reopen it) or ``ended`` (final).
    """

    __tablename__ = "benefits"
    __table_args__ = (Index("ix_benefits_funding_brand_id_status", "funding_brand_id", "status"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    funding_brand_id: Mapped[str] = mapped_column(ForeignKey("brands.id"))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(String(2000), default="")
    value_kind: Mapped[str] = mapped_column(String(8))  # fixed | percent
    value: Mapped[int] = mapped_column(BigInteger)
    max_discount: Mapped[int | None] = mapped_column(BigInteger)
    min_spend: Mapped[int] = mapped_column(BigInteger, default=0)
    currency: Mapped[str] = mapped_column(String(3))
    valid_from: Mapped[datetime] = mapped_column(UTCDateTime())
    valid_to: Mapped[datetime] = mapped_column(UTCDateTime())
    budget_amount: Mapped[int] = mapped_column(BigInteger)
    budget_count: Mapped[int] = mapped_column(BigInteger)
    spent_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    spent_count: Mapped[int] = mapped_column(BigInteger, default=0)
    issued_count: Mapped[int] = mapped_column(BigInteger, default=0)
    per_member_limit: Mapped[int | None] = mapped_column(Integer)
    channels: Mapped[list[str]] = mapped_column(JSON)
    new_customers_only: Mapped[bool] = mapped_column(Boolean, default=False)
    reversal_window_seconds: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default="active")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class BenefitDistributor(Base):
    """A partner brand the funding brand allows to distribute the benefit (and to see it)."""

    __tablename__ = "benefit_distributors"
    __table_args__ = (Index("ix_benefit_distributors_brand_id", "brand_id"),)

    benefit_id: Mapped[str] = mapped_column(ForeignKey("benefits.id"), primary_key=True)
    brand_id: Mapped[str] = mapped_column(ForeignKey("brands.id"), primary_key=True)


class BenefitTag(Base):
    __tablename__ = "benefit_tags"
    __table_args__ = (Index("ix_benefit_tags_tag", "tag"),)

    benefit_id: Mapped[str] = mapped_column(ForeignKey("benefits.id"), primary_key=True)
    tag: Mapped[str] = mapped_column(String(64), primary_key=True)


class CouponBatch(Base):
    """One issuance call: ``count`` codes of a benefit handed to a distributor under a contract version."""

    __tablename__ = "coupon_batches"
    __table_args__ = (Index("ix_coupon_batches_benefit_id_distributor", "benefit_id", "distributor_brand_id"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    benefit_id: Mapped[str] = mapped_column(ForeignKey("benefits.id"))
    funding_brand_id: Mapped[str] = mapped_column(String(32))
    distributor_brand_id: Mapped[str] = mapped_column(ForeignKey("brands.id"))
    count: Mapped[int] = mapped_column(Integer)
    contract_id: Mapped[str | None] = mapped_column(String(64))
    contract_version: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Coupon(Base):
    """A coupon code, stored only as its SHA-256 digest (codes carry 85 random bits)."""

    __tablename__ = "coupons"
    __table_args__ = (
        UniqueConstraint("code_hash", name="uq_coupons_code_hash"),
        Index("ix_coupons_batch_id", "batch_id"),
        Index("ix_coupons_benefit_id", "benefit_id"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    benefit_id: Mapped[str] = mapped_column(ForeignKey("benefits.id"))
    funding_brand_id: Mapped[str] = mapped_column(String(32))
    distributor_brand_id: Mapped[str] = mapped_column(String(32))
    batch_id: Mapped[str] = mapped_column(ForeignKey("coupon_batches.id"))
    code_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(12), default="issued")  # issued | redeemed
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    redeemed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class BenefitMemberUsage(Base):
    """How many times a member (an opaque token of the funding brand, stored hashed) used a benefit."""

    __tablename__ = "benefit_member_usage"

    benefit_id: Mapped[str] = mapped_column(ForeignKey("benefits.id"), primary_key=True)
    member_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    count: Mapped[int] = mapped_column(Integer, default=0)


class Redemption(Base):
    """A coupon honoured by its funding brand; the unique ``coupon_id`` makes it exactly once."""

    __tablename__ = "redemptions"
    __table_args__ = (
        UniqueConstraint("coupon_id", name="uq_redemptions_coupon_id"),
        Index("ix_redemptions_funding_brand_id_redeemed_at", "funding_brand_id", "redeemed_at"),
        Index("ix_redemptions_benefit_id", "benefit_id"),
        # The console's redemption list: keyset on (redeemed_at, id), per filter (migration 0009).
        Index("ix_redemptions_redeemed_at_id", "redeemed_at", "id"),
        Index("ix_redemptions_benefit_id_redeemed_at", "benefit_id", "redeemed_at", "id"),
        Index("ix_redemptions_distributor_brand_id_redeemed_at", "distributor_brand_id", "redeemed_at", "id"),
        Index(
            "ix_redemptions_reversed",
            "redeemed_at",
            "id",
            postgresql_where=text("status <> 'redeemed'"),
            sqlite_where=text("status <> 'redeemed'"),
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    coupon_id: Mapped[str] = mapped_column(ForeignKey("coupons.id"))
    benefit_id: Mapped[str] = mapped_column(ForeignKey("benefits.id"))
    funding_brand_id: Mapped[str] = mapped_column(String(32))
    distributor_brand_id: Mapped[str] = mapped_column(String(32))
    order_reference: Mapped[str] = mapped_column(String(128))
    order_amount: Mapped[int] = mapped_column(BigInteger)
    discount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    channel: Mapped[str] = mapped_column(String(16))
    store_id: Mapped[str | None] = mapped_column(String(64))
    member_hash: Mapped[str | None] = mapped_column(String(64))
    redeemed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    contract_id: Mapped[str | None] = mapped_column(String(64))
    contract_version: Mapped[int | None] = mapped_column(Integer)
    commission: Mapped[int] = mapped_column(BigInteger, default=0)
    ledger_transaction_id: Mapped[str | None] = mapped_column(String(64))
    refunded_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    restored_discount: Mapped[int] = mapped_column(BigInteger, default=0)
    status: Mapped[str] = mapped_column(String(20), default="redeemed")  # redeemed | partially_reversed | reversed


class RedemptionReversal(Base):
    """A (partial) refund of a redeemed order: reversing ledger entries and budget given back."""

    __tablename__ = "redemption_reversals"
    __table_args__ = (Index("ix_redemption_reversals_redemption_id", "redemption_id"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    redemption_id: Mapped[str] = mapped_column(ForeignKey("redemptions.id"))
    funding_brand_id: Mapped[str] = mapped_column(String(32))
    refund_amount: Mapped[int] = mapped_column(BigInteger)
    restored_discount: Mapped[int] = mapped_column(BigInteger)
    commission_delta: Mapped[int] = mapped_column(BigInteger)
    full: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[str] = mapped_column(String(500), default="")
    ledger_transaction_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class CommissionMonthTotal(Base):
    """Month-to-date commission charged per (contract, kind, paying brand, UTC month), as pricing's
    monthly caps need it. Updated only under a row lock in the event's own transaction."""

    __tablename__ = "commission_month_totals"

    contract_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)  # coupon | referral
    payer_brand_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    month: Mapped[str] = mapped_column(String(7), primary_key=True)  # YYYY-MM
    total: Mapped[int] = mapped_column(BigInteger, default=0)


class IdempotencyRecord(Base):
    """The first response to a (brand, Idempotency-Key): replays get it back byte for byte.

    ``fingerprint`` is the SHA-256 of the operation and the canonical request body, so a key reused for
    a different request is told apart from a genuine retry.
    """

    __tablename__ = "idempotency_records"
    __table_args__ = (UniqueConstraint("brand_id", "key", name="uq_idempotency_records_brand_id"),)

    id: Mapped[int] = mapped_column(_BIGINT, primary_key=True, autoincrement=True)
    brand_id: Mapped[str] = mapped_column(String(32))
    key: Mapped[str] = mapped_column(String(255))
    operation: Mapped[str] = mapped_column(String(64))
    fingerprint: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column(Integer)
    response_body: Mapped[bytes] = mapped_column(LargeBinary)
    resource_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
