"""A match's life after it is requested: reading it up to date, counting and releasing a cardinality
result, ending it (tasks cancelled, re-blinded sets deleted) and expiring overdue ones.

The exact count of a cardinality match is never stored: :func:`compute_match` releases it through
:mod:`privacy.noise` (minimum k, the pair's monthly differential-privacy budget, rounding).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from fractions import Fraction

import msgspec
from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from alliance.core.audit import AuditContext, record_audit
from alliance.core.problems import Problem
from alliance.db.base import utcnow
from alliance.db.models import MatchJob, MatchTaskRow, PsiBudget
from alliance.matches.schemas import MatchResultOut
from alliance.matches.views import match_for, result_of
from alliance.segments import storage
from alliance.segments.config import PsiSettings
from privacy.noise import BudgetExhausted, PrivacyBudget, release_count
from privacy.psi import CardinalityResult

__all__ = [
    "budget_row",
    "compute_match",
    "end_match",
    "expire_due",
    "get_match",
    "list_matches",
    "match_result",
    "month_of",
]

ACTIVE_STATES = ("requested", "waiting_for_reblinds", "computing")


async def get_match(
    session: AsyncSession, ctx: AuditContext, brand_id: str, match_id: str, settings: PsiSettings
) -> MatchJob:
    """One of the brand's matches, brought up to date (expired if overdue; a stuck computation retried)."""
    match = await match_for(session, brand_id, match_id)
    if match.state in ("requested", "waiting_for_reblinds") and utcnow() >= match.expires_at:
        await expire_due(session, ctx, brand_id)
        await session.refresh(match)
    elif (
        match.state == "computing"
        and match.computing_since is not None
        and utcnow() - match.computing_since > timedelta(seconds=settings.compute_retry_seconds)
    ):
        await compute_match(session, ctx, match.id, settings)
        await session.refresh(match)
    return match


async def list_matches(session: AsyncSession, ctx: AuditContext, brand_id: str) -> Sequence[MatchJob]:
    await expire_due(session, ctx, brand_id)
    query = (
        select(MatchJob)
        .where(or_(MatchJob.requester_brand_id == brand_id, MatchJob.responder_brand_id == brand_id))
        .order_by(MatchJob.requested_at.desc(), MatchJob.id)
        .limit(500)
    )
    return (await session.scalars(query)).all()


async def match_result(
    session: AsyncSession, ctx: AuditContext, brand_id: str, match_id: str, settings: PsiSettings
) -> MatchResultOut:
    match = await get_match(session, ctx, brand_id, match_id, settings)
    result = result_of(match)
    if result is None:
        raise Problem(
            409,
            "match-not-done",
            f"the match is {match.state}" + (f": {match.failure_reason}" if match.failure_reason else ""),
            extra={"state": match.state},
        )
    return result


async def budget_row(session: AsyncSession, brand_x: str, brand_y: str, month: str) -> PsiBudget:
    """The pair's budget row for the month, locked (created on first use)."""
    low, high = sorted((brand_x, brand_y))
    query = select(PsiBudget).where(PsiBudget.brand_low == low, PsiBudget.brand_high == high, PsiBudget.month == month)
    row = await session.scalar(query.with_for_update())
    if row is None:
        try:
            async with session.begin_nested():
                session.add(PsiBudget(brand_low=low, brand_high=high, month=month, spent_milli=0, updated_at=utcnow()))
        except IntegrityError:  # created concurrently; read theirs
            pass
        row = await session.scalar(query.with_for_update())
    assert row is not None
    return row


def month_of(at: datetime) -> str:
    return f"{at.year:04d}-{at.month:02d}"


async def end_match(session: AsyncSession, match: MatchJob, state: str, reason: str | None) -> None:
    """Move a match to a terminal state: cancel unfinished tasks and delete every re-blinded set."""
    match.state = state
    match.failure_reason = reason[:500] if reason else None
    match.completed_at = utcnow()
    match.computing_since = None
    tasks = (await session.scalars(select(MatchTaskRow).where(MatchTaskRow.match_id == match.id))).all()
    for task in tasks:
        if task.state in ("pending", "open"):
            task.state = "cancelled"
        await storage.delete_set(session, task.id)


async def compute_match(session: AsyncSession, ctx: AuditContext, match_id: str, settings: PsiSettings) -> MatchJob:
    """Count a cardinality match's common values and release the count per the terms (idempotent:
    a match that is no longer ``computing`` is returned as it is)."""
    match = await session.scalar(select(MatchJob).where(MatchJob.id == match_id).with_for_update())
    assert match is not None
    if match.state != "computing":
        return match
    tasks = (await session.scalars(select(MatchTaskRow).where(MatchTaskRow.match_id == match.id))).all()
    set_x, set_y = (t.id for t in tasks)
    true_count = await storage.count_common(session, set_x, set_y, memory_limit=settings.memory_join_limit)
    budget = None
    epsilon = None
    if match.dp_budget_milli is not None:
        row = await budget_row(session, match.requester_brand_id, match.responder_brand_id, month_of(utcnow()))
        budget = PrivacyBudget(
            (row.brand_low, row.brand_high), row.month, _milli(match.dp_budget_milli), _milli(row.spent_milli)
        )
        epsilon = _milli(settings.release_epsilon_milli)
    try:
        released = release_count(true_count, k=match.min_k, epsilon=epsilon, budget=budget, round_to=match.round_to)
    except BudgetExhausted as exc:
        await end_match(session, match, "failed", f"privacy budget exhausted: {exc}")
        record_audit(
            session,
            ctx,
            "match.fail",
            brand_id=match.requester_brand_id,
            target=match.id,
            details={"reason": "privacy-budget"},
        )
        return match
    if match.dp_budget_milli is not None:
        row.spent_milli += settings.release_epsilon_milli
        row.updated_at = utcnow()
    result = CardinalityResult(
        match_id=match.id,
        count=released.value,
        suppressed=released.suppressed,
        noised=released.noised,
        rounded_to=released.rounded_to,
    )
    match.result = msgspec.to_builtins(result)
    await end_match(session, match, "done", None)
    record_audit(
        session,
        ctx,
        "match.complete",
        brand_id=match.requester_brand_id,
        target=match.id,
        details={"suppressed": released.suppressed, "noised": released.noised, "epsilon": released.epsilon},
    )
    return match


def _milli(value: int) -> Fraction:
    return Fraction(value, 1000)


async def expire_due(session: AsyncSession, ctx: AuditContext, brand_id: str) -> int:
    """Expire the brand's overdue matches (those not done by ``expires_at``); returns how many."""
    now = utcnow()
    due = (
        await session.scalars(
            select(MatchJob)
            .where(
                or_(MatchJob.requester_brand_id == brand_id, MatchJob.responder_brand_id == brand_id),
                MatchJob.state.in_(("requested", "waiting_for_reblinds")),
                MatchJob.expires_at <= now,
            )
            .with_for_update()
        )
    ).all()
    for match in due:
        await end_match(session, match, "expired", "not finished before it expired")
        record_audit(session, ctx, "match.expire", brand_id=match.requester_brand_id, target=match.id)
    if due:
        await session.flush()
    return len(due)
