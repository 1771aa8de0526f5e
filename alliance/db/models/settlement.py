"""The monthly close: settlement runs, the signed statements they produced, disputes on statement lines,
and the exchange's own signing key (when no key file is configured).

A run and its statements are written in the same database transaction that closes the ledger period,
so a month is either closed with every statement or not closed at all.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from alliance.db.base import Base, UTCDateTime, utcnow

__all__ = ["SettlementDispute", "SettlementRun", "SettlementStatement", "StatementKey"]


class SettlementRun(Base):
    """One closed month: what was closed, when, by whom, and the netted totals (``totals``: per currency
    the gross volume and each brand's net position)."""

    __tablename__ = "settlement_runs"

    period: Mapped[str] = mapped_column(String(7), primary_key=True)
    next_period: Mapped[str] = mapped_column(String(7))
    closed_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    closed_by: Mapped[str] = mapped_column(String(100))
    transactions: Mapped[int] = mapped_column(Integer)
    statements: Mapped[int] = mapped_column(Integer)
    digest: Mapped[str] = mapped_column(String(64))
    totals: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class SettlementStatement(Base):
    """A brand's statement of one closed month: canonical JSON bytes and the exchange's signature."""

    __tablename__ = "settlement_statements"

    period: Mapped[str] = mapped_column(ForeignKey("settlement_runs.period"), primary_key=True)
    brand_id: Mapped[str] = mapped_column(ForeignKey("brands.id"), primary_key=True)
    document: Mapped[bytes] = mapped_column(LargeBinary)
    sha256: Mapped[str] = mapped_column(String(64))
    signature: Mapped[str] = mapped_column(String(128))
    key_id: Mapped[str] = mapped_column(String(32))
    # The key that signed it (loaded by ``settlement.service.get_statement``; no foreign key: a key file
    # registers itself on first use, possibly after statements it signed were written by an older version).
    signing_key: Mapped[StatementKey | None] = relationship(
        primaryjoin="foreign(SettlementStatement.key_id) == StatementKey.key_id", viewonly=True, lazy="raise"
    )


class SettlementDispute(Base):
    """A brand flags one line of its statement; an operator resolves it (an adjustment posted into the
    next open period) or rejects it."""

    __tablename__ = "settlement_disputes"
    __table_args__ = (Index("ix_settlement_disputes_brand_id", "brand_id"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    brand_id: Mapped[str] = mapped_column(ForeignKey("brands.id"))
    period: Mapped[str] = mapped_column(String(7))
    line_id: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="open")  # open | adjusted | rejected
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    resolution: Mapped[str | None] = mapped_column(Text)
    adjustment_transaction_id: Mapped[str | None] = mapped_column(String(32))


class StatementKey(Base):
    """The public half of every key that has signed statements, by key id (the first 16 hex digits of
    SHA-256 of the raw public key), kept forever: a statement is served and verified with the key it
    was signed with, whatever the current key is. ``source``: ``database`` (``exchange_signing_keys``)
    or ``file`` (``ALLIANCE_EXCHANGE_SIGNING_KEY_FILE``, registered on first use). ``retired_at``: when
    another key became the current one."""

    __tablename__ = "statement_keys"

    key_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    public_key: Mapped[bytes] = mapped_column(LargeBinary)
    source: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
