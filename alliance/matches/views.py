"""Match jobs and tasks as the API shows them, and the lookups every match command starts with.

A brand reaches only matches it is a party to and only its own tasks: anything else is 404, exactly
like a missing id.
"""

from __future__ import annotations

import msgspec
from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from alliance.core.problems import Problem
from alliance.db.base import utcnow
from alliance.db.models import MatchJob, MatchTaskRow, Segment
from alliance.matches.schemas import MatchOut, MatchResultOut, TaskOut

__all__ = ["get_task", "match_for", "match_out", "require_open", "result_of", "sides", "task_out"]


def _role(match: MatchJob, brand_id: str) -> str:
    return "requester" if match.requester_brand_id == brand_id else "responder"


def sides(match: MatchJob, brand_id: str) -> tuple[str, str, str]:
    """(own segment, counterparty brand, counterparty segment) from ``brand_id``'s point of view."""
    if match.requester_brand_id == brand_id:
        return match.requester_segment_id, match.responder_brand_id, match.responder_segment_id
    return match.responder_segment_id, match.requester_brand_id, match.requester_segment_id


def result_of(match: MatchJob) -> MatchResultOut | None:
    if match.state != "done" or match.result is None:
        return None
    result: MatchResultOut = msgspec.convert(match.result, MatchResultOut)
    return result


async def match_out(session: AsyncSession, match: MatchJob, brand_id: str) -> MatchOut:
    own, counterparty, counterparty_segment = sides(match, brand_id)
    other = await session.get(Segment, counterparty_segment)
    assert other is not None
    return MatchOut(
        id=match.id,
        state=match.state,
        role="requester" if _role(match, brand_id) == "requester" else "responder",
        segment_id=own,
        counterparty_brand=counterparty,
        counterparty_segment_id=counterparty_segment,
        counterparty_segment_size=other.size,
        key_epoch=match.key_epoch,
        disclosure=match.disclosure,
        min_k=match.min_k,
        round_to=match.round_to,
        differential_privacy=match.dp_budget_milli is not None,
        basis=match.basis,
        contract_id=match.contract_id,
        contract_version=match.contract_version,
        failure_reason=match.failure_reason,
        requested_at=match.requested_at,
        expires_at=match.expires_at,
        completed_at=match.completed_at,
        result=result_of(match),
    )


def task_out(task: MatchTaskRow, match: MatchJob) -> TaskOut:
    _, counterparty, _ = sides(match, task.brand_id)
    return TaskOut(
        id=task.id,
        match_id=task.match_id,
        kind=task.kind,  # type: ignore[arg-type]
        state=task.state,
        segment_id=task.own_segment_id,
        counterparty_brand=counterparty,
        counterparty_segment_id=task.input_segment_id,
        declared_item_count=task.declared_item_count,
        key_epoch=match.key_epoch,
        disclosure=match.disclosure,
        expires_at=match.expires_at,
        failure_reason=task.failure_reason,
    )


async def match_for(session: AsyncSession, brand_id: str, match_id: str, *, lock: bool = False) -> MatchJob:
    query = select(MatchJob).where(
        MatchJob.id == match_id,
        or_(MatchJob.requester_brand_id == brand_id, MatchJob.responder_brand_id == brand_id),
    )
    if lock:
        query = query.with_for_update()
    match = await session.scalar(query)
    if match is None:
        raise Problem(404, "match-not-found", f"no match {match_id!r} for this brand")
    return match


async def get_task(
    session: AsyncSession, brand_id: str, task_id: str, *, lock: bool = False
) -> tuple[MatchTaskRow, MatchJob]:
    query = select(MatchTaskRow).where(MatchTaskRow.id == task_id, MatchTaskRow.brand_id == brand_id)
    if lock:
        query = query.with_for_update()
    task = await session.scalar(query)
    if task is None:
        raise Problem(404, "task-not-found", f"no task {task_id!r} for this brand")
    match = await session.get(MatchJob, task.match_id)
    assert match is not None
    return task, match


def require_open(task: MatchTaskRow, match: MatchJob) -> None:
    if match.state not in ("waiting_for_reblinds",) or utcnow() >= match.expires_at:
        raise Problem(409, "match-not-active", f"the match is {match.state}", extra={"state": match.state})
    if task.state != "open":
        raise Problem(409, "task-not-open", f"the task is {task.state}", extra={"state": task.state})
