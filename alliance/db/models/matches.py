"""Match jobs between two brands' segments, the agent tasks they consist of, and the per-pair monthly
differential-privacy budgets their released counts are charged to."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from alliance.db.base import Base, UTCDateTime, utcnow

__all__ = ["MatchJob", "MatchTaskRow", "PsiBudget"]


class MatchJob(Base):
    """A private set intersection between the requester's and the responder's published segments.

    ``state``: ``requested`` (waiting for the responder's consent, when no contract governs the pair)
    -> ``waiting_for_reblinds`` (agents have tasks) -> ``computing`` -> ``done``; or ``failed`` (an agent
    refused, a budget ran out) or ``expired`` (not finished by ``expires_at``). ``result`` holds only
    what the disclosure policy releases, never the exact count of a noised or suppressed release.
    """

    __tablename__ = "match_jobs"
    __table_args__ = (
        Index("ix_match_jobs_requester_brand_id", "requester_brand_id", "requested_at"),
        Index("ix_match_jobs_responder_brand_id", "responder_brand_id", "requested_at"),
        Index("ix_match_jobs_requested_at", "requested_at", "id"),  # the console's keyset pages
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    requester_brand_id: Mapped[str] = mapped_column(ForeignKey("brands.id"))
    responder_brand_id: Mapped[str] = mapped_column(ForeignKey("brands.id"))
    requester_segment_id: Mapped[str] = mapped_column(ForeignKey("segments.id"))
    responder_segment_id: Mapped[str] = mapped_column(ForeignKey("segments.id"))
    key_epoch: Mapped[str] = mapped_column(String(7))
    disclosure: Mapped[str] = mapped_column(String(100))  # "cardinality" | "membership_to:<brand id>"
    min_k: Mapped[int] = mapped_column(Integer)
    round_to: Mapped[int] = mapped_column(Integer, default=1)
    # Monthly epsilon budget of the pair (milli-epsilon) when the governing terms enable DP, else None.
    dp_budget_milli: Mapped[int | None] = mapped_column(Integer)
    basis: Mapped[str] = mapped_column(String(16))  # contract | consent
    contract_id: Mapped[str | None] = mapped_column(String(64))
    contract_version: Mapped[int | None] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(24))
    failure_reason: Mapped[str | None] = mapped_column(String(500))
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    approved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    computing_since: Mapped[datetime | None] = mapped_column(UTCDateTime())
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class MatchTaskRow(Base):
    """Work for one brand's agent within a match.

    ``kind``: ``reblind_shuffled`` / ``reblind_ordered`` (re-blind ``input_segment_id``, the counterparty's
    segment, and upload the result) or ``intersect`` (membership recipient: re-blind the counterparty's
    segment locally, intersect with the counterparty's ordered re-blinding of ``own_segment_id``, report
    the count signed). ``state``: ``pending`` (waits for another task) -> ``open`` -> ``done`` | ``failed`` |
    ``cancelled``.
    """

    __tablename__ = "match_tasks"
    __table_args__ = (
        Index("ix_match_tasks_brand_id_state", "brand_id", "state"),
        Index("ix_match_tasks_match_id", "match_id"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    match_id: Mapped[str] = mapped_column(ForeignKey("match_jobs.id"))
    brand_id: Mapped[str] = mapped_column(ForeignKey("brands.id"))
    kind: Mapped[str] = mapped_column(String(24))
    own_segment_id: Mapped[str] = mapped_column(ForeignKey("segments.id"))
    input_segment_id: Mapped[str] = mapped_column(ForeignKey("segments.id"))
    declared_item_count: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    state: Mapped[str] = mapped_column(String(16))
    result_items: Mapped[int | None] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    failure_reason: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class PsiBudget(Base):
    """Epsilon spent by one unordered brand pair in one calendar month (``brand_low < brand_high``),
    in milli-epsilon; the total comes from the contract terms in force at each release."""

    __tablename__ = "psi_budgets"

    brand_low: Mapped[str] = mapped_column(String(32), primary_key=True)
    brand_high: Mapped[str] = mapped_column(String(32), primary_key=True)
    month: Mapped[str] = mapped_column(String(7), primary_key=True)
    spent_milli: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
