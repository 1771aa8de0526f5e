"""Each brand's signed statement of a month, built from the ledger as it stands.

Deterministic: sorted everywhere and no clock read, so a re-run of a closed month rebuilds identical
bytes (canonical JSON, signed by `alliance.settlement.signing`). Lines pair each payable with its
receivable (gross flows per partner, kind and currency); what regular postings did not pair is one
``other`` line per side against the alliance, so the lines always add up to the ledger; adjustments
(late events, dispute resolutions) are listed apart with the month they belong to.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC
from typing import Literal

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

import contracts
from alliance.db.models import Brand
from alliance.settlement import signing
from alliance.settlement.aggregate import LedgerMonth, aggregate
from alliance.settlement.months import check_month, rfc3339
from alliance.settlement.schemas import (
    STATEMENT_FORMAT,
    AdjustmentLine,
    BrandRef,
    CurrencySummary,
    NetPositionOut,
    PairFlow,
    PartnerSummary,
    Statement,
    StatementLine,
)

__all__ = ["ALLIANCE_PARTNER", "RunTotals", "build_statements"]

ALLIANCE_PARTNER = BrandRef(id="alliance", name="Alliance (no counterparty)")
_Sides = dict[tuple[str, str], list[int]]  # (brand, currency) -> [receivable, payable]


class RunTotals(msgspec.Struct, kw_only=True):
    transactions: int
    net_positions: list[NetPositionOut]
    pair_flows: list[PairFlow]
    clearing: dict[str, int]


@dataclass(slots=True)
class _Books:
    """The month's figures per brand, gathered before each brand's statement is written."""

    totals: _Sides = field(default_factory=lambda: defaultdict(lambda: [0, 0]))  # all postings
    regular: _Sides = field(default_factory=lambda: defaultdict(lambda: [0, 0]))  # non-adjustment only
    counts: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    lines: dict[str, list[StatementLine]] = field(default_factory=lambda: defaultdict(list))
    paired: _Sides = field(default_factory=lambda: defaultdict(lambda: [0, 0]))
    pair_flows: list[PairFlow] = field(default_factory=list)
    adjustments: dict[str, list[AdjustmentLine]] = field(default_factory=lambda: defaultdict(list))


def _add_accounts(books: _Books, data: LedgerMonth) -> None:
    """Per brand and currency: [receivable, payable] magnitudes, all and regular (non-adjustment) only."""
    for brand_id, account, currency, is_adjustment, amount, postings in data.brands:
        side = 1 if str(account).endswith(":payable") else 0
        value = -int(amount) if side == 0 else int(amount)
        books.counts[(brand_id, currency)] += int(postings)
        books.totals[(brand_id, currency)][side] += value
        if not is_adjustment:
            books.regular[(brand_id, currency)][side] += value


def _add_pairs(books: _Books, data: LedgerMonth, ref: Callable[[str], BrandRef]) -> None:
    """One payable line for the payer and one receivable line for the payee per gross flow."""
    for payer, payee, currency, kind, amount, count in data.pairs:
        amount, count = int(amount), int(count)
        books.pair_flows.append(
            PairFlow(payer=payer, payee=payee, currency=currency, kind=kind, amount=amount, count=count)
        )
        sides: tuple[tuple[str, str, Literal["payable", "receivable"]], ...] = (
            (payer, payee, "payable"),
            (payee, payer, "receivable"),
        )
        for owner, partner, direction in sides:
            books.lines[owner].append(
                StatementLine(
                    line_id=f"{direction}:{partner}:{kind}:{currency}",
                    partner=ref(partner),
                    kind=kind,
                    direction=direction,
                    currency=currency,
                    amount=amount,
                    count=count,
                )
            )
        books.paired[(payer, currency)][1] += amount
        books.paired[(payee, currency)][0] += amount


def _add_unpaired(books: _Books) -> None:
    """What regular postings did not pair (manual operator transactions): one line per side, so the
    lines always add up to the ledger."""
    for (brand_id, currency), (receivable, payable) in books.regular.items():
        for side, direction in ((0, "receivable"), (1, "payable")):
            rest = (receivable, payable)[side] - books.paired[(brand_id, currency)][side]
            if rest:
                books.lines[brand_id].append(
                    StatementLine(
                        line_id=f"{direction}:alliance:other:{currency}",
                        partner=ALLIANCE_PARTNER,
                        kind="other",
                        direction="receivable" if side == 0 else "payable",
                        currency=currency,
                        amount=rest,
                        count=0,
                    )
                )


def _add_adjustments(books: _Books, data: LedgerMonth) -> None:
    """Adjustment lines, linked to their dispute and the month they belong to."""
    for tx_id, kind, occurred_at, brand_id, currency, amount in data.adjustments:
        reference = data.dispute_refs.get(tx_id) or {}
        dispute_id = reference.get("dispute_id") if isinstance(reference, dict) else None
        original = reference.get("disputed_period") if isinstance(reference, dict) else None
        books.adjustments[brand_id].append(
            AdjustmentLine(
                line_id=f"adjustment:{tx_id}:{currency}",
                transaction_id=tx_id,
                kind=kind,
                occurred_at=rfc3339(occurred_at),
                original_period=str(original or contracts.month_of(occurred_at.astimezone(UTC))),
                currency=currency,
                amount=-int(amount),
                dispute_id=dispute_id,
            )
        )


def _summary(books: _Books, brand_id: str) -> list[CurrencySummary]:
    return [
        CurrencySummary(
            currency=currency,
            receivable=rec_,
            payable=pay_,
            net=rec_ - pay_,
            postings=books.counts.get((brand_id, currency), 0),
        )
        for (b, currency), (rec_, pay_) in sorted(books.totals.items())
        if b == brand_id
    ]


def _partners(brand_lines: list[StatementLine]) -> list[PartnerSummary]:
    partner_totals: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    partner_refs: dict[str, BrandRef] = {}
    for line in brand_lines:
        partner_refs[line.partner.id] = line.partner
        partner_totals[(line.partner.id, line.currency)][0 if line.direction == "receivable" else 1] += line.amount
    return [
        PartnerSummary(partner=partner_refs[pid], currency=cur, receivable=r, payable=q, net=r - q)
        for (pid, cur), (r, q) in sorted(partner_totals.items())
    ]


def _statement(
    books: _Books, brand: BrandRef, summary: list[CurrencySummary], month: str, alliance_id: str
) -> Statement:
    start, end, next_month = check_month(month)
    brand_lines = sorted(
        books.lines[brand.id], key=lambda line: (line.partner.id, line.currency, line.kind, line.direction)
    )
    return Statement(
        format=STATEMENT_FORMAT,
        alliance_id=alliance_id,
        period=month,
        period_start=rfc3339(start),
        period_end=rfc3339(end),
        adjustments_into=next_month,
        brand=brand,
        summary=summary,
        partners=_partners(brand_lines),
        lines=brand_lines,
        adjustments=sorted(books.adjustments[brand.id], key=lambda a: (a.occurred_at, a.transaction_id, a.currency)),
    )


async def build_statements(
    session: AsyncSession, month: str, *, key_file: str, alliance_id: str
) -> tuple[dict[str, tuple[bytes, str, str]], RunTotals]:
    """Every statement of ``month`` from the ledger as it stands: ``{brand_id: (canonical document,
    signature, key id)}`` and the run totals. Deterministic: sorted everywhere, no clock read."""
    start, _, _ = check_month(month)
    data = await aggregate(session, month, start)
    names = {row[0]: row[1] for row in (await session.execute(select(Brand.id, Brand.name))).all()}

    def ref(brand_id: str) -> BrandRef:
        return BrandRef(id=brand_id, name=names.get(brand_id, brand_id))

    books = _Books()
    _add_accounts(books, data)
    _add_pairs(books, data, ref)
    _add_unpaired(books)
    _add_adjustments(books, data)
    key = await signing.load_statement_key(session, key_file)
    documents: dict[str, tuple[bytes, str, str]] = {}
    net_positions: list[NetPositionOut] = []
    for brand_id in sorted({b for b, _ in books.totals}):
        summary = _summary(books, brand_id)
        net_positions.extend(NetPositionOut(brand_id=brand_id, currency=s.currency, net=s.net) for s in summary)
        document = signing.canonical_json(_statement(books, ref(brand_id), summary, month, alliance_id))
        signature, key_id = signing.sign_statement(key, document)
        documents[brand_id] = (document, signature, key_id)
    run_totals = RunTotals(
        transactions=data.transactions,
        net_positions=net_positions,
        pair_flows=sorted(books.pair_flows, key=lambda f: (f.payer, f.payee, f.currency, f.kind)),
        clearing=dict(sorted(data.clearing.items())),
    )
    return documents, run_totals
