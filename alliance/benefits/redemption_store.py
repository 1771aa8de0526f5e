"""Where a redemption is read and written: one interface, two stores, the same statements.

* `CoreStore` - the portable store: a SQLAlchemy session (SQLite, and PostgreSQL when the fast path is
  unavailable or lost a race). It runs the statements of `alliance.benefits.redemption_sql` one after
  the other inside the session's transaction, and tells the caller when a guard did not hold.
* `AsyncpgStore` - PostgreSQL's fast path: a plain asyncpg connection of the direct pool
  (`alliance.db.direct`), outside any transaction. The same read, then the same writes composed into
  one statement of data-modifying CTEs (`redemption_sql.composed_write`), compiled once for asyncpg: one
  read and one write round trip, each statement atomic by itself.

Both load the same `RedemptionSnapshot` (:func:`load_snapshot`) and write the same parameters
(:func:`prepare_write`) for the plan `redemption_rules.decide_redemption` made. Neither decides
anything: a store reports that a guard failed (a concurrent request won), and the caller reads and
decides again. This is the shape of the ledger sealer's ``_CoreStore`` / ``_AsyncpgStore``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import asyncpg  # type: ignore[import-untyped]
import msgspec
from sqlalchemy import Integer, String, bindparam, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

import contracts
from alliance.benefits import booking
from alliance.benefits.redemption_rules import (
    REDEEM_OPERATION,
    BenefitSnapshot,
    RedemptionPlan,
    RedemptionRequest,
    RedemptionSnapshot,
    reprice,
)
from alliance.benefits.redemption_sql import (
    claim_coupon,
    composed_write,
    hooks_insert,
    member_use,
    snapshot_read,
    spend_budget,
)
from alliance.benefits.rules import StoredAnswer
from alliance.benefits.schemas import RedemptionOut
from alliance.benefits.views import distributor_view
from alliance.core.audit import AuditContext
from alliance.db.direct import DirectStatement
from alliance.db.models import AuditEntry, ContractVersion, IdempotencyRecord, Redemption
from alliance.db.rows import insert_row
from alliance.ledger import posting
from alliance.webhooks import service as webhooks

__all__ = ["AsyncpgStore", "CoreStore", "RedemptionWrite", "load_snapshot", "prepare_write"]


class _Store(Protocol):
    async def fetch_row(self, params: dict[str, Any]) -> Any | None: ...

    async def fetch_canonical(self, contract_id: str, version: int) -> bytes | None: ...


def _decoded(text: str | None) -> list[Any]:
    return msgspec.json.decode(text) if text else []


async def load_snapshot(
    store: _Store, request: RedemptionRequest, code_hash: str, now: datetime
) -> RedemptionSnapshot | None:
    """Everything the redemption of ``code_hash`` reads (`redemption_sql.snapshot_read`), decoded."""
    params = {
        "p_code": code_hash,
        "p_caller": request.caller_id,
        "p_month": contracts.month_of(now),
        "p_member": request.member_hash,
        "p_key": request.key,
    }
    row = await store.fetch_row(params)
    if row is None:
        return None
    contract_id = row[21]
    versions, rejected = await booking.contract_history(store.fetch_canonical, contract_id, row[22], row[23])
    stored = None if row[26] is None else StoredAnswer(row[26], row[27], row[28], bytes(row[29]))
    return RedemptionSnapshot(
        coupon_id=row[0],
        coupon_status=row[1],
        distributor_id=row[2],
        benefit=BenefitSnapshot(*row[3:7], tuple(_decoded(row[7])), *row[8:19]),  # type: ignore[call-arg]
        distributor_allowed=bool(row[19]),
        endpoints=tuple((e[0], e[1], tuple(e[2])) for e in _decoded(row[20])),
        contract_id=contract_id,
        versions=versions,
        rejected=rejected,
        month_to_date=int(row[24] or 0),
        member_uses=int(row[25] or 0),
        stored=stored,
    )


@dataclass(frozen=True, slots=True)
class RedemptionWrite:
    """What a plan writes: the answer (as stored for replays) and every statement's parameters."""

    body: RedemptionOut
    encoded: bytes
    params: dict[str, Any]
    posting: posting.PreparedPosting
    booking: booking.Booking


