"""Settlement bodies: statements (the signed document), runs, disputes and the monthly report."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec

__all__ = [
    "AdjustmentLine",
    "BrandRef",
    "CurrencySummary",
    "DisputeIn",
    "DisputeOut",
    "DisputeResolveIn",
    "ExchangeKeyOut",
    "NetPositionOut",
    "PairFlow",
    "PartnerSummary",
    "ReportBrand",
    "ReportOut",
    "ReportPair",
    "RunOut",
    "SignatureOut",
    "Statement",
    "StatementLine",
    "StatementSigned",
]

STATEMENT_FORMAT = "BAX-STATEMENT-V1"


class BrandRef(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    name: str


class CurrencySummary(msgspec.Struct, frozen=True, kw_only=True):
    """One currency of a brand's month: what it is owed, what it owes, and the net (positive: the alliance
    pays the brand). ``receivable``/``payable`` are plain magnitudes of the month's postings;
    ``postings`` counts the brand's postings (one per event for pricing's bookings)."""

    currency: str
    receivable: int
    payable: int
    net: int
    postings: int


class PartnerSummary(msgspec.Struct, frozen=True, kw_only=True):
    partner: BrandRef
    currency: str
    receivable: int
    payable: int
    net: int


class StatementLine(msgspec.Struct, frozen=True, kw_only=True):
    """Gross flow with one partner of one kind in one direction (``receivable``: the partner owes the
    brand). ``partner`` is ``alliance`` for postings the exchange booked without a counterparty."""

    line_id: str
    partner: BrandRef
    kind: str
    direction: Literal["receivable", "payable"]
    currency: str
    amount: int
    count: int


class AdjustmentLine(msgspec.Struct, frozen=True, kw_only=True):
    """A transaction booked into this period for an event of an earlier, closed month (or a dispute
    resolution); ``original_period`` links it to the month it belongs to. ``amount`` is the brand's net
    effect (positive: the alliance owes the brand more)."""

    line_id: str
    transaction_id: str
    kind: str
    occurred_at: str
    original_period: str
    currency: str
    amount: int
    dispute_id: str | None = None


class Statement(msgspec.Struct, frozen=True, kw_only=True):
    """The signed document. Deterministic: derived only from the closed period's ledger rows."""

    format: str
    alliance_id: str
    period: str
    period_start: str
    period_end: str
    adjustments_into: str
    brand: BrandRef
    summary: list[CurrencySummary]
    partners: list[PartnerSummary]
    lines: list[StatementLine]
    adjustments: list[AdjustmentLine]


class SignatureOut(msgspec.Struct, frozen=True, kw_only=True):
    algorithm: str
    key_id: str
    public_key: str
    value: str


class StatementSigned(msgspec.Struct, frozen=True, kw_only=True):
    """What ``GET /v1/statements/{month}`` returns as JSON: the statement and the exchange's Ed25519
    signature over ``BAX-STATEMENT-V1\\n`` + the statement's canonical JSON (keys sorted, no spaces)."""

    statement: Statement
    signature: SignatureOut


class NetPositionOut(msgspec.Struct, frozen=True, kw_only=True):
    brand_id: str
    currency: str
    net: int


class PairFlow(msgspec.Struct, frozen=True, kw_only=True):
    payer: str
    payee: str
    currency: str
    kind: str
    amount: int
    count: int


class RunOut(msgspec.Struct, frozen=True, kw_only=True):
    period: str
    next_period: str
    closed_at: datetime
    closed_by: str
    transactions: int
    statements: int
    digest: str
    net_positions: list[NetPositionOut]
    pair_flows: list[PairFlow]
    already_closed: bool = False


class DisputeIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    line_id: str
    reason: str


class DisputeResolveIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``adjust``: post ``amount`` owed by ``payer`` to ``payee`` into the next open period; ``reject``:
    close the dispute without a posting."""

    action: Literal["adjust", "reject"]
    note: str
    payer: str | None = None
    payee: str | None = None
    amount: int | None = None
    currency: str | None = None


class DisputeOut(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    brand_id: str
    period: str
    line_id: str
    reason: str
    status: str
    created_at: datetime
    resolved_at: datetime | None
    resolution: str | None
    adjustment_transaction_id: str | None


class ExchangeKeyOut(msgspec.Struct, frozen=True, kw_only=True):
    algorithm: str
    key_id: str
    public_key: str
    statement_format: str
    current: bool = True  # False: a retired key, still valid for the statements it signed
    created_at: datetime | None = None
    retired_at: datetime | None = None


class ReportBrand(msgspec.Struct, frozen=True, kw_only=True):
    brand_id: str
    name: str
    currency: str
    receivable: int
    payable: int
    net: int


class ReportPair(msgspec.Struct, frozen=True, kw_only=True):
    payer: str
    payee: str
    currency: str
    amount: int
    count: int


class ReportOut(msgspec.Struct, frozen=True, kw_only=True):
    period: str
    brands: list[ReportBrand]
    top_pairs: list[ReportPair]
    redemptions: int
    redemption_gmv: dict[str, int]
    conversions: int
    conversion_gmv: dict[str, int]
    commissions: dict[str, int]
