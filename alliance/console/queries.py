"""Read-only queries behind the console pages. Writes never happen here: they go through the domain
services (``alliance.brands.service`` ...), exactly as the API's do.

Every query is bounded - a page size, a keyset on an index, or a time range on an indexed column - so
a page costs the same with a thousand audit rows or ten million.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from alliance.db.base import utcnow
from alliance.db.models import ApiKey, AuditEntry, Brand

__all__ = [
    "AuditPage",
    "BrandPage",
    "BrandRow",
    "DailyCount",
    "MemberCount",
    "audit_page",
    "brand_names",
    "brand_page",
    "daily_audit_counts",
    "members_by_month",
]

BRAND_PAGE_SIZE = 25
AUDIT_PAGE_SIZE = 50


@dataclass(frozen=True, slots=True)
class BrandRow:
    brand: Brand
    active_keys: int


@dataclass(frozen=True, slots=True)
class BrandPage:
    rows: list[BrandRow]
    page: int
    pages: int
    total: int
    first: int  # 1-based position of the first row shown
    last: int


async def brand_page(session: AsyncSession, *, status: str | None, search: str | None, page: int) -> BrandPage:
    """Brands by name, ``BRAND_PAGE_SIZE`` a page, with their active key counts. An alliance has tens
    to hundreds of members, so numbered pages (offset) are fine here."""
    conditions = []
    if status in ("active", "suspended"):
        conditions.append(Brand.status == status)
    if search:
        escaped = search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        conditions.append(Brand.name.ilike(f"%{escaped}%", escape="\\"))
    total = int(await session.scalar(select(func.count()).select_from(Brand).where(*conditions)) or 0)
    pages = max(1, -(-total // BRAND_PAGE_SIZE))
    page = min(max(1, page), pages)
    offset = (page - 1) * BRAND_PAGE_SIZE
    brands = (
        await session.scalars(
            select(Brand).where(*conditions).order_by(Brand.name, Brand.id).offset(offset).limit(BRAND_PAGE_SIZE)
        )
    ).all()
    counts: dict[str, int] = {}
    if brands:
        counted = await session.execute(
            select(ApiKey.brand_id, func.count())
            .where(ApiKey.brand_id.in_([b.id for b in brands]), ApiKey.revoked_at.is_(None))
            .group_by(ApiKey.brand_id)
        )
        counts = {brand_id: int(n) for brand_id, n in counted.all() if brand_id is not None}
    rows = [BrandRow(brand=b, active_keys=counts.get(b.id, 0)) for b in brands]
    return BrandPage(
        rows=rows,
        page=page,
        pages=pages,
        total=total,
        first=offset + 1 if rows else 0,
        last=offset + len(rows),
    )


async def brand_names(session: AsyncSession) -> dict[str, str]:
    """Every brand's id -> name (for labels and the audit filter; the alliance is small)."""
    return {brand_id: name for brand_id, name in (await session.execute(select(Brand.id, Brand.name))).all()}


@dataclass(frozen=True, slots=True)
class AuditPage:
    entries: list[AuditEntry]
    next_before: int | None  # the cursor of the following (older) page


async def audit_page(
    session: AsyncSession,
    *,
    brand_id: str | None = None,
    action: str | None = None,
    before: int | None = None,
    limit: int = AUDIT_PAGE_SIZE,
) -> AuditPage:
    """Audit entries newest first, keyset-paginated on ``(at, id)``: the cursor is the id of the last
    entry shown. Each filter has an index led by its column and ending in ``at`` (``brand_id, at`` and
    ``action, at``), so every page is a short backward index scan."""
    query = select(AuditEntry)
    if brand_id:
        query = query.where(AuditEntry.brand_id == brand_id)
    if action:
        query = query.where(AuditEntry.action == action)
    if before is not None:
        anchor = (await session.execute(select(AuditEntry.at, AuditEntry.id).where(AuditEntry.id == before))).first()
        if anchor is not None:
            at, anchor_id = anchor
            # `at <= x` bounds the index range; the OR breaks ties between entries of the same instant.
            query = query.where(AuditEntry.at <= at, or_(AuditEntry.at < at, AuditEntry.id < anchor_id))
    rows = list(
        (await session.scalars(query.order_by(AuditEntry.at.desc(), AuditEntry.id.desc()).limit(limit + 1))).all()
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return AuditPage(entries=rows, next_before=rows[-1].id if more and rows else None)


@dataclass(frozen=True, slots=True)
class DailyCount:
    day: datetime  # local midnight in the console's time zone
    count: int


async def daily_audit_counts(session: AsyncSession, timezone: ZoneInfo, days: int = 30) -> list[DailyCount]:
    """Audit entries per local day for the last ``days`` days (today included), in one statement of
    ``days`` scalar subqueries, each a range count on the ``at`` index (an index-only scan on
    PostgreSQL; one pass with a ``FILTER`` per day costs ``days`` comparisons per row instead)."""
    today = utcnow().astimezone(timezone).replace(hour=0, minute=0, second=0, microsecond=0)
    starts = [today - timedelta(days=days - 1 - i) for i in range(days)]
    bounds = [*starts, today + timedelta(days=1)]
    counts = [
        select(func.count())
        .select_from(AuditEntry)
        .where(AuditEntry.at >= bounds[i], AuditEntry.at < bounds[i + 1])
        .scalar_subquery()
        for i in range(days)
    ]
    row = (await session.execute(select(*counts))).one()
    return [DailyCount(day=starts[i], count=int(row[i] or 0)) for i in range(days)]


@dataclass(frozen=True, slots=True)
class MemberCount:
    month: datetime  # first day of the month, local time
    members: int  # brands onboarded by the end of that month


async def members_by_month(session: AsyncSession, timezone: ZoneInfo, months: int = 12) -> list[MemberCount]:
    """How many brands had joined by the end of each of the last ``months`` months."""
    joined: Sequence[datetime] = (await session.scalars(select(Brand.created_at))).all()
    now = utcnow().astimezone(timezone)
    firsts: list[datetime] = []
    year, month = now.year, now.month
    for _ in range(months):
        firsts.append(now.replace(year=year, month=month, day=1, hour=0, minute=0, second=0, microsecond=0))
        year, month = (year - 1, 12) if month == 1 else (year, month - 1)
    firsts.reverse()
    result = []
    for start in firsts:
        end = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
        result.append(MemberCount(month=start, members=sum(1 for at in joined if at < end)))
    return result