def _guard_params(plan: RedemptionPlan, now: datetime) -> dict[str, Any]:
    return {
        "p_now": now,
        "p_coupon": plan.coupon_id,
        "p_benefit": plan.benefit.id,
        "p_member": plan.request.member_hash,
        "p_limit": plan.benefit.per_member_limit,
        "p_discount": plan.discount,
        "p_smallest": plan.smallest_discount,
    }


def _body(plan: RedemptionPlan, transaction_id: str, now: datetime) -> RedemptionOut:
    data = plan.request.data
    return RedemptionOut(
        id=plan.request.redemption_id,
        coupon_id=plan.coupon_id,
        benefit_id=plan.benefit.id,
        funding_brand_id=plan.request.caller_id,
        distributor_brand_id=plan.distributor_id,
        order_reference=data.order_reference,
        order_amount=data.order_amount,
        discount=plan.discount,
        currency=plan.benefit.currency,
        channel=data.channel,
        store_id=data.store_id,
        redeemed_at=now,
        contract_id=plan.terms.contract_id,
        contract_version=plan.terms.version,
        commission=plan.priced.commission,
        ledger_transaction_id=transaction_id,
        refunded_amount=0,
        restored_discount=0,
        status="redeemed",
    )


def prepare_write(plan: RedemptionPlan, ctx: AuditContext, now: datetime) -> RedemptionWrite:
    """The rows a decided redemption writes, as the parameters of every statement of
    `alliance.benefits.redemption_sql` (the ledger's validation may still refuse them: 422)."""
    caller, rid = plan.request.caller_id, plan.request.redemption_id
    prepared = posting.prepare_priced_event(
        plan.priced,
        brand_id=caller,
        idempotency_key=f"coupon_redemption:{rid}",
        occurred_at=now,
        kind="coupon_redemption",
        reference={"redemption_id": rid, "benefit_id": plan.benefit.id, "coupon_id": plan.coupon_id},
    )
    body = _body(plan, prepared.id, now)
    encoded = msgspec.json.encode(body)  # stored for replays and sent as this answer: encoded once
    views = {caller: body, plan.distributor_id: distributor_view(body)}
    hooks = webhooks.delivery_rows(plan.endpoints, "redemption.created", views, now) if plan.endpoints else []
    priced = plan.priced
    key = booking.total_key(plan.terms, priced.commission_kind, priced.commission_payer, priced.commission_month)
    booked = booking.Booking(priced, prepared.id, key, plan.guard)
    details = {"coupon_id": plan.coupon_id, "benefit_id": plan.benefit.id, "discount": plan.discount}
    params: dict[str, Any] = {
        **_guard_params(plan, now),
        **prepared.params(),
        **booking.total_params(booked),
        **{f"r_{name}": value for name, value in msgspec.structs.asdict(body).items()},
        "r_member_hash": plan.request.member_hash,
        **{"i_brand_id": caller, "i_key": plan.key, "i_operation": REDEEM_OPERATION},
        **{"i_fingerprint": plan.request.fingerprint, "i_status_code": 201, "i_response_body": encoded},
        **{"i_resource_id": rid, "i_created_at": now, "h_rows": msgspec.json.encode(hooks).decode()},
        **{"a_at": now, "a_actor": ctx.actor, "a_brand_id": caller, "a_action": "redemption.create"},
        **{"a_target": rid, "a_source_ip": ctx.source_ip, "a_request_id": ctx.request_id},
        "a_details": msgspec.json.encode({**details, "currency": plan.benefit.currency}).decode(),
    }
    return RedemptionWrite(body, encoded, params, prepared, booked)


