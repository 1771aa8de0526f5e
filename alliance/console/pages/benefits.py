"""Benefits and redemptions (read-only): the catalogue with each benefit's funding brand, distributors,
validity and budget, a benefit's budget burn-down, and the redemptions of the alliance with keyset
pagination. Changes to benefits happen through the partner API (the funding brand owns them).

Every query is bounded: benefits are few (numbered pages), redemptions are many (a keyset on
``(redeemed_at, id)`` through an index led by the filtered column, migration ``0009_console_finance``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from litestar import Controller, Request, Response, get
from litestar.params import FromPath, QueryParameter
from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from alliance.benefits.schemas import BenefitOut
from alliance.benefits.views import benefit_out
from alliance.console import queries
from alliance.console.charts import BarChart, bar_chart
from alliance.console.rendering import render, translator
from alliance.core.deps import Db
from alliance.core.problems import Problem
from alliance.db.base import utcnow
from alliance.db.models import Benefit, BenefitDistributor, BenefitTag, Redemption, RedemptionReversal
from contracts.currencies import minor_unit_exponent

__all__ = [
    "BENEFIT_PAGE_SIZE",
    "REDEMPTION_PAGE_SIZE",
    "BenefitPages",
    "RedemptionPages",
    "benefit_page",
    "burn_down",
    "redemption_page",
]

BENEFIT_PAGE_SIZE = 25
REDEMPTION_PAGE_SIZE = 50
BURN_DOWN_BUCKETS = 30
BENEFIT_STATUSES = ("active", "paused", "exhausted", "expired", "ended")
REDEMPTION_STATUSES = ("redeemed", "partially_reversed", "reversed")

IdFilter = Annotated[str | None, QueryParameter(max_length=32)]
TagFilter = Annotated[str | None, QueryParameter(max_length=64)]
BenefitStatus = Annotated[str | None, QueryParameter(pattern=r"^(active|paused|exhausted|expired|ended)?$")]
RedemptionStatus = Annotated[
    str | None, QueryParameter(pattern=r"^(redeemed|partially_reversed|reversed|any_reversal)?$")
]
Role = Annotated[str | None, QueryParameter(pattern=r"^(funding|distributing)?$")]
DateFilter = Annotated[str | None, QueryParameter(pattern=r"^(\d{4}-\d{2}-\d{2})?$")]
PageNumber = Annotated[int, QueryParameter(ge=1, le=100_000)]
Cursor = Annotated[str | None, QueryParameter(max_length=32)]


def _clean(value: str | None) -> str | None:
    value = (value or "").strip()
    return value or None


# --- benefits ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BenefitPage:
    rows: list[BenefitOut]
    page: int
    pages: int
    total: int
    first: int
    last: int


async def benefit_page(
    session: AsyncSession, *, brand: str | None, status: str | None, tag: str | None, page: int
) -> BenefitPage:
    """Benefits newest first, ``BENEFIT_PAGE_SIZE`` a page, filtered by funding brand (index
    ``funding_brand_id, status``), effective status and tag (index on ``tag``)."""
    now = utcnow()
    conditions: list[Any] = []
    if brand:
        conditions.append(Benefit.funding_brand_id == brand)
    if tag:
        conditions.append(Benefit.id.in_(select(BenefitTag.benefit_id).where(BenefitTag.tag == tag)))
    if status == "expired":
        conditions += [Benefit.status != "ended", Benefit.valid_to <= now]
    elif status == "ended":
        conditions.append(Benefit.status == "ended")
    elif status:
        conditions += [Benefit.status == status, Benefit.valid_to > now]
    total = int(await session.scalar(select(func.count()).select_from(Benefit).where(*conditions)) or 0)
    pages = max(1, -(-total // BENEFIT_PAGE_SIZE))
    page = min(max(1, page), pages)
    offset = (page - 1) * BENEFIT_PAGE_SIZE
    rows = (
        await session.scalars(
            select(Benefit)
            .where(*conditions)
            .order_by(Benefit.created_at.desc(), Benefit.id.desc())
            .offset(offset)
            .limit(BENEFIT_PAGE_SIZE)
        )
    ).all()
    ids = [b.id for b in rows]
    tags: dict[str, list[str]] = {i: [] for i in ids}
    distributors: dict[str, list[str]] = {i: [] for i in ids}
    if ids:
        for benefit_id, name in (
            await session.execute(select(BenefitTag.benefit_id, BenefitTag.tag).where(BenefitTag.benefit_id.in_(ids)))
        ).all():
            tags[benefit_id].append(name)
        for benefit_id, brand_id in (
            await session.execute(
                select(BenefitDistributor.benefit_id, BenefitDistributor.brand_id).where(
                    BenefitDistributor.benefit_id.in_(ids)
                )
            )
        ).all():
            distributors[benefit_id].append(brand_id)
    out = [benefit_out(b, tags[b.id], distributors=distributors[b.id], now=now) for b in rows]
    return BenefitPage(
        rows=out, page=page, pages=pages, total=total, first=offset + 1 if out else 0, last=offset + len(out)
    )


@dataclass(frozen=True, slots=True)
class BurnDown:
    chart: BarChart
    spent: int  # the benefit's spent amount now (what the last bar shows)
    budget: int
    start: datetime
    end: datetime


async def burn_down(session: AsyncSession, benefit: Benefit, *, buckets: int = BURN_DOWN_BUCKETS) -> BurnDown:
    """Budget spent by the end of each of ``buckets`` equal slices of the benefit's life so far (from
    ``valid_from`` to now or ``valid_to``): discounts redeemed minus discounts given back by reversals.
    Two statements, each one pass over the benefit's own rows (index ``benefit_id, redeemed_at``)."""
    now = utcnow()
    start = min(benefit.valid_from, now)
    end = max(min(now, benefit.valid_to), start + timedelta(hours=1))
    step = (end - start) / buckets
    edges = [start + step * (i + 1) for i in range(buckets)]
    edges[-1] = end + timedelta(microseconds=1)
    r = Redemption
    spent = (
        await session.execute(
            select(
                *[func.coalesce(func.sum(case((r.redeemed_at < edge, r.discount), else_=0)), 0) for edge in edges]
            ).where(r.benefit_id == benefit.id)
        )
    ).one()
    v = RedemptionReversal
    restored = (
        await session.execute(
            select(
                *[
                    func.coalesce(func.sum(case((v.created_at < edge, v.restored_discount), else_=0)), 0)
                    for edge in edges
                ]
            )
            .select_from(v)
            .join(r, r.id == v.redemption_id)
            .where(r.benefit_id == benefit.id)
        )
    ).one()
    # The chart's scale is in whole currency units (the exact figures are in the table and the facts).
    unit = 10 ** minor_unit_exponent(benefit.currency)
    values = [max(0, int(spent[i] or 0) - int(restored[i] or 0)) // unit for i in range(buckets)]
    long_range = end - start > timedelta(days=2)
    labels = [
        (edge if i < buckets - 1 else end).astimezone(UTC).strftime("%m-%d" if long_range else "%H:%M")
        for i, edge in enumerate(edges)
    ]
    chart = bar_chart(values, labels, label_every=max(1, buckets // 6), reference=benefit.budget_amount // unit)
    return BurnDown(chart=chart, spent=benefit.spent_amount, budget=benefit.budget_amount, start=start, end=end)


class BenefitPages(Controller):
    path = "/benefits"
    include_in_schema = False

    @get("/", operation_id="consoleBenefits")
    async def list(
        self,
        request: Request[Any, Any, Any],
        db: Db,
        brand: IdFilter = None,
        status: BenefitStatus = None,
        tag: TagFilter = None,
        page: PageNumber = 1,
    ) -> Response[str]:
        brand, status, tag = _clean(brand), _clean(status), _clean(tag)
        listing = await benefit_page(db, brand=brand, status=status, tag=tag, page=page)
        names = await queries.brand_names(db)
        known_tags = (await db.scalars(select(BenefitTag.tag).distinct().order_by(BenefitTag.tag).limit(200))).all()
        return render(
            request,
            "benefits/list.html",
            section="benefits",
            listing=listing,
            brands=names,
            brand_options=sorted(names.items(), key=lambda item: item[1]),
            known_tags=list(known_tags),
            statuses=BENEFIT_STATUSES,
            brand=brand or "",
            status=status or "",
            tag=tag or "",
        )

    @get("/{benefit_id:str}", operation_id="consoleBenefit")
    async def detail(self, request: Request[Any, Any, Any], db: Db, benefit_id: FromPath[str]) -> Response[str]:
        benefit = await db.get(Benefit, benefit_id) if len(benefit_id) <= 32 else None
        if benefit is None:
            raise Problem(404, "benefit-not-found", f"no benefit {benefit_id!r}")
        tags = (await db.scalars(select(BenefitTag.tag).where(BenefitTag.benefit_id == benefit.id))).all()
        distributors = (
            await db.scalars(select(BenefitDistributor.brand_id).where(BenefitDistributor.benefit_id == benefit.id))
        ).all()
        out = benefit_out(benefit, list(tags), distributors=list(distributors))
        chart = await burn_down(db, benefit)
        recent = await redemption_page(db, benefit_id=benefit.id, limit=10)
        t = translator(request)
        return render(
            request,
            "benefits/detail.html",
            section="benefits",
            benefit=out,
            burn=chart,
            recent=recent.rows,
            brands=await queries.brand_names(db),
            spent_share=round(100 * benefit.spent_amount / benefit.budget_amount) if benefit.budget_amount else 0,
            timezone=t.timezone.key,
        )


# --- redemptions ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RedemptionPage:
    rows: list[Redemption]
    next_after: str | None  # the cursor of the following (older) page


def _day_start(day: str) -> datetime | None:
    try:
        return datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        return None


async def redemption_page(
    session: AsyncSession,
    *,
    brand: str | None = None,
    role: str | None = None,
    benefit_id: str | None = None,
    status: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    after: str | None = None,
    limit: int = REDEMPTION_PAGE_SIZE,
) -> RedemptionPage:
    """Redemptions newest first, keyset-paginated on ``(redeemed_at, id)``; ``after`` is the id of the
    last row shown. Each filter has an index led by its column and ending in ``redeemed_at``: funding
    brand, distributor, benefit, and a partial index of the reversed ones (a few per cent of all)."""
    r = Redemption
    query = select(r)
    if brand:
        query = query.where(r.distributor_brand_id == brand if role == "distributing" else r.funding_brand_id == brand)
    if benefit_id:
        query = query.where(r.benefit_id == benefit_id)
    if status == "any_reversal":
        query = query.where(r.status != "redeemed")
    elif status:
        query = query.where(r.status == status)
        if status != "redeemed":
            query = query.where(r.status != "redeemed")  # lets the planner use the partial index
    if since is not None:
        query = query.where(r.redeemed_at >= since)
    if until is not None:
        query = query.where(r.redeemed_at < until)
    if after:
        anchor = (await session.execute(select(r.redeemed_at, r.id).where(r.id == after))).first()
        if anchor is not None:
            at, anchor_id = anchor
            query = query.where(
                r.redeemed_at <= at, or_(r.redeemed_at < at, and_(r.redeemed_at == at, r.id < anchor_id))
            )
    rows = list((await session.scalars(query.order_by(r.redeemed_at.desc(), r.id.desc()).limit(limit + 1))).all())
    more = len(rows) > limit
    rows = rows[:limit]
    return RedemptionPage(rows=rows, next_after=rows[-1].id if more and rows else None)


class RedemptionPages(Controller):
    path = "/redemptions"
    include_in_schema = False

    @get("/", operation_id="consoleRedemptions")
    async def list(
        self,
        request: Request[Any, Any, Any],
        db: Db,
        brand: IdFilter = None,
        role: Role = None,
        benefit: IdFilter = None,
        status: RedemptionStatus = None,
        since: DateFilter = None,
        until: DateFilter = None,
        after: Cursor = None,
    ) -> Response[str]:
        brand, role, benefit, status = _clean(brand), _clean(role), _clean(benefit), _clean(status)
        since, until, after = _clean(since), _clean(until), _clean(after)
        since_at = _day_start(since) if since else None
        until_day = _day_start(until) if until else None
        listing = await redemption_page(
            db,
            brand=brand,
            role=role,
            benefit_id=benefit,
            status=status,
            since=since_at,
            until=until_day + timedelta(days=1) if until_day else None,  # "until" includes that day
            after=after,
        )
        names = await queries.brand_names(db)
        benefit_ids = {row.benefit_id for row in listing.rows} | ({benefit} if benefit else set())
        benefit_names = (
            dict((await db.execute(select(Benefit.id, Benefit.name).where(Benefit.id.in_(benefit_ids)))).all())
            if benefit_ids
            else {}
        )
        params = {"brand": brand, "role": role, "benefit": benefit, "status": status, "since": since, "until": until}
        return render(
            request,
            "benefits/redemptions.html",
            section="benefits",
            listing=listing,
            brands=names,
            brand_options=sorted(names.items(), key=lambda item: item[1]),
            benefit_names=benefit_names,
            statuses=REDEMPTION_STATUSES,
            filtered=any(params.values()) or bool(after),
            after=after,
            params=params,
            brand=brand or "",
            role=role or "",
            benefit=benefit or "",
            status=status or "",
            since=since or "",
            until=until or "",
        )
