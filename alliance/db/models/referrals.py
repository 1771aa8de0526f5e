"""Referrals: signed, expiring tokens a referring brand hands to a member, and the conversions the
receiving brand reports with them. One conversion per referral (unique ``referral_id``)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from alliance.db.base import Base, UTCDateTime, utcnow

__all__ = ["Conversion", "ExchangeSigningKey", "Referral"]


class Referral(Base):
    __tablename__ = "referrals"
    __table_args__ = (
        Index("ix_referrals_referrer_brand_id_issued_at", "referrer_brand_id", "issued_at"),
        Index("ix_referrals_receiver_brand_id", "receiver_brand_id"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    referrer_brand_id: Mapped[str] = mapped_column(ForeignKey("brands.id"))
    receiver_brand_id: Mapped[str] = mapped_column(ForeignKey("brands.id"))
    member_hash: Mapped[str | None] = mapped_column(String(64))
    campaign: Mapped[str | None] = mapped_column(String(64))
    contract_id: Mapped[str | None] = mapped_column(String(64))
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    key_id: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(12), default="open")  # open | converted


class Conversion(Base):
    __tablename__ = "conversions"
    __table_args__ = (
        UniqueConstraint("referral_id", name="uq_conversions_referral_id"),
        Index("ix_conversions_receiver_brand_id_occurred_at", "receiver_brand_id", "occurred_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    referral_id: Mapped[str] = mapped_column(ForeignKey("referrals.id"))
    referrer_brand_id: Mapped[str] = mapped_column(String(32))
    receiver_brand_id: Mapped[str] = mapped_column(String(32))
    order_reference: Mapped[str] = mapped_column(String(128))
    order_amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())
    contract_id: Mapped[str | None] = mapped_column(String(64))
    contract_version: Mapped[int | None] = mapped_column(Integer)
    commission: Mapped[int] = mapped_column(BigInteger, default=0)
    ledger_transaction_id: Mapped[str | None] = mapped_column(String(64))


class ExchangeSigningKey(Base):
    """An Ed25519 key of the exchange itself, by purpose (``referral`` signs referral tokens).

    Created on first use; its public half is published so a receiving brand can check a token offline.
    """

    __tablename__ = "exchange_signing_keys"
    __table_args__ = (UniqueConstraint("purpose", name="uq_exchange_signing_keys_purpose"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    purpose: Mapped[str] = mapped_column(String(32))
    private_key: Mapped[bytes] = mapped_column(LargeBinary)
    public_key: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
