"""Redeeming a coupon at its funding brand, exactly once: read, decide, write.

Every redemption is the same three steps, whichever store runs them
(`alliance.benefits.redemption_store`): load the snapshot, let `redemption_rules.decide_redemption`
refuse it, replay a stored answer or plan it, and write the plan under the guards of its conditional
statements. :func:`redeem_direct` is PostgreSQL's fast path (one read and one write round trip on the
direct pool); it answers refusals and replays itself. Only a write that lost a race to a concurrent
request (coupon taken, limit reached, budget spent, total moved, key stored, deadlock) returns ``None``,
and the caller runs :func:`redeem`, the portable path, which reads and decides again.

Budget policy: **checked at redemption**, not reserved at issuance. Distributors hand out far more codes
than are ever redeemed, so reserving would lock a funding brand's money in codes nobody uses; instead
the budget (money and count) is consumed by a conditional ``UPDATE benefits ... WHERE spent + this <=
budget`` in the redemption's own transaction, which the database evaluates on the latest row version.
The budget can therefore never be overspent, however many redemptions race. When it is used up the
benefit becomes ``exhausted``; a reversal that gives budget back reopens it.

Exactly-once redemption: a coupon moves from ``issued`` to ``redeemed`` only through ``UPDATE coupons
... WHERE status = 'issued'`` (one winner), backed by the unique ``redemptions.coupon_id``.
"""

from __future__ import annotations

from typing import Any

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from alliance.benefits import booking
from alliance.benefits.redemption_rules import RedemptionPlan, RedemptionRequest, decide_redemption, redemption_request
from alliance.benefits.redemption_store import AsyncpgStore, CoreStore, load_snapshot
from alliance.benefits.rules import Refusal, Replay
from alliance.benefits.schemas import RedemptionCreate, RedemptionOut
from alliance.benefits.views import redemption_out
from alliance.core import idempotency
from alliance.core.audit import AuditContext
from alliance.core.database import database_unavailable
from alliance.core.ids import new_id
from alliance.core.problems import Problem
from alliance.db.base import utcnow
from alliance.db.models import Redemption

__all__ = ["get_redemption", "list_redemptions", "own_redemption", "redeem", "redeem_direct"]

_ATTEMPTS = 4
"""Reads and decisions per request on the portable path before answering 409 ``conflict``: each lost
race means another request committed meanwhile, and the next read sees it."""

Result = idempotency.IdempotentResult[RedemptionOut]


def _parsed(caller_id: str, key: str | None, data: RedemptionCreate) -> tuple[str, RedemptionRequest]:
    parsed = redemption_request(caller_id, key, data, new_id("rdm"))
    if isinstance(parsed, Refusal):
        raise parsed.problem()
    return parsed


def _answer(decision: Refusal | Replay | RedemptionPlan) -> Result | RedemptionPlan:
    """A refusal raised, a replay answered, a plan handed back for writing."""
    if isinstance(decision, Refusal):
        raise decision.problem()
    if isinstance(decision, Replay):
        body = msgspec.json.decode(decision.body, type=RedemptionOut)
        return idempotency.IdempotentResult(decision.status_code, body, replayed=True, encoded=decision.body)
    return decision


async def redeem_direct(
    pool: Any, ctx: AuditContext, caller_id: str, idempotency_key: str | None, data: RedemptionCreate
) -> Result | None:
    """Redeem on PostgreSQL's fast path with a connection of the direct pool. Refusals are raised and
    replays answered here; ``None``, with nothing written, when the write lost a race or the database
    cannot be reached there: the caller then runs :func:`redeem` (which answers 503 if it is down)."""
    code_hash, request = _parsed(caller_id, idempotency_key, data)
    try:
        async with pool.acquire() as connection:
            store = AsyncpgStore(connection)
            now = utcnow()
            decision = _answer(decide_redemption(await load_snapshot(store, request, code_hash, now), request, now))
            if not isinstance(decision, RedemptionPlan):
                return decision
            written = await store.write(decision, ctx, now)
    except Exception as exc:
        if database_unavailable(exc):
            return None
        raise
    return None if written is None else idempotency.IdempotentResult(201, written.body, encoded=written.encoded)


async def redeem(
    session: AsyncSession, ctx: AuditContext, caller_id: str, idempotency_key: str | None, data: RedemptionCreate
) -> Result:
    """Redeem a coupon code at its funding brand (the caller), exactly once, in the session's transaction
    (the caller commits). Refusals are `Problem` s with their own types (`redemption_rules`); a retry
    with the same ``Idempotency-Key`` gets the stored answer back."""
    code_hash, request = _parsed(caller_id, idempotency_key, data)
    lock_totals = False
    for _ in range(_ATTEMPTS):
        store = CoreStore(session)
        now = utcnow()
        decision = _answer(decide_redemption(await load_snapshot(store, request, code_hash, now), request, now))
        if not isinstance(decision, RedemptionPlan):
            return decision
        try:
            written = await store.write(decision, ctx, now, lock_totals=lock_totals)
        except booking.TotalsContended:
            # The month's commission total moved under the optimistic price: redo it with the total locked.
            written, lock_totals = None, True
        if written is not None:
            return idempotency.IdempotentResult(201, written.body, encoded=written.encoded)
        await session.rollback()  # a concurrent request won a guard: read what it changed, decide again
    raise Problem(409, "conflict", "concurrent requests kept changing this coupon's benefit; retry")


async def own_redemption(session: AsyncSession, caller_id: str, redemption_id: str) -> Redemption:
    """The caller's redemption as funding brand; 404 for anyone else's, exactly like a missing one."""
    redemption = await session.get(Redemption, redemption_id)
    if redemption is None or redemption.funding_brand_id != caller_id:
        raise Problem(404, "redemption-not-found", f"no redemption {redemption_id!r} for this brand")
    return redemption


async def get_redemption(session: AsyncSession, caller_id: str, redemption_id: str) -> RedemptionOut:
    return redemption_out(await own_redemption(session, caller_id, redemption_id))


async def list_redemptions(
    session: AsyncSession,
    caller_id: str,
    *,
    benefit_id: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> list[RedemptionOut]:
    """The caller's redemptions as funding brand, newest first."""
    query = select(Redemption).where(Redemption.funding_brand_id == caller_id)
    if benefit_id is not None:
        query = query.where(Redemption.benefit_id == benefit_id)
    query = query.order_by(Redemption.redeemed_at.desc(), Redemption.id.desc()).limit(limit).offset(offset)
    return [redemption_out(r) for r in (await session.scalars(query)).all()]
