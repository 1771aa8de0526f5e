"""Contracts between two brands: the brands' registered Ed25519 signing keys, contract versions (stored
as the exact canonical bytes the parties sign) and the signatures collected for each version.

A version is *signed* when both parties' signatures are stored; it is derived from the signature rows,
never kept as a flag, so two parties signing at the same instant cannot leave a half-updated state.
Old signing keys are retired, never deleted: every stored signature names the key it verifies under.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, ForeignKeyConstraint, Index, Integer, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from alliance.db.base import Base, UTCDateTime, utcnow

__all__ = ["Contract", "ContractReview", "ContractSignature", "ContractVersion", "SigningKey"]


class SigningKey(Base):
    """A brand's Ed25519 public key (raw 32 bytes). The newest key without ``retired_at`` is current."""

    __tablename__ = "signing_keys"
    __table_args__ = (Index("ix_signing_keys_brand_id_created_at", "brand_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    brand_id: Mapped[str] = mapped_column(ForeignKey("brands.id"))
    public_key: Mapped[bytes] = mapped_column(LargeBinary(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Contract(Base):
    """A two-party contract; ``party_a < party_b`` (the ascending pair of `contracts.party_pair`).

    At most one contract per pair of brands: its versions supersede one another in time, so "the terms
    between X and Y at time t" always has one answer.
    """

    __tablename__ = "contracts"
    __table_args__ = (
        UniqueConstraint("party_a", "party_b", name="uq_contracts_party_a"),
        Index("ix_contracts_party_b", "party_b"),
        Index("ix_contracts_created_at", "created_at", "id"),  # the console's keyset pages
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    party_a: Mapped[str] = mapped_column(ForeignKey("brands.id"))
    party_b: Mapped[str] = mapped_column(ForeignKey("brands.id"))
    created_by: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ContractVersion(Base):
    """One immutable version: ``canonical`` is `contracts.canonical_bytes(terms)`, exactly what is signed."""

    __tablename__ = "contract_versions"

    contract_id: Mapped[str] = mapped_column(ForeignKey("contracts.id"), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    canonical: Mapped[bytes] = mapped_column(LargeBinary)
    fingerprint: Mapped[str] = mapped_column(String(64))
    effective_from: Mapped[datetime] = mapped_column(UTCDateTime())
    effective_to: Mapped[datetime | None] = mapped_column(UTCDateTime())
    proposed_by: Mapped[str] = mapped_column(String(32))
    proposed_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ContractSignature(Base):
    """A party's verified Ed25519 signature of one version, with the key it verifies under."""

    __tablename__ = "contract_signatures"
    __table_args__ = (
        ForeignKeyConstraint(
            ["contract_id", "version"],
            ["contract_versions.contract_id", "contract_versions.version"],
            name="fk_contract_signatures_version",
        ),
    )

    contract_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    brand_id: Mapped[str] = mapped_column(ForeignKey("brands.id"), primary_key=True)
    key_id: Mapped[str] = mapped_column(ForeignKey("signing_keys.id"))
    signature: Mapped[bytes] = mapped_column(LargeBinary(64))
    signed_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ContractReview(Base):
    """The alliance's review of one version: ``approved`` or ``rejected`` (with a reason) by an operator.

    A review is a veto, not a gate: a version comes into force when both parties sign, reviewed or not;
    a rejected version never governs anything again (``terms_in_force`` refuses its period). A rejection
    is final; an approval may later be turned into a rejection.
    """

    __tablename__ = "contract_reviews"
    __table_args__ = (
        ForeignKeyConstraint(
            ["contract_id", "version"],
            ["contract_versions.contract_id", "contract_versions.version"],
            name="fk_contract_reviews_version",
        ),
    )

    contract_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    decision: Mapped[str] = mapped_column(String(16))  # approved | rejected
    reason: Mapped[str | None] = mapped_column(String(500))
    reviewed_by: Mapped[str] = mapped_column(String(100))
    reviewed_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
