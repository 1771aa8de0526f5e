"""The finance report of a closed month: net per brand, the largest partner pairs, redemptions and
conversions with the GMV they drove, and commissions booked - all from the period's ledger rows."""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from alliance.db.models import Brand, Conversion, LedgerTransaction, Redemption
from alliance.settlement.close import get_run
from alliance.settlement.schemas import ReportBrand, ReportOut, ReportPair

__all__ = ["monthly_report", "report_csv"]


async def monthly_report(session: AsyncSession, month: str, *, top: int = 10) -> ReportOut:
    """A closed month's alliance summary: net per brand, the largest partner pairs, redemptions and
    conversions with the GMV they drove, and commissions booked - all from the period's ledger rows."""
    run = await get_run(session, month)
    names = {row[0]: row[1] for row in (await session.execute(select(Brand.id, Brand.name))).all()}
    gross: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    pairs: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0])
    for flow in run.pair_flows:
        gross[(flow.payer, flow.currency)][1] += flow.amount
        gross[(flow.payee, flow.currency)][0] += flow.amount
        pairs[(flow.payer, flow.payee, flow.currency)][0] += flow.amount
        pairs[(flow.payer, flow.payee, flow.currency)][1] += flow.count
    brands = [
        ReportBrand(
            brand_id=n.brand_id,
            name=names.get(n.brand_id, n.brand_id),
            currency=n.currency,
            receivable=gross[(n.brand_id, n.currency)][0],
            payable=gross[(n.brand_id, n.currency)][1],
            net=n.net,
        )
        for n in run.net_positions
    ]
    top_pairs = sorted(
        (ReportPair(payer=k[0], payee=k[1], currency=k[2], amount=v[0], count=v[1]) for k, v in pairs.items()),
        key=lambda r: (-r.amount, r.payer, r.payee, r.currency),
    )[:top]
    t = LedgerTransaction

    async def events(model: Any, amount: Any) -> tuple[int, dict[str, int], dict[str, int]]:
        rows = (
            await session.execute(
                select(model.currency, func.count(), func.sum(amount), func.sum(model.commission))
                .join(t, t.id == model.ledger_transaction_id)
                .where(t.period == month, t.seq.is_not(None))
                .group_by(model.currency)
            )
        ).all()
        return (
            sum(int(r[1]) for r in rows),
            {r[0]: int(r[2] or 0) for r in sorted(rows)},
            {r[0]: int(r[3] or 0) for r in sorted(rows)},
        )

    redemptions, redemption_gmv, coupon_commission = await events(Redemption, Redemption.order_amount)
    conversions, conversion_gmv, referral_commission = await events(Conversion, Conversion.order_amount)
    commissions: dict[str, int] = defaultdict(int)
    for source in (coupon_commission, referral_commission):
        for currency, amount in source.items():
            commissions[currency] += amount
    return ReportOut(
        period=month,
        brands=brands,
        top_pairs=top_pairs,
        redemptions=redemptions,
        redemption_gmv=redemption_gmv,
        conversions=conversions,
        conversion_gmv=conversion_gmv,
        commissions=dict(sorted(commissions.items())),
    )


def report_csv(report: ReportOut) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["section", "brand_id", "name", "currency", "receivable", "payable", "net"])
    for b in report.brands:
        writer.writerow(["brand", b.brand_id, b.name, b.currency, b.receivable, b.payable, b.net])
    writer.writerow([])
    writer.writerow(["section", "payer", "payee", "currency", "amount", "count"])
    for p in report.top_pairs:
        writer.writerow(["pair", p.payer, p.payee, p.currency, p.amount, p.count])
    writer.writerow([])
    writer.writerow(["section", "metric", "currency", "value"])
    writer.writerow(["total", "redemptions", "", report.redemptions])
    writer.writerow(["total", "conversions", "", report.conversions])
    for name, values in (
        ("redemption_gmv", report.redemption_gmv),
        ("conversion_gmv", report.conversion_gmv),
        ("commissions", report.commissions),
    ):
        for currency, value in values.items():
            writer.writerow(["total", name, currency, value])
    return "\ufeff".encode() + out.getvalue().encode("utf-8")
