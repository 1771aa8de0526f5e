"""The settlement ledger: double-entry transactions of postings, hash-chained after commit.

Writers only ever INSERT a transaction and its postings (no row is locked, no running total touched);
the sealer later gives each committed transaction its place in the chain (``seq``, ``prev_hash``,
``hash``, ``sealed_at``) and folds its postings into ``ledger_accounts``. Database triggers installed by
the migration refuse every other UPDATE and every DELETE (see ``docs/ledger.md``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, SmallInteger, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from alliance.db.base import Base, UTCDateTime, utcnow

__all__ = [
    "LedgerAccount",
    "LedgerChainHead",
    "LedgerPeriod",
    "LedgerPosting",
    "LedgerQuarantine",
    "LedgerTransaction",
]


class LedgerTransaction(Base):
    """One balanced transaction. ``idempotency_scope`` is the brand id, or ``alliance`` for the
    exchange's own postings; (scope, key) is unique. ``seq``/``prev_hash``/``hash``/``sealed_at`` stay
    NULL until the sealer chains the row, and never change afterwards."""

    __tablename__ = "ledger_transactions"
    __table_args__ = (
        UniqueConstraint("idempotency_scope", "idempotency_key", name="uq_ledger_transactions_idempotency_scope"),
        UniqueConstraint("seq", name="uq_ledger_transactions_seq"),
        Index("ix_ledger_transactions_posted_at_id", "posted_at", "id"),
        Index("ix_ledger_transactions_period", "period"),
        # What the sealer picks up next: only the (few) rows not sealed yet are in this index.
        Index(
            "ix_ledger_transactions_unsealed",
            "posted_at",
            "id",
            postgresql_where=text("seq IS NULL"),
            sqlite_where=text("seq IS NULL"),
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    idempotency_scope: Mapped[str] = mapped_column(String(32))
    idempotency_key: Mapped[str] = mapped_column(String(255))
    brand_id: Mapped[str | None] = mapped_column(ForeignKey("brands.id"))
    kind: Mapped[str] = mapped_column(String(32))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())
    posted_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    period: Mapped[str] = mapped_column(String(7))
    reference: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    seq: Mapped[int | None] = mapped_column(BigInteger)
    prev_hash: Mapped[str | None] = mapped_column(String(64))
    hash: Mapped[str | None] = mapped_column(String(64))
    sealed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class LedgerPosting(Base):
    """One leg: a signed amount of minor units (debit positive) on an account, in an ISO 4217 currency.

    ``brand_id`` is derived from ``account`` (``brand:<id>:...``) so a brand's own postings are one
    index lookup away; the sealer's hash covers every column.

    ``transaction_id`` has no foreign key on purpose: postings are only ever inserted in the same
    statement as their transaction, a foreign-key check per posting cost about a fifth of the database
    CPU of a post, and verification reports any posting whose transaction does not exist.
    """

    __tablename__ = "ledger_postings"
    __table_args__ = (Index("ix_ledger_postings_brand_id_transaction_id", "brand_id", "transaction_id"),)

    transaction_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    line: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    account: Mapped[str] = mapped_column(String(100))
    brand_id: Mapped[str | None] = mapped_column(ForeignKey("brands.id"))
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))


class LedgerAccount(Base):
    """Balance of one account in one currency over every *sealed* transaction (as of the chain head).

    Only the sealer writes here, in the same database transaction that moves the chain head, so the
    balance and the head always agree; a live balance adds the postings not sealed yet.
    """

    __tablename__ = "ledger_accounts"
    __table_args__ = (Index("ix_ledger_accounts_brand_id", "brand_id"),)

    account: Mapped[str] = mapped_column(String(100), primary_key=True)
    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    brand_id: Mapped[str | None] = mapped_column(String(32))
    balance: Mapped[int] = mapped_column(BigInteger, default=0)


class LedgerChainHead(Base):
    """The single row (``id = 1``) holding the last sealed ``seq`` and its ``hash``.

    Sealers lock this row first, so exactly one sealer extends the chain at a time; writers never touch
    it. Verification checks it against the last sealed transaction, so cutting off the chain's tail is
    detected too.
    """

    __tablename__ = "ledger_chain_head"

    id: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(BigInteger, default=0)
    hash: Mapped[str] = mapped_column(String(64))
    sealed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class LedgerPeriod(Base):
    """A closed accounting month (``YYYY-MM``). Months without a row are open.

    The monthly close (issue 6) inserts the row with ``status = 'closed'`` and ``next_period``, the month
    that later events for this one post into as adjustments. Writers pick the period in the same INSERT
    as the transaction (see ``alliance.ledger.periods``).
    """

    __tablename__ = "ledger_periods"

    period: Mapped[str] = mapped_column(String(7), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), default="closed")
    next_period: Mapped[str] = mapped_column(String(7))
    closed_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    closed_by: Mapped[str | None] = mapped_column(String(100))


class LedgerQuarantine(Base):
    """A committed transaction the sealer could not seal, held out of the chain for an operator.

    One bad transaction must not stop sealing for every brand (a balance pushed past its bound, or a
    database error sealing it): the sealer records it here and seals the others. ``status`` is ``held``
    until an operator resolves it: ``released`` (the sealer tries it again) or ``excluded`` (it stays
    recorded, never sealed, and counts in no balance or statement). ``alliance ledger quarantine``.
    """

    __tablename__ = "ledger_quarantine"
    __table_args__ = (Index("ix_ledger_quarantine_status", "status"),)

    transaction_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    period: Mapped[str] = mapped_column(String(7))
    reason: Mapped[str] = mapped_column(String(500))
    status: Mapped[str] = mapped_column(String(16), default="held")
    quarantined_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    resolved_by: Mapped[str | None] = mapped_column(String(100))
