"""Ledger API. Partner side: a brand's own transactions (its own postings only) and balances.
Operator side: everything, manual adjustments, and chain verification."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from litestar import Controller, get, post
from litestar.params import FromQuery, JSONBody, QueryParameter

import contracts
from alliance.core.audit import record_audit
from alliance.core.bodies import StrictBody
from alliance.core.deps import Audit, Caller, Db, Operator
from alliance.core.problems import Problem
from alliance.ledger import service
from alliance.ledger.schemas import (
    AccountBalance,
    AdjustmentIn,
    BalancesOut,
    TransactionOut,
    TransactionPage,
    VerifyReport,
)
from alliance.ledger.verify import verify_ledger

__all__ = ["BalanceController", "LedgerAdminController", "LedgerController"]

Limit = Annotated[int, QueryParameter(ge=1, le=500)]


def _utc(value: datetime | None, name: str) -> datetime | None:
    if value is not None and value.utcoffset() is None:
        raise Problem(400, "invalid-request", f"{name} needs a time zone (e.g. 2026-03-01T00:00:00Z)")
    return value


class LedgerController(Controller):
    path = "/ledger"
    tags = ["ledger"]

    @get(
        "/transactions",
        operation_id="listLedgerTransactions",
        summary="The brand's ledger transactions, newest first: only its own postings",
    )
    async def transactions(
        self,
        db: Db,
        caller: Caller,
        kind: FromQuery[str | None] = None,
        period: FromQuery[str | None] = None,
        currency: FromQuery[str | None] = None,
        occurred_from: FromQuery[datetime | None] = None,
        occurred_to: FromQuery[datetime | None] = None,
        cursor: FromQuery[str | None] = None,
        limit: Limit = 100,
    ) -> TransactionPage:
        return await service.list_transactions(
            db,
            brand_id=caller.brand_id,
            kind=kind,
            period=period,
            currency=currency,
            occurred_from=_utc(occurred_from, "occurred_from"),
            occurred_to=_utc(occurred_to, "occurred_to"),
            limit=limit,
            cursor=cursor,
        )


class BalanceController(Controller):
    path = "/balances"
    tags = ["ledger"]

    @get("/", operation_id="getBalances", summary="The brand's account balances and net position per currency")
    async def balances(self, db: Db, caller: Caller) -> BalancesOut:
        return service.balances_out(caller.brand_id, await service.live_balances(db, caller.brand_id))


class LedgerAdminController(Controller):
    path = "/ledger"
    tags = ["admin"]

    @get("/transactions", operation_id="adminListLedgerTransactions", summary="Every ledger transaction")
    async def transactions(
        self,
        db: Db,
        operator: Operator,
        kind: FromQuery[str | None] = None,
        period: FromQuery[str | None] = None,
        currency: FromQuery[str | None] = None,
        occurred_from: FromQuery[datetime | None] = None,
        occurred_to: FromQuery[datetime | None] = None,
        cursor: FromQuery[str | None] = None,
        limit: Limit = 100,
    ) -> TransactionPage:
        return await service.list_transactions(
            db,
            brand_id=None,
            kind=kind,
            period=period,
            currency=currency,
            occurred_from=_utc(occurred_from, "occurred_from"),
            occurred_to=_utc(occurred_to, "occurred_to"),
            limit=limit,
            cursor=cursor,
        )

    @post(
        "/transactions",
        operation_id="adminPostLedgerAdjustment",
        summary="Post a manual balanced transaction (idempotent by idempotency_key)",
        dto=StrictBody[AdjustmentIn],
        return_dto=None,
    )
    async def adjust(self, db: Db, operator: Operator, audit: Audit, data: JSONBody[AdjustmentIn]) -> TransactionOut:
        body = data
        posted = await service.post_adjustment(
            db,
            audit,
            idempotency_key=body.idempotency_key,
            kind=body.kind,
            postings=[contracts.Posting(p.account, p.amount, p.currency) for p in body.postings],
            occurred_at=body.occurred_at,
            reference=body.reference,
        )
        return await service.get_transaction(db, posted.id, None)

    @get("/balances", operation_id="adminGetBalances", summary="Every account's live balance")
    async def balances(self, db: Db, operator: Operator) -> list[AccountBalance]:
        return await service.live_balances(db, None)

    @post(
        "/verification",
        operation_id="adminVerifyLedger",
        status_code=200,
        summary="Seal pending transactions, then recompute the hash chain and every balance",
    )
    async def verify(self, db: Db, operator: Operator, audit: Audit) -> VerifyReport:
        report = await verify_ledger(db)
        record_audit(
            db,
            audit,
            "ledger.verify",
            details={"ok": report.ok, "transactions": report.transactions, "head_seq": report.head_seq},
        )
        return report