class CoreStore:
    """The portable store: the statements one by one through a SQLAlchemy session, in its transaction
    (the caller commits, or rolls back when :meth:`write` reports a lost guard)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.dialect = session.get_bind().dialect.name

    async def fetch_row(self, params: dict[str, Any]) -> Any | None:
        return (await self.session.execute(snapshot_read(self.dialect), params)).first()

    async def fetch_canonical(self, contract_id: str, version: int) -> bytes | None:
        return await booking.session_canonical(self.session)(contract_id, version)

    async def _held(self, statement: Any, params: dict[str, Any]) -> bool:
        return (await self.session.execute(statement, params)).first() is not None

    async def write(
        self, plan: RedemptionPlan, ctx: AuditContext, now: datetime, *, lock_totals: bool
    ) -> RedemptionWrite | None:
        """Write in the lock order; ``None`` (the caller rolls back) when a guard did not hold. With
        ``lock_totals`` the month-to-date total is locked and the plan priced again from it before
        anything is booked; otherwise :func:`booking.settle`'s guard may raise `TotalsContended`."""
        guards = _guard_params(plan, now)
        if not await self._held(claim_coupon(), guards):
            return None
        if plan.benefit.per_member_limit is not None and not await self._held(member_use(self.dialect), guards):
            return None
        if lock_totals:  # the benefit before the month-to-date total, as always
            if not await self._held(spend_budget(), guards):
                return None
            if plan.terms.coupon_commission.monthly_cap is not None:
                priced = plan.priced
                key = booking.total_key(plan.terms, "coupon", priced.commission_payer, priced.commission_month)
                plan = reprice(plan, await booking.lock_month_to_date(self.session, key))
        write = prepare_write(plan, ctx, now)
        if not await self._insert_rows(write):
            return None
        # The hot rows last, so their locks are held only until the commit that follows.
        if not lock_totals and not await self._held(spend_budget(), write.params):
            return None
        await booking.settle(self.session, write.booking)
        return write

    async def _insert_rows(self, write: RedemptionWrite) -> bool:
        await posting.write_prepared(self.session, write.posting)
        params, dialect = write.params, self.dialect
        await self.session.execute(insert_row(_table(Redemption), "r_", dialect), params)
        try:  # a concurrent request with the same Idempotency-Key stored its answer first
            await self.session.execute(insert_row(_table(IdempotencyRecord), "i_", dialect), params)
        except IntegrityError:
            return False
        if params["h_rows"] != "[]":
            await self.session.execute(hooks_insert(dialect), params)
        await self.session.execute(insert_row(_table(AuditEntry), "a_", dialect), params)
        return True


def _table(model: Any) -> Any:
    return model.__table__


_READ = DirectStatement(snapshot_read("postgresql"))
_WRITE = DirectStatement(composed_write())
_CANONICAL = DirectStatement(
    select(ContractVersion.canonical).where(
        ContractVersion.contract_id == bindparam("p_contract", type_=String()),
        ContractVersion.version == bindparam("p_version", type_=Integer()),
    )
)


class AsyncpgStore:
    """The fast store: the same read, and the same writes as ONE statement, on an asyncpg connection
    outside any transaction (each statement commits on its own)."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection

    async def fetch_row(self, params: dict[str, Any]) -> Any | None:
        return await self.connection.fetchrow(_READ.sql, *_READ.args(params))

    async def fetch_canonical(self, contract_id: str, version: int) -> bytes | None:
        found = await self.connection.fetchval(
            _CANONICAL.sql, *_CANONICAL.args({"p_contract": contract_id, "p_version": version})
        )
        return None if found is None else bytes(found)

    async def write(self, plan: RedemptionPlan, ctx: AuditContext, now: datetime) -> RedemptionWrite | None:
        """Write, or ``None`` with nothing written when a guard did not hold (a lost race, a reached
        limit, a moved total, an Idempotency-Key stored meanwhile, a deadlock)."""
        write = prepare_write(plan, ctx, now)
        try:
            await self.connection.fetchval(_WRITE.sql, *_WRITE.args(write.params))
        except (
            asyncpg.DivisionByZeroError,  # a guard did not hold: the statement (and all its writes) aborted
            asyncpg.IntegrityConstraintViolationError,  # e.g. the Idempotency-Key of a concurrent request
            asyncpg.TransactionRollbackError,  # a deadlock or serialization failure
        ):
            return None
        return write
