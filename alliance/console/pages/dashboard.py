"""The dashboard: the alliance at a glance. Each domain contributes stat cards through
:data:`DASHBOARD_CARDS`, so the page grows with the exchange without knowing every domain."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from litestar import Controller, Request, Response, get
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from alliance.console import queries
from alliance.console.charts import bar_chart
from alliance.console.i18n import Translator
from alliance.console.rendering import render, translator
from alliance.core.deps import Db
from alliance.db.base import utcnow
from alliance.db.models import ApiKey, AuditEntry, Brand
from alliance.ledger import quarantine

__all__ = ["DASHBOARD_CARDS", "DashboardPages", "StatCard"]


@dataclass(frozen=True, slots=True)
class StatCard:
    """One figure on the dashboard. ``label`` is a message key; ``value`` is already formatted for the
    reader's locale (``t.number``, ``t.money``); ``href`` links to the page with the details."""

    label: str
    value: str
    href: str | None = None
    hint: str | None = None


CardSource = Callable[[AsyncSession, Translator], Awaitable[list[StatCard]]]


async def brand_cards(db: AsyncSession, t: Translator) -> list[StatCard]:
    by_status = dict((await db.execute(select(Brand.status, func.count()).group_by(Brand.status))).all())
    keys = await db.scalar(
        select(func.count()).select_from(ApiKey).where(ApiKey.revoked_at.is_(None), ApiKey.brand_id.is_not(None))
    )
    return [
        StatCard(
            "dashboard.card.active_brands", t.number(int(by_status.get("active", 0))), "/console/brands?status=active"
        ),
        StatCard(
            "dashboard.card.suspended_brands",
            t.number(int(by_status.get("suspended", 0))),
            "/console/brands?status=suspended",
        ),
        StatCard("dashboard.card.active_keys", t.number(int(keys or 0))),
    ]


async def activity_cards(db: AsyncSession, t: Translator) -> list[StatCard]:
    since = utcnow() - timedelta(days=7)
    week = await db.scalar(select(func.count()).select_from(AuditEntry).where(AuditEntry.at >= since))
    return [StatCard("dashboard.card.audit_week", t.number(int(week or 0)), "/console/audit")]


# Domains append their own sources (benefits, redemptions, GMV, commissions ... as they arrive).
DASHBOARD_CARDS: list[CardSource] = [brand_cards, activity_cards]


class DashboardPages(Controller):
    include_in_schema = False

    @get("/", operation_id="consoleDashboard")
    async def dashboard(self, request: Request[Any, Any, Any], db: Db) -> Response[str]:
        t = translator(request)
        cards: list[StatCard] = []
        for source in DASHBOARD_CARDS:
            cards.extend(await source(db, t))
        daily = await queries.daily_audit_counts(db, t.timezone, days=30)
        members = await queries.members_by_month(db, t.timezone, months=12)
        recent = await queries.audit_page(db, limit=8)
        brands = await queries.brand_names(db)
        return render(
            request,
            "dashboard.html",
            section="dashboard",
            cards=cards,
            has_brands=bool(brands),
            timezone=t.timezone.key,
            activity=bar_chart([d.count for d in daily], [d.day.strftime("%m-%d") for d in daily], label_every=7),
            activity_total=sum(d.count for d in daily),
            members=bar_chart(
                [m.members for m in members], [m.month.strftime("%Y-%m") for m in members], label_every=3
            ),
            recent=recent.entries,
            brands=brands,
            quarantined=await quarantine.held_count(db),
        )
