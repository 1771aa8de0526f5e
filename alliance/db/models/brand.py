"""Brands (alliance members) and the API keys they call the exchange with."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from alliance.db.base import Base, UTCDateTime, utcnow

__all__ = ["ApiKey", "Brand"]


class Brand(Base):
    __tablename__ = "brands"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    category: Mapped[str | None] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(16), default="active")  # active | suspended
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    suspended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    api_keys: Mapped[list[ApiKey]] = relationship(back_populates="brand", lazy="raise")


class ApiKey(Base):
    """An API key, stored only as its SHA-256 digest.

    Keys carry >= 256 random bits, so a fast hash is enough (no dictionary to guess from); the
    printable ``prefix`` lets people tell their keys apart without revealing them.
    A key with no brand is an operator (admin API) key.
    """

    __tablename__ = "api_keys"
    __table_args__ = (Index("ix_api_keys_brand_id", "brand_id"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    brand_id: Mapped[str | None] = mapped_column(ForeignKey("brands.id"))
    role: Mapped[str] = mapped_column(String(16), default="brand")  # brand | admin
    label: Mapped[str] = mapped_column(String(100), default="")
    prefix: Mapped[str] = mapped_column(String(16))
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    brand: Mapped[Brand | None] = relationship(back_populates="api_keys", lazy="raise")
