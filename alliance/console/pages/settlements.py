"""Settlements: the months (closed, and open ones that can be closed), running the monthly close (admins
only: ``alliance.settlement.service.close_month``, the function behind ``alliance close`` and
``POST /admin/v1/settlements/{month}/close``), a closed month's net positions with a chart, and each
brand's signed statement as JSON, CSV or PDF - the same bytes ``GET /v1/statements/{month}`` gives the
brand (the same service functions make them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from litestar import Controller, MediaType, Request, Response, get, post
from litestar.params import FromPath, QueryParameter
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from alliance.console import queries
from alliance.console.auth import admin_only, console_settings
from alliance.console.rendering import form_fields, render
from alliance.core.deps import Audit, Db
from alliance.core.problems import Problem
from alliance.db.base import utcnow
from alliance.db.models import LedgerTransaction, SettlementRun, SettlementStatement
from alliance.settlement import service as settlement
from alliance.settlement.documents import MEDIA_TYPES
from alliance.settlement.schemas import RunOut
from contracts.currencies import minor_unit_exponent

__all__ = ["NetChart", "SettlementPages", "month_overview", "net_chart"]

MEDIA = MEDIA_TYPES
_MAX_OPEN_MONTHS = 36

Notice = Annotated[str | None, QueryParameter(pattern=r"^(closed|already_closed)?$")]


def _next_month(month: str) -> str:
    return settlement.check_month(month)[2]


@dataclass(frozen=True, slots=True)
class MonthOverview:
    closed: list[SettlementRun]
    open: list[str]  # newest first: months after the last closed one that have begun
    closable: list[str]  # oldest first: open months that are over (the first is the one to close next)


async def month_overview(session: AsyncSession) -> MonthOverview:
    """Closed months (one row each), and the open months from the first one after the last close (or
    the ledger's first period, read off its index) to the current month."""
    closed = list((await session.scalars(select(SettlementRun).order_by(SettlementRun.period.desc()))).all())
    now = utcnow()
    current = f"{now.year:04d}-{now.month:02d}"
    if closed:
        first_open: str | None = closed[0].next_period
    else:
        first_open = await session.scalar(select(func.min(LedgerTransaction.period)))
    months: list[str] = []
    month = first_open
    while month is not None and month <= current and len(months) < _MAX_OPEN_MONTHS:
        months.append(month)
        month = _next_month(month)
    return MonthOverview(closed=closed, open=list(reversed(months)), closable=[m for m in months if m < current])


@dataclass(frozen=True, slots=True)
class NetBar:
    label: str
    net: int
    x: float
    width: float
    y: float
    positive: bool


@dataclass(frozen=True, slots=True)
class NetChart:
    """A diverging bar chart of one currency's net positions: right of the axis the alliance owes the
    brand, left of it the brand owes the alliance (values in whole currency units)."""

    currency: str
    width: int
    height: int
    axis_x: float
    bars: list[NetBar]


def net_chart(currency: str, positions: list[tuple[str, int]], unit: int, *, width: int = 640) -> NetChart:
    row, label_width, pad = 26, 170, 8
    height = max(1, len(positions)) * row + 2 * pad
    plot = width - label_width - 2 * pad
    axis = label_width + pad + plot / 2
    peak = max((abs(net) for _, net in positions), default=0) or 1
    bars = []
    for i, (label, net) in enumerate(positions):
        length = (plot / 2) * abs(net) / peak
        bars.append(
            NetBar(
                label=label,
                net=net // unit if net >= 0 else -((-net) // unit),
                x=round(axis if net >= 0 else axis - length, 1),
                width=round(max(length, 1.0), 1),
                y=pad + i * row + 4,
                positive=net >= 0,
            )
        )
    return NetChart(currency=currency, width=width, height=height, axis_x=round(axis, 1), bars=bars)


def _see_other(location: str) -> Response[bytes]:
    return Response(b"", status_code=303, headers={"Location": location}, media_type=MediaType.TEXT)


class SettlementPages(Controller):
    path = "/settlements"
    include_in_schema = False

    async def _list(
        self, request: Request[Any, Any, Any], db: Db, *, error: str | None = None, status_code: int = 200
    ) -> Response[str]:
        overview = await month_overview(db)
        return render(
            request,
            "settlements/list.html",
            status_code=status_code,
            section="settlements",
            overview=overview,
            error=error,
        )

    @get("/", operation_id="consoleSettlements")
    async def list(self, request: Request[Any, Any, Any], db: Db) -> Response[str]:
        return await self._list(request, db)

    @post("/close", operation_id="consoleCloseMonth", guards=[admin_only])
    async def close(self, request: Request[Any, Any, Any], db: Db, audit: Audit) -> Response[Any]:
        month = (await form_fields(request)).get("month", "").strip()
        settings = console_settings(request)
        try:
            run = await settlement.close_month(
                db, audit, month, key_file=settings.exchange_signing_key_file, alliance_id=settings.alliance_id
            )
        except Problem as exc:
            await db.rollback()
            return await self._list(request, db, error=exc.detail or exc.slug, status_code=exc.status)
        notice = "already_closed" if run.already_closed else "closed"
        return _see_other(f"/console/settlements/{run.period}?notice={notice}")

    @get("/{month:str}", operation_id="consoleSettlementRun")
    async def run(
        self, request: Request[Any, Any, Any], db: Db, month: FromPath[str], notice: Notice = None
    ) -> Response[str]:
        run: RunOut = await settlement.get_run(db, month)
        names = await queries.brand_names(db)
        statements = (
            await db.execute(
                select(SettlementStatement.brand_id, SettlementStatement.sha256, SettlementStatement.key_id).where(
                    SettlementStatement.period == month
                )
            )
        ).all()
        by_currency: dict[str, list[tuple[str, int]]] = {}
        for position in sorted(run.net_positions, key=lambda n: (n.currency, -n.net, n.brand_id)):
            by_currency.setdefault(position.currency, []).append(
                (names.get(position.brand_id, position.brand_id), position.net)
            )
        charts = [
            net_chart(currency, rows, 10 ** minor_unit_exponent(currency)) for currency, rows in by_currency.items()
        ]
        return render(
            request,
            "settlements/run.html",
            section="settlements",
            run=run,
            brands=names,
            positions=sorted(run.net_positions, key=lambda n: (names.get(n.brand_id, n.brand_id), n.currency)),
            statements=sorted(statements, key=lambda s: names.get(s.brand_id, s.brand_id)),
            charts=charts,
            notice=notice,
        )

    @get("/{month:str}/statements/{brand_id:str}/{fmt:str}", operation_id="consoleStatementDownload")
    async def download(
        self, request: Request[Any, Any, Any], db: Db, month: FromPath[str], brand_id: FromPath[str], fmt: FromPath[str]
    ) -> Response[bytes]:
        if fmt not in MEDIA:
            raise Problem(404, "not-found", "statements come as json, csv or pdf")
        row = await settlement.get_statement(db, brand_id[:32], month)
        # The same bytes as GET /v1/statements/{month} (tests compare them with the API's).
        body = await settlement.statement_bytes(db, row, fmt, console_settings(request).exchange_signing_key_file)
        filename = f"statement-{month}-{row.brand_id}.{fmt}"
        return Response(
            body, media_type=MEDIA[fmt], headers={"Content-Disposition": f'attachment; filename="{filename}"'}
        )
