"""Settlement API. Partner side: the brand's own statements (JSON, CSV, PDF), disputes, the exchange's
public key. Operator side: close a month, runs with net positions, the finance report, dispute
resolution."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from litestar import Controller, Request, Response, get, post
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, JSONBody, QueryParameter

from alliance.core.deps import Audit, Caller, Db
from alliance.core.openapi import CSV, PDF, also_served_as
from alliance.core.problems import Problem, problem_responses
from alliance.core.settings import Settings
from alliance.settlement import service
from alliance.settlement.documents import MEDIA_TYPES
from alliance.settlement.schemas import (
    DisputeIn,
    DisputeOut,
    DisputeResolveIn,
    ExchangeKeyOut,
    ReportOut,
    RunOut,
    StatementSigned,
)

__all__ = ["DisputeController", "ExchangeKeyController", "SettlementAdminController", "StatementController"]

_MEDIA = MEDIA_TYPES
Format = Literal["json", "csv", "pdf"]


def _settings(request: Request[Any, Any, Any]) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _format_parameter(*allowed: str) -> Any:
    """The documented ``format`` query parameter; :func:`_format` answers any other value with a 400."""
    return QueryParameter(
        description="The body's format (default: by `Accept`, else json)", schema_extra={"enum": list(allowed)}
    )


def _format(request: Request[Any, Any, Any], requested: str | None, allowed: tuple[str, ...]) -> str:
    if requested is not None:
        if requested not in allowed:
            raise Problem(400, "invalid-format", f"format must be one of {', '.join(allowed)}")
        return requested
    accept = request.headers.get("accept", "")
    for name in allowed:
        if _MEDIA[name].split(";")[0] in accept:
            return name
    return "json"


class StatementController(Controller):
    path = "/statements"
    tags = ["settlement"]

    @get(
        "/{month:str}",
        operation_id="getStatement",
        summary="The brand's signed statement of a closed month (JSON, CSV or PDF by Accept or ?format=)",
        responses={
            200: ResponseSpec(
                StatementSigned, description="The statement, as ?format= or Accept asks", generate_examples=False
            ),
            **problem_responses(404, 409),
        },
        operation_class=also_served_as({"text/csv": CSV, "application/pdf": PDF}),
    )
    async def statement(
        self,
        request: Request[Any, Any, Any],
        db: Db,
        caller: Caller,
        month: FromPath[str],
        format: Annotated[str | None, _format_parameter("json", "csv", "pdf")] = None,
    ) -> Response[bytes]:
        kind = _format(request, format, ("json", "csv", "pdf"))
        row = await service.get_statement(db, caller.brand_id, month)
        filename = f"statement-{month}-{caller.brand_id}.{kind}"
        body = await service.statement_bytes(db, row, kind, _settings(request).exchange_signing_key_file)
        return Response(
            body,
            media_type=_MEDIA[kind],
            headers={"Content-Disposition": f'attachment; filename="{filename}"'},
        )

    @post(
        "/{month:str}/disputes",
        operation_id="openDispute",
        summary="Flag one line of the brand's statement; an operator resolves it in the next period",
    )
    async def dispute(
        self, db: Db, caller: Caller, audit: Audit, month: FromPath[str], data: JSONBody[DisputeIn]
    ) -> DisputeOut:
        return await service.open_dispute(db, audit, caller.brand_id, month, data)


class DisputeController(Controller):
    path = "/disputes"
    tags = ["settlement"]

    @get("/", operation_id="listDisputes", summary="The brand's own disputes, newest first")
    async def disputes(self, db: Db, caller: Caller) -> list[DisputeOut]:
        return await service.list_disputes(db, caller.brand_id)


class ExchangeKeyController(Controller):
    path = "/exchange-key"
    tags = ["settlement"]

    @get(
        "/",
        operation_id="getExchangeKey",
        summary="The exchange's Ed25519 public key that signs statements; ?key_id= any earlier one",
        responses=problem_responses(404),
    )
    async def key(
        self,
        request: Request[Any, Any, Any],
        db: Db,
        caller: Caller,
        key_id: Annotated[str | None, QueryParameter(max_length=32)] = None,
    ) -> ExchangeKeyOut:
        return await service.exchange_key(db, _settings(request).exchange_signing_key_file, key_id)


class SettlementAdminController(Controller):
    tags = ["settlement"]

    @post(
        "/settlements/{month:str}/close",
        operation_id="closeMonth",
        summary="Close a month: lock the period, net every brand, write signed statements (idempotent)",
        status_code=200,
    )
    async def close(self, request: Request[Any, Any, Any], db: Db, audit: Audit, month: FromPath[str]) -> RunOut:
        settings = _settings(request)
        return await service.close_month(
            db, audit, month, key_file=settings.exchange_signing_key_file, alliance_id=settings.alliance_id
        )

    @get("/settlements", operation_id="listSettlementRuns", summary="Every closed month, newest first")
    async def runs(self, db: Db) -> list[RunOut]:
        return await service.list_runs(db)

    @get("/settlements/{month:str}", operation_id="getSettlementRun", summary="A run: totals and net positions")
    async def run(self, db: Db, month: FromPath[str]) -> RunOut:
        return await service.get_run(db, month)

    @get(
        "/reports/{month:str}",
        operation_id="getMonthlyReport",
        summary="A closed month's alliance summary (JSON, or CSV by Accept or ?format=csv)",
        responses={
            200: ResponseSpec(ReportOut, description="The report, as ?format= or Accept asks", generate_examples=False)
        },
        operation_class=also_served_as({"text/csv": CSV}),
    )
    async def report(
        self,
        request: Request[Any, Any, Any],
        db: Db,
        month: FromPath[str],
        format: Annotated[str | None, _format_parameter("json", "csv")] = None,
    ) -> Response[Any]:
        report: ReportOut = await service.monthly_report(db, month)
        if _format(request, format, ("json", "csv")) == "csv":
            return Response(
                service.report_csv(report),
                media_type=_MEDIA["csv"],
                headers={"Content-Disposition": f'attachment; filename="alliance-report-{month}.csv"'},
            )
        return Response(report)

    @post(
        "/disputes/{dispute_id:str}/resolve",
        operation_id="resolveDispute",
        summary="Resolve a dispute: an adjustment posted into the next open period, or a rejection",
        status_code=200,
    )
    async def resolve(
        self, db: Db, audit: Audit, dispute_id: FromPath[str], data: JSONBody[DisputeResolveIn]
    ) -> DisputeOut:
        return await service.resolve_dispute(db, audit, dispute_id, data)

    @get("/disputes", operation_id="listAllDisputes", summary="Every dispute, newest first")
    async def disputes(self, db: Db) -> list[DisputeOut]:
        return await service.list_disputes(db, None)
